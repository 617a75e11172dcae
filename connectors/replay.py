"""Replay source: ticks from Parquet files, read in file-name order (chronological).

Partition k of P owns instruments whose ``token % P == k`` (rows without a token go to
partition 0), so each instrument's ticks stay in order on one partition. Within a file,
each instrument's rows are cut into chunks, emitted roughly in time order across
instruments. Rows are validated here (bad rows → dead letters); the snapshot holds
(file, chunk, last valid time per instrument), so a resume continues exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import stop
from operators.ticks import (
    MISSING_TS,
    Bounds,
    RawTicks,
    TradingDays,
    implausible,
    recording_bounds,
    validate,
)
from schemas.arrow import REQUIRED_TICK_COLUMNS, depth_type_error, read_depth
from schemas.config import ConfigError
from schemas.events import DeadLetter
from schemas.ticks import Depth, TickBatch

log = logging.getLogger("alpha_panda.replay")


@dataclass(frozen=True)
class RowsRead:
    """Rows read from the source, for the run report's in = processed + dead check."""

    count: int


SourceItem = TickBatch | DeadLetter | RowsRead


def list_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*.parquet"))
    elif p.exists():
        files = [p]
    else:
        raise FileNotFoundError(f"source.path: {p} does not exist")
    if not files:
        raise FileNotFoundError(f"source.path: no .parquet files under {p}")
    for f in files:
        schema = pq.read_schema(f)
        missing = [c for c in REQUIRED_TICK_COLUMNS if c not in schema.names]
        if missing:
            raise ConfigError(f"source.path: {f} lacks column(s) {missing}")
        depth = depth_type_error(schema)
        if depth is not None:
            raise ConfigError(f"source.path: {f} {depth}")
    return files


def _timestamps(col: pa.ChunkedArray) -> tuple[np.ndarray, list[Any] | None]:
    """int64 µs UTC (MISSING_TS where null/unparseable), and raw values if they were text."""
    if pa.types.is_timestamp(col.type):  # epoch numbers (UTC, naive or not) in its unit
        return _epoch_us(_column(col.cast(pa.int64()), pa.int64(), MISSING_TS), col.type.unit), None
    raw = col.to_pylist()
    out = np.full(len(raw), MISSING_TS, dtype=np.int64)
    for i, v in enumerate(raw):
        try:
            dt = datetime.fromisoformat(str(v)) if v is not None else None
        except ValueError:
            dt = None
        if dt is not None:
            dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
            out[i] = int(dt.timestamp()) * 1_000_000 + dt.microsecond
    return out, raw


def _epoch_us(vals: np.ndarray, unit: str) -> np.ndarray:
    """Epoch numbers in ``unit`` → µs (ns: floored); what µs cannot hold → MISSING_TS."""
    out = np.full(len(vals), MISSING_TS, dtype=np.int64)
    ok = vals != MISSING_TS
    if unit == "ns":
        out[ok] = vals[ok] // 1000
        return out
    per = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    ok &= np.abs(np.where(ok, vals, 0)) < 2**62 // per
    out[ok] = vals[ok] * per
    return out


@dataclass
class _FileData:
    tokens: np.ndarray  # int64, -1 where null
    ts: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    raw_ts: list[Any] | None
    max_ts: int
    groups: dict[int, np.ndarray]  # token → its row indices, in file order
    depth: Depth | None = None
    bounds: Bounds | None = None  # plausible tick times (operators.ticks.recording_bounds)


def _column(col: pa.ChunkedArray, typ: pa.DataType, fill: Any) -> np.ndarray:
    if col.type != typ:
        col = col.cast(typ)
    if col.null_count:
        col = col.fill_null(fill)
    return col.to_numpy()


_CACHE: dict[Path, _FileData] = {}


