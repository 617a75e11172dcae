"""Each per-broker operator in a small flow, with TestingSource and TestingSink."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from operators.execution import PaperExecution, execute_orders
from operators.portfolio import Portfolio, portfolio_fold

from operators.health import HealthJudge, StageEvent, stage_health
from operators.ordering import order_by_event_time
from operators.session import MarketSession
from schemas.config import CostModel, HealthConfig, SessionConfig
from schemas.enums import Broker, Stage
from schemas.events import OrderFilled, OrderPlaced, PnlSnapshot, TradingSignal, ValidatedSignal
from schemas.ticks import US, Clock, Mark, MarkSet, StrategyOutput, WindowCounts, from_us, to_us

T0 = to_us(datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc))  # 10:30 IST
EMPTY = WindowCounts(*(np.zeros(0, dtype=np.int64),) * 3)


def _signal(token: int, at: int, side: str = "BUY") -> TradingSignal:
    return TradingSignal(
        signal_id=f"s{token}-{at}", correlation_id=f"c{token}-{at}", strategy_id="t",
        broker="paper", instrument_token=token, signal_type=side, quantity=5, price=100.0,
        timestamp=from_us(at), reason="",
    )  # fmt: skip


def _run(flow: Dataflow, stream: Any) -> list[Any]:
    out: list[Any] = []
    op.output("out", stream, TestingSink(out))
    run_main(flow)
    return out


def test_ordering_releases_in_event_time_once_every_instrument_passed() -> None:
    a1, b1, a2 = _signal(1, T0 + 5 * US), _signal(2, T0 + 1 * US), _signal(1, T0 + 70 * US)
    outs = [
        ("paper", StrategyOutput(1, (a1,), (), EMPTY, T0 + 10 * US)),  # 2 has not reported yet
        ("paper", StrategyOutput(2, (b1,), (Mark(T0 + 60 * US, 2, 99.0),), EMPTY, T0 + 80 * US)),
        ("paper", StrategyOutput(1, (a2,), (), EMPTY, T0 + 90 * US)),
    ]
    flow = Dataflow("order_test")
    grids = {"health": 60 * US, "snapshot": 60 * US}
    released = _run(
        flow, order_by_event_time("order", op.input("in", flow, TestingSource(outs)), [1, 2], grids)
    )
    items = [i for _, chunk in released for i in chunk]
    assert items[:2] == [b1, a1]
    marks = [i for i in items if isinstance(i, MarkSet)]
    assert marks == [MarkSet(T0 + 60 * US, ((2, 99.0),))]
    clocks = [i for i in items if isinstance(i, Clock)]
    assert {c.ts for c in clocks} == {T0 + 60 * US} and items[-1] == a2
    assert items.index(marks[0]) < items.index(clocks[0]) < items.index(a2)


def test_max_delay_keeps_a_quiet_instrument_from_holding_the_others_back() -> None:
    from operators.ordering import EventTimeOrder

    grids = {"health": 60 * US, "snapshot": 300 * US}
    early, late = _signal(1, T0 + 1 * US), _signal(1, T0 + 30 * US)
    exact = EventTimeOrder([1, 2], grids)  # instrument 2 never ticks
    live = EventTimeOrder([1, 2], grids, max_delay_us=10 * US)
    for order in (exact, live):
        order.push(StrategyOutput(1, (early, late), (), EMPTY, T0 + 35 * US))
    assert exact.release() == []  # exact order waits for instrument 2 (until the end)
    assert [i for i in live.release() if isinstance(i, TradingSignal)] == [early]
    assert [i for i in exact.release(final=True) if isinstance(i, TradingSignal)] == [early, late]


def test_execution_places_then_fills_with_slippage_and_fees() -> None:
    s = _signal(1, T0)
    v = ValidatedSignal(event_id="v", correlation_id=s.correlation_id, causation_id=s.signal_id,
                        broker="paper", timestamp=s.timestamp, signal=s)  # fmt: skip
    flow = Dataflow("exec_test")
    make = lambda key, resume: PaperExecution(Broker(key), 10.0, CostModel(), {1: 0.05})  # noqa: E731
    out = _run(
        flow, execute_orders("exec", op.input("in", flow, TestingSource([("paper", [v])])), make)
    )
    placed, filled = out[0][1]
    assert isinstance(placed, OrderPlaced) and placed.status == "PLACED"
    assert isinstance(filled, OrderFilled) and filled.fill_price == 100.10 and filled.fees > 0
    assert filled.causation_id == placed.event_id and filled.order_id == placed.order_id


def test_portfolio_snapshots_at_clocks_and_at_the_end() -> None:
    fill = OrderFilled(
        event_id="f", order_id="o", correlation_id="c", causation_id="p", broker="paper",
        broker_order_id=None, status="FILLED", signal_id="s", strategy_id="t", instrument_token=1,
        signal_type="BUY",
        quantity=10, fill_price=100.0, fees=1.0, timestamp=from_us(T0),
    )  # fmt: skip
    items = [fill, MarkSet(T0 + 60 * US, ((1, 103.0),)), Clock(T0 + 60 * US, "snapshot")]
    flow = Dataflow("pf_test")
    make = lambda key, resume: Portfolio(Broker(key), 10_000.0, resume)  # noqa: E731
    out = _run(
        flow, portfolio_fold("pf", op.input("in", flow, TestingSource([("paper", items)])), make)
    )
    snaps = [i for _, chunk in out for i in chunk if isinstance(i, PnlSnapshot)]
    assert [s.final for s in snaps] == [False, True]
    assert snaps[0].unrealized_pnl == 30.0 and snaps[0].cash == 10_000.0 - 1000.0 - 1.0
    assert snaps[0].equity == 10_000.0 + 30.0 - 1.0


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
