"""Replay source: ticks from Parquet files, each checked whole before the flow starts and
read in time order (connectors.replay_files).

Partition k of P owns instruments whose ``token % P == k`` (rows without a token go to
partition 0), so each instrument's ticks stay in order on one partition. Within a file,
each instrument's rows are cut into chunks, emitted roughly in time order across
instruments. Rows are validated here (bad rows → dead letters); the snapshot holds
(file, chunk, last valid time per instrument), so a resume continues exactly.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import stop
from connectors.replay_files import ReplayFileError, list_files, read_file, read_ticks
from operators.session import MarketSession
from operators.ticks import (
    MISSING_TS,
    Bounds,
    RawTicks,
    TradingDays,
    implausible,
    recording_bounds,
    validate,
)
from schemas.arrow import ReplayProblem
from schemas.events import DeadLetter
from schemas.ticks import Depth, TickBatch

log = logging.getLogger("alpha_panda.replay")


@dataclass(frozen=True)
class RowsRead:
    """Rows read from the source, for the run report's in = processed + dead check."""

    count: int


SourceItem = TickBatch | DeadLetter | RowsRead


@dataclass
class _FileData:
    """A file's columns with each instrument's rows side by side (so a chunk is a slice),
    each instrument's in file order; ``rows`` holds their row numbers in the file."""

    rows: np.ndarray  # int64
    ts: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    raw_ts: list[Any] | None
    max_ts: int
    spans: dict[int, tuple[int, int]]  # token (-1: none) → its [start, end) in the columns
    depth: Depth | None = None
    bounds: Bounds | None = None  # plausible tick times (operators.ticks.recording_bounds)


FileKey = tuple[Path, str | None, str, int, int]  # + mtime_ns and size: a changed file is new
_CACHE: dict[FileKey, _FileData] = {}  # the file being replayed
_NEXT: dict[FileKey, Future[_FileData]] = {}  # the next one, read while it is replayed
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-read")
_LOCK = threading.Lock()  # workers of one process share these


