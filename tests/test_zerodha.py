"""Zerodha orders through the real ``kiteconnect`` client against the simulator, with order
intents in a real Redis: never two orders for one signal, whatever Kite does; and the
Zerodha venue, which turns Kite's order updates into fills (one per increase of the filled
quantity) and order ends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis

from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders, RateLimiter
from connectors.kite.sim.http import SimApi
from operators.account.book import AccountBook
from operators.account.zerodha import ZerodhaState, ZerodhaVenue
from schemas.config import CostModel, Instrument, KiteConfig
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, ValidatedSignal
from schemas.ids import content_id
from schemas.kite import KiteUnavailable, OrderRejected, OrderUpdate, order_tag
from schemas.redis_keys import KeyKind, LiveKeys, OrderIntent
from tests.redis_server import shared_url
from tests.support import advance, client, faults, zerodha_validated

INFY = 408065
T = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)


def validated(n: int, qty: int = 5, side: str = "BUY") -> ValidatedSignal:
    return zerodha_validated(n, qty, side)


def intent(n: int, **kw: object) -> OrderIntent:
    v = validated(n, **kw)  # type: ignore[arg-type]
    return OrderIntent(tag=order_tag(v.signal.signal_id), validated=v)


@pytest.fixture
def keys() -> Iterator[tuple[redis.Redis, LiveKeys]]:
    client_ = redis.Redis.from_url(shared_url())
    keys = LiveKeys(f"test-{uuid.uuid4().hex[:8]}:")
    yield client_, keys
    for k in client_.scan_iter(f"{keys.prefix}*"):
        client_.delete(k)


@pytest.fixture
def orders(sim, keys) -> KiteOrders:
    _, root = sim
    r, k = keys
    return _orders(root, r, k, ambiguous_window_s=0.6)


def _orders(root: str, r: redis.Redis, k: LiveKeys, **kite: float) -> KiteOrders:
    cfg = KiteConfig.model_validate(
        dict(api_root=root, timeout_s=1, attempts=4, backoff_max_s=0.05, **kite)
    )
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    return KiteOrders(client(root, timeout=1), IntentStore(r, k, 60), cfg, inst)


def at_sim(api: SimApi, tag: str) -> list[str]:
    return [o.order_id for o in api.ex.orders.values() if o.tag == tag]


def test_one_order_and_a_recorded_intent(sim, orders, keys) -> None:
    api, _ = sim
    r, k = keys
    it = intent(1)
    first = orders.submit(it, "MARKET")
    assert not first.adopted and at_sim(api, it.tag) == [first.order_id]
    stored = r.get(k.intent(it.tag))
    assert stored is not None and k.parse(k.intent(it.tag)).kind is KeyKind.INTENT
    assert 0 < r.ttl(k.intent(it.tag)) <= 60
    again = orders.submit(it, "MARKET")  # the same signal again (a replay after a resume)
    assert again.adopted and again.order_id == first.order_id
    assert at_sim(api, it.tag) == [first.order_id]
    o = api.ex.orders[first.order_id]
    assert (o.inst.tradingsymbol, o.transaction_type, o.quantity, o.product) == (
        "INFY", "BUY", 5, "MIS",
    )  # fmt: skip
    assert o.protection == 2.0  # kite.market_protection: the simulator refuses it without


def test_the_order_carries_the_strategy_product(sim, orders) -> None:
    api, _ = sim
    it = intent(31)
    it = it.model_copy(update={"validated": it.validated.model_copy(update={"product": "CNC"})})
    got = orders.submit(it, "LIMIT")
    o = api.ex.orders[got.order_id]
    assert (o.product, o.order_type, o.protection) == ("CNC", "LIMIT", None)


def test_429_storm_backs_off_and_places_once(sim, orders) -> None:
    api, root = sim
    faults(root, http_429=3)
    it = intent(2)
    got = orders.submit(it, "MARKET")
    assert orders.throttled == 3 and at_sim(api, it.tag) == [got.order_id]


def test_an_ambiguous_500_is_never_placed_a_second_time(sim, orders) -> None:
    api, root = sim
    faults(root, http_500=1)  # the simulator fails before creating the order
    it = intent(3)
    with pytest.raises(KiteUnavailable, match="not placed again"):
        orders.submit(it, "MARKET")
    assert orders.ambiguous == 1 and orders.placed == 0
    assert at_sim(api, it.tag) == []  # unknown, released: never a guess at a second order


def test_lost_response_adopts_the_accepted_order(sim, orders) -> None:
    api, root = sim
    faults(root, lost_response=1, lost_delay_s=2)
    it = intent(4)
    got = orders.submit(it, "MARKET")  # the client times out after 1 s; the order exists
    assert got.adopted and orders.ambiguous == 1
    assert at_sim(api, it.tag) == [got.order_id]


def test_an_order_listed_late_after_a_lost_response_is_adopted_not_placed_again(sim, keys) -> None:
    api, root = sim
    placer = _orders(root, *keys, ambiguous_window_s=4.0)
    # accepted, the reply lost, and the order missing from Kite's order book for 2 s
    faults(root, lost_response=1, lost_delay_s=2, lost_visible_s=2.0)
    it = intent(9)
    got = placer.submit(it, "MARKET")
    assert got.adopted and placer.ambiguous == 1 and placer.placed == 0
    assert at_sim(api, it.tag) == [got.order_id]


def test_kite_errors_are_rejections_with_kites_message(sim, orders) -> None:
    api, _ = sim
    bad = OrderIntent(tag="apbad", validated=validated(5))
    orders.instruments[INFY] = Instrument(instrument_token=INFY, tradingsymbol="NOPE")
    with pytest.raises(OrderRejected, match="Invalid `tradingsymbol`: NSE:NOPE"):
        orders.submit(bad, "MARKET")
    assert not api.ex.orders


def test_no_order_without_a_recorded_intent(sim, orders) -> None:
    api, _ = sim
    orders.intents.client = redis.Redis(port=1, socket_connect_timeout=0.2)  # nothing there
    with pytest.raises(KiteUnavailable, match="intent store"):
        orders.submit(intent(6), "MARKET")
    assert not api.ex.orders


def test_rate_limiter_spaces_calls() -> None:
    waits: list[float] = []
    limiter = RateLimiter(10, waits.append)
    for _ in range(5):
        limiter.wait()
    # no time passes in the fake sleep: call k (k >= 1) is due k/10 s after the first
    assert [round(w, 2) for w in waits] == [0.1, 0.2, 0.3, 0.4]


def test_venue_turns_updates_into_fills_and_failures(sim, orders) -> None:
    api, root = sim
    venue = ZerodhaVenue(CostModel(), orders, {"mom": "MARKET"})
    v = validated(7, qty=4)
    [p] = venue.send(v, "MARKET")
    assert isinstance(p, OrderPlaced)
    kite_id = p.broker_order_id
    assert kite_id is not None and at_sim(api, order_tag(v.signal.signal_id)) == [kite_id]
    assert (p.order_id, p.causation_id, p.status, p.side, p.quantity, p.order_type) == (
        v.order_id, v.event_id, "PLACED", "BUY", 4, "MARKET",
    )  # fmt: skip
    advance(root, 3000)
    at_kite = api.ex.orders[kite_id]
    assert (at_kite.status, at_kite.filled) == ("COMPLETE", 4)
    update = OrderUpdate.from_kite(at_kite.view())
    [f] = venue.update(update)
    assert isinstance(f, OrderFilled)
    assert (f.quantity, f.fill_price, f.broker_order_id) == (4, at_kite.average_price, kite_id)
    assert f.status == "FILLED" and f.side == "BUY"
    assert f.fees == charges_buy(4 * at_kite.average_price) > 0
    assert f.order_id == p.order_id and f.causation_id == p.event_id
    assert f.event_id == content_id("fill", p.order_id, 4)
    assert venue.update(update) == []  # the poll repeats it: nothing twice
    faults(root, reject=1)
    out = venue.send(validated(8), "MARKET")
    assert [type(e) for e in out] == [OrderPlaced]  # Kite accepted it, then its RMS refused
    kite_id = out[0].broker_order_id
    assert kite_id is not None
    [r] = venue.update(OrderUpdate.from_kite(api.ex.orders[kite_id].view()))
    assert isinstance(r, OrderFailed)
    assert r.status == "REJECTED" and r.reason.startswith("RMS:Margin")
    assert (r.quantity, r.order_id, r.broker_order_id) == (5, out[0].order_id, kite_id)


def test_venue_recovers_orders_placed_before_a_restart(sim, orders) -> None:
    api, root = sim
    first = ZerodhaVenue(CostModel(), orders, {})
    [placed] = first.send(validated(9), "MARKET")
    advance(root, 3000)
    # A restart rolled the account's state back to before the signal: the update comes first.
    again = ZerodhaVenue(CostModel(), orders, {}, ZerodhaState())
    assert placed.broker_order_id is not None
    view = api.ex.orders[placed.broker_order_id].view()
    out = again.update(OrderUpdate.from_kite(view))
    assert [type(e).__name__ for e in out] == ["OrderPlaced", "OrderFilled"]
    assert out[0] == placed  # the same event, rebuilt from the intent in Redis
    assert isinstance(out[1], OrderFilled) and out[1].quantity == 5
    assert again.send(validated(9), "MARKET") == []  # then the replayed signal: no second order
    assert len(api.ex.orders) == 1


def kite_update(
    placed: OrderPlaced, status: str, filled: int, avg: float, at: int, qty: int = 10
) -> OrderUpdate:
    """Kite's state of our order as a ticker message would bring it (built by hand: the
    simulator fills an order whole, never in parts)."""
    assert placed.broker_order_id is not None
    return OrderUpdate(
        order_id=placed.broker_order_id, tag=order_tag(placed.signal_id), status=status,
        instrument_token=INFY, transaction_type=placed.side, quantity=qty,
        filled_quantity=filled, average_price=avg, status_message=None,
        timestamp=T + timedelta(seconds=at),
    )  # fmt: skip


def charges_buy(turnover: float) -> float:
    """Zerodha intraday charges of a buy (published schedule), rounded to the paisa."""
    brokerage, exchange, sebi = min(20.0, 0.0003 * turnover), 0.0000297 * turnover, turnover / 1e6
    return round(
        brokerage + exchange + sebi + 0.00003 * turnover + 0.18 * (brokerage + exchange + sebi), 2
    )


def test_partial_fills_each_increase_once_and_a_cancel_releases_the_rest(sim, orders) -> None:
    api, _ = sim
    venue = ZerodhaVenue(CostModel(), orders, {})
    v = validated(10, qty=10)
    [placed] = venue.send(v, "MARKET")
    assert isinstance(placed, OrderPlaced) and placed.broker_order_id in api.ex.orders
    part = kite_update(placed, "OPEN", 4, 100.0, 20)
    [first] = venue.update(part)
    assert isinstance(first, OrderFilled)
    assert (first.quantity, first.fill_price, first.status) == (4, 100.0, "PARTIALLY_FILLED")
    assert first.event_id == content_id("fill", v.order_id, 4)
    assert first.fees == charges_buy(400.0) == 0.17
    assert venue.update(part) == []  # the same state again: no second fill
    [rest] = venue.update(kite_update(placed, "COMPLETE", 10, 101.0, 21))
    assert isinstance(rest, OrderFilled)
    # Kite's average 101.0 over 10 = 1010.0; 400.0 went at 100.0, so 6 at 610.0 / 6 = 101.666…
    assert (rest.quantity, rest.fill_price, rest.status) == (6, 101.67, "FILLED")
    assert rest.event_id == content_id("fill", v.order_id, 10) != first.event_id
    # the order's charges are those of its whole fill (brokerage capped once per order)
    assert round(first.fees + rest.fees, 2) == charges_buy(1010.0)
    assert rest.order_id == first.order_id == placed.order_id
    assert venue.update(kite_update(placed, "COMPLETE", 10, 101.0, 22)) == []

    # Another order: 4 of 10 filled, then the rest cancelled.
    w = validated(11, qty=10)
    [placed2] = venue.send(w, "MARKET")
    assert isinstance(placed2, OrderPlaced)
    [f4] = venue.update(kite_update(placed2, "OPEN", 4, 100.0, 30))
    assert isinstance(f4, OrderFilled) and (f4.quantity, f4.fill_price) == (4, 100.0)
    [gone] = venue.update(kite_update(placed2, "CANCELLED", 4, 100.0, 31))
    assert isinstance(gone, OrderFailed)
    assert (gone.status, gone.quantity, gone.reason) == ("CANCELLED", 6, "CANCELLED")
    assert gone.order_id == w.order_id and gone.broker_order_id == placed2.broker_order_id
    assert venue.update(kite_update(placed2, "CANCELLED", 4, 100.0, 32)) == []
    # The account's book: 4 held, and no exposure left open for the cancelled 6.
    book = AccountBook.new(1_000_000.0)
    book.opened(placed2)
    book.fill(f4)
    assert book.pending(INFY) == 6
    book.release(gone)
    assert (book.position(INFY), book.pending(INFY)) == (4, 0)

    # A cancel that also reports fills not seen before: the fill first, then the rest fails.
    x = validated(12, qty=10)
    [placed3] = venue.send(x, "MARKET")
    assert isinstance(placed3, OrderPlaced)
    fill, end = out = venue.update(kite_update(placed3, "CANCELLED", 4, 99.5, 40))
    assert [type(e) for e in out] == [OrderFilled, OrderFailed]
    assert isinstance(fill, OrderFilled) and isinstance(end, OrderFailed)
    assert (fill.quantity, fill.fill_price, end.status, end.quantity) == (4, 99.5, "CANCELLED", 6)


def test_a_fill_price_never_goes_below_a_paisa_whatever_kite_averages_say(sim, orders) -> None:
    """Kite's averages are rounded: an increment priced from two of them can come out at 0
    or below. The fill then takes Kite's average instead of crashing the account step."""
    venue = ZerodhaVenue(CostModel(), orders, {})
    [placed] = venue.send(validated(12, qty=10), "MARKET")
    assert isinstance(placed, OrderPlaced)
    venue.update(kite_update(placed, "OPEN", 4, 100.0, 20))
    [rest] = venue.update(kite_update(placed, "COMPLETE", 10, 40.0, 21))  # (400 - 400) / 6
    assert isinstance(rest, OrderFilled) and (rest.quantity, rest.fill_price) == (6, 40.0)
