"""Replay reads ahead: the next file is read on a background thread while one is replayed;
what it reads is what a direct read gives, and a file damaged after the check still stops
the run with one line naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors import replay
from connectors.replay_files import read_file
from tests.support import TOKENS, python_script, small_ticks


def test_a_file_read_ahead_is_the_file_a_direct_read_gives(tmp_path: Path) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    direct = replay._decode(second, None, "UTC")
    replay._read(first)
    replay.prefetch(second)
    assert [k[0] for k in replay._NEXT] == [second]  # read while the first is replayed
    ahead = replay._read(second)
    assert not replay._NEXT and ahead is replay._read(second)
    for col in ("rows", "ts", "price", "volume"):
        np.testing.assert_array_equal(getattr(ahead, col), getattr(direct, col))
    assert ahead.max_ts == direct.max_ts and ahead.bounds == direct.bounds
    assert ahead.spans == direct.spans


def test_a_second_ask_drops_a_read_ahead_that_was_never_taken(tmp_path: Path) -> None:
    first, second, third = sorted(small_ticks(tmp_path, days=3).glob("*.parquet"))
    replay.prefetch(second)
    replay.prefetch(third)
    assert [k[0] for k in replay._NEXT] == [third]
    assert replay._read(third).max_ts == replay._decode(third, None, "UTC").max_ts
    assert replay._read(first).max_ts < replay._read(third).max_ts


def test_a_file_changed_in_place_is_read_anew(tmp_path: Path) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    before = replay._read(first).max_ts
    replay.prefetch(second)
    shutil.copyfile(second, first)  # another day's ticks under the first day's name
    assert replay._read(first).max_ts == replay._decode(second, None, "UTC").max_ts != before


def test_a_file_damaged_after_the_check_and_read_ahead_stops_the_run_with_one_line(
    tmp_path: Path,
) -> None:
    first, second = sorted(small_ticks(tmp_path, days=2).glob("*.parquet"))
    proc = python_script(
        f"""
        from pathlib import Path
        from connectors.replay import ReplaySource
        src = ReplaySource({str(first.parent)!r}, {TOKENS[:3]!r}, 100, 1)
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


def test_each_instruments_rows_lie_side_by_side_as_the_file_holds_them(tmp_path: Path) -> None:
    (day,) = sorted(small_ticks(tmp_path).glob("*.parquet"))  # with bad rows, null tokens
    table = pq.read_table(day).to_pydict()
    data = replay._read(day)
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
        replay._decode(day, None, "UTC"),
        replay._decode(tmp_path / "wide.parquet", None, "UTC"),
    )
    for col in ("rows", "ts", "price", "volume"):
        np.testing.assert_array_equal(getattr(plain, col), getattr(extra, col))
