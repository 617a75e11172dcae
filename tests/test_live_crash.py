"""Crash and resume with real orders: a Kafka-fed flow trading on zerodha (the simulator) is
killed with SIGKILL mid-session, then resumed from its recovery store. The resume reads the
topic again from its last snapshot, so the signals behind orders already placed come again;
every validated signal must still have exactly one order at the simulator, and the broker's
positions must converge to the strategies' targets: what a plain replay of the same tape,
on paper, ends up holding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import redis
import yaml
from bytewax.recovery import init_db_dir

from connectors.kafka.load import publish
from flows.config import parse_config
from schemas.config import KafkaConfig
from schemas.redis_keys import KeyKind, LiveKeys, decode
from tests.kafka_broker import create_topic
from tests.live_sim import SECRETS, TOKENS, Sim, live_config, run_counters, tape, wait
from tests.redis_server import shared_url
from tests.support import flow_env, run_graph

# What an order at Kite holds or will hold: its fill once it ended, all of it while it rests.
ENDED = {"COMPLETE", "CANCELLED", "REJECTED"}
RESTING = {"OPEN", "TRIGGER PENDING"}


def replay_targets(
    raw: dict[str, Any], ticks: Path, out: Path
) -> tuple[dict[int, int], int, Any, Any]:
    """A plain replay of ``ticks`` through the same strategy, on paper only (in-process): the
    last target per instrument (0 where flat), its number of signals, and the time of its
    first snapshot after its last signal (once the live zerodha account snapshots that time,
    it has decided on every signal of the tape) and that last signal's time."""
    replay = {k: v for k, v in raw.items() if k not in ("kite", "kafka", "redis")}
    replay["source"] = {"kind": "replay", "path": str(ticks)}
    replay["brokers"] = {"paper": {"slippage_bps": 0}}
    replay["strategies"] = [{**s, "brokers": ["paper"]} for s in raw["strategies"]]
    replay["sinks"] = ["ledger"]
    replay["output"] = {"dir": str(out)}
    rows, _ = run_graph(parse_config(replay, out.parent), out)
    targets = dict.fromkeys(TOKENS, 0)  # each instrument's last target (paper may not
    for s in sorted(rows["signals"], key=lambda s: s.timestamp):  # fill its last order
        targets[s.instrument_token] = s.target_quantity  # before the tape ends)
    last_signal = max(s.timestamp for s in rows["signals"])
    after = [p.timestamp for p in rows["pnl"] if not p.final and p.timestamp > last_signal]
    # A live flow snapshots a time once a later item passes it (no end of stream to flush
    # it): the tape must run past a second snapshot after its last signal.
    assert len(after) >= 2, "the tape must run well past its last signal"
    return targets, len(rows["signals"]), min(after), last_signal


def held_at_kite(orders: list[dict[str, Any]]) -> tuple[dict[int, int], dict[int, int]]:
    """Per instrument, the signed quantity the account holds or will hold at the simulator,
    and the largest |that| after any order (in placement order)."""
    held: dict[int, int] = dict.fromkeys(TOKENS, 0)
    peak: dict[int, int] = defaultdict(int)
    for o in sorted(orders, key=lambda o: int(o["order_id"])):
        status = o["status"]
        assert status in ENDED | RESTING, f"order {o['order_id']}: unexpected status {status}"
        qty = o["filled_quantity"] if status in ENDED else o["quantity"]
        tok = o["instrument_token"]
        held[tok] += qty if o["transaction_type"] == "BUY" else -qty
        peak[tok] = max(peak[tok], abs(held[tok]))
    return held, dict(peak)


