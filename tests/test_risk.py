from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from operators.risk import RiskFilter, risk_filter

from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, RiskConfig, SessionConfig
from schemas.enums import Broker
from schemas.events import RejectedSignal, TradingSignal, ValidatedSignal
from schemas.ticks import MarkSet, to_us

OPEN = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)  # Fri 10:30 IST
_n = iter(range(10**6))


def sig(
    side: str = "BUY", qty: int = 10, price: float = 100.0, at: datetime = OPEN, tok: int = 1
) -> TradingSignal:
    n = next(_n)
    return TradingSignal(
        signal_id=f"s{n}", correlation_id=f"c{n}", strategy_id="t", broker="paper",
        instrument_token=tok, signal_type=side, quantity=qty, price=price, timestamp=at, reason="",
    )  # fmt: skip


def make(cash: float = 1e6, **risk: Any) -> RiskFilter:
    cfg = BrokerConfig(starting_cash=cash, risk=RiskConfig(**risk))
    return RiskFilter(Broker.PAPER, cfg, CostModel(), MarketSession(SessionConfig()))


def reasons(r: RiskFilter, s: TradingSignal) -> list[str]:
    out = r.decide(s)
    return list(out.reasons) if isinstance(out, RejectedSignal) else []


def test_each_check_has_its_reason_code() -> None:
    assert reasons(make(), sig(at=OPEN.replace(hour=11))) == ["MARKET_CLOSED"]  # 16:30 IST
    assert reasons(make(), sig(at=OPEN + timedelta(days=1))) == ["MARKET_CLOSED"]  # Saturday
    assert reasons(make(allowed_instruments=[2]), sig()) == ["INSTRUMENT_NOT_ALLOWED"]
    assert reasons(make(max_order_value=999), sig()) == ["MAX_ORDER_VALUE_EXCEEDED"]
    assert reasons(make(max_position_qty=9), sig()) == ["MAX_POSITION_EXCEEDED"]
    assert reasons(make(cash=500), sig()) == ["INSUFFICIENT_FUNDS"]
    # several failures are all reported
    assert reasons(make(max_order_value=1, max_position_qty=1), sig()) == [
        "MAX_ORDER_VALUE_EXCEEDED",
        "MAX_POSITION_EXCEEDED",
    ]


def test_exposure_counts_approved_orders_at_once() -> None:
    r = make(max_position_qty=25)
    assert reasons(r, sig(qty=10)) == [] and reasons(r, sig(qty=10)) == []
    assert reasons(r, sig(qty=10)) == ["MAX_POSITION_EXCEEDED"]  # 30 > 25, nothing filled yet
    assert reasons(r, sig("SELL", qty=20)) == []  # reducing is fine


def test_order_rate_limit_per_second() -> None:
    r = make(max_orders_per_second=3)
    t = OPEN
    got = [reasons(r, sig(qty=1, at=t + timedelta(milliseconds=100 * i))) for i in range(5)]
    assert got == [[], [], [], ["MAX_ORDER_RATE_EXCEEDED"], ["MAX_ORDER_RATE_EXCEEDED"]]
    assert reasons(r, sig(qty=1, at=t + timedelta(seconds=1, milliseconds=50))) == []


def test_daily_loss_allows_only_reducing_orders_until_next_day() -> None:
    r = make(max_daily_loss=500)
    assert reasons(r, sig(qty=100, price=100.0)) == []
    r.on_item(MarkSet(to_us(OPEN) + 1, ((1, 90.0),)))  # -1000 unrealized
    assert reasons(r, sig(qty=1, price=90.0)) == ["MAX_DAILY_LOSS_BREACHED"]
    assert reasons(r, sig("SELL", qty=50, price=90.0)) == []  # reduces the long
    monday = OPEN + timedelta(days=3)
    assert reasons(r, sig(qty=1, price=90.0, at=monday)) == []


def test_risk_operator_in_a_flow_keeps_order_and_passes_marks() -> None:
    s1, s2 = sig(qty=10), sig(qty=95)
    mark = MarkSet(to_us(OPEN), ((1, 101.0),))
    flow = Dataflow("risk_test")
    batch: list[Any] = [s1, mark, s2]
    inp: Any = op.input("in", flow, TestingSource([("paper", batch)]))
    out: list[Any] = []
    risked = risk_filter("risk", inp, lambda key, resume: make(max_position_qty=100))
    op.output("out", risked, TestingSink(out))
    run_main(flow)
    assert len(out) == 1 and out[0][0] == "paper"
    items = out[0][1]
    assert isinstance(items[0], ValidatedSignal) and items[1] == mark
    assert isinstance(items[2], RejectedSignal) and items[2].reasons == ["MAX_POSITION_EXCEEDED"]
