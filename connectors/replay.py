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
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import stop
from connectors.replay_files import ReplayFileError, checked
from connectors.replay_kept import forget
from connectors.replay_read import FileData, FileReader
from operators.session import MarketSession
from operators.ticks import MISSING_TS, RawTicks, TradingDays, validate
from schemas.arrow import ReplayProblem
from schemas.events import DeadLetter
from schemas.ticks import TickBatch

log = logging.getLogger("alpha_panda.replay")


@dataclass(frozen=True)
class RowsRead:
    """Rows read from the source, for the run report's in = processed + dead check."""

    count: int


SourceItem = TickBatch | DeadLetter | RowsRead


_DYING = threading.Lock()


def _unreadable(reader: FileReader, path: Path, exc: BaseException) -> NoReturn:
    """A file that passed the check before the run but fails now (changed or damaged since):
    one line, exit 2, no traceback; its kept check is dropped, so the next run refuses it
    before it starts."""
    _DYING.acquire()  # partitions waiting on one failed read: the first says it, then exits
    forget(path, reader.ts_unit, reader.zone)
    err = (
        exc
        if isinstance(exc, ReplayFileError)
        else ReplayFileError(
            path, ReplayProblem.CORRUPT, f"became unreadable during the run: {exc}"
        )
    )
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
        reader: FileReader,
        bucket: int,
        buckets: int,
        known: frozenset[int],
        batch_size: int,
        state: ReplayState | None,
        trading: TradingDays | None = None,
    ) -> None:
        self.name, self.reader, self.bucket, self.buckets = name, reader, bucket, buckets
        self.files = reader.files
        self.known, self.batch_size, self.trading = known, batch_size, trading
        self.mine = sorted(t for t in known if t % buckets == bucket)
        self.state = state or ReplayState()
        self.chunks: list[tuple[int, int, int]] | None = None  # token, rows [a, b)
        self.data: FileData | None = None
        self.rows = 0
        self.logged = time.monotonic()
        reader.join(name, self.state.file_idx)
        stop.tick_part_open(name)

    def _load(self) -> None:
        try:
            data = self.reader.take(self.name, self.state.file_idx)
        except Exception as exc:
            _unreadable(self.reader, self.files[self.state.file_idx], exc)
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
            self.reader.join(self.name, len(self.files))  # holds no file back
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
        spans = checked(path, ts_unit, zone, *hours)
        self.files = [s.path for s in spans]
        stamps = [s.stamp for s in spans]
        self.reader = FileReader(self.files, stamps, ts_unit, zone)  # this process's parts
        self.trading = trading
        self.known = frozenset(instruments)
        self.batch_size = batch_size
        self.partitions = partitions

    def part_names(self) -> list[str]:
        return [f"replay-{k}" for k in range(self.partitions)]

    def read_first(self) -> None:
        """A fresh run starts at the first file: read it while the dataflow is built."""
        self.reader.read_first()

    def list_parts(self) -> list[str]:
        return self.part_names()

    def build_part(
        self, step_id: str, for_part: str, resume_state: ReplayState | None
    ) -> _ReplayPartition:
        k = int(for_part.rsplit("-", 1)[1])
        return _ReplayPartition(
            for_part,
            self.reader,
            k,
            self.partitions,
            self.known,
            self.batch_size,
            resume_state,
            self.trading,
        )
