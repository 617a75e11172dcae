"""Replay reads ahead: the next file is read on a background thread while one is replayed;
what it reads is what a direct read gives; partitions apart in the files read each file
once (memory capped); a stop starts no read; a file damaged after the check still stops
the run with one line naming it, and is checked again by the next run."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from connectors import stop
from connectors.replay import ReplaySource
from connectors.replay_files import ReplayFileError, read_file
from connectors.replay_kept import stamp
from connectors.replay_read import (
    MAX_HELD,
    WIDE_ROWS,
    FileData,
    FileReader,
    _in_parts,
    decode,
    group_order,
    grouped,
)
from tests.support import TOKENS, python_script, small_ticks


class Reads:
    """A reader over ``files`` (stamped now) that counts the decodes of each file (and
    notes whether each was grouped wide); the reads of files behind ``gate`` wait for it."""

    def __init__(self, files: list[Path], gate: dict[Path, threading.Event] | None = None):
        self.n: Counter[Path] = Counter()
        self.lock = threading.Lock()
        self.gate = gate or {}
        self.wide: list[tuple[str, bool]] = []

        def read(path: Path, unit: str | None, zone: str, wide: bool) -> FileData:
            with self.lock:
                self.n[path] += 1
                self.wide.append((path.name, wide))
            if path in self.gate:
                assert self.gate[path].wait(30)
            return decode(path, unit, zone, wide)

        self.reader = FileReader(files, [stamp(f) for f in files], read=read)


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


def test_a_fresh_run_reads_its_first_file_before_any_partition_asks(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    gate = {files[0]: threading.Event()}
    r = Reads(files, gate)
    r.reader.read_first()
    deadline = time.monotonic() + 10
    while r.n[files[0]] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert r.n[files[0]] == 1 and r.reader.held() == [0]  # under way, no partition yet
    r.reader.read_first()  # asked again: still the one read
    gate[files[0]].set()
    r.reader.join("p", 0)
    _same(r.reader.take("p", 0), decode(files[0], None, "UTC"))
    assert r.n[files[0]] == 1  # the partition took the read already made
    resumed = Reads(files)
    resumed.reader.join("p", 1)  # a resume past the first file: nothing read for it
    resumed.reader.read_first()
    assert resumed.reader.held() == [] and not resumed.n


def test_reads_the_flow_waits_on_are_grouped_on_two_threads_reads_ahead_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors import replay_read

    monkeypatch.setattr(replay_read, "WIDE_ROWS", 1)  # the sample's files split too
    files = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    first = Reads(files)
    first.reader.read_first()  # the flow is being built: the other core is free
    deadline = time.monotonic() + 10
    while not first.wide and time.monotonic() < deadline:
        time.sleep(0.01)
    first.reader.join("p", 0)
    _same(first.reader.take("p", 0), decode(files[0], None, "UTC"))  # as one thread gives it
    first.reader.take("p", 1)  # read ahead while the first was replayed
    assert first.wide == [(files[0].name, True), (files[1].name, False)]
    taker = Reads(files)
    taker.reader.join("p", 0)
    taker.reader.take("p", 0)  # nothing read ahead: the taker waits on its own read
    assert taker.wide[0] == (files[0].name, True)


def test_grouping_on_two_threads_moves_every_row_as_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors import replay_read

    split: list[int] = []

    def spy(parts: list[tuple[int, int]], step: Any) -> None:
        if threading.current_thread() is here:  # not an earlier test's read ahead
            split.append(len(parts))
        _in_parts(parts, step)

    here = threading.current_thread()

    monkeypatch.setattr(replay_read, "_in_parts", spy)
    rng = np.random.default_rng(5)
    n = WIDE_ROWS + 17
    tok = rng.integers(0, 300, n)
    order, _ = group_order(tok)
    cols = [tok, rng.random(n), rng.integers(-5, 5, n)]
    one = grouped(order, [c.copy() for c in cols])
    assert split == [1] * 4  # the inverse, then each column
    two = grouped(order, [c.copy() for c in cols], wide=True)
    assert split == [1] * 4 + [2] * 4
    for a, b, c in zip(one, two, cols, strict=True):
        assert np.array_equal(a, b) and np.array_equal(b, c[order])
    ran: list[tuple[int, str]] = []
    _in_parts([(0, 5), (5, 9)], lambda a, b: ran.append((a, threading.current_thread().name)))
    assert sorted(ran) == [(0, threading.current_thread().name), (5, "replay-group")]

    def broken(a: int, b: int) -> None:
        if a:
            raise MemoryError(f"rows {a}-{b}")

    with pytest.raises(MemoryError, match="rows 5-9"):  # the helper's error reaches the caller
        _in_parts([(0, 5), (5, 9)], broken)

    failed = threading.Event()

    def interrupted(a: int, b: int) -> None:
        if a:
            failed.set()
            raise MemoryError(f"rows {a}-{b}")
        assert failed.wait(10)
        time.sleep(0.05)  # the helper's error is in first
        raise KeyboardInterrupt  # this thread's own: it wins over the helper's

    with pytest.raises(KeyboardInterrupt):
        _in_parts([(0, 5), (5, 9)], interrupted)


def test_a_first_file_read_ahead_that_fails_is_read_again_by_its_taker(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=1).glob("*.parquet"))
    calls: list[Path] = []

    def flaky(path: Path, unit: str | None, zone: str, wide: bool) -> FileData:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("the disk hiccuped")
        return decode(path, unit, zone, wide)

    reader = FileReader(files, [stamp(f) for f in files], read=flaky)
    reader.read_first()
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.join("p", 0)
    _same(reader.take("p", 0), decode(files[0], None, "UTC"))
    assert calls == [files[0], files[0]]


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


def test_two_partitions_asking_for_a_file_at_once_read_it_once(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=1).glob("*.parquet"))
    gate = {files[0]: threading.Event()}
    r = Reads(files, gate)
    got: dict[str, FileData] = {}
    for part in "ab":
        r.reader.join(part, 0)
    threads = [
        threading.Thread(target=lambda p=part: got.setdefault(p, r.reader.take(p, 0)))
        for part in "ab"
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while r.n[files[0]] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the second taker has asked by now, while the first still reads
    gate[files[0]].set()
    for t in threads:
        t.join(30)
    assert r.n == Counter(files) and got["a"] is got["b"]


def test_a_partition_far_ahead_reads_alone_and_memory_stays_capped(tmp_path: Path) -> None:
    files = sorted(small_ticks(tmp_path, days=7).glob("*.parquet"))
    r = Reads(files)
    r.reader.join("slow", 0)
    r.reader.join("fast", 0)
    for i in range(7):
        r.reader.take("fast", i)
        assert len(r.reader.held()) <= MAX_HELD
    assert r.reader.held() == list(range(MAX_HELD))  # what the slow one takes next
    for i in range(7):
        _same(r.reader.take("slow", i), decode(files[i], None, "UTC"))
        assert len(r.reader.held()) <= MAX_HELD
    # each file read once, but for those the fast one took beyond the window: twice
    assert r.n == Counter({f: 1 if i < MAX_HELD else 2 for i, f in enumerate(files)})


def test_partitions_of_one_source_share_its_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = small_ticks(tmp_path, days=3)
    src = ReplaySource(folder, TOKENS, 50, 2)
    n: Counter[Path] = Counter()
    real = src.reader._read

    def counted(path: Path, unit: str | None, zone: str, wide: bool) -> FileData:
        n[path] += 1
        return real(path, unit, zone, wide)

    monkeypatch.setattr(src.reader, "_read", counted)
    parts = [src.build_part("s", name, None) for name in src.list_parts()]
    live = list(parts)
    while live:
        for part in list(live):
            try:
                part.next_batch()
            except StopIteration:
                live.remove(part)
    assert n == Counter(src.files) and len(src.files) == 3


def test_no_read_ahead_once_a_stop_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = sorted(small_ticks(tmp_path, days=3).glob("*.parquet"))
    gate = {files[1]: threading.Event()}
    r = Reads(files, gate)
    r.reader.join("p", 0)
    r.reader.take("p", 0)
    reading = [t for t in threading.enumerate() if t.name == "replay-read" and t.is_alive()]
    assert reading and all(t.daemon for t in reading)  # a stop (os._exit) never waits on it
    monkeypatch.setattr(stop, "requested", lambda: True)
    gate[files[1]].set()
    r.reader.take("p", 1)  # read ahead before the stop; the third is never started
    assert r.reader.held() == [] and r.n == Counter(files[:2])


def test_a_file_changed_after_its_check_is_refused_and_a_failed_read_ahead_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    r = Reads([first, second], {second: threading.Event()})
    r.reader.join("p", 0)
    r.reader.join("q", 0)
    took = r.reader.take("p", 0)  # the second is read ahead: held at the gate
    shutil.copyfile(first, second)  # another day's ticks under the second day's name
    assert r.reader.take("q", 0) is took  # held before the change: what every part sees
    r.gate[second].set()
    with pytest.raises(ReplayFileError, match=r"changed during the run.*\[CHANGED\]"):
        r.reader.take("p", 1)  # changed while read ahead, and again when retried
    calls: list[Path] = []

    def flaky(path: Path, unit: str | None, zone: str, wide: bool) -> FileData:
        calls.append(path)
        if len(calls) == 2:  # the read ahead
            raise OSError("Too many open files")
        return decode(path, unit, zone, wide)

    again = FileReader([second, second], [stamp(second)] * 2, read=flaky)
    again.join("p", 0)
    again.take("p", 0)  # reads the next ahead, which fails once
    _same(again.take("p", 1), decode(second, None, "UTC"))
    assert len(calls) == 3


def test_a_file_damaged_after_the_check_stops_the_run_with_one_line_and_loses_its_check(
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
    assert "changed during the run" in lines[0] and lines[0].endswith("[CHANGED]")
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


@settings(max_examples=200, deadline=None)
@given(
    hs.lists(
        hs.sampled_from([-1, 0, 7, 101, 2**40, -(2**62), 2**62]) | hs.integers(-(2**63), 2**63 - 1),
        max_size=60,
    )
)
def test_grouping_puts_each_tokens_rows_side_by_side_in_order_of_first_row(
    tokens: list[int],
) -> None:
    tok = np.array(tokens, dtype=np.int64)
    order, spans = group_order(tok)
    want: dict[int, list[int]] = {}
    for i, t in enumerate(tokens):
        want.setdefault(t, []).append(i)
    assert list(spans) == list(want)  # in order of each token's first row
    assert {t: order[a:b].tolist() for t, (a, b) in spans.items()} == want
    assert sorted(order.tolist()) == list(range(len(tokens))) and not order.flags.writeable
    price = np.arange(len(tokens), dtype=float) / 4 - 3
    cols = grouped(order, [tok.copy(), price.copy()])
    assert cols[0].tolist() == [tokens[i] for i in order.tolist()]
    assert cols[1].tolist() == [price[i] for i in order.tolist()]
