"""KiteTicker binary frames → tick dicts, and the packets that cannot be read.

The published layout: a 2-byte packet count, then per packet a 2-byte length and the packet
(ltp 8 bytes, index quote 28 / full 32, quote 44, full 184; big-endian unsigned ints, prices
÷ the segment's divisor). The dicts are those ``kiteconnect.KiteTicker`` makes, but nothing
in a frame can raise: a packet of an unknown length, a truncated frame or bytes after the
last packet become ``BadPacket``s (dead letters ``MALFORMED_PACKET``), never a lost tick.
An exchange time of 0 means "not set" and is left out (the tick takes its receipt time).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_SEGMENT_DIVISOR = {3: 10_000_000.0, 6: 10_000.0, 12: 10_000.0}  # cds; bcd, nco
_INDICES = 9
_LENGTHS = {8: "ltp", 28: "quote", 32: "full", 44: "quote", 184: "full"}


@dataclass(frozen=True)
class BadPacket:
    """Bytes of a frame that are not a readable packet, and why."""

    raw: bytes
    detail: str


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from(">I", b, at)[0])


def _time(secs: int) -> datetime | None:
    return datetime.fromtimestamp(secs) if secs else None  # naive local, as kiteconnect


def _index(p: bytes, d: dict[str, Any], div: float) -> None:
    high, low, open_, close = (_u32(p, k) / div for k in (8, 12, 16, 20))
    d["ohlc"] = {"high": high, "low": low, "open": open_, "close": close}
    if len(p) == 32:
        d["exchange_timestamp"] = _time(_u32(p, 28))


def _quote(p: bytes, d: dict[str, Any], div: float) -> None:
    d["last_traded_quantity"] = _u32(p, 8)
    d["average_traded_price"] = _u32(p, 12) / div
    d["volume_traded"] = _u32(p, 16)
    d["total_buy_quantity"], d["total_sell_quantity"] = _u32(p, 20), _u32(p, 24)
    open_, high, low, close = (_u32(p, k) / div for k in (28, 32, 36, 40))
    d["ohlc"] = {"open": open_, "high": high, "low": low, "close": close}
    if len(p) != 184:
        return
    d["last_trade_time"] = _time(_u32(p, 44))
    d["oi"], d["oi_day_high"], d["oi_day_low"] = _u32(p, 48), _u32(p, 52), _u32(p, 56)
    d["exchange_timestamp"] = _time(_u32(p, 60))
    levels = [
        {
            "quantity": _u32(p, k),
            "price": _u32(p, k + 4) / div,
            "orders": int(struct.unpack_from(">H", p, k + 8)[0]),
        }
        for k in range(64, 184, 12)
    ]
    d["depth"] = {"buy": levels[:5], "sell": levels[5:]}


def parse_packet(p: bytes) -> dict[str, Any] | BadPacket:
    """One packet as KiteTicker's tick dict, or why it cannot be read."""
    mode = _LENGTHS.get(len(p))
    if mode is None:
        return BadPacket(p, f"packet of {len(p)} bytes (ltp 8, quote 28/44, full 32/184)")
    token = _u32(p, 0)
    segment = token & 0xFF
    div = _SEGMENT_DIVISOR.get(segment, 100.0)
    d: dict[str, Any] = {
        "tradable": segment != _INDICES,
        "mode": mode,
        "instrument_token": token,
        "last_price": _u32(p, 4) / div,
    }
    if len(p) in (28, 32):
        _index(p, d, div)
    elif len(p) in (44, 184):
        _quote(p, d, div)
    if "ohlc" in d:
        close = d["ohlc"]["close"]
        d["change"] = (d["last_price"] - close) * 100 / close if close else 0
    return d


def parse_frame(frame: bytes) -> list[dict[str, Any] | BadPacket]:
    """Every packet of a binary frame, in order (heartbeats, under 2 bytes, have none)."""
    if len(frame) < 2:
        return []
    count = int(struct.unpack_from(">H", frame, 0)[0])
    out: list[dict[str, Any] | BadPacket] = []
    at = 2
    for k in range(count):
        if at + 2 > len(frame):
            out.append(BadPacket(frame[at:], f"frame ends before packet {k + 1} of {count}"))
            return out
        n = int(struct.unpack_from(">H", frame, at)[0])
        if at + 2 + n > len(frame):
            detail = f"packet {k + 1} of {count} truncated ({len(frame) - at - 2} of {n} bytes)"
            out.append(BadPacket(frame[at:], detail))
            return out
        out.append(parse_packet(frame[at + 2 : at + 2 + n]))
        at += 2 + n
    if at < len(frame):
        out.append(BadPacket(frame[at:], f"{len(frame) - at} bytes after the last packet"))
    return out
