"""Reading replay files for the partitions of one process: each file decoded once into
columns grouped by instrument (so a partition's chunk is a slice; connectors.replay_decode),
the next file read on a background thread while one is replayed. A file no one read ahead
is replayed from its first piece while its others are decoded on a thread; the next file
is read ahead once they are.

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
from pathlib import Path

from connectors import stop
from connectors.replay_decode import Check, Decoding, FileData
from connectors.replay_files import ReplayFileError
from connectors.replay_kept import Stamp, stamp
from schemas.arrow import ReplayProblem

MAX_HELD = 4  # files held at once: the slowest partition's next and those just after it


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
        read: Callable[[Path, str | None, str, Check], Decoding] = Decoding,
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

    def take(self, part: str, idx: int) -> FileData:
        """File ``idx`` for ``part`` (errors of its read raised here or by its pieces; a
        read ahead that failed is tried once more); the next file is read ahead once this
        one's pieces are decoded."""
        with self._lock:
            fut = self._held.get(idx)
            mine = fut is None
            if fut is None:
                fut = Future()
                if self._in_window(idx):
                    self._held[idx] = fut
        if mine:
            _fill(fut, lambda: self._streamed(idx))
        try:
            data = fut.result()
        except Exception:
            if mine:
                raise
            data = self._whole(idx)
        with self._lock:
            self._next[part] = idx + 1
            self._prune()
        data.when_done(lambda: self._ahead(idx + 1))
        return data

    def _open(self, idx: int) -> Decoding:
        path, want = self.files[idx], self.stamps[idx]

        def check() -> None:
            if stamp(path) != want:  # changed since its check, or while it was read
                raise _changed(path)

        check()
        return self._read(path, self.ts_unit, self.zone, check)

    def _whole(self, idx: int) -> FileData:
        """File ``idx``, every piece decoded."""
        dec = self._open(idx)
        dec.run()
        return dec.data

    def _streamed(self, idx: int) -> FileData:
        """File ``idx`` once its times are decoded, its pieces decoded on a thread."""
        dec = self._open(idx)
        if not _start(lambda: _quietly(dec.run)):  # no thread to be had: all of it here
            dec.run()
        return dec.data

    def _ahead(self, idx: int) -> None:
        """Read file ``idx`` on a thread, unless held, beyond the window or stopping."""
        if idx >= len(self.files) or stop.requested():
            return
        fut: Future[FileData] = Future()
        with self._lock:
            if idx in self._held or not self._in_window(idx):
                return
            self._held[idx] = fut
        if not _start(lambda: _fill(fut, lambda: self._whole(idx))):
            with self._lock:  # no thread to be had: the taker reads it itself
                self._held.pop(idx, None)
            fut.set_exception(RuntimeError("no thread to read ahead"))

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


def _quietly(run: Callable[[], None]) -> None:
    try:
        run()
    except BaseException:  # the pieces hold it: the taker raises it
        pass


def _start(target: Callable[[], None]) -> bool:
    """Run ``target`` on a daemon thread (a stop never waits on it), joined at a normal
    exit; False if no thread can be had."""

    def run() -> None:
        try:
            target()
        finally:
            _READING.discard(thread)

    thread = threading.Thread(target=run, name="replay-read", daemon=True)
    _READING.add(thread)
    try:
        thread.start()
    except Exception:
        _READING.discard(thread)
        return False
    return True
