"""Kafka tick messages → columns, or dead letters with the reason and the original bytes."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.enums import DeadLetterReason
from schemas.events import DeadLetter, MarketTick
from schemas.ids import content_id
from schemas.ticks import to_us

RAW_KEEP = 1024
"""Bytes of an over-size message kept in its dead letter."""

FAST_KEYS = frozenset({"instrument_token", "last_price", "timestamp", "volume"})
_FIELD_REASON = {
    "instrument_token": DeadLetterReason.INVALID_FIELD,
    "last_price": DeadLetterReason.INVALID_PRICE,
    "timestamp": DeadLetterReason.INVALID_TIMESTAMP,
}

Parsed = tuple[int, int, float, int]
"""(instrument token, timestamp µs, last price, volume or -1)."""


def _fast(d: dict[str, Any]) -> Parsed | None:
    """The common, plainly valid message; None sends it through full model validation."""
    if not FAST_KEYS.issuperset(d):
        return None
    tok, price = d.get("instrument_token"), d.get("last_price")
    ts, vol = d.get("timestamp"), d.get("volume")
    if type(tok) is not int or tok <= 0 or type(ts) is not str:
        return None
    if type(price) is not float and type(price) is not int:
        return None
    if not (math.isfinite(price) and price > 0):
        return None
    if vol is not None and type(vol) is not int:
        return None
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return tok, to_us(dt), float(price), -1 if vol is None else vol


def _reason(err: ValidationError) -> tuple[DeadLetterReason, str]:
    e = err.errors()[0]
    field = str(e["loc"][0]) if e["loc"] else ""
    if e["type"] == "json_invalid":
        return DeadLetterReason.MALFORMED_JSON, e["msg"]
    if field == "instrument_token" and e["type"] == "missing":
        return DeadLetterReason.MISSING_TOKEN, "instrument_token is missing"
    where = ".".join(str(p) for p in e["loc"]) or "message"
    msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
    msg = msg.removeprefix("Value error, ")
    return _FIELD_REASON.get(field, DeadLetterReason.INVALID_FIELD), f"{where}: {msg}"


def dead_letter(
    value: bytes | None,
    reason: DeadLetterReason,
    detail: str,
    topic: str,
    part: str,
    offset: int,
) -> DeadLetter:
    data = value or b""
    if len(data) > RAW_KEEP and reason == DeadLetterReason.MESSAGE_TOO_LARGE:
        data = data[:RAW_KEEP]
    try:
        raw, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw, encoding = base64.b64encode(data).decode("ascii"), "base64"
    return DeadLetter(
        event_id=content_id("dl", topic, part, offset),
        reason=reason,
        detail=detail,
        source=topic,
        source_partition=part,
        offset=offset,
        timestamp=None,
        raw=raw,
        raw_encoding=encoding,
    )


def parse_tick(
    value: bytes | None, max_bytes: int, topic: str, part: str, offset: int
) -> Parsed | DeadLetter:
    """One message: its columns, or a dead letter naming the reason (and the field)."""
    if value is None:
        return dead_letter(
            value, DeadLetterReason.MALFORMED_JSON, "empty message", topic, part, offset
        )
    if len(value) > max_bytes:
        detail = (
            f"message is {len(value)} bytes, over source.max_message_bytes={max_bytes}; "
            f"raw holds the first {RAW_KEEP}"
        )
        return dead_letter(value, DeadLetterReason.MESSAGE_TOO_LARGE, detail, topic, part, offset)
    try:
        d = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        d = None
    if isinstance(d, dict):
        fast = _fast(d)
        if fast is not None:
            return fast
    try:
        tick = MarketTick.model_validate_json(value, strict=True)
    except ValidationError as err:
        reason, detail = _reason(err)
        if d is not None and not isinstance(d, dict):
            reason, detail = DeadLetterReason.MALFORMED_JSON, "expected a JSON object"
        return dead_letter(value, reason, detail, topic, part, offset)
    vol = tick.volume if tick.volume is not None else -1
    return tick.instrument_token, to_us(tick.timestamp), tick.last_price, vol
