"""Each per-broker operator in a small flow, with TestingSource and TestingSink."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.account.account import Account, AccountSetup, account
from operators.account.paper import PaperVenue
from operators.health import HealthJudge, StageEvent, stage_health
from operators.ordering import order_by_event_time
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, HealthConfig, SessionConfig
from schemas.enums import Broker, Stage
from schemas.events import OrderFilled, OrderPlaced, PnlSnapshot, TradingSignal, ValidatedSignal
from schemas.report import BrokerSummary
from schemas.ticks import (
    US,
    Clock,
    ExecTick,
    Marks,
    MarkSet,
    StrategyOutput,
    WindowCounts,
    from_us,
    to_us,
)

T0 = to_us(datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc))  # 10:30 IST
CASH = 1_000_000.0


def marks_at(*pairs: tuple[int, float]) -> Marks:
    return Marks(np.array([t for t, _ in pairs], dtype=np.int64), np.array([p for _, p in pairs]))


EMPTY = WindowCounts(*(np.zeros(0, dtype=np.int64),) * 3)


def _target(token: int, at: int, target: int = 5, price: float = 100.0) -> TradingSignal:
    return TradingSignal(
        signal_id=f"s{token}-{at}", correlation_id=f"c{token}-{at}", strategy_id="t",
        broker="paper", instrument_token=token, target_quantity=target, price=price,
        timestamp=from_us(at), reason="",
    )  # fmt: skip


def _run(flow: Dataflow, stream: Any) -> list[Any]:
    out: list[Any] = []
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    return out


def test_ordering_releases_in_event_time_once_every_instrument_passed() -> None:
    a1, b1, a2 = _target(1, T0 + 5 * US), _target(2, T0 + 1 * US), _target(1, T0 + 70 * US)
    outs = [
        (
            "paper",
            StrategyOutput(1, (a1,), Marks.none(), EMPTY, T0 + 10 * US),
        ),  # 2 has not reported yet
        ("paper", StrategyOutput(2, (b1,), marks_at((T0 + 60 * US, 99.0)), EMPTY, T0 + 80 * US)),
        ("paper", StrategyOutput(1, (a2,), Marks.none(), EMPTY, T0 + 90 * US)),
    ]
    flow = Dataflow("order_test")
    grids = {"health": 60 * US, "snapshot": 60 * US}
    released = _run(
        flow, order_by_event_time("order", op.input("in", flow, TestingSource(outs)), [1, 2], grids)
    )
    items = [i for _, chunk in released for i in chunk]
    assert items[:2] == [b1, a1]
    marks = [i for i in items if isinstance(i, MarkSet)]
    assert marks == [MarkSet.of(T0 + 60 * US, ((2, 99.0),))]
    clocks = [i for i in items if isinstance(i, Clock)]
    assert {c.ts for c in clocks} == {T0 + 60 * US} and items[-1] == a2
    assert items.index(marks[0]) < items.index(clocks[0]) < items.index(a2)


def test_max_delay_keeps_a_quiet_instrument_from_holding_the_others_back() -> None:
    from operators.ordering import EventTimeOrder

    grids = {"health": 60 * US, "snapshot": 300 * US}
    early, late = _target(1, T0 + 1 * US), _target(1, T0 + 30 * US)
    later = _target(1, T0 + 50 * US)
    now = [1000.0]  # wall time, seconds
    exact = EventTimeOrder([1, 2], grids)  # instrument 2 never ticks
    live = EventTimeOrder([1, 2], grids, max_delay_us=10 * US, clock=lambda: now[0])
    for order in (exact, live):
        order.push(StrategyOutput(1, (early, late), Marks.none(), EMPTY, T0 + 35 * US))
    assert exact.release() == []  # exact order waits for instrument 2 (until the end)
    assert live.release() == []  # instrument 2 has not been silent for 10 s yet
    now[0] = 1009.0
    for order in (exact, live):
        order.push(StrategyOutput(1, (later,), Marks.none(), EMPTY, T0 + 45 * US))  # 1 still ticks
    now[0] = 1011.0  # 2 silent 11 s of wall time: it no longer holds 1 back
    assert exact.release() == []
    # ... but instrument 1 still does: ``later`` is past its watermark
    assert [i for i in live.release() if isinstance(i, TradingSignal)] == [early, late]
    assert [i for i in live.release(final=True) if isinstance(i, TradingSignal)] == [later]
    got = [i for i in exact.release(final=True) if isinstance(i, TradingSignal)]
    assert got == [early, late, later]


def test_a_quiet_instruments_late_ticks_count_in_the_window_open_when_they_come() -> None:
    """Released without a quiet instrument, a window's count goes out without its ticks;
    when they come they count in the window then open: every tick once, none dropped."""
    from operators.health import WindowAcc, health_windows, stage_events
    from operators.ordering import EventTimeOrder

    w = 60 * US
    w0 = T0 // w
    now = [1000.0]
    live = EventTimeOrder([1, 2], {"health": w}, max_delay_us=10 * US, clock=lambda: now[0])
    extract = stage_events((Stage.MARKET_DATA,))
    fold = health_windows(w)
    closed: list[tuple[int, WindowAcc]] = []

    def ticks(token: int, n: int, window: int, watermark_s: int) -> None:
        at = np.array([w0 + window], dtype=np.int64)
        counts = WindowCounts(at, np.array([n], dtype=np.int64), at * w + US)
        live.push(StrategyOutput(token, (), Marks.none(), counts, T0 + watermark_s * US))
        for _, e in extract(("paper", live.release())):
            closed.extend(fold.on_item(e))

    ticks(1, 5, 0, 10)
    ticks(1, 4, 1, 70)
    ticks(1, 3, 2, 130)
    now[0] = 1011.0  # 2 silent for 11 s of wall time: windows 0-2 go out without it
    ticks(1, 2, 3, 190)
    now[0] = 1012.0
    ticks(2, 7, 0, 200)  # 2 wakes with ticks of window 0, long counted
    ticks(1, 1, 4, 250)
    for _, e in extract(("paper", live.release(final=True))):
        closed.extend(fold.on_item(e))
    got = {i - w0: a.count for i, a in closed + fold.on_eof()}
    assert got == {0: 5, 1: 4, 2: 3 + 7, 3: 2, 4: 1}  # window 2 was open when the 7 came


def test_a_live_order_stage_sleeps_when_every_instrument_is_quiet() -> None:
    """A wake-up is asked for only while some instrument can still turn quiet; once all
    are, only new items can release more (no busy loop overnight)."""
    from operators.ordering import EventTimeOrder

    grids = {"health": 60 * US, "snapshot": 300 * US}
    now = [1000.0]
    live = EventTimeOrder([1, 2], grids, max_delay_us=10 * US, clock=lambda: now[0])
    counts = WindowCounts(*(np.array([v], dtype=np.int64) for v in (T0 // (60 * US), 5, T0)))
    live.push(StrategyOutput(1, (_target(1, T0 + US),), Marks.none(), counts, T0 + 2 * US))
    wake = live.next_wake()
    assert wake is not None and wake.timestamp() == 1010.0  # when 2 (never heard) goes quiet
    now[0] = 1020.0  # both quiet now
    assert [i for i in live.on_wake()[0] if isinstance(i, TradingSignal)]
    assert live.next_wake() is None  # the open health window waits for a new item


def _account(slippage_bps: float = 10.0) -> Callable[[str, Any], Account]:
    """Accounts built the way flows.graph builds them (paper venue, no control inbox)."""
    costs = CostModel()
    setup = AccountSetup(
        costs=costs, session=MarketSession(SessionConfig()), lot_sizes={}, order_types={}
    )
    cfg = BrokerConfig(starting_cash=CASH, slippage_bps=slippage_bps)

    def make(key: str, resume: Any) -> Account:
        venue = lambda state: PaperVenue(cfg.slippage_bps, costs, {1: 0.05})  # noqa: E731
        return Account(Broker(key), cfg, setup, venue, None, resume)

    return make


def _exec(s: TradingSignal, price: float) -> ExecTick:
    """The tick after ``s``'s that executes its paper order (as the strategy runner sends)."""
    return ExecTick(to_us(s.timestamp) + 1, s.instrument_token, price, (s.signal_id,))


