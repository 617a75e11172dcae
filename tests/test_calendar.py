"""The NSE calendar: trading days from exchange_calendars (holidays kept by its maintainers),
overridable in config; ticks on other days are dead letters and never mark a position."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, time, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.dataset as ds
import pytest

from data.generate import generate
from operators.session import MarketSession
from schemas.config import ConfigError, SessionConfig
from schemas.ticks import to_us
from tests.support import INSTRUMENTS, config_dict, make_config, run_graph

MON, TUE, WED = date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)  # TUE: Guru Nanak
_IST = ZoneInfo("Asia/Kolkata")


def test_trading_days_come_from_the_exchange_calendar_and_config_overrides() -> None:
    s = MarketSession(SessionConfig())
    assert [s.hours(d) is not None for d in (MON, TUE, WED)] == [True, False, True]
    assert s.hours(date(2026, 10, 20)) is None  # a weekday holiday of the exchange
    closed = MarketSession(SessionConfig(holidays=[WED]))
    assert closed.hours(WED) is None
    sunday = date(2026, 11, 8)
    special = MarketSession(
        SessionConfig.model_validate(
            {"special_sessions": [{"date": sunday, "open": "18:00", "close": "19:00"}]}
        )
    )
    assert special.hours(sunday) == (time(18, 0), time(19, 0))
    assert s.hours(sunday) is None
    plain = MarketSession(SessionConfig(calendar=None))
    assert plain.hours(TUE) is not None  # weekdays only
    beyond = date(2031, 1, 7)  # past the calendar's years: weekdays less holidays
    assert s.hours(beyond) is not None and s.hours(date(2031, 1, 5)) is None


def test_the_mask_judges_each_instant_by_its_local_date() -> None:
    s = MarketSession(SessionConfig())
    edges = [
        datetime(2026, 11, 23, 18, 29, 59, tzinfo=timezone.utc),  # Mon 23:59:59 IST
        datetime(2026, 11, 23, 18, 30, tzinfo=timezone.utc),  # Tue 00:00 IST: holiday
        datetime(2026, 11, 24, 18, 29, 59, tzinfo=timezone.utc),  # Tue 23:59:59 IST
        datetime(2026, 11, 24, 18, 30, tzinfo=timezone.utc),  # Wed 00:00 IST
    ]
    got = s.trading_mask(np.array([to_us(t) for t in edges], dtype=np.int64))
    assert got.tolist() == [True, False, False, True]
    far = np.array([to_us(edges[0]), 2**62, -(2**62)], dtype=np.int64)  # no calendar date
    assert s.trading_mask(far).tolist() == [True, False, False]
    one_day = np.array([to_us(edges[0]) - k * 10**6 for k in range(5)], dtype=np.int64)
    assert s.trading_mask(one_day).all() and not s.trading_mask(far[1:]).any()


def test_an_unknown_calendar_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    from flows.config import parse_config

    raw = config_dict(tmp_path, session={"calendar": "XNOPE"})
    with pytest.raises(ConfigError, match=r"^session\.calendar: unknown exchange calendar"):
        parse_config(raw, tmp_path)


def test_the_calendar_is_kept_on_disk_and_rebuilt_unless_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exchange_calendars

    from schemas import calendar

    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(tmp_path))
    calendar.calendar_days.cache_clear()
    built = calendar.calendar_days("XBOM")
    path = calendar.calendar_cache("XBOM")
    assert path is not None and path.parent.parent == tmp_path and path.is_file()
    # The library's own sessions over the same span, asked directly.
    cal = exchange_calendars.get_calendar("XBOM", start="2025-01-01", end="2026-12-31")
    assert {d for d in built[0] if d.year >= 2025} == {d.date() for d in cal.sessions}
    calendar.calendar_days.cache_clear()
    assert calendar.calendar_days("XBOM") == built  # read back from the file
    good = json.loads(path.read_text())
    poisoned = [
        "{not json",
        json.dumps(good | {"days": []}),  # no trading day at all
        json.dumps(good | {"first": good["last"] + 1}),  # days outside the range
        json.dumps(good | {"days": [*good["days"], good["last"] + 5]}),
        json.dumps(good | {"days": [True, *good["days"][1:]]}),
        json.dumps(good | {"days": [float(good["days"][0]), *good["days"][1:]]}),
        json.dumps(good | {"calendar": "XNSE"}),  # another calendar's days
        json.dumps(good | {"version": "0.0.1"}),  # another library version's
        json.dumps(good | {"format": 0}),
        json.dumps(good | {"days": good["days"][::2]}),  # believed: well formed
    ]
    for text in poisoned:
        path.write_text(text)
        calendar.calendar_days.cache_clear()
        days = calendar.calendar_days("XBOM")
        assert days == built or text == poisoned[-1], text[:60]
    # The one well-formed file is used as kept (the cache is the user's own folder).
    assert len(days[0]) == len(good["days"][::2])
    path.write_text(json.dumps(good))
    other = tmp_path / "calendars" / path.name.replace("XBOM", "XNSE")
    other.write_text("{}")  # a file by a name is no proof that the calendar exists
    assert calendar.known_calendar("XBOM") and not calendar.known_calendar("XNSE")
    with pytest.raises(ValueError, match="unknown exchange calendar 'XNSE'"):
        SessionConfig(calendar="XNSE")
    calendar.calendar_days.cache_clear()


def test_a_calendar_whose_range_moves_with_today_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schemas import calendar

    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(tmp_path))
    calendar.calendar_days.cache_clear()
    days, first, last = calendar.calendar_days("XNYS")  # the library's range around today
    assert date(2026, 12, 25) not in days and first < date(2026, 1, 1) < last
    assert not (tmp_path / "calendars").exists() or not any((tmp_path / "calendars").iterdir())
    calendar.calendar_days.cache_clear()


@pytest.mark.parametrize("where", ["file", "long", "unwritable"])
def test_a_cache_folder_that_cannot_be_used_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from schemas import calendar

    calendar.calendar_days.cache_clear()
    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(tmp_path / "kept"))
    built = calendar.calendar_days("XBOM")
    root = tmp_path / "x"
    if where == "file":
        root.write_text("")  # a file where the folder should be
    elif where == "long":
        root = tmp_path / ("y" * 300)  # longer than a file name may be
    else:
        (root / "calendars").mkdir(parents=True)
        (root / "calendars").chmod(0o500)
    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(root))
    calendar.calendar_days.cache_clear()
    assert SessionConfig(calendar="XBOM").calendar == "XBOM"
    assert calendar.calendar_days("XBOM") == built
    if where == "unwritable":
        assert list((root / "calendars").iterdir()) in ([], [calendar.calendar_cache("XBOM")])
    calendar.calendar_days.cache_clear()


def test_holiday_ticks_are_dead_letters_and_never_mark_a_position(tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    generate(ticks, INSTRUMENTS, [MON, TUE, WED], seed=5, mean_gap_s=6.0)
    rows, report = run_graph(make_config(ticks), tmp_path / "out")
    holiday = [d for d in rows["dead_letters"] if d.reason == "NON_TRADING_DAY"]
    assert holiday and all(
        d.timestamp is not None and d.timestamp.astimezone(_IST).date() == TUE for d in holiday
    )
    tape = ds.dataset(ticks).to_table().to_pylist()
    tue_rows = sum(1 for r in tape if r["timestamp"].astimezone(_IST).date() == TUE)
    assert len(holiday) == tue_rows  # every tick of the holiday, none of the other days
    for kind in ("signals", "fills"):
        assert all(x.timestamp.astimezone(_IST).date() != TUE for x in rows[kind])
    snaps = sorted((p for p in rows["pnl"] if p.broker == "paper"), key=lambda p: p.timestamp)
    for before, snap in itertools.pairwise(snaps):  # the holiday moves nothing
        if snap.timestamp.astimezone(_IST).date() == TUE:
            assert (snap.equity, snap.unrealized_pnl) == (before.equity, before.unrealized_pnl)
    inputs = sum(n for r, n in report.dead_letters_by_reason.items() if r != "STRATEGY_ERROR")
    assert report.rows_read == report.ticks_processed + inputs
