"""Operator commands reach a RUNNING flow: a Kafka-tail paper flow is fed ticks as they
happen (stamped with the wall clock, as a live feed would be), and ``python -m flows.control``
halts it and resumes it through Redis. While halted, the account refuses every order that
would grow a position (TRADING_HALTED) and places only reducing ones; the ledger records the
two state changes. Real Redis and a real Kafka-protocol broker; nothing mocked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import redis
import yaml
from confluent_kafka import Producer

from connectors.kafka import client_config
from schemas.config import KafkaConfig
from schemas.redis_keys import KeyKind, LiveKeys, decode
from tests.kafka_broker import create_topic
from tests.live_sim import flow_config, run_counters, tape, wait
from tests.redis_server import shared_url
from tests.support import flow_env, read_ledger

SLICE = 120  # ticks per send
GAP_S = 0.15  # between sends: the 1.5 h tape (~13.6k ticks) takes ~17 s


def _config(tmp: Path, kafka: str, topic: str, url: str, prefix: str, **source: Any) -> Path:
    kafka_source = {"kind": "kafka", "topic": topic, "tail": True, "max_delay_s": 1.0, **source}
    raw = flow_config(tmp, url, prefix, kafka_source, ["paper"])
    raw["kafka"] = {"brokers": [kafka]}
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Feed(threading.Thread):
    """Sends the tape's ticks ``SLICE`` at a time, each stamped with the wall clock when sent
    (µs apart within a slice, so every instrument's times rise)."""

    def __init__(self, ticks: Path, kafka: str, topic: str) -> None:
        super().__init__(name="tick-feed", daemon=True)
        t = pq.read_table(ticks, columns=["instrument_token", "last_price", "volume"])
        self.rows = list(zip(*(t[c].to_pylist() for c in t.column_names), strict=True))
        self.producer = Producer(client_config(KafkaConfig(brokers=[kafka])))
        self.topic = topic
        self.sent = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.rows), SLICE):
                if self.stop.is_set():
                    return
                base = time.time()
                for k, (tok, price, vol) in enumerate(self.rows[start : start + SLICE]):
                    ts = datetime.fromtimestamp(base + k * 1e-5, tz=timezone.utc).isoformat()
                    msg = {"instrument_token": tok, "last_price": price, "timestamp": ts}
                    msg["volume"] = vol
                    self.producer.produce(self.topic, json.dumps(msg).encode(), str(tok).encode())
                self.producer.flush(10)
                self.sent = min(start + SLICE, len(self.rows))
                self.stop.wait(GAP_S)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def _command(cfg: Path, command: str, wait_s: int = 10) -> tuple[int, str, float]:
    """Run ``flows.control paper COMMAND --wait S``: exit code, output, and the seconds from
    its "sent" line to its report that the trading state changed (or to its exit)."""
    cmd = [sys.executable, "-m", "flows.control", "paper", command, "--config", str(cfg),
           "--wait", str(wait_s)]  # fmt: skip
    p = subprocess.Popen(
        cmd, env=flow_env(cfg), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    sent = p.stdout.readline()
    t_sent = time.monotonic()
    applied = p.stdout.readline()
    seconds = time.monotonic() - t_sent
    _, err = p.communicate(timeout=30)
    return p.wait(), sent + applied + err, seconds


def _state(r: redis.Redis, keys: LiveKeys) -> Any:
    raw = r.get(keys.trading_state("paper"))
    return None if raw is None else decode(KeyKind.TRADING_STATE, raw)


def _counters(r: redis.Redis, keys: LiveKeys) -> Any:
    raw = r.get(keys.counters("paper"))
    return None if raw is None else decode(KeyKind.COUNTERS, raw)


def _halted_rejections(r: redis.Redis, keys: LiveKeys) -> int:
    c = _counters(r, keys)
    return 0 if c is None else int(c.rejections_by_reason.get("TRADING_HALTED", 0))


def _account_decided(r: redis.Redis, keys: LiveKeys) -> bool:
    """The paper account has decided on a signal (so it exists and polls its inbox)."""
    c = _counters(r, keys)
    return c is not None and c.validated + c.rejected > 0


def _grows(before: int, after: int) -> bool:
    """``after`` is not a smaller position on the same side (nor flat)."""
    shrinks = abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))
    return not shrinks


