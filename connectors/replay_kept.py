"""Replay files checked before are not read twice: a file that passed the check keeps its
time span (schemas.kept) under a key of everything that could change what the check saw:
the file's absolute path, device, inode, size, modification and change times, the
``source.timestamp_unit`` and ``source.timezone`` it was read with (and that zone's rules),
the source of the code that checks and the Python, pyarrow and numpy it ran on. Any
difference, or a kept file that does not read back whole, and the file is checked again;
each file has one entry per unit and zone, replaced when the file changes. Files that fail
are never kept: they are refused on every run, and a file that fails during a run loses its
entry. As git does with its index, a file changed less than ``SETTLED_S`` before its check
is not kept: file times are coarse, so a change right after the check could leave them as
they were."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import zoneinfo
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pyarrow as pa

from schemas.kept import kept_root, read_kept, write_kept

FORMAT = 1  # of a kept span
SETTLED_S = 2.0
_INT64 = (-(2**63), 2**63 - 1)


@lru_cache(maxsize=1)
def checker_digest() -> str | None:
    """Of the source of the modules whose code decides what a check finds and of the
    libraries it runs on; None (nothing kept) if a source cannot be read."""
    import connectors.replay_files as files
    import connectors.replay_times as times
    import schemas.arrow as arrow

    h = hashlib.blake2b(
        repr((sys.version, pa.__version__, np.__version__)).encode(), digest_size=16
    )
    try:
        for mod in (files, times, arrow):
            h.update(Path(str(mod.__file__)).read_bytes())
    except OSError:
        return None
    return h.hexdigest()


@lru_cache(maxsize=8)
def zone_digest(zone: str) -> str:
    """Of the rules of IANA ``zone`` as zoneinfo finds them (the system's zone files first,
    then the tzdata package): new rules, new checks."""
    h = hashlib.blake2b(zone.encode(), digest_size=16)
    if zone == "UTC" or os.path.isabs(zone) or ".." in zone.split("/"):
        return h.hexdigest()
    for folder in zoneinfo.TZPATH:
        try:
            h.update(Path(folder, zone).read_bytes())
            return h.hexdigest()
        except OSError:
            continue
    try:
        h.update(metadata.version("tzdata").encode())
    except metadata.PackageNotFoundError:
        pass
    return h.hexdigest()


Stamp = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


def stamp(path: Path) -> Stamp | None:
    """(device, inode, size, mtime_ns, ctime_ns) of ``path``: a file with the same stamp
    is taken as unchanged; None if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def stamp_of(key: list[object]) -> Stamp:
    """The file's stamp within its ``file_key``."""
    dev, ino, size, mtime_ns, ctime_ns = (int(v) for v in key[3:8])  # type: ignore[call-overload]
    return dev, ino, size, mtime_ns, ctime_ns


def file_key(path: Path, ts_unit: str | None, zone: str) -> list[object] | None:
    """What a kept check of ``path`` is valid for; None if the file cannot be stat'ed."""
    st, digest = stamp(path), checker_digest()
    try:
        where = str(path.resolve())
    except (OSError, RuntimeError):
        return None
    if st is None or digest is None:
        return None
    return [FORMAT, digest, where, *st, ts_unit, zone, zone_digest(zone)]


def settled(key: list[object], checked_at: float) -> bool:
    """Whether the file of ``key`` had not changed for ``SETTLED_S`` when its check began
    (``checked_at``: wall-clock seconds); only such a file's check is kept."""
    mtime_ns, ctime_ns = key[6], key[7]
    assert isinstance(mtime_ns, int) and isinstance(ctime_ns, int)
    return max(mtime_ns, ctime_ns) / 1e9 < checked_at - SETTLED_S


def now() -> float:
    return time.time()


def _entry(where: object, ts_unit: object, zone: object) -> Path:
    """One entry per file, unit and zone (a changed file replaces its entry)."""
    name = hashlib.blake2b(repr((where, ts_unit, zone)).encode(), digest_size=16).hexdigest()
    return kept_root() / "replay-checks" / f"{name}.json"


def _kept_path(key: list[object]) -> Path:
    return _entry(key[2], key[8], key[9])


def forget(path: Path, ts_unit: str | None, zone: str) -> None:
    """Drop the kept check of ``path`` (it failed after passing): the next run checks it."""
    try:
        _entry(str(path.resolve()), ts_unit, zone).unlink(missing_ok=True)
    except (OSError, RuntimeError):
        pass


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
