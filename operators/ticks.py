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
    F64,
    I64,
    Depth,
    Marks,
    StrategyOutput,
    TickBatch,
    WindowCounts,
    from_us,
)

MISSING_TS = np.iinfo(np.int64).min
MIN_PRICE = 0.01  # one paisa: prices are handled in integer paise


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
        ts = int(raw.ts[i])
        if raw.raw_records is not None:
            text = raw.raw_records[i].decode("utf-8")
            out.append(_dead_letter(raw, i, ts, reason, detail, text))
            continue
        raw_ts: Any = raw.raw_ts[i] if raw.raw_ts is not None else None
        if raw.raw_ts is None and ts != MISSING_TS:
            raw_ts = from_us(ts)
        price = float(raw.price[i])
        record = {
            "instrument_token": raw.instrument_token,
            "timestamp": raw_ts.isoformat() if hasattr(raw_ts, "isoformat") else raw_ts,
            "last_price": None if np.isnan(price) else price,
            "volume": int(raw.volume[i]) if raw.volume[i] >= 0 else None,
        }
        record_text = json.dumps(record, sort_keys=True, default=str)
        out.append(_dead_letter(raw, i, ts, reason, detail, record_text))
    return out


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


def validate(
    raw: RawTicks, known: frozenset[int], last_ts: int, trading: TradingDays | None = None
) -> tuple[TickBatch | None, list[DeadLetter], int]:
    """Split rows into a valid batch and dead letters; ``last_ts`` carries order per instrument.
    ``trading``: ticks on other days are dead letters (and move no order check).

    Returns (batch or None, dead letters in row order, new last_ts).
    """
    n = len(raw.offsets)
    reason = np.zeros(n, dtype=np.int8)  # 0 ok, then the first failing check wins
    if raw.instrument_token is None:
        reason[:] = 1
    elif raw.instrument_token not in known:
        reason[:] = 2
    bad_ts = raw.ts == MISSING_TS
    reason[(reason == 0) & bad_ts] = 3
    bad_price = ~np.isfinite(raw.price) | (raw.price < MIN_PRICE)
    reason[(reason == 0) & bad_price] = 4
    if trading is not None and (reason == 0).any():
        check = np.flatnonzero(reason == 0)
        reason[check[~trading(raw.ts[check])]] = 6
    ok = reason == 0
    # Out of order: older than the newest earlier valid tick of this instrument.
    ts_ok = np.where(ok, raw.ts, MISSING_TS)
    running = np.maximum.accumulate(np.concatenate(([last_ts], ts_ok)))[:-1]
    ooo = ok & (raw.ts < running)
    reason[ooo] = 5
    ok &= ~ooo

    dead: list[DeadLetter] = []
    if not ok.all():
        names = {
            1: (DeadLetterReason.MISSING_TOKEN, "instrument_token is missing"),
            2: (DeadLetterReason.UNKNOWN_INSTRUMENT, "instrument_token not in the instrument list"),
            3: (DeadLetterReason.INVALID_TIMESTAMP, "timestamp is missing or unparseable"),
            4: (DeadLetterReason.INVALID_PRICE, "last_price must be finite and >= 0.01"),
            5: (DeadLetterReason.TIMESTAMP_OUT_OF_ORDER, "older than an earlier tick"),
            6: (DeadLetterReason.NON_TRADING_DAY, "not a trading day (weekend or holiday)"),
        }
        bad_rows = np.flatnonzero(~ok)
        for code, (r, detail) in names.items():
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
    win = batch.ts // window_us
    ends = np.concatenate((np.flatnonzero(np.diff(win)) + 1, [len(win)]))
    starts = np.concatenate(([0], ends[:-1]))
    return WindowCounts(win[starts], ends - starts, batch.ts[ends - 1])


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
