"""Decoding one replay file into numpy columns grouped by instrument, in pieces.

A file's times are decoded first, whole: its plausible-time bounds and its end mark need
all of them. Its other columns are then decoded in pieces of consecutive rows (the first
``PIECE_ROWS``, each next four times the last, up to ``MAX_PIECE_ROWS``), each published as
soon as it is decoded, so the replay of a file starts after its first piece instead of
after the whole file. Within a piece each instrument's rows lie side by side, in file
order; so an instrument's rows come in file order piece after piece, as from one piece.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.replay_files import read_ticks, used_columns
from connectors.replay_times import timestamps
from operators.ticks import MISSING_TS, Bounds, implausible, recording_bounds
from schemas.ticks import Depth

PIECE_ROWS = 1 << 18  # a file's first piece: its replay starts once these are decoded
MAX_PIECE_ROWS = 1 << 24  # each piece four times the last, up to this: decoded on a thread
# while the last is replayed (about six times as long), few enough to keep chunks long

Check = Callable[[], None]
"""Raises if the file changed since its check (called after each read from it)."""


@dataclass
class Piece:
    """Rows [start, start + len) of a file, each instrument's side by side (so a chunk is a
    slice), each instrument's in file order; ``rows`` holds their row numbers in the file."""

    rows: np.ndarray  # int64
    ts: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    raw_ts: list[Any] | None
    spans: dict[int, tuple[int, int]]  # token (-1: none) → its [start, end) in the columns
    depth: Depth | None = None


@dataclass
class FileData:
    """A file's time bounds and end mark (from all its times) and its pieces, each filled
    in order as it is decoded; ``done`` once every piece is (or one failed)."""

    max_ts: int
    bounds: Bounds | None  # plausible tick times (operators.ticks.recording_bounds)
    pieces: list[Future[Piece]]
    done: threading.Event = field(default_factory=threading.Event)
    _after: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def piece(self, j: int) -> Piece:
        """Piece ``j``, once decoded (its read's error raised here)."""
        return self.pieces[j].result()

    def when_done(self, then: Callable[[], None]) -> None:
        """Call ``then`` once every piece is decoded (now, if they are)."""
        with self._lock:
            if not self.done.is_set():
                self._after.append(then)
                return
        then()

    def finish(self) -> None:
        """Every piece is decoded (or failed): what waits for that runs, then ``done``."""
        with self._lock:
            after, self._after = self._after, []
        try:
            for then in after:
                then()
        finally:
            with self._lock:
                late, self._after = self._after, []
                self.done.set()
            for then in late:
                then()


def piece_bounds(n: int) -> list[tuple[int, int]]:
    """[start, end) of each piece of an ``n``-row file."""
    out, start, size = [], 0, PIECE_ROWS
    while start < n:
        out.append((start, min(n, start + size)))
        start, size = start + size, min(MAX_PIECE_ROWS, 4 * size)
    return out or [(0, 0)]


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


class Decoding:
    """One file being decoded: ``data`` once its times are; ``run`` decodes the pieces."""

    def __init__(self, path: Path, ts_unit: str | None, zone: str, check: Check) -> None:
        self.pf = pq.ParquetFile(path, pre_buffer=True)
        try:
            table = self.pf.read(columns=["timestamp"], use_threads=True)
            self.ts, self.raw_ts = timestamps(table["timestamp"], ts_unit, zone)
            check()
        except BaseException:
            self.pf.close()
            raise
        self.check, self.ts_unit, self.zone = check, ts_unit, zone
        bounds = recording_bounds(self.ts)
        sane = self.ts[~implausible(self.ts, bounds)]  # a wild time never moves the end mark
        max_ts = int(sane.max()) if len(sane) else MISSING_TS  # the int64 minimum
        self.spans = piece_bounds(len(self.ts))
        self.data = FileData(max_ts, bounds, [Future() for _ in self.spans])

    def run(self) -> None:
        """Decode every piece in order, each published at once; a failure is every
        remaining piece's (and raised)."""
        cols = [c for c in used_columns(self.pf.schema_arrow.names) if c != "timestamp"]
        try:
            batches = self.pf.iter_batches(batch_size=PIECE_ROWS, columns=cols, use_threads=True)
            left: list[pa.RecordBatch] = []
            for fut, (a, b) in zip(self.data.pieces, self.spans, strict=True):
                table = _take(batches, left, b - a)
                self.check()
                fut.set_result(self._piece(table, a, b))
        except BaseException as exc:
            for fut in self.data.pieces:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        finally:
            self.pf.close()
            self.data.finish()

    def _piece(self, table: pa.Table, a: int, b: int) -> Piece:
        raw = self.raw_ts[a:b] if self.raw_ts is not None else None
        c = read_ticks(table, self.ts_unit, self.zone, (self.ts[a:b], raw))
        order, spans = group_order(c.tokens)
        raw_ts = [raw[i] for i in order.tolist()] if raw is not None else None
        depth = c.depth.take(order) if c.depth is not None else None
        return Piece(order + a, c.ts[order], c.price[order], c.volume[order], raw_ts, spans, depth)


def _take(batches: Iterator[pa.RecordBatch], left: list[pa.RecordBatch], n: int) -> pa.Table:
    """The next ``n`` rows of ``batches`` (``left``: rows read before and not yet taken)."""
    got = sum(len(b) for b in left)
    while got < n:
        batch = next(batches, None)
        if batch is None:
            raise ValueError(f"ends after {got} of the {n} rows expected")
        left.append(batch)
        got += len(batch)
    table = pa.Table.from_batches(left)
    left[:] = table.slice(n).to_batches()
    return table.slice(0, n)


def _no_check() -> None:
    return None


def decode(path: Path, ts_unit: str | None, zone: str, check: Check = _no_check) -> FileData:
    """One checked file, every piece decoded before it returns."""
    dec = Decoding(path, ts_unit, zone, check)
    dec.run()
    return dec.data
