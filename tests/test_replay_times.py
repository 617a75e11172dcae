"""Replay times: naive times (no zone, no offset) are wall-clock times in source.timezone,
checked against datetime/zoneinfo worked out here; a file of Indian wall-clock times read as
UTC is warned of; a replay in Indian time trades like the same ticks stamped in UTC."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.replay_files import list_files, read_ticks
from connectors.replay_times import MISSING_TS, localize, timestamps
from flows.config import parse_config
from operators.session import MarketSession
from schemas.config import ConfigError, SessionConfig
from tests.support import TOKENS, config_dict, make_config, run_graph, small_ticks

IST = ZoneInfo("Asia/Kolkata")
START = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)  # 09:30 IST


def _us(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def _table(walls: list[datetime], text: bool) -> pa.Table:
    n = len(walls)
    stamps = (
        pa.array([w.isoformat() for w in walls])
        if text
        else pa.array(walls, pa.timestamp("us"))  # naive: no zone in the type
    )
    return pa.table(
        {
            "instrument_token": pa.array([TOKENS[i % 3] for i in range(n)], pa.int64()),
            "timestamp": stamps,
            "last_price": pa.array([100.0] * n, pa.float64()),
            "volume": pa.array(list(range(1, n + 1)), pa.int64()),
        }
    )


@pytest.mark.parametrize("text", [False, True], ids=["timestamp", "iso-text"])
def test_naive_indian_times_read_in_asia_kolkata_are_the_utc_instants(text: bool) -> None:
    instants = [START + timedelta(seconds=37 * i, microseconds=i) for i in range(50)]
    walls = [t.astimezone(IST).replace(tzinfo=None) for t in instants]
    got = read_ticks(_table(walls, text), None, "Asia/Kolkata").ts.tolist()
    assert got == [_us(t) for t in instants]
    as_utc = read_ticks(_table(walls, text), None).ts.tolist()  # the default: UTC
    assert [a - b for a, b in zip(as_utc, got, strict=True)] == [5.5 * 3600 * 10**6] * 50


def test_times_with_a_zone_or_offset_ignore_source_timezone() -> None:
    instants = [START + timedelta(minutes=i) for i in range(5)]
    aware = pa.table(
        {
            "instrument_token": pa.array([TOKENS[0]] * 5, pa.int64()),
            "timestamp": pa.array(instants, pa.timestamp("us", tz="UTC")),
            "last_price": pa.array([100.0] * 5),
        }
    )
    texts = aware.set_column(1, "timestamp", pa.array([t.isoformat() for t in instants]))
    for table in (aware, texts):
        assert read_ticks(table, None, "Asia/Kolkata").ts.tolist() == [_us(t) for t in instants]


def test_a_zone_with_daylight_saving_takes_the_earlier_offset_at_its_changes() -> None:
    tz = ZoneInfo("America/New_York")
    walls = [  # the spring gap (02:xx does not exist) and the autumn fold (01:xx twice)
        datetime(2026, 3, 8, 1, 59) + timedelta(minutes=7 * i) for i in range(30)
    ] + [datetime(2026, 11, 1, 0, 50) + timedelta(minutes=7 * i) for i in range(30)]
    got = read_ticks(_table(walls, False), None, "America/New_York").ts.tolist()
    want = [_us(w.replace(tzinfo=tz, fold=0).astimezone(timezone.utc)) for w in walls]
    assert got == want


def test_times_beyond_the_calendar_become_missing_not_a_crash() -> None:
    wall = pa.array([0, 2**62, -(2**62), 253402300799 * 10**6], pa.int64()).to_numpy()
    got = localize(wall.copy(), "Asia/Kolkata")
    assert got[0] == -5.5 * 3600 * 10**6
    assert got[1] == MISSING_TS and got[2] == MISSING_TS  # no calendar date there
    assert got[3] == wall[3] - 5.5 * 3600 * 10**6  # 9999-12-31 23:59:59 exists


def test_indian_wall_clock_read_as_utc_is_warned_of_naming_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session = MarketSession(SessionConfig())
    instants = [START + timedelta(seconds=20 * i) for i in range(1000)]  # 09:30–15:03 IST
    walls = [t.astimezone(IST).replace(tzinfo=None) for t in instants]
    naive = tmp_path / "naive.parquet"
    pq.write_table(_table(walls, False), naive)
    aware = tmp_path / "aware.parquet"
    pq.write_table(_table(walls, False).set_column(1, "timestamp", pa.array(instants)), aware)
    cases = [(naive, "UTC", True), (naive, "Asia/Kolkata", False), (aware, "UTC", False)]
    for path, zone, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alpha_panda.replay"):
            assert list_files(path, None, zone, session.is_open) == [path]
        hints = [r.getMessage() for r in caplog.records if "source.timezone" in r.getMessage()]
        assert bool(hints) == warned, (path.name, zone, hints)
        if warned:
            assert "set source.timezone: Asia/Kolkata" in hints[0] and str(path) in hints[0]


def test_a_replay_in_indian_wall_clock_trades_like_the_same_ticks_in_utc(
    tmp_path: Path,
) -> None:
    (day,) = sorted(small_ticks(tmp_path / "gen", bad_rows=False).glob("*.parquet"))
    table = pq.read_table(day)
    utc = table["timestamp"].cast(pa.timestamp("us", tz="UTC"))
    local = pa.compute.local_timestamp(utc.cast(pa.timestamp("us", tz="Asia/Kolkata")))
    ist = tmp_path / "ist"
    ist.mkdir()
    pq.write_table(table.set_column(1, "timestamp", local), ist / day.name)
    want, _ = run_graph(make_config(day.parent), tmp_path / "o1")
    raw = config_dict(ist)
    raw["source"]["timezone"] = "Asia/Kolkata"
    got, _ = run_graph(parse_config(raw, Path(".")), tmp_path / "o2")
    assert len(want["fills"]) > 0
    assert [f.model_dump() for f in got["fills"]] == [f.model_dump() for f in want["fills"]]


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "../../etc/passwd", "", "IST+5:30", "localtime", "Factory", "right/UTC"],
)
def test_an_unknown_zone_is_refused_naming_the_field(tmp_path: Path, zone: str) -> None:
    raw = config_dict(tmp_path)
    raw["source"]["timezone"] = zone
    with pytest.raises(ConfigError, match=r"^source\.timezone"):
        parse_config(raw, Path("."))


EPOCH_INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(1_600_000_000, 2 * 10**9))
EPOCH_FLOATS = st.one_of(st.floats(), st.floats(1.6e9, 2e9), st.floats(1.6e15, 2e15))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.lists(EPOCH_INTS, max_size=12), st.lists(EPOCH_FLOATS, max_size=12)),
    st.sampled_from(["s", "ms", "us", "ns"]),
)
def test_epoch_numbers_decode_alike_with_and_without_nulls(
    vals: list[int] | list[float], unit: str
) -> None:
    """A column without nulls takes a shorter path than one with them: both give, row by
    row, the µs worked out here with exact arithmetic (MISSING_TS when out of range)."""
    as_float = any(isinstance(v, float) for v in vals)
    typ = pa.float64() if as_float else pa.int64()
    per_us = {"s": 10**6, "ms": 10**3, "us": 1, "ns": 0}[unit]  # ns: divided below

    def expected(v: int | float) -> int:
        if isinstance(v, float):
            if v != v or abs(v) == float("inf"):
                return MISSING_TS
            scaled = v * (1e-3 if unit == "ns" else per_us)  # as a float column scales
            return MISSING_TS if abs(scaled) >= 2.0**62 else round(scaled)
        if unit == "ns":
            return v // 1000
        return v * per_us if abs(v) < 2**62 // per_us else MISSING_TS

    want = [expected(v) for v in vals]
    plain = pa.chunked_array([pa.array(vals, typ)])
    with_null = pa.chunked_array([pa.array([*vals, None], typ)])
    assert timestamps(plain, unit)[0].tolist() == want
    assert timestamps(with_null, unit)[0].tolist() == [*want, MISSING_TS]
