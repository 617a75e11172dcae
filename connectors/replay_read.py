"""Reading replay files for the partitions of one process: each file decoded once into
columns grouped by instrument (so a partition's chunk is a slice), the next file read on a
background thread while one is replayed.

Partitions drift apart (a partition with few instruments runs ahead): a file stays held
until every partition of the process has taken it, and only the ``MAX_HELD`` files from the
slowest partition's next are held or read ahead (one further ahead is read by its taker
alone, as without sharing): memory is capped and no read is thrown away. A file changed
since its check is refused. No read ahead starts once a stop is requested, and a stopped
run exits without waiting for one in flight."""

from __future__ import annotations

import atexit
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
from connectors.replay_files import ReplayFileError, read_file, read_ticks
from connectors.replay_kept import Stamp, stamp
from operators.ticks import MISSING_TS, Bounds, implausible, recording_bounds
from schemas.arrow import ReplayProblem
from schemas.ticks import Depth

MAX_HELD = 4  # files held at once: the slowest partition's next and those just after it
WIDE_ROWS = 1 << 16  # a file read that a taker waits on is grouped on two threads from here
Read = Callable[[Path, str | None, str, bool], "FileData"]  # (path, unit, zone, wide)


@dataclass
class FileData:
    """A file's columns with each instrument's rows side by side (so a chunk is a slice),
    each instrument's in file order; ``rows`` holds their row numbers in the file."""

    rows: np.ndarray  # int64, read-only
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
    (Arrow's stable sort: the blocks lie in token order), read-only, and each token's
    [start, end) in it, in order of each token's first row."""
    if not len(tok):
        empty = np.zeros(0, dtype=np.int64)
        empty.setflags(write=False)
        return empty, {}
    arr = pa.array(tok)
    order = pc.sort_indices(arr).to_numpy().view(np.int64)
    counts = pc.value_counts(arr)
    values = counts.field("values").to_numpy()
    by_value = np.argsort(values)
    ends = np.cumsum(counts.field("counts").to_numpy()[by_value])
    starts = np.concatenate(([0], ends[:-1]))
    toks, firsts = values[by_value].tolist(), order[starts].tolist()
    groups = sorted(zip(firsts, toks, starts.tolist(), ends.tolist(), strict=True))
    return order, {t: (a, b) for _, t, a, b in groups}


def grouped(order: np.ndarray, columns: list[np.ndarray], wide: bool = False) -> list[np.ndarray]:
    """``[c[order] for c in columns]`` for a permutation ``order``, emptying ``columns``
    (each source column dropped once written). Written through the inverse permutation:
    putting a row in its place costs a fraction of fetching it from a distant one, and an
    instrument's rows lie far apart in a recording. ``wide``: each step in two halves, one
    on a helper thread (numpy lets go of the GIL while it moves rows; the halves write
    disjoint rows), for a read that the flow waits on with the other core idle."""
    n = len(order)
    parts = [(0, n // 2), (n // 2, n)] if wide and n >= WIDE_ROWS else [(0, n)]
    inv = np.empty(n, dtype=np.int64)

    def place(a: int, b: int) -> None:
        inv[order[a:b]] = np.arange(a, b, dtype=np.int64)

    _in_parts(parts, place)
    out = []
    while columns:
        out.append(np.empty_like(columns[0]))
        _in_parts(parts, _scatter(inv, columns.pop(0), out[-1]))
    return out


def _scatter(inv: np.ndarray, src: np.ndarray, dst: np.ndarray) -> Callable[[int, int], None]:
    """The step that puts rows [a, b) of ``src`` in their places ``inv[a:b]`` of ``dst``."""

    def step(a: int, b: int) -> None:
        dst[inv[a:b]] = src[a:b]

    return step


def _in_parts(parts: list[tuple[int, int]], step: Callable[[int, int], None]) -> None:
    """``step`` over each [a, b) of ``parts``: the first here, the others on threads (or
    here, when no thread can be had); once all are done, this thread's own error (an
    interrupt included) or else a helper's is raised."""
    errors: list[BaseException] = []

    def run(a: int, b: int) -> None:
        try:
            step(a, b)
        except BaseException as exc:  # raised by the caller, below
            errors.append(exc)

    threads = []
    for a, b in parts[1:]:
        t = threading.Thread(target=run, args=(a, b), name="replay-group", daemon=True)
        try:
            t.start()
            threads.append(t)
        except RuntimeError:
            run(a, b)
    try:
        step(*parts[0])
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def decode(path: Path, ts_unit: str | None, zone: str, wide: bool = False) -> FileData:
    """One checked file's columns, grouped by instrument (each source column is dropped
    once grouped, so at most one column and the grouping's inverse are held twice);
    ``wide``: grouped on two threads (see ``grouped``)."""
    c = read_ticks(read_file(path), ts_unit, zone)
    tokens, ts, price, volume, raw, depth = c.tokens, c.ts, c.price, c.volume, c.raw_ts, c.depth
    del c
    bounds = recording_bounds(ts)
    sane = ts[~implausible(ts, bounds)]  # a wild time never moves the file-end mark
    max_ts = int(sane.max()) if len(sane) else MISSING_TS  # MISSING_TS is the int64 minimum
    rows, spans = group_order(tokens)
    del tokens, sane
    cols = [ts, price, volume]
    del ts, price, volume
    ts, price, volume = grouped(rows, cols, wide)
    raw_ts = [raw[i] for i in rows.tolist()] if raw is not None else None
    depth = depth.take(rows) if depth is not None else None
    return FileData(rows, ts, price, volume, raw_ts, max_ts, spans, depth, bounds)


_READING: set[threading.Thread] = set()  # read-ahead threads not yet done


@atexit.register
def _join_reads() -> None:
    """At a normal exit, wait for reads in flight: a daemon thread still inside Arrow while
    the interpreter finalizes can abort it. (A stop exits at once, before this runs:
    connectors.stop's hook is registered later, so runs first.)"""
    for t in list(_READING):
        t.join()


class FileReader:
    """The files of one replay source, read for the partitions of this process (worker
    threads share it; processes each have their own). ``stamps``: each file's stamp when
    it was checked (connectors.replay_kept.stamp); a file whose stamp differs when it is
    read changed since its check and is refused (ReplayFileError CHANGED)."""

    def __init__(
        self,
        files: Sequence[Path],
        stamps: Sequence[Stamp | None],
        ts_unit: str | None = None,
        zone: str = "UTC",
        read: Read = decode,
    ) -> None:
        self.files, self.stamps = list(files), list(stamps)
        self.ts_unit, self.zone, self._read = ts_unit, zone, read
        self._lock = threading.Lock()
        self._held: dict[int, Future[FileData]] = {}
        self._next: dict[str, int] = {}  # partition → the file it takes next

    def join(self, part: str, idx: int) -> None:
        """Partition ``part`` (new or resumed) takes file ``idx`` next."""
        with self._lock:
            self._next[part] = idx
            self._prune()

    def read_first(self) -> None:
        """Start reading the first file on a thread, before any partition asks for it (a
        fresh run, while its dataflow is built); nothing once a partition has joined (a
        resume may start further on)."""
        self._ahead(0, unjoined=True, wide=True)

    def take(self, part: str, idx: int) -> FileData:
        """File ``idx`` for ``part`` (errors of its read raised here; a read ahead that
        failed is tried once more); then reads ahead the next file."""
        with self._lock:
            fut = self._held.get(idx)
            mine = fut is None
            if fut is None:
                fut = Future()
                if self._in_window(idx):
                    self._held[idx] = fut
        if mine:
            _fill(fut, lambda: self._checked_read(idx, wide=True))
        try:
            data = fut.result()
        except Exception:
            if mine:
                raise
            data = self._checked_read(idx, wide=True)
        with self._lock:
            self._next[part] = idx + 1
            self._prune()
        self._ahead(idx + 1)
        return data

    def _checked_read(self, idx: int, wide: bool = False) -> FileData:
        """File ``idx`` read and checked; ``wide``: a taker waits for it (see ``grouped``)."""
        path, want = self.files[idx], self.stamps[idx]
        if stamp(path) != want:
            raise _changed(path)
        data = self._read(path, self.ts_unit, self.zone, wide)
        if stamp(path) != want:  # changed while it was read
            raise _changed(path)
        return data

    def _ahead(self, idx: int, unjoined: bool = False, wide: bool = False) -> None:
        """Read file ``idx`` on a thread, unless held, beyond the window or stopping (or,
        ``unjoined``, once any partition has joined: decided under the same lock);
        ``wide``: nothing else runs meanwhile (see ``grouped``)."""
        if idx >= len(self.files) or stop.requested():
            return
        fut: Future[FileData] = Future()
        with self._lock:
            if idx in self._held or not self._in_window(idx) or (unjoined and self._next):
                return
            self._held[idx] = fut

        def run() -> None:
            try:
                _fill(fut, lambda: self._checked_read(idx, wide))
            finally:
                _READING.discard(thread)

        thread = threading.Thread(target=run, name="replay-read", daemon=True)
        try:
            _READING.add(thread)
            thread.start()
        except Exception as exc:  # no thread to be had: the taker reads it itself
            _READING.discard(thread)
            with self._lock:
                self._held.pop(idx, None)
            fut.set_exception(exc)

    def _in_window(self, idx: int) -> bool:
        """Files held are those the slowest partition takes next and the MAX_HELD - 1
        after it: a partition further ahead reads its own (as if alone) and no read is
        ever thrown away."""
        return idx < min(self._next.values(), default=0) + MAX_HELD

    def _prune(self) -> None:
        """Drop files every partition has taken."""
        low = min(self._next.values(), default=0)
        for idx in [i for i in self._held if i < low]:
            del self._held[idx]

    def held(self) -> list[int]:
        """Indexes of the files held now (read or being read)."""
        with self._lock:
            return sorted(self._held)


def _changed(path: Path) -> ReplayFileError:
    return ReplayFileError(path, ReplayProblem.CHANGED, "changed during the run, after its check")


def _fill(fut: Future[FileData], read: Callable[[], FileData]) -> None:
    try:
        fut.set_result(read())
    except BaseException as exc:  # the taker raises it
        fut.set_exception(exc)
