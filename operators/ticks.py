"""Tick validation (bad rows → dead letters) and fan-out of batches to broker keys."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import bytewax.operators as op
import numpy as np
import numpy.typing as npt
from bytewax.dataflow import Stream

from schemas.enums import Broker, DeadLetterReason
from schemas.events import DeadLetter
from schemas.ids import content_id
from schemas.keys import route_key
from schemas.ticks import (
    BAD_VOLUME,
    F64,
    I64,
    NO_VOLUME,
    PLAUSIBLE_FROM,
    PLAUSIBLE_UNTIL,
    US,
    Depth,
    Marks,
    StrategyOutput,
    TickBatch,
    WindowCounts,
    from_us,
)

MISSING_TS = np.iinfo(np.int64).min
MIN_PRICE = 0.01  # one paisa: prices are handled in integer paise
MAX_PRICE = 1e9  # rupees a share: far above any listed price, far below paise overflow
MAX_VOLUME = 10**12  # shares: far above any day's volume, far below int64 overflow in sums

DAY_US = 86_400 * US
MAX_AHEAD_US = DAY_US
"""Live sources: how far a tick may be dated after it arrived (clock skew, time zones)."""
MAX_SPAN_US = 366 * DAY_US
"""Replay: how far a tick may be dated from its file's median time."""

Bounds = tuple[I64 | int, I64 | int]
"""Plausible tick times, inclusive: (earliest, latest), scalars or one per row."""


def arrival_bounds(arrived: I64) -> Bounds:
    """Live: a tick dated more than MAX_AHEAD_US after it arrived (µs) is implausible."""
    return PLAUSIBLE_FROM, np.minimum(arrived, PLAUSIBLE_UNTIL - MAX_AHEAD_US) + MAX_AHEAD_US