def group_rows(tok: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each token, in file order."""
    order, spans = group_order(tok)
    return {t: order[a:b] for t, (a, b) in spans.items()}


def group_order(tok: np.ndarray) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """The row order that puts each token's rows side by side, each token's in file order
    (dictionary codes + a stable radix sort), and each token's [start, end) in it."""
    enc = pc.dictionary_encode(pa.array(tok))
    codes = enc.indices.to_numpy()
    codes = codes.astype(np.int16) if len(enc.dictionary) < 2**15 else codes
    order = np.argsort(codes, kind="stable").astype(np.int64, copy=False)
    if not len(order):
        return order, {}
    cuts = [0, *(np.flatnonzero(np.diff(codes[order])) + 1).tolist(), len(order)]
    firsts = tok[order[cuts[:-1]]].tolist()
    return order, {t: (a, b) for t, a, b in zip(firsts, cuts[:-1], cuts[1:], strict=True)}


def _decode(path: Path, ts_unit: str | None, zone: str) -> _FileData:
    c = read_ticks(read_file(path), ts_unit, zone)
    bounds = recording_bounds(c.ts)
    sane = c.ts[~implausible(c.ts, bounds)]  # a wild time never moves the file-end mark
    max_ts = int(sane.max()) if len(sane) else MISSING_TS  # MISSING_TS is the int64 minimum
    rows, spans = group_order(c.tokens)
    raw_ts = [c.raw_ts[i] for i in rows.tolist()] if c.raw_ts is not None else None
    depth = c.depth.take(rows) if c.depth is not None else None
    return _FileData(
        rows, c.ts[rows], c.price[rows], c.volume[rows], raw_ts, max_ts, spans, depth, bounds
    )


def _key(path: Path, ts_unit: str | None, zone: str) -> FileKey:
    st = path.stat()
    return path, ts_unit, zone, st.st_mtime_ns, st.st_size


def _read(path: Path, ts_unit: str | None = None, zone: str = "UTC") -> _FileData:
    """Read (and cache the most recent) file; partitions in one process share it. A file
    asked for by ``prefetch`` is taken from its background read (errors raised here)."""
    key = _key(path, ts_unit, zone)
    with _LOCK:
        data = _CACHE.get(key)
        ahead = _NEXT.pop(key, None) if data is None else None
    if data is not None:
        return data
    data = ahead.result() if ahead is not None else _decode(path, ts_unit, zone)
    with _LOCK:
        _CACHE.clear()
        _CACHE[key] = data
    return data


def prefetch(path: Path, ts_unit: str | None = None, zone: str = "UTC") -> None:
    """Start reading ``path`` on a background thread (Arrow and numpy free the GIL for most
    of it), so the replay of one file overlaps the read of the next. At most one file is
    read ahead; one asked for and never replayed is dropped at the next ask."""
    try:
        key = _key(path, ts_unit, zone)
    except OSError:
        return  # gone: the replay's own read reports it
    with _LOCK:
        if key in _CACHE or key in _NEXT:
            return
        for stale in _NEXT.values():
            stale.cancel()
        _NEXT.clear()
        _NEXT[key] = _READER.submit(_decode, path, ts_unit, zone)


def _unreadable(path: Path, exc: BaseException) -> NoReturn:
    """A file that passed the check before the run but fails now (changed or damaged since):
    one line, exit 2, no traceback."""
    err = ReplayFileError(path, ReplayProblem.CORRUPT, f"became unreadable during the run: {exc}")
    sys.stderr.write(f"alpha-panda: {err}\n")
    sys.stderr.flush()
    os._exit(2)


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
        ts_unit: str | None = None,
        zone: str = "UTC",
    ) -> None:
        self.name, self.files, self.bucket, self.buckets = name, files, bucket, buckets
        self.known, self.batch_size, self.trading = known, batch_size, trading
        self.ts_unit, self.zone = ts_unit, zone
        self.mine = sorted(t for t in known if t % buckets == bucket)
        self.state = state or ReplayState()
        self.chunks: list[tuple[int, int, int]] | None = None  # token, rows [a, b)
        self.data: _FileData | None = None
        self.rows = 0
        self.logged = time.monotonic()
        stop.tick_part_open(name)

    def _load(self) -> None:
        path = self.files[self.state.file_idx]
        try:
            data = _read(path, self.ts_unit, self.zone)
        except Exception as exc:
            _unreadable(path, exc)
        if self.state.file_idx + 1 < len(self.files):
            prefetch(self.files[self.state.file_idx + 1], self.ts_unit, self.zone)
        chunks: list[tuple[tuple[int, int, int], int, int, int]] = []
        for token, (first, end) in data.spans.items():
            if (0 if token < 0 else token % self.buckets) != self.bucket:
                continue
            key = MISSING_TS
            for j, start in enumerate(range(first, end, self.batch_size)):
                key = max(key, int(data.ts[start]))
                chunks.append(((key, token, j), token, start, min(end, start + self.batch_size)))
        chunks.sort(key=lambda c: c[0])
        self.chunks = [(token, a, b) for _, token, a, b in chunks]
        self.data = data

    def _chunk(self, token: int, a: int, b: int) -> list[SourceItem]:
        """Rows [a, b) of the file's grouped columns: one instrument's, validated."""
        assert self.data is not None
        d = self.data
        raw = RawTicks(
            source=str(self.files[self.state.file_idx].name),
            partition=self.name,
            instrument_token=None if token < 0 else token,
            offsets=d.rows[a:b],
            ts=d.ts[a:b],
            price=d.price[a:b],
            volume=d.volume[a:b],
            raw_ts=d.raw_ts[a:b] if d.raw_ts is not None else None,
            depth=d.depth.take(slice(a, b)) if d.depth is not None else None,
        )
        last = self.state.last_ts.get(token, MISSING_TS)
        batch, dead, new_last = validate(raw, self.known, last, self.trading, d.bounds)
        if token in self.known:
            self.state.last_ts[token] = new_last
        items: list[SourceItem] = [RowsRead(b - a), *dead]
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
            raise stop.tick_part_ended(self.name)
        if self.chunks is None:
            self._load()
        assert self.chunks is not None
        if st.chunk_idx < len(self.chunks):
            token, a, b = self.chunks[st.chunk_idx]
            st.chunk_idx += 1
            self.rows += b - a
            self._progress()
            return self._chunk(token, a, b)
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
        ts_unit: str | None = None,
        zone: str = "UTC",
        session: MarketSession | None = None,
    ) -> None:
        """``trading``: ticks dated on other days are dead letters (see operators.ticks);
        ``ts_unit``: the unit of epoch-number timestamp columns; ``zone``: of naive times.
        Every file is checked here, before the flow starts (ReplayFileError, a ConfigError,
        names the file); with ``session``, naive times that look written in the session's
        zone but are read as UTC are warned of."""
        hours = (session.is_open, session.cfg.timezone) if session else (None, "Asia/Kolkata")
        self.files = list_files(path, ts_unit, zone, *hours)
        self.ts_unit, self.zone = ts_unit, zone
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
            self.ts_unit,
            self.zone,
        )