def _booked(items: list[Any]) -> list[Any]:
    flow = Dataflow("account_test")
    out = _run(
        flow, account("acct", op.input("in", flow, TestingSource([("paper", items)])), _account())
    )
    return [i for key, chunk in out for i in chunk if key == "paper"]


def _charges(side: str, turnover: float) -> float:
    """Zerodha intraday equity charges, from the published schedule, rounded to the paisa."""
    brokerage = min(20.0, 0.0003 * turnover)
    exchange = 0.0000297 * turnover
    sebi = 10.0 * turnover / 1e7
    tax = 0.00025 * turnover if side == "SELL" else 0.00003 * turnover  # STT sell / stamp buy
    return round(brokerage + exchange + sebi + tax + 0.18 * (brokerage + exchange + sebi), 2)


def test_account_orders_the_difference_and_fills_with_slippage_and_fees() -> None:
    long = _target(1, T0, 100, 100.0)
    short = _target(1, T0 + 10 * US, -100, 100.0)  # holds 100: sells 200
    out = _booked([long, _exec(long, 100.0), short, _exec(short, 100.0)])
    orders = [i for i in out if isinstance(i, ValidatedSignal | OrderPlaced | OrderFilled)]
    assert [type(i) for i in orders] == [ValidatedSignal, OrderPlaced, OrderFilled] * 2
    for (v, placed, filled), s, side, qty, price in (
        (orders[:3], long, "BUY", 100, 100.10),  # 100 × 1.001 = 100.10, on the 0.05 grid
        (orders[3:], short, "SELL", 200, 99.90),  # 100 × 0.999 = 99.90
    ):
        assert isinstance(v, ValidatedSignal) and isinstance(placed, OrderPlaced)
        assert isinstance(filled, OrderFilled)
        assert (v.side, v.quantity, v.causation_id, v.signal) == (side, qty, s.signal_id, s)
        assert placed.status == "PLACED" and (placed.side, placed.quantity) == (side, qty)
        assert placed.causation_id == v.event_id and placed.broker_order_id is None
        assert filled.status == "FILLED" and (filled.side, filled.quantity) == (side, qty)
        assert filled.fill_price == price
        assert filled.fees == _charges(side, qty * price) > 0
        assert filled.causation_id == placed.event_id
        assert v.order_id == placed.order_id == filled.order_id
    fills = [i for i in orders if isinstance(i, OrderFilled)]
    assert [f.fees for f in fills] == [4.21, 12.79]  # worked out by hand too
    [final] = [i for i in out if isinstance(i, PnlSnapshot)]
    assert final.final and [(p.quantity, p.average_price) for p in final.positions] == [
        (-100, 99.90)
    ]


