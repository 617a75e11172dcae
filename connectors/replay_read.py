"""Reading replay files for the partitions of one process: each file decoded once into
columns grouped by instrument (so a partition's chunk is a slice), the next file read on a
background thread while one is replayed.

Partitions drift apart (a partition with few instruments runs ahead): a file stays held
until every partition of the process has taken it or moved past it, up to ``MAX_HELD``
files (beyond that the oldest is dropped and read again if still needed: memory is capped,
at the cost of a re-read). A changed file (another stamp, connectors.replay_kept) is read
anew. Read-ahead threads are daemons and none starts once a stop is requested, so a stopped
run exits without waiting for a read it will not use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors import stop
from connectors.replay_files import read_file, read_ticks
from connectors.replay_kept import stamp
from operators.ticks import MISSING_TS, Bounds, implausible, recording_bounds
from schemas.ticks import Depth

MAX_HELD = 4  # decoded files held at once: the slowest partition's, the fastest's, the next


@dataclass
class FileData:
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


def decode(path: Path, ts_unit: str | None, zone: str) -> FileData:
    """One checked file's columns, grouped by instrument (each source column is dropped
    once grouped, so at most one column is held twice)."""
    c = read_ticks(read_file(path), ts_unit, zone)
    tokens, ts, price, volume, raw, depth = c.tokens, c.ts, c.price, c.volume, c.raw_ts, c.depth
    del c
    bounds = recording_bounds(ts)
    sane = ts[~implausible(ts, bounds)]  # a wild time never moves the file-end mark
    max_ts = int(sane.max()) if len(sane) else MISSING_TS  # MISSING_TS is the int64 minimum
    rows, spans = group_order(tokens)
    del tokens, sane
    ts = ts[rows]
    price = price[rows]
    volume = volume[rows]
    raw_ts = [raw[i] for i in rows.tolist()] if raw is not None else None
    depth = depth.take(rows) if depth is not None else None
    return FileData(rows, ts, price, volume, raw_ts, max_ts, spans, depth, bounds)


Stamp = tuple[int, int, int, int, int] | None


class FileReader:
    """The files of one replay source, read for the partitions of this process (worker
    threads share it; processes each have their own)."""

    def __init__(
        self,
        files: Sequence[Path],
        ts_unit: str | None = None,
        zone: str = "UTC",
        read: Callable[[Path, str | None, str], FileData] = decode,
    ) -> None:
        self.files, self.ts_unit, self.zone, self._read = list(files), ts_unit, zone, read
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Stamp, Future[FileData]]] = {}
        self._next: dict[str, int] = {}  # partition → the file it takes next

    def join(self, part: str, idx: int) -> None:
        """Partition ``part`` (new or resumed) takes file ``idx`` next."""
        with self._lock:
            self._next[part] = idx
            self._prune()

    def take(self, part: str, idx: int) -> FileData:
        """File ``idx`` for ``part`` (errors of its read raised here); starts reading the
        next file unless it is held or a stop was requested."""
        path = self.files[idx]
        st = stamp(path)
        with self._lock:
            held = self._held.get(idx)
            mine = held is None or held[0] != st
            if mine:
                held = (st, Future())
                self._held[idx] = held
        assert held is not None
        if mine:
            _fill(held[1], lambda: self._read(path, self.ts_unit, self.zone))
        try:
            return held[1].result()
        finally:
            with self._lock:
                self._next[part] = idx + 1
                self._prune()
            self._ahead(idx + 1)

    def _ahead(self, idx: int) -> None:
        if idx >= len(self.files) or stop.requested():
            return
        path = self.files[idx]
        with self._lock:
            if idx in self._held:
                return
            fut: Future[FileData] = Future()
            self._held[idx] = (stamp(path), fut)
            self._prune()

        def run() -> None:
            _fill(fut, lambda: self._read(path, self.ts_unit, self.zone))

        threading.Thread(target=run, name="replay-read", daemon=True).start()

    def _prune(self) -> None:
        """Drop files every partition has taken; beyond MAX_HELD, the oldest."""
        low = min(self._next.values(), default=0)
        for idx in sorted(self._held):
            if idx < low or len(self._held) > MAX_HELD:
                del self._held[idx]

    def held(self) -> list[int]:
        """Indexes of the files held now (read or being read)."""
        with self._lock:
            return sorted(self._held)


def _fill(fut: Future[FileData], read: Callable[[], FileData]) -> None:
    try:
        fut.set_result(read())
    except BaseException as exc:  # the taker raises it
        fut.set_exception(exc)
