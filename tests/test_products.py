"""Products: MIS takes no new entries from the 15:20 IST cut-off and is squared off there
(flagged, charged ₹50 + GST per order); CNC never sells more than it holds and is carried."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from operators.account.account import Account, AccountSetup
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, SessionConfig
from schemas.enums import Broker, Product
from schemas.events import OrderFilled, RejectedSignal, TradingSignal
from schemas.ticks import US, ExecTick, MarkSet, to_us
from tests.support import make_config, run_graph, small_ticks

CUT = datetime(2026, 11, 20, 9, 50, tzinfo=timezone.utc)  # Fri 15:20 IST
_n = iter(range(10**6))


def _account(product: Product = Product.MIS) -> Account:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), {"t": product})
    cfg = BrokerConfig(starting_cash=1e6, slippage_bps=0)
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
    assert _rejected(_trade(a, -10, monday)) == ["CNC_SHORT_NOT_ALLOWED"]  # 10 → -10
    [sell] = [e for e in _trade(a, 0, monday) if isinstance(e, OrderFilled)]
    assert sell.product == "CNC" and sell.dp == 13.0 and a.state.book.position(1) == 0


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
