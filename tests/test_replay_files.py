"""Replay files: every unusable file is refused before the flow starts, with one line naming
it and the problem; epoch-number timestamps read in the configured unit; files replayed in
time order whatever their names."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.replay_files import ReplayFileError, list_files, read_ticks
from flows.config import parse_config
from schemas.arrow import DEPTH_FIELDS, TICK_SCHEMA, ReplayProblem
from schemas.ticks import BAD_VOLUME, NO_VOLUME
from tests.support import (
    TOKENS,
    config_dict,
    flow_env,
    make_config,
    python_script,
    run_graph,
    small_ticks,
)

P = ReplayProblem
START = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)
N = 40


def _good_table(n: int = N, start: datetime = START) -> pa.Table:
    ts = [start + timedelta(seconds=6 * i) for i in range(n)]
    return pa.table(
        {
            "instrument_token": pa.array([TOKENS[i % 3] for i in range(n)], pa.int64()),
            "timestamp": pa.array(ts, TICK_SCHEMA.field("timestamp").type),
            "last_price": pa.array([100.0 + i * 0.05 for i in range(n)], pa.float64()),
            "volume": pa.array(list(range(1, n + 1)), pa.int64()),
        }
    )


def _with(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, values)
    return table.append_column(name, values)


def _write(table: pa.Table, path: Path, **kw: object) -> Path:
    pq.write_table(table, path, **kw)
    return path


def _good_bytes(tmp: Path) -> bytes:
    return _write(_good_table(), tmp / "good.bin").read_bytes()


def _corrupt_last_group(tmp: Path, path: Path) -> Path:
    """Four row groups, uncompressed; the last one's data pages overwritten with junk while
    the footer (and so the schema) stays intact."""
    _write(_good_table(400), path, row_group_size=100, compression="none")
    meta = pq.ParquetFile(path).metadata
    last = meta.row_group(meta.num_row_groups - 1)
    chunks = [last.column(c) for c in range(last.num_columns)]
    first = [c.dictionary_page_offset or c.data_page_offset for c in chunks]
    start = min(first)
    stop = max(f + c.total_compressed_size for f, c in zip(first, chunks, strict=True))
    data = bytearray(path.read_bytes())
    data[start:stop] = bytes((i * 131 + 7) % 256 for i in range(stop - start))
    path.write_bytes(bytes(data))
    return path


Writer = Callable[[Path, Path], Path]  # (tmp dir, suggested path) → the source.path to try


def _raw(data: bytes) -> Writer:
    def write(tmp: Path, path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


def _table(t: Callable[[], pa.Table], **kw: object) -> Writer:
    return lambda tmp, path: _write(t(), path, **kw)


def _cut(keep: Callable[[bytes], bytes]) -> Writer:
    def write(tmp: Path, path: Path) -> Path:
        path.write_bytes(keep(_good_bytes(tmp)))
        return path

    return write


def _folder(files: dict[str, bytes]) -> Writer:
    def write(tmp: Path, path: Path) -> Path:
        d = tmp / "folder.parquet"  # a folder named like a file
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(data)
        return d

    return write


def _swap(name: str, values: pa.Array) -> Writer:
    return _table(lambda: _with(_good_table(), name, values))


def _drop(name: str) -> Writer:
    return _table(lambda: _good_table().drop_columns([name]))


def _depth_text() -> pa.Table:
    g = _good_table()
    text = [pa.array(["x"] * N)] * 4
    return pa.Table.from_arrays([*g.columns, *text], names=[*g.column_names, *DEPTH_FIELDS.names])


def _cases() -> dict[str, tuple[ReplayProblem, str | None, Writer]]:
    """name → (expected problem, source.timestamp_unit, writer)."""
    raw, table, cut, folder, swap, drop, g = _raw, _table, _cut, _folder, _swap, _drop, _good_table
    types = zip(TICK_SCHEMA.names, TICK_SCHEMA.types, strict=True)
    nulls = pa.table({c: pa.array([None] * N, t) for c, t in types})
    epoch = g()["timestamp"].cast(pa.int64())
    text = pa.array(["x"] * N)
    csv = b"instrument_token,timestamp,last_price\n1,2,3\n"
    bids = pa.array([[1.0] * 5] * N, DEPTH_FIELDS.field("bid_price").type)
    depth_text = table(_depth_text)
    NOT_PQ, BAD = P.NOT_PARQUET, P.BAD_COLUMN_TYPE
    UNIT, NO_UNIT = P.EPOCH_UNIT_IMPLAUSIBLE, P.EPOCH_UNIT_REQUIRED
    structs, dates = pa.array([{"t": 1}] * N), pa.array([date.today()] * N)
    epoch_f, huge = epoch.cast(pa.float64()), pa.array([2**62] * N)
    twice = table(lambda: g().append_column("timestamp", epoch))
    random_bytes = np.random.default_rng(5).bytes(4096)
    return {
        "zero_bytes": (NOT_PQ, None, raw(b"")),
        "random_bytes": (NOT_PQ, None, raw(random_bytes)),
        "csv_renamed": (NOT_PQ, None, raw(csv)),
        "json_renamed": (NOT_PQ, None, raw(b'{"instrument_token": 1}')),
        "only_magic": (NOT_PQ, None, raw(b"PAR1PAR1")),
        "truncated_footer": (NOT_PQ, None, cut(lambda b: b[:-3])),
        "truncated_half": (NOT_PQ, None, cut(lambda b: b[: len(b) // 2])),
        "footer_length_garbled": (NOT_PQ, None, cut(lambda b: b[:-8] + b"\xff" * 4 + b[-4:])),
        "footer_bytes_garbled": (NOT_PQ, None, cut(lambda b: b[:-60] + b"\x07" * 52 + b[-8:])),
        "no_rows": (P.NO_ROWS, None, table(lambda: g(0))),
        "no_timestamp": (P.MISSING_COLUMN, None, drop("timestamp")),
        "no_token": (P.MISSING_COLUMN, None, drop("instrument_token")),
        "no_price": (P.MISSING_COLUMN, None, drop("last_price")),
        "another_schema": (P.MISSING_COLUMN, None, table(lambda: pa.table({"a": [1]}))),
        "token_text": (BAD, None, swap("instrument_token", text)),
        "token_float": (BAD, None, swap("instrument_token", pa.array([7.0] * N))),
        "token_struct": (BAD, None, swap("instrument_token", structs)),
        "price_text": (BAD, None, swap("last_price", pa.array(["100.5"] * N))),
        "price_bool": (BAD, None, swap("last_price", pa.array([True] * N))),
        "price_float16": (BAD, None, swap("last_price", pa.array(np.full(N, 100.05, np.float16)))),
        "volume_text": (BAD, None, swap("volume", text)),
        "timestamp_bool": (BAD, None, swap("timestamp", pa.array([True] * N))),
        "timestamp_date": (BAD, None, swap("timestamp", dates)),
        "timestamp_binary": (BAD, None, swap("timestamp", pa.array([b"\x00"] * N))),
        "timestamp_list": (BAD, None, swap("timestamp", pa.array([[1]] * N))),
        "epoch_int_no_unit": (NO_UNIT, None, swap("timestamp", epoch)),
        "epoch_float_no_unit": (NO_UNIT, None, swap("timestamp", epoch_f)),
        "epoch_wrong_unit": (UNIT, "s", swap("timestamp", epoch)),
        "epoch_wrong_unit_small": (UNIT, "ns", swap("timestamp", epoch)),
        "epoch_out_of_range": (UNIT, "s", swap("timestamp", huge)),
        "nulls_everywhere": (P.ALL_NULL, None, table(lambda: nulls)),
        "null_type_price": (P.ALL_NULL, None, swap("last_price", pa.nulls(N))),
        "null_prices": (P.ALL_NULL, None, swap("last_price", pa.nulls(N, pa.float64()))),
        "timestamp_text_unreadable": (P.NO_VALID_TIMESTAMP, None, swap("timestamp", text)),
        "duplicate_column": (P.DUPLICATE_COLUMN, None, twice),
        "depth_part": (BAD, None, swap("bid_price", bids)),
        "depth_text": (BAD, None, depth_text),
        "corrupt_last_row_group": (P.CORRUPT, None, _corrupt_last_group),
        "folder_without_parquet": (P.NO_FILES, None, folder({"ticks.csv": b"a,b\n"})),
        "folder_only_hidden": (P.NO_FILES, None, folder({".x.parquet": b"", "_m.parquet": b""})),
        "folder_with_one_bad": (NOT_PQ, None, lambda tmp, path: _one_bad_in_folder(tmp)),
        "does_not_exist": (P.NOT_FOUND, None, lambda tmp, path: tmp / "nowhere" / "x.parquet"),
    }  # fmt: skip


def _one_bad_in_folder(tmp: Path) -> Path:
    d = tmp / "days"
    d.mkdir()
    _write(_good_table(), d / "2026-11-19.parquet")
    (d / "2026-11-20.parquet").write_bytes(b"not parquet at all")
    return d


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_unusable_file_is_refused_in_one_line_naming_it(tmp_path: Path, name: str) -> None:
    problem, unit, write = CASES[name]
    path = write(tmp_path, tmp_path / f"{name}.parquet")
    with pytest.raises(ReplayFileError) as err:
        list_files(path, unit)
    msg = str(err.value)
    assert err.value.problem is problem, msg
    assert "\n" not in msg and msg.endswith(f"[{problem}]")
    assert msg.startswith(f"source.path: {err.value.path} ")
    named = err.value.path
    assert named == path or named.parent == path or name == "folder_with_one_bad", msg
    if name == "folder_with_one_bad":
        assert named.name == "2026-11-20.parquet"


def test_the_case_list_covers_every_problem_but_unreadable() -> None:
    covered = {p for p, _, _ in CASES.values()}
    # root reads any file: not testable; CHANGED only arises mid-run (tests/test_replay_read)
    assert set(ReplayProblem) - covered == {P.UNREADABLE, P.CHANGED}


def _config_file(tmp: Path, source: Path, unit: str | None = None) -> Path:
    raw = config_dict(source, output={"dir": str(tmp / "out")})
    if unit:
        raw["source"]["timestamp_unit"] = unit
    cfg = tmp / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return cfg


@pytest.mark.parametrize(
    "name",
    ["zero_bytes", "epoch_int_no_unit", "corrupt_last_row_group", "folder_with_one_bad"],
)  # fmt: skip
def test_the_entry_point_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, name: str
) -> None:
    problem, unit, write = CASES[name]
    path = write(tmp_path, tmp_path / f"{name}.parquet")
    cfg = _config_file(tmp_path, path, unit)
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.main"],
        cwd=tmp_path,
        env=flow_env(cfg),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("alpha-panda: ") and lines[0].endswith(f"[{problem}]")
    assert ".parquet" in lines[0] and str(tmp_path) in lines[0]
    assert not (tmp_path / "out").exists()  # no ledger, no report: nothing started


def _epoch(table: pa.Table, unit: str, kind: type) -> pa.Table:
    us = table["timestamp"].cast(pa.int64()).to_numpy()
    scaled = {"s": us / 1e6, "ms": us / 1e3, "us": us, "ns": us * 1000}[unit]
    if kind is int:
        arr = pa.array(np.asarray(scaled).astype(np.int64) if unit != "s" else us // 10**6)
    else:
        arr = pa.array(np.asarray(scaled, dtype=np.float64))
    return _with(table, "timestamp", arr)


@pytest.mark.parametrize(
    ("unit", "kind"), [(u, k) for u in ("s", "ms", "us", "ns") for k in (int, float)]
)
def test_epoch_timestamps_read_in_the_configured_unit(
    tmp_path: Path, unit: str, kind: type
) -> None:
    good = _good_table()
    path = _write(_epoch(good, unit, kind), tmp_path / "epoch.parquet")
    assert list_files(path, unit) == [path]
    got = read_ticks(pq.read_table(path), unit).ts
    want = good["timestamp"].cast(pa.int64()).to_numpy()
    if unit == "s":
        want = want // 10**6 * 10**6  # whole seconds (the ticks are 6 s apart)
    assert got.tolist() == want.tolist()


def test_a_replay_of_epoch_milliseconds_trades_like_the_typed_file(tmp_path: Path) -> None:
    (day,) = sorted(small_ticks(tmp_path / "gen", bad_rows=False).glob("*.parquet"))
    table = pq.read_table(day)
    ms = table["timestamp"].cast(pa.int64()).to_numpy() // 1000
    typed, epoch = tmp_path / "typed", tmp_path / "epoch"
    typed.mkdir()
    epoch.mkdir()
    ts_type = TICK_SCHEMA.field("timestamp").type
    _write(_with(table, "timestamp", pa.array(ms * 1000).cast(ts_type)), typed / day.name)
    _write(_with(table, "timestamp", pa.array(ms)), epoch / day.name)
    want, _ = run_graph(make_config(typed), tmp_path / "o1")
    raw = config_dict(epoch)
    raw["source"]["timestamp_unit"] = "ms"
    got, _ = run_graph(parse_config(raw, Path(".")), tmp_path / "o2")
    assert len(want["fills"]) > 0
    assert [f.model_dump() for f in got["fills"]] == [f.model_dump() for f in want["fills"]]


def test_files_are_replayed_in_time_order_whatever_their_names(tmp_path: Path) -> None:
    ticks = small_ticks(tmp_path / "named", days=2, gap_s=30.0, bad_rows=False)
    first, second = sorted(ticks.glob("*.parquet"))
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    shutil.copy(second, shuffled / "a-later-day.parquet")  # name order: the later day first
    shutil.copy(first, shuffled / "z-earlier-day.parquet")
    assert [p.name for p in list_files(shuffled)] == [
        "z-earlier-day.parquet",
        "a-later-day.parquet",
    ]
    want, _ = run_graph(make_config(ticks), tmp_path / "o1")
    got, _ = run_graph(make_config(shuffled), tmp_path / "o2")
    assert not [d for d in got["dead_letters"] if "ORDER" in str(d.reason)]
    assert len(want["fills"]) > 0
    assert [f.model_dump() for f in got["fills"]] == [f.model_dump() for f in want["fills"]]


def test_odd_but_readable_columns_are_rows_not_crashes(tmp_path: Path) -> None:
    """ns timestamps below the µs, uint64 tokens beyond int64, float volumes with NaN,
    decimal prices: each value the replay cannot use is a sentinel the row check rejects."""
    from decimal import Decimal

    g = _good_table(4)
    ns = g["timestamp"].cast(pa.int64()).to_numpy() * 1000 + 999
    t = _with(g, "timestamp", pa.array(ns, pa.timestamp("ns")))
    t = _with(t, "instrument_token", pa.array([TOKENS[0], 2**64 - 1, None, TOKENS[1]], pa.uint64()))
    t = _with(t, "volume", pa.array([1.0, float("nan"), 2.5, None]))
    t = _with(
        t,
        "last_price",
        pa.array([Decimal("100.05"), None, Decimal("1"), Decimal("2")], pa.decimal128(10, 2)),
    )
    path = _write(t, tmp_path / "odd.parquet")
    assert list_files(path) == [path]
    cols = read_ticks(pq.read_table(path), None)
    assert cols.ts.tolist() == (ns // 1000).tolist()
    assert cols.tokens.tolist() == [TOKENS[0], -1, -1, TOKENS[1]]
    assert cols.volume.tolist() == [1, BAD_VOLUME, BAD_VOLUME, NO_VOLUME]  # NaN, 2.5, null
    assert cols.price[0] == 100.05 and np.isnan(cols.price[1])


def test_hidden_and_underscore_files_in_a_folder_are_skipped(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    good = _write(_good_table(), d / "day.parquet")
    (d / "._day.parquet").write_bytes(b"AppleDouble junk")
    (d / "_tmp").mkdir()
    (d / "_tmp" / "part.parquet").write_bytes(b"half written")
    assert list_files(d) == [good]


def test_a_file_damaged_during_the_run_ends_it_in_one_line_exit_2(tmp_path: Path) -> None:
    """Checked before the run, then damaged in a way its stamp does not show (a failing
    disk): the replay stops with exit 2 and one line."""
    path = _write(_good_table(), tmp_path / "day.parquet")
    proc = python_script(
        f"""
        from pathlib import Path
        from connectors.replay import ReplaySource
        from connectors.replay_kept import stamp
        src = ReplaySource({str(path)!r}, {TOKENS[:3]!r}, 100, 1)
        Path({str(path)!r}).write_bytes(b"gone")
        src.reader.stamps = [stamp(Path({str(path)!r}))]
        src.build_part("s", "replay-0", None).next_batch()
        print("not reached")
        """
    )
    assert proc.returncode == 2 and "not reached" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and lines[0].endswith("[CORRUPT]")


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
)
def test_fuzz_damaged_files_are_read_or_refused_never_a_crash(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(
        _write(_good_table(200), tmp_path / "seed.bin", row_group_size=50).read_bytes()
    )
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = tmp_path / "fuzz.parquet"
    path.write_bytes(bytes(data[: len(data) - cut] if cut < len(data) else b""))
    try:
        files = list_files(path)
    except ReplayFileError as exc:
        assert "\n" not in str(exc) and exc.path == path
        return
    read_ticks(pq.read_table(files[0]), None)  # what passed the check decodes
