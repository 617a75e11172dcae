"""Replay reads ahead: the next file is read on a background thread while one is replayed;
what it reads is what a direct read gives; partitions apart in the files read each file
once (memory capped); a stop starts no read; a file damaged after the check still stops
the run with one line naming it, and is checked again by the next run."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import stop
from connectors.replay_files import read_file
from connectors.replay_read import MAX_HELD, FileData, FileReader, decode
from tests.support import TOKENS, python_script, small_ticks


class Reads:
    """A reader over ``files`` that counts the decodes of each file."""

    def __init__(self, files: list[Path], gate: threading.Event | None = None) -> None:
        self.n: Counter[Path] = Counter()
        self.gate = gate

        def read(path: Path, unit: str | None, zone: str) -> FileData:
            self.n[path] += 1
            if self.gate is not None and path != files[0]:
                self.gate.wait(30)
            return decode(path, unit, zone)

        self.reader = FileReader(files, read=read)


def _same(a: FileData, b: FileData) -> None:
    for col in ("rows", "ts", "price", "volume"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert (a.max_ts, a.bounds, a.spans) == (b.max_ts, b.bounds, b.spans)


def test_a_file_read_ahead_is_the_file_a_direct_read_gives(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    r = Reads(files)
    r.reader.join("p", 0)
    _same(r.reader.take("p", 0), decode(files[0], None, "UTC"))
    assert r.reader.held() == [1]  # the first let go, the second read while it is replayed
    _same(r.reader.take("p", 1), decode(files[1], None, "UTC"))
    assert r.reader.held() == [] and r.n == Counter(files)


def test_partitions_apart_in_the_files_read_each_file_once(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=4).glob("*.parquet"))
    r = Reads(files)
    r.reader.join("a", 0)
    r.reader.join("b", 0)
    got = {part: [r.reader.take(part, i).max_ts for i in range(3)] for part in "ab"}
    assert r.reader.held() == [3]  # both passed the first three; the fourth read ahead
    r.reader.take("b", 3)
    assert r.reader.held() == [3]  # "a" still needs it
    r.reader.take("a", 3)
    assert r.reader.held() == [] and r.n == Counter(files) and got["a"] == got["b"]


def test_a_partition_far_behind_costs_a_read_again_never_unbounded_memory(
    tmp_path: Path,
) -> None:
    files = sorted(small_ticks(tmp_path, days=7).glob("*.parquet"))
    r = Reads(files)
    r.reader.join("slow", 0)
    r.reader.join("fast", 0)
    for i in range(6):
        r.reader.take("fast", i)
        assert len(r.reader.held()) <= MAX_HELD
    assert r.reader.held() == [3, 4, 5, 6]
    _same(r.reader.take("slow", 0), decode(files[0], None, "UTC"))
    assert r.n[files[0]] == 2 and r.n[files[3]] == 1


def test_no_read_ahead_once_a_stop_is_asked_and_reads_ahead_never_hold_the_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(small_ticks(tmp_path, days=3).glob("*.parquet"))
    gate = threading.Event()
    r = Reads(files, gate)
    r.reader.join("p", 0)
    r.reader.take("p", 0)
    readers = [t for t in threading.enumerate() if t.name == "replay-read" and t.is_alive()]
    assert readers and all(t.daemon for t in readers)  # waiting on the gate: exit is free
    monkeypatch.setattr(stop, "requested", lambda: True)
    gate.set()
    r.reader.take("p", 1)  # read ahead before the stop; the third is never started
    assert r.reader.held() == [] and r.n == Counter(files[:2])


def test_a_file_changed_in_place_is_read_anew(tmp_path: Path) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    r = Reads([first, second])
    r.reader.join("p", 0)
    r.reader.join("q", 0)  # "q" holds the first file's read
    before = r.reader.take("p", 0).max_ts
    shutil.copyfile(second, first)  # another day's ticks under the first day's name
    after = r.reader.take("q", 0)
    _same(after, decode(second, None, "UTC"))
    assert after.max_ts != before and r.n[first] == 2


def test_a_file_damaged_after_the_check_and_read_ahead_stops_the_run_with_one_line(
    tmp_path: Path,
) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    kept = tmp_path / "kept"
    proc = python_script(
        f"""
        import os, time
        from pathlib import Path
        os.environ["ALPHA_PANDA_CACHE"] = {str(kept)!r}
        import connectors.replay_files as files
        files.now = lambda: time.time() + 10  # checked as if the files had settled
        from connectors.replay import ReplaySource
        src = ReplaySource({str(first.parent)!r}, {TOKENS[:3]!r}, 100, 1)
        assert len(list(Path({str(kept)!r}, "replay-checks").iterdir())) == 2
        Path({str(second)!r}).write_bytes(b"gone")
        part = src.build_part("s", "replay-0", None)
        for _ in range(10_000):
            part.next_batch()
        print("not reached")
        """
    )
    assert proc.returncode == 2 and "not reached" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(second) in lines[0], proc.stderr[-2000:]
    assert "became unreadable during the run" in lines[0] and lines[0].endswith("[CORRUPT]")
    assert len(list((kept / "replay-checks").iterdir())) == 1  # the next run checks it again


def test_each_instruments_rows_lie_side_by_side_as_the_file_holds_them(tmp_path: Path) -> None:
    (day,) = sorted(small_ticks(tmp_path).glob("*.parquet"))  # with bad rows, null tokens
    table = pq.read_table(day).to_pydict()
    data = decode(day, None, "UTC")
    assert sum(b - a for a, b in data.spans.values()) == len(table["timestamp"])
    for token, (a, b) in data.spans.items():
        tokens = [-1 if t is None else t for t in table["instrument_token"]]
        want = [i for i, t in enumerate(tokens) if t == token]
        assert data.rows[a:b].tolist() == want
        prices = [table["last_price"][i] for i in want]
        expected = np.array([np.nan if p is None else p for p in prices], dtype=float)
        np.testing.assert_array_equal(data.price[a:b], expected)


def test_columns_the_replay_does_not_use_are_never_decoded(tmp_path: Path) -> None:
    (day,) = sorted(small_ticks(tmp_path).glob("*.parquet"))
    table = pq.read_table(day)
    n = len(table)
    wide = table.append_column("ohlc", pa.array([{"open": 1.0}] * n)).append_column(
        "note", pa.array([b"\xff" * 8] * n, pa.binary())
    )
    pq.write_table(wide, tmp_path / "wide.parquet")
    assert read_file(tmp_path / "wide.parquet").column_names == table.column_names
    plain, extra = (
        decode(day, None, "UTC"),
        decode(tmp_path / "wide.parquet", None, "UTC"),
    )
    for col in ("rows", "ts", "price", "volume"):
        np.testing.assert_array_equal(getattr(plain, col), getattr(extra, col))
