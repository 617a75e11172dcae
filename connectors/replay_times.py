"""Replay times: a tick file's ``timestamp`` column (a timestamp type, ISO-8601 text, or
epoch numbers in ``source.timestamp_unit``) decoded to int64 µs UTC. Naive times (no zone,
no offset) are wall-clock times in ``source.timezone`` (default UTC); a file of naive times
that only makes sense in the session's zone is warned of (``zone_hint``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from connectors.replay_files import FileSpan

MISSING_TS = np.iinfo(np.int64).min  # as operators.ticks.MISSING_TS
I64_MAX = np.iinfo(np.int64).max
US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
QUARTER_US = 15 * 60 * 1_000_000
NAIVE_EPOCH = datetime(1970, 1, 1)


def values(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """numpy values (nulls as 0) and the validity mask of a numeric column."""
    if len(col) and col.null_count == 0 and not pa.types.is_decimal(col.type):
        return np.asarray(col.to_numpy()), np.ones(len(col), dtype=bool)
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_decimal(col.type):
        col = col.cast(pa.float64(), safe=False)
    vals = col.fill_null(0).to_numpy(zero_copy_only=False) if len(col) else np.zeros(0)
    return np.asarray(vals), valid


def epoch_us(vals: np.ndarray, ok: np.ndarray, unit: str) -> np.ndarray:
    """Epoch numbers in ``unit`` (s, ms, us, ns) → int64 µs; out of range → MISSING_TS."""
    if vals.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = vals * (1e-3 if unit == "ns" else US_PER[unit])
            ok = ok & np.isfinite(scaled) & (np.abs(scaled) < 2.0**62)
        return _where_ok(np.round(scaled), ok)
    if vals.dtype == np.uint64:
        ok = ok & (vals <= np.uint64(I64_MAX))
    v = vals.astype(np.int64, copy=unit != "us")  # a copy where it is scaled in place
    if unit == "ns":
        v //= 1_000
    else:
        limit = 2**62 // US_PER[unit]
        ok = ok & (v > -limit) & (v < limit)
        if US_PER[unit] != 1:
            np.multiply(v, US_PER[unit], out=v, where=ok)
    return _where_ok(v, ok)


def _where_ok(us: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``us`` as int64 where ``ok``, MISSING_TS elsewhere (no copy when all are ok)."""
    if ok.all():
        return us.astype(np.int64, copy=False)
    out = np.full(len(us), MISSING_TS, dtype=np.int64)
    out[ok] = us[ok].astype(np.int64)
    return out


def _iso(raw: list[Any], zone: str) -> np.ndarray:
    out = np.full(len(raw), MISSING_TS, dtype=np.int64)
    naive = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw):
        try:
            dt = datetime.fromisoformat(str(v)) if v is not None else None
            if dt is not None:
                naive[i] = dt.tzinfo is None
                dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
                out[i] = int(dt.timestamp()) * 1_000_000 + dt.microsecond
        except (ValueError, OverflowError):
            pass
    if zone != "UTC" and naive.any():
        out[naive] = localize(out[naive], zone)
    return out


def localize(wall: np.ndarray, zone: str) -> np.ndarray:
    """Naive times (µs, their wall clock read as if UTC) as µs UTC, taken as wall-clock
    times in IANA ``zone`` (an ambiguous or skipped time: the offset before the change).
    MISSING_TS stays; a time with no calendar date becomes MISSING_TS."""
    if zone == "UTC" or not len(wall):
        return wall
    ok = wall != MISSING_TS
    quarters = wall[ok] // QUARTER_US  # zones change offset on quarter hours
    if not len(quarters):
        return wall
    lo = int(quarters.min())
    if int(quarters.max()) - lo < 200_000:  # a span of years: one table over it
        table = np.arange(lo, int(quarters.max()) + 1, dtype=np.int64)
        offsets = _offsets(table, ZoneInfo(zone))[quarters - lo]
    else:  # far-flung times: one offset per distinct quarter hour
        table, inverse = np.unique(quarters, return_inverse=True)
        offsets = _offsets(table, ZoneInfo(zone))[inverse.reshape(-1)]
    out = wall.copy()
    vals = wall[ok] - offsets
    out[ok] = np.where(offsets == MISSING_TS, MISSING_TS, vals)
    return out


def _offsets(quarters: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """UTC offset (µs) of ``tz`` at each wall-clock quarter hour; MISSING_TS: no such date."""
    out = np.full(len(quarters), MISSING_TS, dtype=np.int64)
    for i, q in enumerate(quarters.tolist()):
        try:
            wall = NAIVE_EPOCH + timedelta(microseconds=q * QUARTER_US)
            off = wall.replace(tzinfo=tz).utcoffset()
        except (OverflowError, ValueError):
            continue
        out[i] = off // timedelta(microseconds=1) if off is not None else 0
    return out


def timestamps(
    col: pa.ChunkedArray, unit: str | None, zone: str = "UTC"
) -> tuple[np.ndarray, list[Any] | None]:
    """int64 µs UTC (MISSING_TS where null or unreadable), and the raw values if text.
    Naive times (no zone, no offset) are wall-clock times in ``zone``; numbers are epoch
    ``unit``."""
    typ = col.type
    if pa.types.is_timestamp(typ):
        vals, ok = values(col.cast(pa.int64()))
        us = epoch_us(vals, ok, typ.unit)
        return (localize(us, zone) if typ.tz is None else us), None
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        assert unit is not None  # the file check refuses epoch numbers without a unit
        vals, ok = values(col)
        return epoch_us(vals, ok, unit), None
    raw = col.to_pylist()
    return _iso(raw, zone), raw


def naive_times(typ: pa.DataType) -> bool:
    """A (checked) timestamp column whose values may carry no zone: a timestamp type
    without one, or text. Epoch numbers are UTC by definition."""
    if pa.types.is_timestamp(typ):
        return typ.tz is None
    return not (pa.types.is_integer(typ) or pa.types.is_floating(typ))


def zone_hint(spans: list[FileSpan], is_open: Callable[[int], bool], zone: str) -> str | None:
    """The warning for files of naive times read as UTC that put most ticks outside the
    session while ``zone`` (the session's) would put most inside: likely written in it."""
    naive = [s for s in spans if s.naive and len(s.sample)]
    if not naive:
        return None
    wall = np.concatenate([s.sample for s in naive[:50]])
    as_utc, as_zone = _share_open(wall, is_open), _share_open(localize(wall, zone), is_open)
    if as_utc >= 0.5 or as_zone < 0.8:
        return None
    return (
        f"source.timezone: {naive[0].path} has times without a zone, read as UTC: "
        f"{as_utc:.0%} of its ticks fall in session hours, {as_zone:.0%} if read as "
        f"{zone}; if it was written in {zone} time, set source.timezone: {zone}"
    )


def _share_open(times: np.ndarray, is_open: Callable[[int], bool]) -> float:
    """The share of ``times`` (µs UTC) in session hours; a time with no date counts as out."""
    inside = 0
    for t in times.tolist():
        try:
            inside += t != MISSING_TS and is_open(t)
        except (OverflowError, ValueError, OSError):
            pass
    return inside / len(times) if len(times) else 0.0
