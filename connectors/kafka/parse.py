"""Kafka tick messages → columns, or dead letters with the reason and the original bytes."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pydantic import ValidationError

from operators.ticks import MAX_VOLUME, MISSING_TS, dead_letter
from schemas.arrow import TS_TYPE
from schemas.enums import DeadLetterReason
from schemas.events import DeadLetter, MarketTick
from schemas.ticks import F64, I64, to_us

RAW_KEEP = 1024
"""Bytes of an over-size message kept in its dead letter."""

Parsed = tuple[int, int, float, int]
"""One accepted message: (instrument token, timestamp µs, last price, volume or -1)."""

_FIELD_REASON = {
    "instrument_token": DeadLetterReason.INVALID_FIELD,
    "last_price": DeadLetterReason.INVALID_PRICE,
    "timestamp": DeadLetterReason.INVALID_TIMESTAMP,
}

JSON_SCHEMA = pa.schema(
    [
        ("instrument_token", pa.int64()),
        ("last_price", pa.float64()),
        ("timestamp", pa.string()),
        ("volume", pa.int64()),
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=JSON_SCHEMA, unexpected_field_behavior="error")
_READ = pj.ReadOptions(use_threads=False, block_size=1 << 24)
_AWARE = r"(Z|z|[+-]\d\d(:?\d\d)?)$"
INT64_MAX = 2**63 - 1
_UNREADABLE = object()  # json.loads failed


@dataclass(frozen=True)
class Columns:
    """Accepted messages of a poll: position in the poll, token, time µs, price, volume."""

    pos: I64
    token: I64
    ts: I64
    price: F64
    volume: I64


def _arrow(values: list[bytes]) -> tuple[I64, I64, F64, I64, np.ndarray] | None:
    """Parse newline-joined messages in one go: columns and a per-row ok mask, or None if
    any message breaks the schema (wrong type, unknown field, not an object, bad JSON)."""
    try:
        t = pj.read_json(io.BytesIO(b"\n".join(values)), _READ, _PARSE)
        if t.num_rows != len(values):
            return None
        ts_col = t["timestamp"]
        aware = pc.fill_null(pc.match_substring_regex(ts_col, _AWARE), False).to_numpy()
        ts = pc.cast(ts_col, TS_TYPE).cast(pa.int64()).fill_null(MISSING_TS).to_numpy()
        tok = t["instrument_token"].fill_null(-1).to_numpy()
        price = t["last_price"].cast(pa.float64()).fill_null(np.nan).to_numpy()
        vol = t["volume"].fill_null(-1).to_numpy()
        given = t["volume"].is_valid().to_numpy(zero_copy_only=False)
    except (pa.ArrowException, OverflowError, ValueError):  # the fast path only: None = ask
        return None  # message by message
    with np.errstate(invalid="ignore"):
        ok = (tok > 0) & np.isfinite(price) & (price > 0) & aware & (ts != MISSING_TS)
    ok &= ~given | ((vol >= 0) & (vol <= MAX_VOLUME))
    return tok, ts, price, vol, ok


def _plain(v: bytes) -> bool:
    """Whether the columnar parse may see a message: one line, one JSON object. Anything
    else goes straight to model validation (pyarrow 26 crashes the process on a top-level
    ``null``, found by tests/test_fuzz.py)."""
    return (
        b"\n" not in v
        and b"\r" not in v
        and v.strip(b" \t")[:1] == b"{"
        and v.rstrip(b" \t")[-1:] == b"}"
    )


def parse_batch(
    values: list[bytes | None], offsets: list[int], max_bytes: int, topic: str, part: str
) -> tuple[Columns, list[DeadLetter]]:
    """Parse a poll's messages: accepted columns (poll order) and dead letters.

    A message is accepted iff the columnar parse accepts it (alone or in any batch: a
    batch that fails is halved until the failing messages stand alone), or, standing alone
    and refused by it, full model validation accepts it. So the outcome of a message never
    depends on its neighbours; refused messages get their reason from model validation.
    """
    cols: list[tuple[np.ndarray, ...]] = []
    dead: list[DeadLetter] = []

    def one(i: int) -> None:
        got = parse_tick(values[i], max_bytes, topic, part, offsets[i])
        if isinstance(got, DeadLetter):
            dead.append(got)
        else:
            cols.append((np.array([i]), *(np.array([v]) for v in got)))

    def run(idx: np.ndarray) -> None:
        got = _arrow([values[i] or b"" for i in idx.tolist()])
        if got is None:
            if len(idx) == 1:
                one(int(idx[0]))
                return
            mid = len(idx) // 2
            run(idx[:mid])
            run(idx[mid:])
            return
        tok, ts, price, vol, ok = got
        cols.append((idx[ok], tok[ok], ts[ok], price[ok], vol[ok]))
        for i in idx[~ok].tolist():
            dead.append(_refused(values[i], max_bytes, topic, part, offsets[i]))

    plain = [i for i, v in enumerate(values) if v and len(v) <= max_bytes and _plain(v)]
    if plain:
        run(np.array(plain, dtype=np.int64))
    for i in sorted(set(range(len(values))) - set(plain)):
        one(i)
    return _in_poll_order(cols), dead


def _refused(value: bytes | None, max_bytes: int, topic: str, part: str, offset: int) -> DeadLetter:
    """A message the columnar checks refused: never accepted, whatever the model says (its
    reason is the model's where the model refuses it too)."""
    got = parse_tick(value, max_bytes, topic, part, offset)
    if isinstance(got, DeadLetter):
        return got
    checks = f"token > 0, price > 0, aware timestamp, volume 0..{MAX_VOLUME}"
    detail = f"refused by the tick checks ({checks})"
    return message_dead_letter(value, DeadLetterReason.INVALID_FIELD, detail, topic, part, offset)


def _in_poll_order(cols: list[tuple[np.ndarray, ...]]) -> Columns:
    """Accepted columns, each part led by its messages' positions in the poll, in poll order."""
    if not cols:
        e = np.zeros(0, dtype=np.int64)
        return Columns(e, e, e, np.zeros(0), e)
    pos, tok, ts, price, vol = (np.concatenate(c) for c in zip(*cols, strict=True))
    order = np.argsort(pos, kind="stable")
    return Columns(
        pos[order],
        tok[order].astype(np.int64),
        ts[order].astype(np.int64),
        price[order].astype(np.float64),
        vol[order].astype(np.int64),
    )


def _reason(err: ValidationError) -> tuple[DeadLetterReason, str]:
    e = err.errors()[0]
    field = str(e["loc"][0]) if e["loc"] else ""
    if e["type"] == "json_invalid":
        return DeadLetterReason.MALFORMED_JSON, e["msg"]
    if field == "instrument_token" and (e["type"] == "missing" or e.get("input", 0) is None):
        return DeadLetterReason.MISSING_TOKEN, "instrument_token is missing"
    where = ".".join(str(p) for p in e["loc"]) or "message"
    msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
    msg = msg.removeprefix("Value error, ")
    return _FIELD_REASON.get(field, DeadLetterReason.INVALID_FIELD), f"{where}: {msg}"


def message_dead_letter(
    value: bytes | None,
    reason: DeadLetterReason,
    detail: str,
    topic: str,
    part: str,
    offset: int,
) -> DeadLetter:
    """A message's dead letter: its bytes as text, or base64 if they are not UTF-8."""
    data = value or b""
    if len(data) > RAW_KEEP and reason == DeadLetterReason.MESSAGE_TOO_LARGE:
        data = data[:RAW_KEEP]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        b64 = base64.b64encode(data).decode("ascii")
        return dead_letter(topic, part, offset, reason, detail, b64, raw_encoding="base64")
    return dead_letter(topic, part, offset, reason, detail, text)


def parse_tick(
    value: bytes | None, max_bytes: int, topic: str, part: str, offset: int
) -> Parsed | DeadLetter:
    """One message: its columns, or a dead letter naming the reason (and the field). Never
    raises: anything unforeseen in a message is a dead letter naming the error."""
    try:
        return _parse_one(value, max_bytes, topic, part, offset)
    except Exception as e:  # the input boundary: a message can never stop the flow
        detail = f"message could not be read ({type(e).__name__})"
        return message_dead_letter(
            value, DeadLetterReason.INVALID_FIELD, detail, topic, part, offset
        )


def _parse_one(
    value: bytes | None, max_bytes: int, topic: str, part: str, offset: int
) -> Parsed | DeadLetter:
    if value is None:
        return message_dead_letter(
            value, DeadLetterReason.MALFORMED_JSON, "empty message", topic, part, offset
        )
    if len(value) > max_bytes:
        detail = (
            f"message is {len(value)} bytes, over source.max_message_bytes={max_bytes}; "
            f"raw holds the first {RAW_KEEP}"
        )
        return message_dead_letter(
            value, DeadLetterReason.MESSAGE_TOO_LARGE, detail, topic, part, offset
        )
    try:
        d: object = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested deep
        d = _UNREADABLE
    try:
        tick = MarketTick.model_validate_json(value, strict=True)
    except ValidationError as err:
        reason, detail = _reason(err)
        if d is not _UNREADABLE and not isinstance(d, dict):  # also a top-level null
            reason, detail = DeadLetterReason.MALFORMED_JSON, "expected a JSON object"
        return message_dead_letter(value, reason, detail, topic, part, offset)
    out_of_range = _out_of_range(tick)
    if out_of_range:
        return message_dead_letter(
            value, DeadLetterReason.INVALID_FIELD, out_of_range, topic, part, offset
        )
    vol = tick.volume if tick.volume is not None else -1
    return tick.instrument_token, to_us(tick.timestamp), tick.last_price, vol


def _out_of_range(tick: MarketTick) -> str:
    """What of a valid model cannot be a column (int64), or an absurd volume; "" if none."""
    if tick.instrument_token > INT64_MAX:
        return "instrument_token: above the int64 range"
    if tick.volume is not None and not 0 <= tick.volume <= MAX_VOLUME:
        return f"volume: must be 0..{MAX_VOLUME}"
    return ""
