"""Replay files checked before are not read twice: a file that passed the check keeps its
time span (schemas.kept) under a key of everything that could change what the check saw:
the file's absolute path, device, inode, size, modification and change times, the
``source.timestamp_unit`` and ``source.timezone`` it was read with, and the source of the
code that checks. Any difference, or a kept file that does not read back whole, and the file
is checked again. Files that fail are never kept: they are refused on every run. As git does
with its index, a file changed less than ``SETTLED_S`` before its check is not kept: file
times are coarse, so a change right after the check could leave them as they were."""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from schemas.kept import kept_root, read_kept, write_kept

FORMAT = 1  # of a kept span
SETTLED_S = 2.0
_INT64 = (-(2**63), 2**63 - 1)


@lru_cache(maxsize=1)
def checker_digest() -> str:
    """Of the source of the modules whose code decides what a check finds."""
    import connectors.replay_files as files
    import connectors.replay_times as times
    import schemas.arrow as arrow

    h = hashlib.blake2b(digest_size=16)
    for mod in (files, times, arrow):
        h.update(Path(str(mod.__file__)).read_bytes())
    return h.hexdigest()


def file_key(path: Path, ts_unit: str | None, zone: str) -> list[object] | None:
    """What a kept check of ``path`` is valid for; None if the file cannot be stat'ed."""
    try:
        st = os.stat(path)
        where = str(path.resolve())
    except (OSError, RuntimeError):
        return None
    stamp = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return [FORMAT, checker_digest(), where, *stamp, ts_unit, zone]


def settled(key: list[object], checked_at: float) -> bool:
    """Whether the file of ``key`` had not changed for ``SETTLED_S`` when its check began
    (``checked_at``: wall-clock seconds); only such a file's check is kept."""
    mtime_ns, ctime_ns = key[6], key[7]
    assert isinstance(mtime_ns, int) and isinstance(ctime_ns, int)
    return max(mtime_ns, ctime_ns) / 1e9 < checked_at - SETTLED_S


def now() -> float:
    return time.time()


def _kept_path(key: list[object]) -> Path:
    name = hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()
    return kept_root() / "replay-checks" / f"{name}.json"


def kept_span(key: list[object]) -> tuple[int, int, int, bool, np.ndarray] | None:
    """(median, first, last, naive, sample) kept for ``key``; None unless read back whole."""
    doc = read_kept(_kept_path(key))
    try:
        if doc["key"] != key:
            return None
        numbers, naive, sample = doc["span"], doc["naive"], doc["sample"]
        if type(naive) is not bool or not isinstance(sample, list) or len(numbers) != 3:
            return None
    except (TypeError, KeyError, IndexError):
        return None
    values = [*numbers, *sample]
    if not all(type(v) is int and _INT64[0] <= v <= _INT64[1] for v in values):
        return None
    median, first, last = numbers
    if not (-(2**63) < first <= median <= last < 2**63 - 1) or naive != bool(sample):
        return None
    if not all(first <= v <= last for v in sample):
        return None
    return median, first, last, naive, np.array(sample, dtype=np.int64)


def keep_span(
    key: list[object], median: int, first: int, last: int, naive: bool, sample: np.ndarray
) -> None:
    doc = {"key": key, "span": [median, first, last], "naive": naive,
           "sample": [int(v) for v in sample.tolist()]}  # fmt: skip
    write_kept(_kept_path(key), doc)
