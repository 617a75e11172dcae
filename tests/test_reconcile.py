"""Reconciliation with Kite, through the real kiteconnect client against the simulator: the
zerodha account agrees with Kite's positions while its orders are all there is; a position
someone else opened in an instrument we trade halts it (RECONCILE_MISMATCH, the difference
named) once it persists over two checks; one in an instrument we do not trade is reported."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import redis
import requests

from connectors.kite.client import OrderFeed
from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders
from operators.account.account import Account, AccountSetup
from operators.account.reconcile import ReconcileState, judge
from operators.account.zerodha import ZerodhaVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, Instrument, KiteConfig, SessionConfig
from schemas.enums import Broker, TradingState
from schemas.events import OrderPlaced, TradingSignal, TradingStateChanged
from schemas.kite import KitePositions
from schemas.redis_keys import LiveKeys
from tests.redis_server import shared_url
from tests.support import advance, client, place

INFY, RELIANCE, TCS = 408065, 738561, 2953217
BSE_INFY = 128028676  # Kite may list a holding under the scrip's BSE token
T = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def test_a_difference_halts_only_when_it_persists_and_names_the_instrument() -> None:
    st, held = ReconcileState(), {INFY: 5}.get
    ours = (INFY, RELIANCE)
    assert judge(st, KitePositions(((INFY, 5),)), lambda t: held(t, 0), ours) is None
    moved = KitePositions(((INFY, 5), (RELIANCE, -3), (TCS, 7)))
    assert judge(st, moved, lambda t: held(t, 0), ours) is None  # once: fills may be in flight
    why = judge(st, moved, lambda t: held(t, 0), ours)
    assert why is not None and f"instrument {RELIANCE}: Kite -3, account +0" in why
    assert str(TCS) not in why and st.reported == {TCS}  # not ours: reported, not judged
    assert judge(st, KitePositions(((INFY, 5),)), lambda t: held(t, 0), ours) is None


def test_a_gap_that_stays_halts_even_while_the_account_trades() -> None:
    st, ours = ReconcileState(), (INFY,)
    assert judge(st, KitePositions(((INFY, 15),)), lambda t: 5, ours) is None
    why = judge(st, KitePositions(((INFY, 20),)), lambda t: 10, ours)  # both moved by +5
    assert why is not None and "Kite +20, account +10" in why


def _feed_all(acct: Account, feed: OrderFeed) -> list[object]:
    feed.poll_once()
    feed.positions_once()
    items, _ = feed.drain("kite", 0)
    return [e for item in items for e in acct.on_item(item)]  # type: ignore[arg-type]


def test_the_account_reconciles_with_kite_and_halts_on_a_foreign_position(sim) -> None:
    api, root = sim
    r = redis.Redis.from_url(shared_url())
    cfg = KiteConfig(api_root=root, timeout_s=2, attempts=2)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    placer = KiteOrders(client(root), IntentStore(r, LiveKeys(f"rc-{uuid.uuid4().hex[:6]}:"),
                                                  60), cfg, inst)  # fmt: skip
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {}, (INFY, RELIANCE))
    venue = ZerodhaVenue(CostModel(), placer, {})
    acct = Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None)
    feed = OrderFeed(cfg, client(root))
    acct.on_item(TradingSignal(
        signal_id=f"rc-{uuid.uuid4().hex[:6]}", correlation_id="c", strategy_id="mom",
        broker="zerodha", instrument_token=INFY, target_quantity=5, price=1500.0,
        timestamp=T, reason="test",
    ))  # fmt: skip
    advance(root, 3000)  # our order fills at Kite
    for _ in range(2):
        out = _feed_all(acct, feed)
        assert not [e for e in out if isinstance(e, TradingStateChanged)]
    assert acct.state.book.position(INFY) == 5
    kite = client(root)
    place(kite, qty=3, tag=None, tradingsymbol="TCS")  # someone else, not an instrument of ours
    place(kite, qty=7, tag=None, tradingsymbol="RELIANCE")  # someone else, in one of ours
    advance(root, 3000)
    assert not [e for e in _feed_all(acct, feed) if isinstance(e, TradingStateChanged)]
    [halt] = [e for e in _feed_all(acct, feed) if isinstance(e, TradingStateChanged)]
    assert (halt.state, halt.reason) == ("HALTED", "RECONCILE_MISMATCH")
    assert f"instrument {RELIANCE}: Kite +7, account +0" in halt.detail
    assert str(TCS) not in halt.detail and acct.trading.state is TradingState.HALTED
    assert len(api.ex.orders) == 3


def test_holdings_from_earlier_days_count_as_held_at_kite(sim) -> None:
    """A CNC holding carried from an earlier day in an instrument we trade (the account
    starts flat each day; Kite lists the holding under its BSE token) halts the account,
    named, before the first signal can buy on top of it; one we do not trade is reported."""
    api, root = sim
    cfg = KiteConfig(api_root=root, timeout_s=2, attempts=2)
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {}, (INFY,),
                         symbols={"INFY": INFY})  # fmt: skip
    r = redis.Redis.from_url(shared_url())
    store = IntentStore(r, LiveKeys(f"rc-{uuid.uuid4().hex[:6]}:"), 60)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    venue = ZerodhaVenue(CostModel(), KiteOrders(client(root), store, cfg, inst), {})
    acct = Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None)
    feed = OrderFeed(cfg, client(root))
    held = [dict(instrument_token=TCS, quantity=4, t1_quantity=0, average_price=3500.0)]
    requests.post(f"{root}/_sim/holdings", json=held, timeout=5).raise_for_status()
    for _ in range(2):  # TCS is not ours: reported, never a halt
        assert not [e for e in _feed_all(acct, feed) if isinstance(e, TradingStateChanged)]
    assert [(h["quantity"], h["t1_quantity"]) for h in client(root).holdings()] == [(4, 0)]
    held.append(dict(instrument_token=INFY, quantity=10, t1_quantity=4, average_price=1500.0,
                     listed_token=BSE_INFY))  # fmt: skip
    requests.post(f"{root}/_sim/holdings", json=held, timeout=5).raise_for_status()
    for _ in range(2):  # before any tick: no event time to stamp a halt with, so it waits
        assert not [e for e in _feed_all(acct, feed) if isinstance(e, TradingStateChanged)]
    assert client(root).holdings()[0]["instrument_token"] == BSE_INFY
    buy = TradingSignal(
        signal_id=f"rc-{uuid.uuid4().hex[:6]}", correlation_id="c", strategy_id="mom",
        broker="zerodha", instrument_token=INFY, target_quantity=10, price=1500.0,
        timestamp=T, reason="test",
    )  # fmt: skip
    out = acct.on_item(buy)
    [halt] = [e for e in out if isinstance(e, TradingStateChanged)]
    assert not [e for e in out if isinstance(e, OrderPlaced)]
    assert (halt.state, halt.reason) == ("HALTED", "RECONCILE_MISMATCH")
    assert f"instrument {INFY}: Kite +10, account +0" in halt.detail and str(TCS) not in halt.detail
    assert halt.timestamp == T and acct.trading.state is TradingState.HALTED
    assert not api.ex.orders  # nothing was ordered on top of the holding