def _identity_holds(s: PnlSnapshot) -> None:
    held = sum(p.quantity * p.last_price for p in s.positions)
    rhs = s.starting_cash + s.realized_pnl + s.unrealized_pnl - s.fees
    assert s.cash + held == pytest.approx(rhs, abs=1e-6)
    assert s.equity == pytest.approx(s.cash + held, abs=1e-6)


def test_account_snapshots_at_clocks_and_at_the_end() -> None:
    t1, t2, t3 = T0 + 60 * US, T0 + 120 * US, T0 + 150 * US
    buy, sell = _target(1, T0, 100, 100.0), _target(1, T0 + 90 * US, 40, 104.0)
    items = [
        buy,
        _exec(buy, 100.0),  # buys 100 at 100.10, fees 4.21
        MarkSet.of(t1, ((1, 103.0),)),
        Clock(t1, "snapshot"),
        sell,
        _exec(sell, 104.0),  # sells 60 at 103.85 (104 × 0.999 → 0.05 grid)
        MarkSet.of(t2, ((1, 102.0),)),
        Clock(t2, "snapshot"),
        Clock(t2 + 1, "health"),  # not a snapshot clock
        MarkSet.of(t3, ((1, 101.0),)),  # the last ticks' marks at the end
    ]
    out = _booked(items)
    snaps = [i for i in out if isinstance(i, PnlSnapshot)]
    assert [(s.final, to_us(s.timestamp)) for s in snaps] == [(False, t1), (False, t2), (True, t3)]
    assert [i for i in out if isinstance(i, Clock)] == [items[3], items[7], items[8]]
    buy_fee, sell_fee = _charges("BUY", 100 * 100.10), _charges("SELL", 60 * 103.85)
    assert (buy_fee, sell_fee) == (4.21, 3.99)
    realized = 60 * (103.85 - 100.10)
    expect = [
        # (cash, realized, unrealized, fees, qty, mark)
        (CASH - 100 * 100.10 - buy_fee, 0.0, 100 * (103.0 - 100.10), buy_fee, 100, 103.0),
        (
            CASH - 100 * 100.10 - buy_fee + 60 * 103.85 - sell_fee,
            realized, 40 * (102.0 - 100.10), buy_fee + sell_fee, 40, 102.0,
        ),
        (
            CASH - 100 * 100.10 - buy_fee + 60 * 103.85 - sell_fee,
            realized, 40 * (101.0 - 100.10), buy_fee + sell_fee, 40, 101.0,
        ),
    ]  # fmt: skip
    for s, (cash, real, unreal, fee, qty, mark) in zip(snaps, expect, strict=True):
        assert s.starting_cash == CASH
        assert s.cash == pytest.approx(cash) and s.realized_pnl == pytest.approx(real)
        assert s.unrealized_pnl == pytest.approx(unreal) and s.fees == pytest.approx(fee)
        [p] = s.positions
        assert (p.instrument_token, p.quantity, p.last_price) == (1, qty, mark)
        assert p.average_price == pytest.approx(100.10)
        assert s.equity == pytest.approx(cash + qty * mark)
        _identity_holds(s)
    summaries = [i for i in out if isinstance(i, BrokerSummary)]
    assert len(summaries) == 1 and summaries[0].total.fills == 2


