"""The stage-health windows (operators.windows) give what Bytewax's own fold_window gives
with a tumbling windower on the epoch and an in-order event clock: the same windows, the
same sums, late items left out, whatever the batch cuts; and, as an independent tally
says, what the feed's passive items and late items kept (``keep_late``) do to them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import UTC_MAX, Clock, ClockLogic, TumblingWindower, fold_window
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.windows import TumblingFold, WindowState, tumbling_fold

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LENGTH = 60_000_000  # µs


class _InOrder(ClockLogic[tuple[int, int], datetime]):
    """Bytewax clock: the watermark is the latest item time seen."""

    def __init__(self, resume: datetime | None) -> None:
        self.wm = resume or datetime.min.replace(tzinfo=timezone.utc)

    def before_batch(self) -> None:
        return None

    def on_item(self, value: tuple[int, int]) -> tuple[datetime, datetime]:
        ts = EPOCH + timedelta(microseconds=value[0])
        self.wm = max(self.wm, ts)
        return ts, self.wm

    def on_notify(self) -> datetime:
        return self.wm

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        return None

    def snapshot(self) -> datetime:
        return self.wm


class InOrderClock(Clock[tuple[int, int], datetime]):
    def build(self, resume_state: datetime | None) -> _InOrder:
        return _InOrder(resume_state)


def _fold(acc: list[int], item: tuple[int, int]) -> list[int]:
    return [*acc, item[1]]  # every item's value, in the order folded


def _ts(item: tuple[int, int]) -> int:
    return item[0]


def _windows(state: WindowState[list[int]] | None) -> TumblingFold[tuple[int, int], list[int]]:
    return TumblingFold(LENGTH, list[int], _fold, _ts, state)


def _run(events: list[tuple[str, tuple[int, int]]], batch: int, ours: bool) -> list[Any]:
    flow = Dataflow("windows")
    up = op.input("in", flow, TestingSource(events, batch_size=batch))
    if ours:
        down = tumbling_fold("w", up, _windows)
    else:
        windower = TumblingWindower(length=timedelta(microseconds=LENGTH), align_to=EPOCH)
        down = fold_window("w", up, InOrderClock(), windower, list, _fold, list.__add__).down
    out: list[Any] = []
    op.output("out", down, TestingSink(out))
    run_main(flow)
    return sorted(out, key=lambda kv: kv[0])  # per key, in the order emitted


times = st.integers(0, 8).map(lambda k: k * LENGTH // 2) | st.integers(-LENGTH, 5 * LENGTH)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("ab"), times), max_size=40),
    st.integers(1, 7),
)
def test_windows_are_bytewax_tumbling_windows_with_an_in_order_clock(
    raw: list[tuple[str, int]], batch: int
) -> None:
    events = [(key, (ts, n)) for n, (key, ts) in enumerate(raw)]  # some go back: late
    assert _run(events, batch, ours=True) == _run(events, batch, ours=False)


def test_a_window_closes_at_its_end_and_a_late_item_is_left_out() -> None:
    w = TumblingFold(10, list, _fold, lambda v: v[0])
    assert w.on_item((3, 1)) == [] and w.on_item((9, 2)) == []
    assert w.on_item((5, 3)) == []  # older than the 9 seen: late, not in window 0
    assert w.on_item((10, 4)) == [(0, [1, 2])]  # the first item at window 0's end
    assert w.on_item((35, 5)) == [(1, [4])]
    assert w.on_eof() == [(3, [5])] and w.state == WindowState()
    assert w.on_item((1, 6)) == []  # a fresh start after the end: nothing is late
    assert w.on_eof() == [(0, [6])]


def _passive(v: tuple[int, int]) -> bool:
    return v[1] < 0  # items of negative value stand for the feed's own (latency samples)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.tuples(times, st.booleans()), max_size=40),
    st.sampled_from([1, 3]),
    st.booleans(),
)
def test_passive_and_late_items_as_an_independent_tally_says(
    raw: list[tuple[int, bool]], ahead: int, keep_late: bool
) -> None:
    """An ordered item behind the watermark is late: left out, or with ``keep_late`` counted
    in the window of the watermark; else it moves the watermark to its time. A passive item
    counts in its window if that window has not closed, and moves the watermark only to
    ``ahead`` window lengths behind it. Every move closes the windows ending at or before the
    watermark, oldest first; the rest at the end."""
    w = TumblingFold(LENGTH, list, _fold, _ts, passive=_passive, ahead=ahead, keep_late=keep_late)
    got: list[tuple[int, list[int]]] = []
    want: list[tuple[int, list[int]]] = []
    wm: int | None = None
    tally: dict[int, list[int]] = {}
    for n, (ts, passive) in enumerate(raw, start=1):
        item = (ts, -n if passive else n)
        got += w.on_item(item)
        idx = ts // LENGTH
        if passive:
            if wm is None or (idx + 1) * LENGTH > wm:
                tally.setdefault(idx, []).append(item[1])
            to = ts - ahead * LENGTH
        else:
            if wm is not None and ts < wm:
                if keep_late:
                    tally.setdefault(wm // LENGTH, []).append(item[1])
                assert got == want
                continue
            tally.setdefault(idx, []).append(item[1])
            to = ts
        if wm is None or to > wm or (not passive and to == wm):
            wm = to
            done = sorted(k for k in tally if (k + 1) * LENGTH <= wm)
            want += [(k, tally.pop(k)) for k in done]
        assert got == want
    assert got + w.on_eof() == want + sorted(tally.items())


def test_a_passive_item_keeps_the_ordered_windows_of_its_last_window_length() -> None:
    w = TumblingFold(10, list, _fold, lambda v: v[0], passive=_passive)
    assert w.on_item((3, 1)) == []
    assert w.on_item((15, -2)) == []  # a latency sample of window 1 arrives first
    assert w.on_item((8, 3)) == []  # window 0's count still counts: not late
    assert w.on_item((12, 4)) == [(0, [1, 3])]
    assert w.on_item((9, -5)) == []  # window 0 closed: a late sample is left out
    assert w.on_item((21, 6)) == [(1, [-2, 4])]
    assert w.on_item((45, -7)) == [(2, [6])]  # the ordered stream stalled: a window behind
    assert w.on_item((34, 8)) == []  # late: behind the feed's window
    assert w.on_eof() == [(4, [-7])]
    v = TumblingFold(10, list, _fold, lambda v: v[0], passive=_passive)
    assert v.on_item((3, 1)) == [] and v.on_item((22, -2)) == [(0, [1])]
    assert v.on_item((14, 3)) == []  # window 1 opened behind window 2
    assert v.on_item((20, 4)) == [(1, [3])] and v.on_eof() == [(2, [-2, 4])]
