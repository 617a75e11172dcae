"""The zerodha venue's bookkeeping of placement outcomes against Kite's own word: an order
Kite has reported is never released by a late 'unknown'; an order of unknown fate stays
open until two reconciliations pass without Kite listing it; orders a snapshot holds that
never reached the placement thread are sent after a resume; a Redis blip on an update is
not fatal; a cancel that could not go out goes out later."""

from __future__ import annotations

import pickle

from operators.account.account import Account, AccountSetup
from operators.account.zerodha import ZerodhaVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, SessionConfig
from schemas.enums import Broker
from schemas.events import OrderFailed, OrderPlaced
from schemas.kite import KitePositions, OrderUpdate, PlacementOutcome, order_tag
from tests.support import StubPlacer, StubWorker, zerodha_signal

INFY = 408065


def _account(worker: StubWorker, placer: StubPlacer | None = None) -> tuple[Account, ZerodhaVenue]:
    venue = ZerodhaVenue(CostModel(), placer or StubPlacer(), {}, None, worker)
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {}, (INFY,))
    return Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None), venue


def _update(tag: str, status: str = "OPEN", filled: int = 0) -> OrderUpdate:
    return OrderUpdate.from_kite({
        "order_id": "K1", "tag": tag, "status": status, "filled_quantity": filled,
        "instrument_token": INFY, "transaction_type": "BUY",
        "average_price": 1500.0 if filled else 0, "quantity": 5, "status_message": None,
        "order_timestamp": "2026-11-20 10:31:00", "exchange_update_timestamp": None,
    })  # fmt: skip


def test_an_order_kite_reported_is_not_released_by_a_late_unknown() -> None:
    worker = StubWorker()
    acct, _ = _account(worker)
    s = zerodha_signal(1, 5)
    acct.on_item(s)
    tag = order_tag(s.signal_id)
    acct.on_item(_update(tag))  # Kite lists it (the websocket beat the placement thread)
    worker.answers.append(PlacementOutcome(tag, "UNAVAILABLE", message="timeout"))
    out = acct.on_item(zerodha_signal(2, 5))  # same target: nothing more to order
    assert not [e for e in out if isinstance(e, OrderFailed)]
    assert acct.state.book.pending(INFY) == 5 and len(worker.offered) == 1


def test_an_order_of_unknown_fate_stays_open_until_two_reconciliations_without_it() -> None:
    worker = StubWorker()
    acct, _ = _account(worker)
    s = zerodha_signal(1, 5)
    acct.on_item(s)
    worker.answers.append(PlacementOutcome(order_tag(s.signal_id), "UNAVAILABLE", message="x"))
    acct.on_item(zerodha_signal(2, 5))
    assert acct.state.book.pending(INFY) == 5 and len(worker.offered) == 1  # no second order
    first = acct.on_item(KitePositions(()))
    assert not [e for e in first if isinstance(e, OrderFailed)]
    [released] = [e for e in acct.on_item(KitePositions(())) if isinstance(e, OrderFailed)]
    assert released.reason.startswith("KITE_UNAVAILABLE") and released.quantity == 5
    assert acct.state.book.pending(INFY) == 0


def test_orders_a_snapshot_holds_unsent_are_sent_after_a_resume() -> None:
    acct, venue = _account(StubWorker())
    acct.on_item(zerodha_signal(1, 5))
    snapshot = pickle.loads(pickle.dumps(venue.venue_state()))  # killed before it was sent
    again = StubWorker()
    resumed = ZerodhaVenue(CostModel(), StubPlacer(), {}, snapshot, again)
    assert resumed.collect() == [] and [i.tag for i in again.offered] == list(snapshot.orders)


def test_a_redis_blip_on_an_update_is_not_fatal() -> None:
    acct, _ = _account(StubWorker(), StubPlacer(fail=True))
    acct.on_item(zerodha_signal(1, 5))
    assert acct.on_item(_update("ap0123456789abcdef")) == []  # an earlier run's order


def test_a_cancel_waiting_for_kites_id_goes_out_once_kite_reports_the_order() -> None:
    worker = StubWorker()
    acct, venue = _account(worker)
    s = zerodha_signal(1, 5)
    acct.on_item(s)
    venue.cancel(next(iter(acct.state.book.open)), 0, "why")
    assert worker.cancels == []  # Kite has not said its id yet
    worker.answers.append(PlacementOutcome(order_tag(s.signal_id), "UNAVAILABLE", message="x"))
    out = acct.on_item(_update(order_tag(s.signal_id)))  # Kite lists it after all
    assert [e for e in out if isinstance(e, OrderPlaced)] and worker.cancels == ["K1"]
