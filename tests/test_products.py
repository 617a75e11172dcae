"""Products: MIS takes no new entries from the 15:20 IST cut-off and is squared off there
(flagged, charged ₹50 + GST per order); CNC never sells more than it holds and is carried."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from operators.account.account import Account, AccountSetup
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, RiskConfig, SessionConfig
from schemas.enums import Broker, Product
from schemas.events import OrderFilled, RejectedSignal, TradingSignal
from schemas.ticks import US, ExecTick, MarkSet, to_us
from tests.support import make_config, run_graph, small_ticks

CUT = datetime(2026, 11, 20, 9, 50, tzinfo=timezone.utc)  # Fri 15:20 IST
_n = iter(range(10**6))


def _account(product: Product = Product.MIS, cash: float = 1e6) -> Account:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), {"t": product})
    risk = RiskConfig(max_order_value=cash, max_position_value=cash) if cash > 1e6 else None
    cfg = BrokerConfig(starting_cash=cash, slippage_bps=0, risk=risk or RiskConfig())
    return Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)


def _trade(a: Account, qty: int, at: datetime, price: float = 100.0) -> list[Any]:
    n = next(_n)
    s = TradingSignal(
        signal_id=f"s{n}", correlation_id=f"c{n}", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=qty, price=price, timestamp=at, reason="",
    )  # fmt: skip
    return a.on_item(s) + a.on_item(ExecTick(to_us(at) + 1, 1, price, (s.signal_id,)))


def _rejected(out: list[Any]) -> list[str]:
    return [str(r) for e in out if isinstance(e, RejectedSignal) for r in e.reasons]


def test_mis_takes_no_new_entry_after_the_cutoff_but_may_reduce() -> None:
    a = _account()
    _trade(a, 10, CUT - timedelta(minutes=5))
    assert _rejected(_trade(a, 20, CUT - timedelta(seconds=1) + timedelta(seconds=2))) == [
        "MIS_CUTOFF"
    ]


def test_open_mis_positions_are_squared_off_at_the_cutoff_with_the_broker_charge() -> None:
    a = _account()
    _trade(a, 10, CUT - timedelta(minutes=5))
    t = to_us(CUT)
    placed = a.on_item(MarkSet.of(t - US, ((1, 101.0),))) + a.on_item(
        MarkSet.of(t + US, ((1, 102.0),))
    )
    [fill] = [e for e in placed if isinstance(e, OrderFilled)]
    assert (fill.side, fill.quantity, fill.fill_price) == ("SELL", 10, 102.0)
    assert fill.auto_square_off and fill.square_off == 50.0 and to_us(fill.timestamp) == t + US
    turnover = 10 * 102.0
    brokerage, exch, sebi = min(20.0, 0.0003 * turnover), 0.0000297 * turnover, turnover / 1e6
    want = brokerage + 0.00025 * turnover + exch + sebi + 50.0
    assert fill.fees == round(want + 0.18 * (brokerage + exch + sebi + 50.0), 2)
    assert a.state.book.position(1) == 0
    # an exit before the cut-off avoids the charge: nothing left to square off
    b = _account()
    _trade(b, 10, CUT - timedelta(minutes=5))
    [out] = [e for e in _trade(b, 0, CUT - timedelta(minutes=1)) if isinstance(e, OrderFilled)]
    assert not out.auto_square_off and out.square_off == 0.0
    later = b.on_item(MarkSet.of(to_us(CUT) + US, ((1, 102.0),)))
    assert not [e for e in later if isinstance(e, OrderFilled)]


def test_cnc_never_sells_more_than_it_holds_and_is_carried_overnight() -> None:
    a = _account(Product.CNC)
    assert _rejected(_trade(a, -5, CUT - timedelta(hours=2))) == ["CNC_SHORT_NOT_ALLOWED"]
    [buy] = [e for e in _trade(a, 10, CUT - timedelta(hours=2)) if isinstance(e, OrderFilled)]
    assert buy.product == "CNC" and buy.stt > 0 and buy.brokerage == 0.0
    out = a.on_item(MarkSet.of(to_us(CUT) + US, ((1, 101.0),)))
    assert not [e for e in out if isinstance(e, OrderFilled)] and a.state.book.position(1) == 10
    monday = CUT + timedelta(days=3) - timedelta(hours=4)
    flip = _trade(a, -10, monday)  # 10 → -10: the 10 held are sold, the short is not taken
    [sell] = [e for e in flip if isinstance(e, OrderFilled)]
    assert not _rejected(flip) and (sell.side, sell.quantity) == ("SELL", 10)
    assert sell.product == "CNC" and sell.dp == 13.0 and a.state.book.position(1) == 0
    again = _trade(a, -10, monday + timedelta(minutes=5))  # flat: nothing to sell
    assert _rejected(again) == ["CNC_SHORT_NOT_ALLOWED"] and a.state.book.position(1) == 0


def test_no_mis_position_survives_the_cutoff_in_a_replay(tmp_path: Path) -> None:
    ticks = small_ticks(tmp_path, days=2)
    rows, _ = run_graph(make_config(ticks), tmp_path / "out")
    fills = sorted(rows["fills"], key=lambda f: (f.timestamp, f.event_id))
    held: dict[tuple[str, int], int] = {}
    squared = [f for f in fills if f.auto_square_off]
    assert squared
    for f in fills:
        key = (f.strategy_id, f.instrument_token)
        before = held.get(key, 0)
        held[key] = before + (f.quantity if f.side == "BUY" else -f.quantity)
        local = f.timestamp.astimezone(timezone(timedelta(hours=5, minutes=30)))
        if (local.hour, local.minute) >= (15, 20):  # after the cut-off only closes
            assert abs(held[key]) < abs(before)
    assert all(q == 0 for q in held.values())
    rejected = {str(r) for e in rows["rejections"] for r in e.reasons}
    assert "MIS_CUTOFF" in rejected


def _intraday(side: str, qty: int, price: float) -> float:
    t = qty * price
    b, e, s = min(20.0, 0.0003 * t), 0.0000297 * t, t / 1e6
    tax = 0.00025 * t if side == "SELL" else 0.00003 * t
    return b + e + s + tax + 0.18 * (b + e + s)


def _delivery(side: str, qty: int, price: float, dp: bool = False) -> float:
    t = qty * price
    e, s, d = 0.0000297 * t, t / 1e6, 13.0 if dp else 0.0
    tax = 0.001 * t + (0.00015 * t if side == "BUY" else 0.0)
    return e + s + tax + d + 0.18 * (e + s + d)


def test_a_cnc_round_trip_within_the_day_is_charged_as_intraday() -> None:
    a = _account(Product.CNC)
    t0 = CUT - timedelta(hours=3)
    fills = []
    for qty, dt, price in ((10, 0, 2500.0), (6, 30, 2510.0)):  # buy 10, sell 4 the same day
        fills += [
            e
            for e in _trade(a, qty, t0 + timedelta(minutes=dt), price)
            if isinstance(e, OrderFilled)
        ]
    monday = t0 + timedelta(days=3)
    fills += [e for e in _trade(a, 0, monday, 2520.0) if isinstance(e, OrderFilled)]  # sell 6
    buy, same_day, carried = fills
    assert (buy.quantity, same_day.quantity, carried.quantity) == (10, 4, 6)
    assert buy.fees == round(_delivery("BUY", 10, 2500.0), 2)  # not known yet: delivery
    # the 4 sold today: intraday on both legs (the buy leg re-priced on this fill, no DP)
    want = _intraday("SELL", 4, 2510.0) + _intraday("BUY", 4, 2500.0) - _delivery("BUY", 4, 2500.0)
    assert same_day.fees == round(want, 2) and same_day.dp == 0.0
    assert carried.fees == round(_delivery("SELL", 6, 2520.0, dp=True), 2)
    total = sum(f.fees for f in fills)
    by_hand = _delivery("BUY", 6, 2500.0) + _intraday("BUY", 4, 2500.0)
    by_hand += _intraday("SELL", 4, 2510.0) + _delivery("SELL", 6, 2520.0, dp=True)
    assert total == pytest.approx(by_hand, abs=0.03)  # each fill rounded to the paisa


def test_pending_mis_orders_are_cancelled_before_the_square_off_never_over_closing() -> None:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {"t": "LIMIT"}, (1, 2), {"t": Product.MIS})
    a = Account(Broker.PAPER, BrokerConfig(starting_cash=1e6, slippage_bps=0), setup,
                lambda _s: venue, None)  # fmt: skip
    _trade(a, 10, CUT - timedelta(minutes=5))  # long 10 (the LIMIT fills at its tick)
    at = CUT - timedelta(minutes=1)
    s = TradingSignal(
        signal_id="more", correlation_id="c-more", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=20, price=97.0, timestamp=at, reason="",
    )  # fmt: skip
    resting = a.on_item(s) + a.on_item(ExecTick(to_us(at) + 1, 1, 98.0, ("more",)))
    assert not [e for e in resting if isinstance(e, OrderFilled)]  # BUY 10 more at 97: rests
    assert a.state.book.pending(1) == 10
    t = to_us(CUT)
    out = a.on_item(MarkSet.of(t - US, ((1, 100.0),))) + a.on_item(MarkSet.of(t + US, ((1, 99.0),)))
    from schemas.events import OrderFailed

    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 10)
    ]
    assert [(e.side, e.quantity) for e in out if isinstance(e, OrderFilled)] == [("SELL", 10)]
    assert a.state.book.position(1) == 0 and not a.state.book.open  # flat, no short


def test_same_day_cnc_orders_cost_what_the_same_orders_cost_intraday() -> None:
    """Whatever the split into orders: the day's matched CNC orders cost exactly their
    intraday charges (brokerage capped per order, no DP when nothing is delivered)."""
    from operators.account.costs import CncDays
    from operators.charges import charges

    costs = CostModel()
    days = [
        [("BUY", 1000, 1000.0), ("SELL", 1000, 1000.0)],
        [("BUY", 1000, 1000.0), ("SELL", 500, 1000.0), ("SELL", 500, 1010.0)],
        [("BUY", 500, 990.0), ("BUY", 500, 1000.0), ("SELL", 1000, 1005.0)],
        [("SELL", 1000, 1000.0), ("BUY", 1000, 995.0)],  # holdings sold and bought back
    ]
    for orders in days:
        d = CncDays()
        cnc = sum(d.charge(costs, (1, 7), s, q, p).total for s, q, p in orders)
        intraday = sum(charges(costs, s, q, p, "MIS").total for s, q, p in orders)
        assert cnc == pytest.approx(intraday, abs=0.011 * len(orders))  # paise per fill


def _in_parts(a: Account, qty: int, at: datetime, price: float, parts: int) -> list[OrderFilled]:
    """Target ``qty`` at ``at``: the order fills in ``parts`` equal fills, one per tick (each
    tick's volume lets it take only that much)."""
    n = next(_n)
    s = TradingSignal(
        signal_id=f"p{n}", correlation_id=f"cp{n}", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=qty, price=price, timestamp=at, reason="",
    )  # fmt: skip
    out = a.on_item(s)
    size = abs(qty - a.state.book.position(1)) // parts
    for i in range(parts):
        tick = ExecTick(to_us(at) + 1 + i, 1, price, (s.signal_id,), volume=size, seq=next(_n))
        out += a.on_item(tick)
    fills = [e for e in out if isinstance(e, OrderFilled)]
    assert [f.quantity for f in fills] == [size] * parts
    return fills


def test_same_day_cnc_brokerage_is_capped_per_order_however_many_fills() -> None:
    """Buy 1,000 @ 1,000 and sell 1,000 @ 1,010 the same day, each order in 4 fills. Zerodha
    (CNC bought and sold the same day is intraday): brokerage 0.03% or ₹20, whichever is
    lower, per executed order; STT 0.025% on the sell; NSE 0.00297%; SEBI ₹10/crore; stamp
    0.003% on the buy; GST 18% on brokerage + NSE + SEBI; nothing delivered, no DP."""
    buy, sell = 1000 * 1000.0, 1000 * 1010.0
    brokerage = min(0.0003 * buy, 20.0) + min(0.0003 * sell, 20.0)  # ₹40: one cap per order
    nse, sebi = 0.0000297 * (buy + sell), 10.0 * (buy + sell) / 1e7
    by_hand = brokerage + 0.00025 * sell + nse + sebi + 0.00003 * buy
    by_hand += 0.18 * (brokerage + nse + sebi)  # 402.51
    t0 = CUT - timedelta(hours=3)
    totals = {}
    for product in (Product.CNC, Product.MIS):
        a = _account(product, cash=2e6)
        fills = _in_parts(a, 1000, t0, 1000.0, 4)
        fills += _in_parts(a, 0, t0 + timedelta(hours=1), 1010.0, 4)
        assert all(f.product == product for f in fills)
        fees = sum(f.fees for f in fills)
        assert sum(f.brokerage for f in fills) == pytest.approx(40.0, abs=1e-3)  # not 160
        assert sum(f.dp for f in fills) == 0.0
        for f in fills:  # each fill's fee is its columns to the paisa (MIS: the order's
            cols = f.brokerage + f.stt + f.exchange + f.sebi + f.stamp + f.gst + f.dp
            assert f.fees == pytest.approx(cols, abs=0.0101)  # so far less its earlier fills)
        book = a.state.book.total.book  # flat again: the cash is the round trip less its fees
        assert a.state.book.position(1) == 0 and book.fees == pytest.approx(fees, abs=1e-9)
        assert book.cash == pytest.approx(2e6 - buy + sell - fees, abs=1e-6)
        assert book.cash == pytest.approx(book.starting_cash + book.realized - book.fees, abs=1e-6)
        totals[product] = fees
    assert totals[Product.CNC] == pytest.approx(by_hand, abs=0.04)  # 8 fills, each to the paisa
    assert totals[Product.CNC] == pytest.approx(totals[Product.MIS], abs=0.04)


def test_a_cnc_sell_partly_matching_the_days_buys_pays_intraday_brokerage_on_that_part() -> None:
    """600 held from Friday; Monday: buy 400 @ 250 (4 fills), then sell all 1,000 @ 252 (4
    fills). 400 of the sell match Monday's buys: intraday for both orders, brokerage 0.03% or
    ₹20 per order on the matched part; the 600 sold from the holding are delivery: no
    brokerage, STT 0.1%, and the DP charge ₹13 + GST. Rates as in the test above; stamp
    0.015% on a delivery buy, 0.003% intraday."""
    a = _account(Product.CNC)
    friday = CUT - timedelta(hours=3)
    [held] = [e for e in _trade(a, 600, friday, 250.0) if isinstance(e, OrderFilled)]
    monday = friday + timedelta(days=3)
    buys = _in_parts(a, 1000, monday, 250.0, 4)
    sells = _in_parts(a, 0, monday + timedelta(hours=1), 252.0, 4)
    assert a.state.book.position(1) == 0
    bought, matched, delivered = 400 * 250.0, 400 * 252.0, 600 * 252.0
    b_buy, b_sell = min(0.0003 * bought, 20.0), min(0.0003 * matched, 20.0)  # 20 (30), 20 (30.24)
    assert sum(f.brokerage for f in buys + sells) == pytest.approx(b_buy + b_sell, abs=1e-3)
    nse_sebi = (0.0000297 + 10.0 / 1e7) * (bought + matched)
    intraday = b_buy + b_sell + 0.00003 * bought + 0.00025 * matched + nse_sebi
    intraday += 0.18 * (b_buy + b_sell + nse_sebi)
    nse_sebi = (0.0000297 + 10.0 / 1e7) * delivered
    delivery = 0.001 * delivered + nse_sebi + 13.0 + 0.18 * (nse_sebi + 13.0)
    monday_fees = sum(f.fees for f in buys + sells)
    assert monday_fees == pytest.approx(intraday + delivery, abs=0.04)  # 8 fills, to the paisa
    assert sum(f.dp for f in sells) == 13.0
    assert held.fees == round(_delivery("BUY", 600, 250.0), 2)  # Friday's: delivery, untouched
    book = a.state.book.total.book
    assert book.fees == pytest.approx(held.fees + monday_fees, abs=1e-9)
    assert book.cash == pytest.approx(1e6 - 1000 * 250.0 + 1000 * 252.0 - book.fees, abs=1e-6)