def group_rows(tok: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each token, in file order (dictionary codes + a stable radix sort)."""
    enc = pc.dictionary_encode(pa.array(tok))
    codes = enc.indices.to_numpy()
    codes = codes.astype(np.int16) if len(enc.dictionary) < 2**15 else codes
    order = np.argsort(codes, kind="stable")
    cuts = np.flatnonzero(np.diff(codes[order])) + 1
    return {int(tok[g[0]]): g for g in np.split(order, cuts) if len(g)}


def _read(path: Path) -> _FileData:
    """Read (and cache the most recent) file; partitions in one process share it."""
    if path in _CACHE:
        return _CACHE[path]
    t = pq.read_table(path)
    names = set(t.column_names)
    tok = _column(t["instrument_token"], pa.int64(), -1)
    ts, raw_ts = _timestamps(t["timestamp"])
    price = _column(t["last_price"], pa.float64(), np.nan)
    if "volume" in names:
        vol = _column(t["volume"], pa.int64(), -1)
    else:
        vol = np.full(len(tok), -1, dtype=np.int64)
    groups = group_rows(tok)
    bounds = recording_bounds(ts)
    sane = ts[~implausible(ts, bounds)]  # a wild time never moves the file-end mark
    max_ts = int(sane.max()) if len(sane) else MISSING_TS  # MISSING_TS is the int64 minimum
    depth = read_depth(t)
    data = _FileData(tok, ts, price, vol, raw_ts, max_ts, groups, depth, bounds)
    _CACHE.clear()
    _CACHE[path] = data
    return data


@dataclass
class ReplayState:
    file_idx: int = 0
    chunk_idx: int = 0
    last_ts: dict[int, int] = field(default_factory=dict)


class _ReplayPartition(StatefulSourcePartition[SourceItem, ReplayState]):
    def __init__(
        self,
        name: str,
        files: Sequence[Path],
        bucket: int,
        buckets: int,
        known: frozenset[int],
        batch_size: int,
        state: ReplayState | None,
        trading: TradingDays | None = None,
    ) -> None:
        self.name, self.files, self.bucket, self.buckets = name, files, bucket, buckets
        self.known, self.batch_size, self.trading = known, batch_size, trading
        self.mine = sorted(t for t in known if t % buckets == bucket)
        self.state = state or ReplayState()
        self.chunks: list[tuple[int, np.ndarray]] | None = None
        self.data: _FileData | None = None
        self.rows = 0
        self.logged = time.monotonic()

    def _load(self) -> None:
        data = _read(self.files[self.state.file_idx])
        chunks: list[tuple[tuple[int, int, int], int, np.ndarray]] = []
        for token, group in data.groups.items():
            if (0 if token < 0 else token % self.buckets) != self.bucket:
                continue
            key = MISSING_TS
            for j, start in enumerate(range(0, len(group), self.batch_size)):
                idx = group[start : start + self.batch_size]
                key = max(key, int(data.ts[idx[0]]))
                chunks.append(((key, token, j), token, idx))
        chunks.sort(key=lambda c: c[0])
        self.chunks = [(token, idx) for _, token, idx in chunks]
        self.data = data

    def _chunk(self, token: int, idx: np.ndarray) -> list[SourceItem]:
        assert self.data is not None
        d = self.data
        raw = RawTicks(
            source=str(self.files[self.state.file_idx].name),
            partition=self.name,
            instrument_token=None if token < 0 else token,
            offsets=idx.astype(np.int64),
            ts=d.ts[idx],
            price=d.price[idx],
            volume=d.volume[idx],
            raw_ts=[d.raw_ts[i] for i in idx.tolist()] if d.raw_ts is not None else None,
            depth=d.depth.take(idx) if d.depth is not None else None,
        )
        last = self.state.last_ts.get(token, MISSING_TS)
        batch, dead, new_last = validate(raw, self.known, last, self.trading, d.bounds)
        if token in self.known:
            self.state.last_ts[token] = new_last
        items: list[SourceItem] = [RowsRead(len(idx)), *dead]
        if batch is not None:
            items.append(batch)
        return items

    def _file_end(self) -> list[SourceItem]:
        """Every instrument of this partition has progressed to the end of the file."""
        assert self.data is not None
        wm = self.data.max_ts
        out: list[SourceItem] = []
        empty_i = np.zeros(0, dtype=np.int64)
        for token in self.mine:
            last = max(self.state.last_ts.get(token, MISSING_TS), wm)
            self.state.last_ts[token] = last
            out.append(TickBatch(token, empty_i, np.zeros(0), empty_i, last))
        return out

    def next_batch(self) -> list[SourceItem]:
        st = self.state
        if st.file_idx >= len(self.files) or stop.requested():
            raise StopIteration()
        if self.chunks is None:
            self._load()
        assert self.chunks is not None
        if st.chunk_idx < len(self.chunks):
            token, idx = self.chunks[st.chunk_idx]
            st.chunk_idx += 1
            self.rows += len(idx)
            self._progress()
            return self._chunk(token, idx)
        items = self._file_end()
        st.file_idx, st.chunk_idx = st.file_idx + 1, 0
        self.chunks = None
        return items

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self.logged >= 5.0:
            self.logged = now
            log.info(
                "%s: file %d/%d, %d rows read",
                self.name,
                self.state.file_idx + 1,
                len(self.files),
                self.rows,
            )

    def snapshot(self) -> ReplayState:
        st = self.state
        return ReplayState(st.file_idx, st.chunk_idx, dict(st.last_ts))


class ReplaySource(FixedPartitionedSource[SourceItem, ReplayState]):
    def __init__(
        self,
        path: str | Path,
        instruments: Sequence[int],
        batch_size: int,
        partitions: int,
        trading: TradingDays | None = None,
    ) -> None:
        """``trading``: ticks dated on other days are dead letters (see operators.ticks)."""
        self.files = list_files(path)
        self.trading = trading
        self.known = frozenset(instruments)
        self.batch_size = batch_size
        self.partitions = partitions

    def part_names(self) -> list[str]:
        return [f"replay-{k}" for k in range(self.partitions)]

    def list_parts(self) -> list[str]:
        return self.part_names()

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | None
    ) -> _ReplayPartition:
        k = int(for_part.rsplit("-", 1)[1])
        return _ReplayPartition(
            for_part,
            self.files,
            k,
            self.partitions,
            self.known,
            self.batch_size,
            resume_state,
            self.trading,
        )