def test_health_windows_judge_each_stage() -> None:
    cfg = HealthConfig(window_s=60, startup_windows=1)
    events = [
        ("paper:market_data", StageEvent(T0 + i * 30 * US, 0 if i in (4, 5) else 5))
        for i in range(8)
    ]
    flow = Dataflow("health_test")
    session = MarketSession(SessionConfig())

    def judge(key: str, resume: Any) -> HealthJudge:
        broker, stage = key.split(":")
        return HealthJudge(Broker(broker), Stage(stage), cfg, True, session, resume)

    out = _run(
        flow, stage_health("health", op.input("in", flow, TestingSource(events)), cfg, judge)
    )
    got = [(h.status, h.reason, h.count) for _, h in out]
    assert got == [
        ("startup", "STARTUP_GRACE", 10),
        ("healthy", "OK", 10),
        ("warning", "NO_TICKS", 0),  # heartbeats only: the feed went silent for a window
        ("healthy", "OK", 10),
    ]


def _full(item: Any) -> Any:
    """An item, a mark run with every field (MarkSet equality compares times and entries)."""
    if not isinstance(item, MarkSet):
        return item
    arrays = (item.tokens, item.last, item.high, item.low, *item.entries.by_time())
    slots = None if item.slots is None else item.slots.tolist()
    return (item.first, item.until, [a.tolist() for a in arrays], slots)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_releasing_a_long_stretch_in_blocks_gives_what_one_release_gives(
    data: st.DataObject,
) -> None:
    """Marks, signals and tick counts of three instruments, pushed in batches (marks on
    health boundaries and just after them included), with a snapshot grid of one or five health
    windows: released in blocks of one health window, the items,
    clocks and mark runs (every field) are those released at once."""
    from operators import ordering

    health = data.draw(st.sampled_from([60 * US, US]))  # health.window_s: whole seconds
    grids = {"health": health, "snapshot": data.draw(st.sampled_from([5 * health, health]))}
    moments = st.integers(0, 40).map(lambda k: T0 + k * health // 2) | st.integers(0, 1200).map(
        lambda s: T0 + s * health // 60 + 1
    )
    pushes: list[StrategyOutput] = []
    last = dict.fromkeys((1, 2, 3), T0)
    for _ in range(data.draw(st.integers(1, 8))):
        tok = data.draw(st.sampled_from([1, 2, 3]))
        times = sorted(data.draw(st.lists(moments, max_size=12)))
        times = [t for t in times if t > last[tok]]
        sig = data.draw(st.lists(st.sampled_from(times), max_size=3, unique=True)) if times else []
        last[tok] = max([last[tok], *times])
        marks = marks_at(*((t, 100.0 + t % 7) for t in times))
        signals = tuple(_target(tok, t) for t in sorted(sig))
        windows = sorted({t // health for t in times})
        ends = [max(t for t in times if t // health == w) for w in windows]
        counts = WindowCounts(
            *(np.array(v, dtype=np.int64) for v in (windows, [1] * len(windows), ends))
        )
        pushes.append(StrategyOutput(tok, signals, marks, counts, last[tok]))

    def released(marks: int, windows: int) -> list[Any]:
        old = ordering.BLOCK_MARKS, ordering.BLOCK_WINDOWS
        ordering.BLOCK_MARKS, ordering.BLOCK_WINDOWS = marks, windows
        try:
            order, out = ordering.EventTimeOrder([1, 2, 3], grids), []
            for p in pushes:
                out += [i for batch in order.on_item(p) for i in batch]
            return [_full(i) for i in out + [i for batch in order.on_eof() for i in batch]]
        finally:
            ordering.BLOCK_MARKS, ordering.BLOCK_WINDOWS = old

    whole = released(10**9, 1)
    assert released(1, 1) == whole and any(isinstance(i, tuple) for i in whole) == any(
        len(p.marks) for p in pushes
    )


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_windows_tick_count_is_released_once_every_instrument_passed_its_end(
    data: st.DataObject,
) -> None:
    """Tick counts of three instruments pushed in batches: each health window's total and
    last tick time come out once, as soon as the least watermark reaches the window's end
    (the rest at the end of the data), as an independent tally gives them; a stop and
    resume from the saved state between two pushes (once or more) changes nothing, and
    pending counts are summed into one chunk when they pile up (a lagging instrument)."""
    import copy

    from operators import ordering
    from operators.ordering import EventTimeOrder
    from schemas.ticks import TickCount

    health = 10 * US
    grids = {"health": health, "snapshot": 6 * health}
    order = EventTimeOrder([1, 2, 3], grids)
    chunks = data.draw(st.sampled_from([ordering.COUNT_CHUNKS, 1, 2]))
    wm = dict.fromkeys((1, 2, 3), T0)
    tally: dict[int, list[int]] = {}
    got: list[TickCount] = []
    want: list[TickCount] = []
    for _ in range(data.draw(st.integers(1, 16))):
        tok = data.draw(st.sampled_from([1, 2, 3]))
        steps = data.draw(  # half seconds: up to three windows between two ticks
            st.lists(st.integers(1, 60).map(lambda k: k * US // 2), min_size=1, max_size=6)
        )
        times = np.cumsum([wm[tok], *steps])[1:]
        wm[tok] = int(times[-1])
        wins, idx, n = np.unique(times // health, return_index=True, return_counts=True)
        lasts = times[idx + n - 1]
        for w, k, t in zip(wins.tolist(), n.tolist(), lasts.tolist(), strict=True):
            acc = tally.setdefault(w, [0, t])
            acc[0], acc[1] = acc[0] + k, max(acc[1], t)
        counts = WindowCounts(wins, n.astype(np.int64), lasts)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ordering, "COUNT_CHUNKS", chunks)
            got += [i for b in order.on_item(StrategyOutput(tok, (), Marks.none(), counts, wm[tok]))
                    for i in b if isinstance(i, TickCount)]  # fmt: skip
        if data.draw(st.booleans()):  # stopped here: resumed from what was saved
            got += [i for b in order.on_stop() for i in b if isinstance(i, TickCount)]
            order = EventTimeOrder([1, 2, 3], grids, copy.deepcopy(order.state))
        done = sorted(w for w in tally if (w + 1) * health <= min(wm.values()))
        want += [TickCount(tally[w][1], 0, tally.pop(w)[0]) for w in done]
        assert got == want
    got += [i for b in order.on_eof() for i in b if isinstance(i, TickCount)]
    assert got == want + [TickCount(tally[w][1], 0, tally[w][0]) for w in sorted(tally)]


def test_a_mark_run_is_released_whatever_the_health_grid() -> None:
    """A run packs its item and health window into one int64: windows are counted from the
    release's first, so a fine grid (a window of microseconds, as a test may use) loses no
    mark."""
    from operators.ordering import EventTimeOrder

    at = T0 + 3
    for health in (7, 60 * US):
        order = EventTimeOrder([1, 2], {"health": health, "snapshot": 5 * health})
        counts = WindowCounts(*(np.array([v], dtype=np.int64) for v in (at // health, 1, at)))
        order.push(StrategyOutput(1, (_target(1, at),), marks_at((at, 101.0)), counts, at))
        got = [i for batch in order.on_eof() for i in batch]
        runs = [i for i in got if isinstance(i, MarkSet)]
        assert len(runs) == 1 and runs[0].last.tolist() == [101.0], health
        assert got.index(runs[0]) < next(
            i for i, x in enumerate(got) if isinstance(x, TradingSignal)
        )


def _plain_clocks(keys: list[Any], grids: dict[str, int], ahead: dict[str, int]) -> list[Any]:
    """The clocks each key crosses, grid by grid: once the key passes a grid's next
    boundary, that boundary's Clock, and the next boundary moves past the key."""
    from operators.ordering import sort_key

    out = []
    for key in keys:
        got = []
        for grid, length in grids.items():
            if grid not in ahead:
                ahead[grid] = (key[0] // length + 1) * length
            elif key > (ahead[grid], 1, 0, grid):
                got.append(Clock(ahead[grid], grid))
                ahead[grid] = max(ahead[grid], key[0] // length * length) + length
        out.append(sorted(got, key=sort_key))
    return out


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_clocks_before_each_item_are_every_grids_first_boundary_crossed(
    data: st.DataObject,
) -> None:
    from operators.ordering import EventTimeOrder, OrderState

    health = data.draw(st.sampled_from([60, 7, 1])) * US
    grids = {"health": health, "snapshot": health * data.draw(st.sampled_from([1, 3, 5]))}
    at = st.integers(0, 60).map(lambda k: T0 + k * health // 2) | st.integers(0, 40 * health).map(
        lambda d: T0 + d
    )
    times = sorted(data.draw(st.lists(at, min_size=1, max_size=30)))
    kinds = st.sampled_from([0, 1, 2, 3])
    keys = [(t, data.draw(kinds), 0, data.draw(st.sampled_from(["", "health"]))) for t in times]
    resumed = data.draw(st.sampled_from([{}, {"health": T0 + health}, {"snapshot": T0}]))
    order = EventTimeOrder([1], grids, OrderState({1: 0}, next_boundary=dict(resumed)))
    got = [order._clocks_before(k) for k in keys]
    assert got == _plain_clocks(keys, grids, dict(resumed))
