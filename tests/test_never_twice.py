"""Never two Kite orders for one signal, without trusting luck: a restart that finds Redis
emptied adopts the order Kite lists; an intent Kite does not list is never placed again; a
signal too old by the wall clock is never placed; live orders refuse a Redis that keeps
nothing on disk. Real Redis, the real kiteconnect client, the simulator."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from bytewax.testing import TestingSource

from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders, kite_orders
from connectors.kite.sim.http import SimApi
from flows.config import parse_config
from flows.plan import Plan
from schemas.config import Instrument, KiteConfig, SourceUnavailable
from schemas.enums import Broker
from schemas.events import TradingSignal, ValidatedSignal
from schemas.ids import content_id
from schemas.kite import ACCESS_TOKEN_ENV, API_KEY_ENV, KiteUnavailable, OrderRejected, order_tag
from schemas.redis_keys import LiveKeys, OrderIntent
from tests.redis_server import RedisServer, shared_url
from tests.support import KEY, TOKEN, client, config_dict, faults

INFY = 408065
T = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def _intent(n: int, received_us: int | None = None) -> OrderIntent:
    s = TradingSignal(
        signal_id=f"nt-{uuid.uuid4().hex[:6]}-{n}", correlation_id=f"c{n}", strategy_id="mom",
        broker="zerodha", instrument_token=INFY, target_quantity=5, price=1500.0,
        timestamp=T + timedelta(seconds=n), reason="test",
    ).received(received_us)  # fmt: skip
    v = ValidatedSignal(
        event_id=f"v{n}", order_id=content_id("ord", s.signal_id), correlation_id=s.correlation_id,
        causation_id=s.signal_id, broker=Broker.ZERODHA, timestamp=s.timestamp, signal=s,
        side="BUY", quantity=5,
    )  # fmt: skip
    return OrderIntent(tag=order_tag(s.signal_id), validated=v)


def _placer(root: str, r: redis.Redis, prefix: str, **kite: float) -> KiteOrders:
    cfg = KiteConfig.model_validate(
        dict(api_root=root, timeout_s=2, attempts=2, backoff_max_s=0.05, **kite)
    )
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    placer = KiteOrders(client(root), IntentStore(r, LiveKeys(prefix), 3600), cfg, inst)
    placer.load_today()  # what the flow does at start
    return placer


def _at_sim(api: SimApi, tag: str) -> list[str]:
    return [o.order_id for o in api.ex.orders.values() if o.tag == tag]


def test_a_restart_with_redis_emptied_adopts_the_order_kite_lists(sim, tmp_path: Path) -> None:
    api, root = sim
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    try:
        it = _intent(1)
        first = _placer(root, server.client(), "nt:").submit(it, "MARKET")
        server.stop()  # Redis restarts with nothing: the intent is gone
        server.start()
        assert server.client().dbsize() == 0
        again = _placer(root, server.client(), "nt:").submit(it, "MARKET")  # the replay
    finally:
        server.stop()
    assert again.adopted and again.order_id == first.order_id
    assert _at_sim(api, it.tag) == [first.order_id]


@pytest.mark.parametrize("days_ago", [1, 0])
def test_an_intent_from_an_earlier_day_kite_does_not_list_is_never_placed(
    sim, days_ago: int
) -> None:
    api, root = sim
    r = redis.Redis.from_url(shared_url())
    prefix = f"nt-{uuid.uuid4().hex[:6]}:"
    it = _intent(2)
    claimed = int((time.time() - days_ago * 86_400) * 1e6)  # an earlier run recorded it
    r.set(LiveKeys(prefix).intent(it.tag), it.model_copy(update={"claimed_us": claimed})
          .model_dump_json())  # fmt: skip
    placer = _placer(root, r, prefix, ambiguous_window_s=0.3)
    try:
        if days_ago:  # yesterday's: stale, whatever happened to it
            with pytest.raises(OrderRejected, match="INTENT_WITHOUT_ORDER"):
                placer.submit(it, "MARKET")
            assert _at_sim(api, it.tag) == []
        else:  # today's, never sent (a crash between recording and placing): placed once
            got = placer.submit(it, "MARKET")
            assert _at_sim(api, it.tag) == [got.order_id] and not got.adopted
    finally:
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)


def test_a_signal_received_too_long_ago_is_never_placed(sim) -> None:
    api, root = sim
    r = redis.Redis.from_url(shared_url())
    placer = _placer(root, r, f"nt-{uuid.uuid4().hex[:6]}:", max_signal_age_s=30)
    old = _intent(3, received_us=int((time.time() - 120) * 1e6))
    with pytest.raises(OrderRejected, match="SIGNAL_TOO_OLD"):
        placer.submit(old, "MARKET")
    assert _at_sim(api, old.tag) == []
    fresh = _intent(4, received_us=int(time.time() * 1e6))
    assert not placer.submit(fresh, "MARKET").adopted
    assert len(_at_sim(api, fresh.tag)) == 1


@pytest.mark.parametrize("persistent", [False, True])
def test_live_orders_refuse_a_redis_that_keeps_nothing_on_disk(
    sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, persistent: bool
) -> None:
    api, root = sim
    monkeypatch.setenv(API_KEY_ENV, KEY)
    monkeypatch.setenv(ACCESS_TOKEN_ENV, TOKEN)
    server = RedisServer(tmp_path / "redis.log", tmp_path if persistent else None)
    server.start()
    try:
        raw = config_dict(tmp_path, redis={"url": server.url}, kite={"api_root": root})
        raw["brokers"] = {
            "paper": {"starting_cash": 123_456},
            "zerodha": {"starting_cash": 123_456},
        }
        cfg = parse_config(raw, Path("."))
        if persistent:
            placer = kite_orders(cfg)
            opening = api.ex.margins()["equity"]["available"]["opening_balance"]
            assert placer.opening_cash == opening  # the zerodha account starts from it
            plan = Plan(cfg, TestingSource([]), [], tmp_path)
            plan.placer = placer
            assert plan.broker_config(Broker.ZERODHA).starting_cash == opening != 123_456.0
            assert plan.broker_config(Broker.PAPER).starting_cash == 123_456.0
        else:
            with pytest.raises(SourceUnavailable, match="keeps no data on disk"):
                kite_orders(cfg)
    finally:
        server.stop()


def test_an_order_of_unknown_fate_is_never_placed_again_by_a_restart(sim) -> None:
    api, root = sim
    r = redis.Redis.from_url(shared_url())
    prefix = f"nt-{uuid.uuid4().hex[:6]}:"
    it = _intent(7)
    # accepted, the reply lost, and Kite lists it only after 4 s: longer than the window
    faults(root, lost_response=1, lost_delay_s=2, lost_visible_s=4.0)
    with pytest.raises(KiteUnavailable, match="not placed again"):
        _placer(root, r, prefix, ambiguous_window_s=0.5).submit(it, "MARKET")
    again = _placer(root, r, prefix, ambiguous_window_s=0.5)  # a restart, the signal replayed
    try:
        with pytest.raises(KiteUnavailable, match="fate unknown"):
            again.submit(it, "MARKET")
    finally:
        for k in r.scan_iter(f"{prefix}*"):
            r.delete(k)
    assert again.placed == 0 and len(_at_sim(api, it.tag)) == 1