def test_halt_and_resume_reach_a_running_kafka_tail_flow(kafka: str, tmp_path: Path) -> None:
    url = shared_url()
    r = redis.Redis.from_url(url)
    keys = LiveKeys(f"ctl-live-{uuid.uuid4().hex[:8]}:")
    topic = f"ctl.{uuid.uuid4().hex[:6]}"
    create_topic(kafka, topic, 1)
    cfg = _config(tmp_path, kafka, topic, url, keys.prefix, idle_stop_s=8)
    feed = Feed(tape(tmp_path, hours=1.5), kafka, topic)
    log = tmp_path / "flow.log"
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
    with log.open("w") as fh:
        flow = subprocess.Popen(cmd, cwd=tmp_path, env=flow_env(cfg), stdout=fh, stderr=fh)
    feed.start()

    def running() -> bool:
        assert flow.poll() is None, log.read_text()[-3000:]
        rc = run_counters(r, keys)
        return rc is not None and rc.rows_read > 0 and _account_decided(r, keys)

    try:
        # Running: reading ticks, and its account trading (a command sent before the account's
        # first item is lost: test_a_halt_sent_before_the_first_tick_is_applied).
        wait(running, 60, "the flow to read ticks and decide on a signal")
        code, out, halt_s = _command(cfg, "halt")
        assert code == 0, out
        halted = _state(r, keys)
        assert (halted.state, halted.reason) == ("HALTED", "OPERATOR_HALT"), halted
        # Stay halted until the account has refused at least one order that grows a position.
        wait(lambda: _halted_rejections(r, keys) > 0, 30, "a TRADING_HALTED rejection")
        assert feed.is_alive(), "the tape ran out while halted: the resume would not be live"
        code, out, resume_s = _command(cfg, "resume")
        assert code == 0, out
        resumed = _state(r, keys)
        assert (resumed.state, resumed.reason) == ("ACTIVE", "OPERATOR_RESUME"), resumed
        print(f"\ncommand → trading state in Redis: halt {halt_s:.2f} s, resume {resume_s:.2f} s")
        feed.join(60)
        assert feed.error is None, feed.error
        assert flow.wait(60) == 0, log.read_text()[-3000:]  # ends idle_stop_s after the tape
    finally:
        feed.stop.set()
        if flow.poll() is None:
            flow.kill()
            flow.wait(10)
        for k in r.scan_iter(f"{keys.prefix}*"):
            r.delete(k)

    run = tmp_path / "run"
    changes = [c for c in read_ledger(run, "trading_states") if c["broker"] == "paper"]
    assert [(c["state"], c["reason"]) for c in changes] == [
        ("HALTED", "OPERATOR_HALT"),
        ("ACTIVE", "OPERATOR_RESUME"),
    ]
    t_halt, t_resume = changes[0]["timestamp"], changes[1]["timestamp"]
    assert t_halt < t_resume

    # Positions before each decision, from the fills (paper fills at once, at the signal's time;
    # one strategy per instrument, so its events are in event-time order).
    fills: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for f in read_ledger(run, "fills"):
        if f["broker"] == "paper":
            sign = 1 if f["side"] == "BUY" else -1
            fills[f["instrument_token"]].append((f["timestamp"], sign * f["quantity"]))

    def held(token: int, before: datetime) -> int:
        return sum(q for ts, q in fills[token] if ts < before)

    def signed(row: dict[str, Any]) -> int:
        return int(row["quantity"]) * (1 if row["side"] == "BUY" else -1)

    rejections = [x for x in read_ledger(run, "rejections") if x["broker"] == "paper"]
    inside = [x for x in rejections if t_halt <= x["signal"]["timestamp"] <= t_resume]
    growing = 0
    for x in inside:
        tok, ts = x["signal"]["instrument_token"], x["signal"]["timestamp"]
        before = held(tok, ts)
        if _grows(before, before + signed(x)):
            growing += 1
            assert "TRADING_HALTED" in x["reasons"], x
    assert growing > 0, "no order that grows a position was refused while halted"

    orders = [o for o in read_ledger(run, "orders") if o["broker"] == "paper"]
    assert orders, "the flow placed no paper order at all"
    during = [o for o in orders if t_halt < o["timestamp"] < t_resume]
    for o in during:
        before = held(o["instrument_token"], o["timestamp"])
        assert not _grows(before, before + signed(o)), (
            f"order {o['order_id']} ({o['side']} {o['quantity']} on {o['instrument_token']} at "
            f"{o['timestamp']}) grows position {before} while HALTED "
            f"[{t_halt} .. {t_resume}]"
        )


def test_a_halt_sent_before_the_first_tick_is_applied(kafka: str, tmp_path: Path) -> None:
    """An operator halts a running flow before the market opens (no tick yet): the account
    must apply it when its first item comes, not trade."""
    url = shared_url()
    r = redis.Redis.from_url(url)
    keys = LiveKeys(f"ctl-early-{uuid.uuid4().hex[:8]}:")
    topic = f"ctl.{uuid.uuid4().hex[:6]}"
    create_topic(kafka, topic, 1)
    cfg = _config(tmp_path, kafka, topic, url, keys.prefix)  # runs until killed
    feed = Feed(tape(tmp_path, hours=0.5), kafka, topic)
    log = tmp_path / "flow.log"
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
    with log.open("w") as fh:
        flow = subprocess.Popen(cmd, cwd=tmp_path, env=flow_env(cfg), stdout=fh, stderr=fh)

    def up() -> bool:
        assert flow.poll() is None, log.read_text()[-3000:]
        return r.get(keys.meta()) is not None  # the run's sink is open: the run has started

    try:
        wait(up, 60, "the flow to start")
        code, out, _ = _command(cfg, "halt", wait_s=0)  # just send
        assert code == 0, out
        feed.start()

        def decided() -> Any:
            c = _counters(r, keys)
            return c if c is not None and c.validated + c.rejected > 0 else None

        first = wait(decided, 60, "the account's first decisions")
        assert first.validated == first.orders_placed == 0, (
            f"the flow traded although halted before its first tick: {first}; "
            f"trading state {_state(r, keys)}"
        )
        got = wait(lambda: _state(r, keys), 30, "the trading state")
        assert (got.state, got.reason) == ("HALTED", "OPERATOR_HALT"), got
    finally:
        feed.stop.set()
        flow.kill()
        flow.wait(10)
        for k in r.scan_iter(f"{keys.prefix}*"):
            r.delete(k)
