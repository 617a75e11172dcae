"""The fill search's shortcuts against plain computations of the same rules: the shares
traded at each tick recounted tick by tick, and a search that completes at its first tick
against the general search over every tick it may take."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.strategies.execution import (
    DayEnd,
    ExecFinder,
    ExecRules,
    ExecState,
    traded_volume,
)
from schemas.ticks import TickBatch

DAY = 1_000  # µs: a short trading day, so that random tapes cross several


def _day_end(t: int) -> int:
    return (t // DAY + 1) * DAY


def _recount(vol: list[int], base: tuple[int, int], new_day: list[bool]) -> list[float]:
    """Shares traded at each tick, tick by tick: the rise over the higher of the last two
    counts known (a count is > 0), nothing for a first count ever or a tick without one,
    inf while no count was ever known; a new day starts from zero."""
    last, before = base
    out: list[float] = []
    for v, fresh in zip(vol, new_day, strict=True):
        if fresh:
            last, before = 0, -1
        if v <= 0:
            out.append(math.inf if last < 0 else 0.0)
            continue
        out.append(float(max(v - max(last, before), 0)) if last >= 0 else 0.0)
        last, before = v, last
    return out


COUNTS = st.lists(
    st.one_of(st.integers(1, 60), st.sampled_from([0, -1, 10**6])), min_size=1, max_size=60
)


@settings(max_examples=400, deadline=None)
@given(
    COUNTS,
    st.booleans(),
    st.lists(st.integers(0, 59), max_size=3),
    st.tuples(st.integers(-1, 50), st.integers(-1, 50)),
)
def test_traded_volume_is_the_tick_by_tick_recount(
    steps: list[int], cumulative: bool, days: list[int], base: tuple[int, int]
) -> None:
    """Cumulative counts (every tick has one: the usual tape) or raw rows with gaps."""
    vol = list(np.cumsum(np.abs(steps)) + 1) if cumulative else steps
    new_day = [i in days for i in range(len(vol))]
    got, after = traded_volume(np.array(vol, dtype=np.int64), base, np.array(new_day))
    assert got.tolist() == _recount([int(v) for v in vol], base, new_day)
    _, later = traded_volume(np.array([-1], dtype=np.int64), after, np.array([False]))
    assert later == after  # the baseline carried: the last two counts known


def _run(
    tape: TickBatch, rules: ExecRules, signals: list[tuple[int, int, str]], plain: bool
) -> tuple[Any, ...]:
    """The ticks found in three batches of ``tape``, and what the finder keeps after them."""
    finder = ExecFinder(1, rules, ExecState())
    if plain:  # no shortcut: every search goes through the general one
        finder._one_tick = lambda *_: None  # type: ignore[method-assign]
    out: list[Any] = []
    n = len(tape)
    for a, z in ((0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)):
        if a == z:
            continue
        b = TickBatch(1, tape.ts[a:z], tape.price[a:z], tape.volume[a:z], int(tape.ts[z - 1]))
        for i, target, kind in signals:
            if a <= i < z:
                finder.add(b, i - a, f"s{i}", f"k{i % 2}", target, kind)
        out.append(finder.found(b, a))
    return out, [asdict(s) for s in finder.state.searching], finder.state.volume


ROW = st.tuples(st.sampled_from([0, 1, 20, 150, 600]), st.floats(95, 105), st.integers(-1, 40))
SIGNAL = st.tuples(
    st.integers(0, 79), st.sampled_from([-20, 0, 7, 30]), st.sampled_from(["MARKET", "LIMIT"])
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ROW, min_size=3, max_size=80),
    st.lists(SIGNAL, max_size=8),
    st.sampled_from([None, 1.0, 0.1]),
    st.sampled_from([0.0, 0.01]),
    st.sampled_from([0, 30]),
    st.sampled_from([1, 5]),
)
def test_a_search_done_at_its_first_tick_is_the_general_search(
    rows: list[tuple[int, float, int]],
    signals: list[tuple[int, int, str]],
    participation: float | None,
    protection: float,
    latency: int,
    lot: int,
) -> None:
    ts = np.cumsum([t for t, _, _ in rows]).astype(np.int64)
    px = np.round([p for _, p, _ in rows], 2)
    vol = np.cumsum([v for _, _, v in rows]).astype(np.int64)
    tape = TickBatch(1, ts, px, vol, int(ts[-1]))
    rules = ExecRules(latency, 400, protection, participation, _day_end, lot)
    mine = [(i, t, k) for i, t, k in signals if i < len(rows)]
    assert _run(tape, rules, mine, False) == _run(tape, rules, mine, True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=20),
    st.lists(st.integers(0, 600), min_size=1, max_size=60),
)
def test_a_remembered_day_end_is_the_one_asked_for(days: list[int], asked: list[int]) -> None:
    """Days of any lengths, asked in any order (mostly forward, as ticks come)."""
    ends = np.cumsum(days)

    def day_end(t: int) -> int:  # the first boundary after t (beyond the last: a day each)
        k = int(np.searchsorted(ends, t, "right"))
        return int(ends[k]) if k < len(ends) else t - t % 50 + 50

    remembered = DayEnd(day_end)
    forward = sorted(asked)
    for t in [*forward, *asked, *forward]:
        assert remembered(t) == day_end(t)
