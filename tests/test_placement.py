"""Kite orders placed off the dataflow thread: the account counts an order as open at once,
books Kite's answer when the placement thread has it, halts when the queue is full, and a
Kite outage never holds up the flow: ticks, paper fills and health go on (a live flow
against the simulator, Kite down for 60 s)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import redis
import yaml

from connectors.kite.client import OrderFeed
from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders
from connectors.kite.placement import PlacementWorker
from operators.account.account import Account, AccountSetup
from operators.account.zerodha import ZerodhaVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, Instrument, KiteConfig, SessionConfig
from schemas.enums import Broker
from schemas.events import DeadLetter, OrderFailed, OrderPlaced, TradingSignal, TradingStateChanged
from schemas.redis_keys import KeyKind, LiveKeys, decode
from schemas.ticks import MarkSet
from tests.live_sim import SECRETS, Sim, drive, live_config, tape, wait
from tests.redis_server import shared_url
from tests.support import client, flow_env, read_ledger, zerodha_signal

INFY = 408065
T = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def _signal(n: int, target: int) -> TradingSignal:
    return zerodha_signal(n, target)


def _account(root: str, queue: int) -> tuple[Account, PlacementWorker]:
    r = redis.Redis.from_url(shared_url())
    cfg = KiteConfig(api_root=root, timeout_s=2, attempts=2, backoff_max_s=0.05,
                     ambiguous_window_s=0.5)  # fmt: skip
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    keys = LiveKeys(f"pl-{uuid.uuid4().hex[:8]}:")
    placer = KiteOrders(client(root), IntentStore(r, keys, 60), cfg, inst)
    worker = PlacementWorker(placer, queue)
    venue = ZerodhaVenue(CostModel(), placer, {}, None, worker)
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {}, (INFY,))
    return Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None), worker


def test_an_order_is_open_at_once_and_placed_when_the_thread_has_kites_answer(sim) -> None:
    api, root = sim
    acct, worker = _account(root, queue=8)
    out = acct.on_item(_signal(1, 5))
    assert not [e for e in out if isinstance(e, (OrderPlaced, OrderFailed))]
    assert acct.state.book.pending(INFY) == 5  # counted as open meanwhile
    again = acct.on_item(_signal(2, 5))  # the same target: nothing more to order
    assert not [e for e in again if isinstance(e, OrderPlaced)]
    worker.finish(10)
    later = acct.on_item(_signal(3, 5))
    [placed] = [e for e in later if isinstance(e, OrderPlaced)]
    [kite_order] = list(api.ex.orders.values())
    assert placed.broker_order_id == kite_order.order_id and placed.quantity == 5


def test_a_full_placement_queue_halts_the_account(sim) -> None:
    _, root = sim
    requests_post(root, outage_s=30, outage_hang_s=2)  # Kite hangs: the queue fills up
    acct, _ = _account(root, queue=1)
    out = [e for n in range(4) for e in acct.on_item(_signal(n, 5 if n % 2 == 0 else -5))]
    failed = [e for e in out if isinstance(e, OrderFailed)]
    assert any(f.reason.startswith("PLACEMENT_QUEUE_FULL") for f in failed)
    [halt] = [e for e in out if isinstance(e, TradingStateChanged)]
    assert (halt.state, halt.reason) == ("HALTED", "PLACEMENT_BACKLOG")
    requests_post(root, outage_s=0.001)


def requests_post(root: str, **faults: float) -> None:
    import requests

    requests.post(f"{root}/_sim/faults", json=faults, timeout=5).raise_for_status()


def test_a_60s_kite_outage_does_not_hold_up_ticks_or_paper_fills(tmp_path: Path) -> None:
    url = shared_url()
    r = redis.Redis.from_url(url)
    keys = LiveKeys(f"outage-{uuid.uuid4().hex[:8]}:")
    sim = Sim(tape(tmp_path), tmp_path / "sim.log")
    cfg = live_config(tmp_path, sim, url, keys.prefix, idle_stop_s=8)
    raw = yaml.safe_load(cfg.read_text())
    raw["kite"].update(ambiguous_window_s=2, attempts=2, reconcile_s=2)
    cfg.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
    log = tmp_path / "flow.log"
    waits: list[float] = []
    try:
        with log.open("w") as fh:
            flow = subprocess.Popen(cmd, cwd=tmp_path, env={**flow_env(cfg), **SECRETS},
                                    stdout=fh, stderr=fh)  # fmt: skip
        wait(lambda: sim.state()["ws_clients"] == 1, 30, "the flow's ticker")
        total = sim.state()["ticks"]
        drive(sim, r, keys, 1000, total // 4)
        kite_orders_before = len(sim.orders())
        paper_before = _fills(r, keys, "paper")
        down_until = time.monotonic() + 60
        sim.post("/_sim/faults", outage_s=60)
        cursor, end = sim.state()["cursor"], 3 * total // 4
        step = max((end - cursor) // 110, 1)  # ticks every 0.5 s until Kite is back
        while time.monotonic() < down_until - 1:
            start = time.monotonic()
            cursor = drive(sim, r, keys, step, min(cursor + step, end))
            waits.append(time.monotonic() - start)  # until the flow had read every tick
            time.sleep(max(0.5 - (time.monotonic() - start), 0))
        paper_during = _fills(r, keys, "paper")
        still_down = time.monotonic() < down_until
        wait(lambda: time.monotonic() > down_until + 1, 30, "the outage to end")
        drive(sim, r, keys, 2000)
        assert flow.wait(120) == 0, log.read_text()[-3000:]
        tags = Counter(o["tag"] for o in sim.orders())
    except AssertionError as e:
        keep = [ln for ln in log.read_text().splitlines() if "kite.orders" not in ln]
        raise AssertionError(f"{e}; flow log: {chr(10).join(keep)[-5000:]}") from None
    finally:
        sim.stop()
        for k in r.scan_iter(f"{keys.prefix}*"):
            r.delete(k)
    print(f"\nwhile Kite was down: {len(waits)} advances, the flow read each within "
          f"{max(waits):.2f} s (median {sorted(waits)[len(waits) // 2]:.2f} s); paper fills "
          f"{paper_before} -> {paper_during}")  # fmt: skip
    assert still_down and len(waits) > 50  # the flow kept reading while Kite was down
    assert paper_during > paper_before  # and paper kept filling
    assert max(tags.values()) == 1 and sum(tags.values()) >= kite_orders_before  # never twice
    failures = [f for f in read_ledger(tmp_path / "run", "order_failures")
                if f["broker"] == "zerodha"]  # fmt: skip
    assert any("KITE_UNAVAILABLE" in f["reason"] for f in failures)


def _fills(r: redis.Redis, keys: LiveKeys, broker: str) -> int:
    raw = r.get(keys.counters(broker))
    return 0 if raw is None else int(decode(KeyKind.COUNTERS, raw).fills)


def _limit_account(root: str, timeout_us: int) -> tuple[Account, ZerodhaVenue]:
    r = redis.Redis.from_url(shared_url())
    cfg = KiteConfig(api_root=root, timeout_s=2, attempts=2, backoff_max_s=0.05)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    placer = KiteOrders(client(root), IntentStore(r, LiveKeys(f"pl-{uuid.uuid4().hex[:8]}:"),
                                                  60), cfg, inst)  # fmt: skip
    venue = ZerodhaVenue(CostModel(), placer, {"mom": "LIMIT"}, None, None, timeout_us)
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {"mom": "LIMIT"},
                         (INFY,))  # fmt: skip
    return Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None), venue


def _low_limit(at: datetime) -> TradingSignal:
    return TradingSignal(
        signal_id=f"pl-{uuid.uuid4().hex[:6]}", correlation_id="c", strategy_id="mom",
        broker="zerodha", instrument_token=INFY, target_quantity=5, price=1450.0,
        timestamp=at, reason="test",
    )  # fmt: skip


def test_a_live_limit_is_cancelled_at_kite_after_its_timeout(sim) -> None:
    api, root = sim
    acct, venue = _limit_account(root, timeout_us=60 * 1_000_000)
    acct.on_item(_low_limit(T))  # BUY 5 at 1450: rests at Kite
    [order] = api.ex.orders.values()
    t0 = int(T.timestamp() * 1_000_000)
    assert order.status == "OPEN" and venue.waiting(t0 + 60_000_000)
    assert not venue.waiting(t0 + 59_999_999)  # marks before its timeout cannot end it
    times = np.array([t0 + 30_000_000, t0 + 61_000_000], dtype=np.int64)
    prices, tokens = np.array([1500.0, 1500.0]), np.array([INFY, INFY], dtype=np.int64)
    assert venue.next_fill(times, tokens, prices) == t0 + 61_000_000  # the first mark past it
    venue.on_marks(times[:1], tokens[:1], prices[:1])
    assert order.status == "OPEN"  # not yet
    venue.on_marks(times, tokens, prices)
    assert order.status == "CANCELLED" and not venue.waiting(t0 + 10**12)
    feed = OrderFeed(KiteConfig(api_root=root), client(root))
    feed.poll_once()
    items, _ = feed.drain("kite", 0)
    out = [e for i in items if not isinstance(i, DeadLetter) for e in acct.on_item(i)]
    [ended] = [e for e in out if isinstance(e, OrderFailed)]
    assert (ended.status, ended.quantity) == ("CANCELLED", 5)
    assert acct.state.book.pending(INFY) == 0


def test_open_mis_orders_are_cancelled_at_kite_at_the_cut_off(sim) -> None:
    api, root = sim
    acct, _ = _limit_account(root, timeout_us=0)
    day = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)  # 14:30 IST
    acct.on_item(_low_limit(day))
    [order] = api.ex.orders.values()
    cut = day + timedelta(minutes=50)  # 15:20 IST: the MIS cut-off
    acct.on_item(MarkSet.of(int(cut.timestamp() * 1_000_000), [(INFY, 1500.0)]))
    assert order.status == "CANCELLED"