def recording_bounds(ts: I64) -> tuple[int, int]:
    """Replay: within MAX_SPAN_US of the median of the file's plausible times, and within a
    day of where nearly all of them lie (the 0.1% and 99.9% quantiles, at least one row
    each way in a file of 20 or more): one tick dated days
    after the rest of its file would otherwise hold its instrument's order check and turn
    every later tick of it into a dead letter (robust: up to half of a file's rows may be
    wild without moving the median, 0.1% without moving the quantiles)."""
    ordered = bool(np.all(ts[1:] >= ts[:-1]))  # a recording in time order: no copy, no sort
    if ordered:
        sane = ts[np.searchsorted(ts, PLAUSIBLE_FROM) : np.searchsorted(ts, PLAUSIBLE_UNTIL)]
    else:
        sane = ts[(ts >= PLAUSIBLE_FROM) & (ts < PLAUSIBLE_UNTIL)]
    if not len(sane):
        return PLAUSIBLE_FROM, PLAUSIBLE_UNTIL - 1
    n = len(sane)
    k = max(1, n // 1000) if n >= 20 else 0  # rows left out at each end (a file's strays)
    at = [n // 2, k, n - 1 - k]
    mid, lo, hi = sane[at] if ordered else np.partition(sane, at)[at]
    first = max(int(mid) - MAX_SPAN_US, int(lo) - DAY_US, PLAUSIBLE_FROM)
    return first, min(int(mid) + MAX_SPAN_US, int(hi) + DAY_US, PLAUSIBLE_UNTIL - 1)


def implausible(ts: I64, bounds: Bounds | None = None) -> npt.NDArray[np.bool_]:
    """Rows whose time is outside ``bounds`` or the absolute plausible range (missing
    times are not implausible: they are missing)."""
    lo, hi = bounds if bounds is not None else (PLAUSIBLE_FROM, PLAUSIBLE_UNTIL - 1)
    out = (ts < np.maximum(lo, PLAUSIBLE_FROM)) | (ts > np.minimum(hi, PLAUSIBLE_UNTIL - 1))
    return out & (ts != MISSING_TS)


@dataclass(frozen=True)
class RawTicks:
    """Columns of one instrument's rows as read, before validation (row offsets kept)."""

    source: str
    partition: str
    instrument_token: int | None
    offsets: I64
    ts: I64  # MISSING_TS where null or unparseable
    price: F64  # NaN where null
    volume: I64
    raw_ts: Sequence[Any] | None = None  # original timestamp values, for dead letters
    raw_records: Sequence[bytes] | None = None  # records as received (UTF-8 Kafka messages)
    recv: I64 | None = None  # live sources: wall-clock receipt time (µs) per row
    depth: Depth | None = None  # the book at each row, when the source carries it


def _dead(
    raw: RawTicks, idx: np.ndarray, reason: DeadLetterReason, detail: str
) -> list[DeadLetter]:
    out = []
    for i in idx.tolist():
        given = int(raw.ts[i])  # a dead letter's own time only if plausible (raw keeps any)
        ts = given if PLAUSIBLE_FROM <= given < PLAUSIBLE_UNTIL else MISSING_TS
        if raw.raw_records is not None:
            text = raw.raw_records[i].decode("utf-8", errors="replace")
            out.append(_dead_letter(raw, i, ts, reason, detail, text))
            continue
        raw_ts: Any = raw.raw_ts[i] if raw.raw_ts is not None else None
        if raw.raw_ts is None and given != MISSING_TS:
            try:
                raw_ts = from_us(given)
            except OverflowError:  # beyond datetime: the µs as read
                raw_ts = given
        price = float(raw.price[i])
        record = {
            "instrument_token": raw.instrument_token,
            "timestamp": raw_ts.isoformat() if hasattr(raw_ts, "isoformat") else raw_ts,
            "last_price": None if np.isnan(price) else price,
            "volume": _volume(int(raw.volume[i])),
        }
        record_text = json.dumps(record, sort_keys=True, default=str)
        out.append(_dead_letter(raw, i, ts, reason, detail, record_text))
    return out


def _volume(v: int) -> int | str | None:
    return None if v == NO_VOLUME else "unreadable" if v == BAD_VOLUME else v


def _dead_letter(
    raw: RawTicks, i: int, ts: int, reason: DeadLetterReason, detail: str, text: str
) -> DeadLetter:
    offset = int(raw.offsets[i])
    return dead_letter(raw.source, raw.partition, offset, reason, detail, text, ts)


def dead_letter(
    source: str,
    partition: str,
    offset: int,
    reason: DeadLetterReason,
    detail: str,
    raw: str,
    ts: int = MISSING_TS,
    raw_encoding: Literal["utf-8", "base64"] = "utf-8",
) -> DeadLetter:
    """The dead letter of record ``offset`` of ``source``/``partition``; its id is the position."""
    return DeadLetter(
        event_id=content_id("dl", source, partition, offset),
        reason=reason,
        detail=detail,
        source=source,
        source_partition=partition,
        offset=offset,
        timestamp=None if ts == MISSING_TS else from_us(ts),
        raw=raw,
        raw_encoding=raw_encoding,
    )


TradingDays = Callable[[I64], npt.NDArray[np.bool_]]  # instants (µs) → on a trading day?


_CHECKS = {
    1: (DeadLetterReason.MISSING_TOKEN, "instrument_token is missing"),
    2: (DeadLetterReason.UNKNOWN_INSTRUMENT, "instrument_token not in the instrument list"),
    3: (DeadLetterReason.INVALID_TIMESTAMP, "timestamp is missing or unparseable"),
    7: (
        DeadLetterReason.TIMESTAMP_IMPLAUSIBLE,
        "timestamp implausible: before 1990, from 2100, over a day after arrival (live) "
        "or over 366 days from its file's median time (replay)",
    ),
    4: (DeadLetterReason.INVALID_PRICE, f"last_price must be finite, >= 0.01 and <= {MAX_PRICE:g}"),
    8: (DeadLetterReason.INVALID_FIELD, f"volume must be 0..{MAX_VOLUME} (or absent)"),
    6: (DeadLetterReason.NON_TRADING_DAY, "not a trading day (weekend or holiday)"),
    5: (DeadLetterReason.TIMESTAMP_OUT_OF_ORDER, "older than an earlier tick"),
}


def _reasons(
    raw: RawTicks, known: frozenset[int], trading: TradingDays | None, bounds: Bounds | None
) -> npt.NDArray[np.int8]:
    """Each row's first failing check (a key of _CHECKS), 0 where all pass; in the order of
    _CHECKS, so an implausible time never reaches the calendar or the order check."""
    reason = np.zeros(len(raw.offsets), dtype=np.int8)
    if raw.instrument_token is None:
        reason[:] = 1
    elif raw.instrument_token not in known:
        reason[:] = 2
    reason[(reason == 0) & (raw.ts == MISSING_TS)] = 3
    reason[(reason == 0) & implausible(raw.ts, bounds)] = 7
    with np.errstate(invalid="ignore"):
        bad_price = ~np.isfinite(raw.price) | (raw.price < MIN_PRICE) | (raw.price > MAX_PRICE)
    reason[(reason == 0) & bad_price] = 4
    bad_vol = ((raw.volume < 0) & (raw.volume != NO_VOLUME)) | (raw.volume > MAX_VOLUME)
    reason[(reason == 0) & bad_vol] = 8
    if trading is not None and (reason == 0).any():
        check = np.flatnonzero(reason == 0)
        reason[check[~trading(raw.ts[check])]] = 6
    return reason


def _all_pass(
    raw: RawTicks,
    known: frozenset[int],
    last_ts: int,
    trading: TradingDays | None,
    bounds: Bounds | None,
) -> bool:
    """Whether every row passes every check, tested on a few whole-column reductions (a
    False only sends the rows through the row-by-row checks): times in order from
    ``last_ts`` on, first and last within scalar bounds (so all are: no time is missing,
    MISSING_TS being the least), prices and volumes within range (NaN fails min/max)."""
    ts, n = raw.ts, len(raw.ts)
    scalar = bounds is None or all(isinstance(b, int) for b in bounds)  # live: per row
    if not n or raw.instrument_token not in known or not scalar:
        return False
    lo, hi = bounds if bounds is not None else (PLAUSIBLE_FROM, PLAUSIBLE_UNTIL - 1)
    first, last = int(ts[0]), int(ts[-1])
    if first < max(lo, PLAUSIBLE_FROM, last_ts) or last > min(hi, PLAUSIBLE_UNTIL - 1):
        return False
    if n > 1 and not bool((ts[1:] >= ts[:-1]).all()):
        return False
    p, v = raw.price, raw.volume
    if not (p.min() >= MIN_PRICE and p.max() <= MAX_PRICE):
        return False
    if not (v.min() >= 0 and v.max() <= MAX_VOLUME):
        return False
    return trading is None or bool(trading(ts).all())


def validate(
    raw: RawTicks,
    known: frozenset[int],
    last_ts: int,
    trading: TradingDays | None = None,
    bounds: Bounds | None = None,
) -> tuple[TickBatch | None, list[DeadLetter], int]:
    """Split rows into a valid batch and dead letters; ``last_ts`` carries order per instrument.
    ``trading``: ticks on other days are dead letters; ``bounds``: plausible times (see
    ``implausible``). A refused row never moves the order check.

    Returns (batch or None, dead letters in row order, new last_ts).
    """
    if _all_pass(raw, known, last_ts, trading, bounds):  # the usual batch: no copies
        assert raw.instrument_token is not None
        new = int(raw.ts[-1])
        batch = TickBatch(raw.instrument_token, raw.ts, raw.price, raw.volume, new, raw.recv,
                          raw.depth)  # fmt: skip
        return batch, [], new
    reason = _reasons(raw, known, trading, bounds)
    ok = reason == 0
    # Out of order: older than the newest earlier valid tick of this instrument.
    ts_ok = np.where(ok, raw.ts, MISSING_TS)
    running = np.maximum.accumulate(np.concatenate(([last_ts], ts_ok)))[:-1]
    ooo = ok & (raw.ts < running)
    reason[ooo] = 5
    ok &= ~ooo

    dead: list[DeadLetter] = []
    if not ok.all():
        bad_rows = np.flatnonzero(~ok)
        for code, (r, detail) in _CHECKS.items():
            rows = bad_rows[reason[bad_rows] == code]
            if len(rows):
                dead.extend(_dead(raw, rows, r, detail))
        dead.sort(key=lambda d: d.offset)
    if not ok.any():
        return None, dead, last_ts
    ts = raw.ts[ok]
    new_last = int(ts[-1])
    assert raw.instrument_token is not None
    batch = TickBatch(
        instrument_token=raw.instrument_token,
        ts=ts,
        price=raw.price[ok],
        volume=raw.volume[ok],
        watermark=new_last,
        recv=raw.recv[ok] if raw.recv is not None else None,
        depth=raw.depth.take(ok) if raw.depth is not None else None,
    )
    return batch, dead, new_last


def window_counts(batch: TickBatch, window_us: int) -> WindowCounts:
    """Ticks per health window within the batch, with the last tick time of each."""
    if not len(batch):
        empty = np.zeros(0, dtype=np.int64)
        return WindowCounts(empty, empty, empty)
    ts = batch.ts
    first, last = int(ts[0]) // window_us, int(ts[-1]) // window_us
    if last - first > len(ts):  # more windows than ticks (long gaps): from each tick's own
        win = ts // window_us
        ends = np.concatenate((np.flatnonzero(np.diff(win)) + 1, [len(win)]))
        starts = np.concatenate(([0], ends[:-1]))
        return WindowCounts(win[starts], ends - starts, ts[ends - 1])
    # The ticks are in time order: each window's first tick is where its start would go.
    edges = np.empty(last - first + 2, dtype=np.int64)  # each window's first tick, then the end
    edges[0], edges[-1] = 0, len(ts)
    edges[1:-1] = ts.searchsorted(np.arange(first + 1, last + 1, dtype=np.int64) * window_us)
    count = np.diff(edges)
    used = np.flatnonzero(count)
    return WindowCounts(first + used, count[used], ts[edges[used + 1] - 1])


def boundary_marks(
    ts: I64, price: F64, prev_ts: int | None, prev_price: float, grid_us: int
) -> Marks:
    """Marks for the first grid boundary crossed between consecutive ticks (carry included)."""
    if not len(ts):
        return Marks.none()
    bucket = ts // grid_us
    if prev_ts is None:
        prev_bucket = np.concatenate(([bucket[0]], bucket[:-1]))
    else:
        prev_bucket = np.concatenate(([prev_ts // grid_us], bucket[:-1]))
    prev_p = np.concatenate(([prev_price], price[:-1]))
    idx = np.flatnonzero(bucket != prev_bucket)
    return Marks(((prev_bucket[idx] + 1) * grid_us).astype(np.int64), prev_p[idx])


def route_ticks(
    step_id: str,
    batches: Stream[TickBatch],
    routes: Mapping[int, Sequence[Broker]],
    brokers: Sequence[Broker],
    window_us: int,
) -> tuple[Stream[tuple[str, TickBatch]], Stream[tuple[str, StrategyOutput]]]:
    """Fan out each batch: to ``"{broker}:{token}"`` for brokers with a strategy on it, and
    as progress-only output (watermark and tick counts) to every other configured broker.
    """

    def fan(batch: TickBatch) -> Iterable[tuple[str, Any]]:
        trading = routes.get(batch.instrument_token, ())
        progress = None  # built once, only if some broker does not trade this instrument
        for b in brokers:
            if b in trading:
                yield (route_key(b, batch.instrument_token), batch)
                continue
            if progress is None:
                counts = window_counts(batch, window_us)
                progress = StrategyOutput(
                    batch.instrument_token, (), Marks.none(), counts, batch.watermark
                )
            yield (b.value, progress)

    fanned = op.flat_map(f"{step_id}_fan", batches, fan)
    split = op.branch(f"{step_id}_split", fanned, lambda kv: isinstance(kv[1], TickBatch))
    return split.trues, split.falses