def test_sigkill_and_resume_place_each_order_once(kafka: str, tmp_path: Path) -> None:
    url = shared_url()
    r = redis.Redis.from_url(url)
    keys = LiveKeys(f"crash-{uuid.uuid4().hex[:8]}:")
    ticks = tape(tmp_path, hours=1.5)
    topic = f"crash.{uuid.uuid4().hex[:6]}"
    create_topic(kafka, topic, 1)
    total = publish(ticks, KafkaConfig(brokers=[kafka]), topic)
    sim = Sim(ticks, tmp_path / "sim.log")
    cfg = live_config(tmp_path, sim, url, keys.prefix)
    raw = yaml.safe_load(cfg.read_text())
    raw["source"] = {"kind": "kafka", "topic": topic, "max_delay_s": 1.0}
    raw["kafka"] = {"brokers": [kafka]}
    raw["kite"]["max_orders_per_s"] = 5  # slow enough to kill it mid-session
    # The tape was published before the runs: on a slow machine the resume reads it more than
    # max_signal_age_s of wall time later, and every new order would be refused as too old.
    raw["kite"]["max_signal_age_s"] = None
    raw["portfolio"] = {"snapshot_interval_s": 60}  # a snapshot soon after the last signal
    cfg.write_text(yaml.safe_dump(raw))
    targets, signals, last_snapshot, last_signal = replay_targets(
        raw, ticks, tmp_path / "replay" / "run"
    )
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    # Snapshots every hour: the resume starts from the beginning of the topic, so every
    # signal that led to an order before the kill comes again.
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main", "-r", str(recovery), "-s", "3600",
           "-b", "0"]  # fmt: skip
    env = {**flow_env(cfg), **SECRETS}

    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / name).open("w") as fh:
            procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=fh, stderr=fh))
        return procs[-1]

    def alive(p: subprocess.Popen[bytes]) -> bool:
        assert p.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        return True

    def settled() -> bool:
        # Every tick read, every signal of the replay out of the strategies, and the account
        # past the last one: it snapshots in event-time order, after deciding (and placing)
        # everything before.
        rc, pnl = run_counters(r, keys), r.get(keys.pnl("zerodha"))
        raw_counters = r.get(keys.counters("zerodha"))
        if rc is None or rc.rows_read < total or pnl is None or raw_counters is None:
            return False
        c = decode(KeyKind.COUNTERS, raw_counters)
        # Kite answered each order, the last signal's included (placing is asynchronous)
        placed = c.orders_placed + c.orders_failed >= c.validated and c.as_of >= last_signal
        seen = c.signals >= signals and decode(KeyKind.PNL, pnl).timestamp >= last_snapshot
        return seen and placed

    try:
        first = start("first.log")
        wait(lambda: alive(first) and len(sim.orders()) >= 5, 120, "orders before the kill")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        before = len(sim.orders())
        r.delete(keys.pnl("zerodha"))  # settled() must see the resumed run's own snapshot
        resumed = start("resumed.log")
        wait(lambda: alive(resumed) and settled(), 120, "the resumed flow to handle every signal")
        os.kill(resumed.pid, signal.SIGKILL)  # a live flow never ends by itself
        resumed.wait(10)
        orders = sim.orders()
        counters = decode(KeyKind.COUNTERS, r.get(keys.counters("zerodha")) or b"")
    finally:
        for p in procs:
            if p.poll() is None:  # a failed wait: never leave a live flow behind
                p.kill()
                p.wait(10)
        sim.stop()
        for k in r.scan_iter(f"{keys.prefix}*"):
            r.delete(k)
    tags = Counter(o["tag"] for o in orders)
    assert max(tags.values()) == 1, "a signal led to a second order"
    # Convergence: what the broker holds (or will, once its resting orders fill) is what the
    # strategy's targets come to, per instrument, as an independent plain replay says.
    held, peak = held_at_kite(orders)
    seq = {t: [(o["transaction_type"][0], o["quantity"], o["tag"][-4:]) for o in
               sorted(orders, key=lambda o: int(o["order_id"])) if o["instrument_token"] == t]
           for t in TOKENS}  # fmt: skip
    assert held == targets, f"zerodha holds {held}, the targets are {targets}; {counters}; {seq}"
    size = raw["strategies"][0]["params"]["quantity"]  # the strategy's |target|
    assert all(abs(q) <= size for q in held.values()), held
    assert all(q <= size for q in peak.values()), f"largest |position| per instrument {peak}"
    assert len(orders) > before >= 5  # the first run was killed mid-session
    # The counters are the resumed run's own (it clears the earlier run's keys), and it read
    # the topic from the start. The orders placed before the kill came back as Kite's order
    # updates (then their replayed signals validate nothing new) or were found by listing
    # when their signal came first (adopted): every order at Kite is placed exactly once,
    # each new one validated by the resumed run.
    assert len(orders) == counters.orders_placed + counters.orders_failed, (
        f"{len(orders)} orders at Kite; resumed run's counters {counters}"
    )
    assert len(orders) - before <= counters.validated <= len(orders), counters
