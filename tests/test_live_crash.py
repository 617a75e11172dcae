"""Crash and resume with real orders: a Kafka-fed flow trading on zerodha (the simulator) is
killed with SIGKILL mid-session, then resumed from its recovery store. The resume reads the
topic again from its last snapshot, so the signals behind orders already placed come again;
every validated signal must still have exactly one order at the simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import redis
import yaml
from bytewax.recovery import init_db_dir

from connectors.kafka.load import publish
from schemas.config import KafkaConfig
from schemas.redis_keys import KeyKind, LiveKeys, decode
from tests.kafka_broker import create_topic
from tests.live_sim import SECRETS, Sim, live_config, run_counters, tape, wait
from tests.redis_server import shared_url
from tests.support import flow_env


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
    cfg.write_text(yaml.safe_dump(raw))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    # Snapshots every hour: the resume starts from the beginning of the topic, so every
    # signal that led to an order before the kill comes again.
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main", "-r", str(recovery), "-s", "3600",
           "-b", "0"]  # fmt: skip
    env = {**flow_env(cfg), **SECRETS}

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / name).open("w") as fh:
            return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=fh, stderr=fh)

    def alive(p: subprocess.Popen[bytes]) -> bool:
        assert p.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        return True

    def settled() -> bool:
        rc, raw_counters = run_counters(r, keys), r.get(keys.counters("zerodha"))
        if rc is None or rc.rows_read < total or raw_counters is None:
            return False
        c = decode(KeyKind.COUNTERS, raw_counters)
        return bool(c.validated == c.orders_placed + c.orders_failed)

    try:
        first = start("first.log")
        wait(lambda: alive(first) and len(sim.orders()) >= 5, 120, "orders before the kill")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        before = len(sim.orders())
        resumed = start("resumed.log")
        wait(lambda: alive(resumed) and settled(), 120, "the resumed flow to handle every signal")
        os.kill(resumed.pid, signal.SIGKILL)  # a live flow never ends by itself
        resumed.wait(10)
        orders = sim.orders()
    finally:
        sim.stop()
    counters = decode(KeyKind.COUNTERS, r.get(keys.counters("zerodha")) or b"")
    tags = Counter(o["tag"] for o in orders)
    assert max(tags.values()) == 1, "a signal led to a second order"
    # The counters are the resumed run's own (it clears the earlier run's keys), and it read
    # the topic from the start: it validated the signals behind the orders placed before
    # the kill again, and found those orders (by an update, or by listing) instead of
    # placing new ones.
    assert len(orders) == counters.validated == counters.orders_placed + counters.orders_failed
    assert len(orders) > before >= 5  # the first run was killed mid-session
    for k in r.scan_iter(f"{keys.prefix}*"):
        r.delete(k)
