"""Zerodha orders through the real ``kiteconnect`` client against the simulator, with order
intents in a real Redis: never two orders for one signal, whatever Kite does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from operators.zerodha import ZerodhaExecution, ZerodhaState

from connectors.kite.orders import IntentStore, KiteOrders, RateLimiter
from connectors.kite.sim.http import SimApi
from schemas.config import CostModel, Instrument, KiteConfig
from schemas.enums import Broker
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, TradingSignal, ValidatedSignal
from schemas.kite import KiteUnavailable, OrderRejected, OrderUpdate, order_tag
from schemas.redis_keys import KeyKind, LiveKeys, OrderIntent
from tests.redis_server import shared_url
from tests.support import advance, client, faults

INFY = 408065
T = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)


def validated(n: int, qty: int = 5, side: str = "BUY") -> ValidatedSignal:
    s = TradingSignal(
        signal_id=f"sig-{n}", correlation_id=f"c-{n}", strategy_id="mom", broker=Broker.ZERODHA,
        instrument_token=INFY, signal_type=side, quantity=qty, price=1500.0,
        timestamp=T + timedelta(seconds=n), reason="test",
    )  # fmt: skip
    return ValidatedSignal(
        event_id=f"v-{n}", correlation_id=s.correlation_id, causation_id=s.signal_id,
        broker=Broker.ZERODHA, timestamp=s.timestamp, signal=s,
    )  # fmt: skip


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
    cfg = KiteConfig(api_root=root, timeout_s=1, attempts=4, backoff_max_s=0.05)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    return KiteOrders(client(root, timeout=1), IntentStore(r, k, 60), cfg, inst)


def step(ex: ZerodhaExecution, item: object) -> list[Any]:
    return list(ex.on_item(item))


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


def test_429_storm_backs_off_and_places_once(sim, orders) -> None:
    api, root = sim
    faults(root, http_429=3)
    it = intent(2)
    got = orders.submit(it, "MARKET")
    assert orders.throttled == 3 and at_sim(api, it.tag) == [got.order_id]


def test_500_lists_orders_then_places_once(sim, orders) -> None:
    api, root = sim
    faults(root, http_500=2)
    it = intent(3)
    got = orders.submit(it, "MARKET")
    assert orders.ambiguous == 2 and not got.adopted
    assert at_sim(api, it.tag) == [got.order_id]


def test_lost_response_adopts_the_accepted_order(sim, orders) -> None:
    api, root = sim
    faults(root, lost_response=1, lost_delay_s=2)
    it = intent(4)
    got = orders.submit(it, "MARKET")  # the client times out after 1 s; the order exists
    assert got.adopted and orders.ambiguous == 1
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


def test_execution_turns_updates_into_fills_and_failures(sim, orders) -> None:
    api, root = sim
    ex = ZerodhaExecution(Broker.ZERODHA, CostModel(), orders, {"mom": "MARKET"})
    placed = step(ex, validated(7, qty=4))
    assert [type(e) for e in placed] == [OrderPlaced]
    kite_id = placed[0].broker_order_id
    advance(root, 3000)
    update = OrderUpdate.from_kite(api.ex.orders[kite_id].view())
    filled = step(ex, update)
    assert [type(e) for e in filled] == [OrderFilled]
    f = filled[0]
    assert (f.quantity, f.fill_price, f.broker_order_id) == (4, update.average_price, kite_id)
    assert f.fees > 0 and f.order_id == placed[0].order_id
    assert step(ex, update) == []  # the poll repeats it: nothing twice
    faults(root, reject=1)
    out = step(ex, validated(8))
    kite_id = out[0].broker_order_id
    rejected = step(ex, OrderUpdate.from_kite(api.ex.orders[kite_id].view()))
    assert [type(e) for e in rejected] == [OrderFailed]
    assert rejected[0].status == "REJECTED" and rejected[0].reason.startswith("RMS:Margin")


def test_execution_recovers_orders_placed_before_a_restart(sim, orders) -> None:
    api, root = sim
    first = ZerodhaExecution(Broker.ZERODHA, CostModel(), orders, {})
    [placed] = step(first, validated(9))
    advance(root, 3000)
    # A restart rolled the stage's state back to before the signal: the update comes first.
    again = ZerodhaExecution(Broker.ZERODHA, CostModel(), orders, {}, ZerodhaState())
    view = api.ex.orders[placed.broker_order_id].view()
    out = step(again, OrderUpdate.from_kite(view))
    assert [type(e).__name__ for e in out] == ["OrderPlaced", "OrderFilled"]
    assert out[0] == placed  # the same event, rebuilt from the intent in Redis
    assert step(again, validated(9)) == []  # then the replayed signal: no second order
    assert len(api.ex.orders) == 1
