"""Live state in a real Redis: what the flow writes equals what its ledger says, every key
comes from the key module, and a Redis outage neither stops trading nor loses state."""

from __future__ import annotations

import codecs
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from bytewax.testing import TestingSource

from connectors.replay import ReplaySource
from flows.config import parse_config
from flows.status import NO_DATA, StatusView, status_of
from operators.report import RunReport
from schemas.config import AppConfig, RedisConfig
from schemas.enums import Stage
from schemas.events import PnlSnapshot, StageHealth
from schemas.redis_keys import KeyKind, LiveKeys, decode
from tests.redis_server import RedisServer, shared_url
from tests.support import ROOT, TOKENS, config_dict, drain, flow_env, make_config, run_graph

FAST = {"flush_interval_s": 0.05, "heartbeat_s": 0.2, "retry_max_s": 0.2, "timeout_s": 1.0}


def redis_config(
    ticks: Path, url: str, prefix: str, product: str = "MIS", **over: Any
) -> AppConfig:
    raw = config_dict(ticks, sinks=["redis"])
    for s in raw["strategies"]:
        s["product"] = product  # CNC: positions carried to the end (MIS squares them off)
        if product == "CNC":
            s["params"]["allow_short"] = False  # delivery: long or flat
    raw["redis"] = {"url": url, "key_prefix": prefix, "history_windows": 40, **FAST, **over}
    return parse_config(raw, Path("."))


def _get(client: redis.Redis, key: str) -> bytes:
    value: bytes | None = client.get(key)  # type: ignore[assignment]
    assert value is not None, f"{key} missing"
    return value


def assert_state_matches_ledger(
    client: redis.Redis, cfg: AppConfig, by_kind: dict[str, list[Any]], report: RunReport
) -> StatusView:
    """Every live value equals what an independent fold of the ledger gives."""
    keys = LiveKeys(cfg.redis.key_prefix)
    view = status_of(cfg.redis, history=0)
    assert view.flow == "finished" and view.run is not None
    assert view.run.rows_read == report.rows_read and view.run.dead_letters == report.dead_letters
    assert view.run.ticks_processed == report.ticks_processed
    assert view.run.dead_letters_by_reason == report.dead_letters_by_reason
    assert [b.broker for b in view.brokers] == sorted(b.value for b in cfg.brokers)
    for b in view.brokers:
        mine = {
            k: [x for x in v if getattr(x, "broker", None) == b.broker] for k, v in by_kind.items()
        }
        final: PnlSnapshot = mine["pnl"][-1]
        assert final.final and b.pnl == final
        assert b.positions == [p for p in final.positions if p.quantity]
        c = b.counters
        assert c is not None and c.signals == len(mine["signals"])
        assert c.rejected == len(mine["rejections"])
        assert c.validated == len(mine["orders"])  # a signal whose target is met orders nothing
        reasons = Counter(str(r) for x in mine["rejections"] for r in x.reasons)
        assert c.rejections_by_reason == dict(reasons)
        assert c.orders_placed == len(mine["orders"]) and c.fills == len(mine["fills"])
        assert c.orders_failed == len(mine["order_failures"])
        for stage in Stage:
            ledger = [h for h in mine["health"] if h.stage == stage.value]
            latest = decode(KeyKind.HEALTH, _get(client, keys.health(b.broker, stage)))
            assert latest == ledger[-1]
            stored: list[bytes] = client.zrange(keys.health_history(b.broker, stage), 0, -1)  # type: ignore[assignment]
            history = [decode(KeyKind.HEALTH_HISTORY, m) for m in stored]
            assert history == ledger[-cfg.redis.history_windows :]
    return view


def test_flow_state_in_redis_equals_the_ledger(ticks_dir: Path, tmp_path: Path) -> None:
    url = shared_url()
    cfg = redis_config(ticks_dir, url, f"test-{uuid.uuid4().hex[:8]}:", product="CNC")
    client = redis.Redis.from_url(url)
    keys = LiveKeys(cfg.redis.key_prefix)
    try:
        leftover = [  # an earlier run's values under the same prefix
            (keys.counters("zerodha"), b'{"broker": "zerodha", "signals": 99}'),
            (keys.health("paper", Stage.RISK_VALIDATION), b"{}"),
        ]
        for key, value in leftover:
            client.set(key, value)
        client.zadd(keys.health_history("paper", Stage.MARKET_DATA), {b"future": 9e9})
        by_kind, report = run_graph(cfg, tmp_path)
        assert by_kind["fills"] and by_kind["rejections"] and len(by_kind["health"]) > 400
        view = assert_state_matches_ledger(client, cfg, by_kind, report)
        paper = next(b for b in view.brokers if b.broker == "paper")
        assert paper.positions and paper.counters and paper.counters.fills > 10
        zerodha = next(b for b in view.brokers if b.broker == "zerodha")
        assert zerodha.status == "idle" and zerodha.reason == "NO_ENABLED_STRATEGY"
        assert zerodha.counters is not None and zerodha.counters.signals == 0
        assert view.exit_code == 0
    finally:
        for key in client.scan_iter(match=f"{cfg.redis.key_prefix}*"):
            client.delete(key)


def _unescape(arg: str) -> bytes:
    out: bytes = codecs.escape_decode(arg.encode())[0]
    return out


class CommandLog:
    """Every command any client sends to a Redis server, from MONITOR on a raw socket."""

    ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        while chunk := self.sock.recv(1 << 16):
            buf += chunk
            *done, buf = buf.split(b"\r\n")
            self.lines.extend(line.decode() for line in done if line.startswith(b"+1"))

    def commands(self) -> list[list[bytes]]:
        return [[_unescape(a) for a in self.ARG.findall(line)] for line in self.lines]

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def test_every_key_written_or_read_comes_from_the_key_module(
    ticks_dir: Path, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    prefix = "audit:"
    raw = config_dict(ticks_dir, sinks=["ledger", "redis"], output={"dir": str(tmp_path / "out")})
    raw["redis"] = {"url": server.url, "key_prefix": prefix, **FAST}
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(raw))
    monitor = CommandLog(server.port)
    try:
        env = flow_env(path)
        cmd = [sys.executable, "-m", "bytewax.run", "flows.main", "-w", "2"]
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
        status = [sys.executable, "-m", "flows.status", "--json", "--history", "3"]
        done = subprocess.run(status, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        time.sleep(0.3)  # MONITOR lines trail the replies
    finally:
        monitor.close()
    client = server.client()
    keys = LiveKeys(prefix)
    touched: dict[str, set[str]] = {}
    for command in monitor.commands():
        try:
            found = client.command_getkeys(*command)
        except redis.ResponseError:
            continue  # no key arguments (MULTI, EXEC, PING, HELLO, ...)
        for key in found:
            name = key.decode() if isinstance(key, bytes) else str(key)
            touched.setdefault(name, set()).add(command[0].decode().upper())
    server.stop()
    unknown = sorted(k for k in touched if keys.parse(k) is None)
    assert not unknown, f"keys not produced by schemas.redis_keys: {unknown}"
    kinds = {keys.parse(k).kind for k in touched}  # type: ignore[union-attr]
    # every kind of key but intents, which only the zerodha broker writes (test_zerodha)
    assert kinds == set(KeyKind) - {KeyKind.INTENT, KeyKind.CONTROL}  # no live control here
    assert {"SET", "GET"} <= touched[keys.pnl("paper")]  # written by the flow, read by status
    assert "ZREVRANGE" in touched[keys.health_history("paper", Stage.MARKET_DATA)]
    assert keys.writer(1) in touched  # both workers wrote their heartbeat


def _replay_items(ticks: Path) -> list[Any]:
    return drain(ReplaySource(ticks, TOKENS, 700, 1).build_part("ticks", "replay-0", None))


class Gates:
    """A source that stops at given item counts until the test opens the gate."""

    def __init__(self, items: list[Any], stops: list[int]) -> None:
        self.items, self.stops = items, stops
        self.reached = [threading.Event() for _ in stops]
        self.open = [threading.Event() for _ in stops]

    def __iter__(self) -> Iterator[Any]:
        for k, item in enumerate(self.items):
            if k in self.stops:
                g = self.stops.index(k)
                self.reached[g].set()
                assert self.open[g].wait(60), "test never opened the gate"
            yield item


def _wait(what: str, cond: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.05)


def test_redis_outage_mid_run_keeps_trading_and_rewrites_the_full_state(
    ticks_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    cfg = redis_config(ticks_dir, server.url, "outage:", log_interval_s=3600)
    keys = LiveKeys("outage:")
    items = _replay_items(ticks_dir)
    gates = Gates(items, [len(items) // 3, 2 * len(items) // 3])
    result: list[Any] = []
    flow_thread = threading.Thread(
        target=lambda: result.append(
            run_graph(cfg, tmp_path, source=TestingSource(gates, batch_size=1))
        ),
        daemon=True,
    )
    caplog.set_level(logging.INFO, logger="alpha_panda.redis")
    flow_thread.start()
    try:
        assert gates.reached[0].wait(60)
        client = server.client()
        _wait("first state", lambda: client.get(keys.pnl("paper")) is not None)
        time.sleep(0.3)
        seen = decode(KeyKind.COUNTERS, _get(client, keys.counters("paper")))
        server.stop()  # Redis goes away mid-run ...
        gates.open[0].set()
        assert gates.reached[1].wait(60), "the flow must keep running without Redis"
        before = sum("unreachable" in r.getMessage() for r in caplog.records)
        time.sleep(1.0)  # many failed retries while down ...
        logged = sum("unreachable" in r.getMessage() for r in caplog.records)
        assert before == logged == 1  # ... but one log line per interval
        server.start()  # ... and comes back empty: the writer restores everything
        client = server.client()
        _wait("full rewrite", lambda: client.get(keys.counters("zerodha")) is not None)
        assert client.get(keys.meta())  # written once at start: only a full rewrite restores it
        for b in cfg.brokers:
            assert client.get(keys.pnl(b)) and client.get(keys.positions(b)) is not None
            assert all(client.get(keys.health(b, s)) for s in Stage)
            assert client.zcard(keys.health_history(b, Stage.MARKET_DATA)) == 40
        counters = decode(KeyKind.COUNTERS, _get(client, keys.counters("paper")))
        assert counters.signals > seen.signals  # counted while Redis was down
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        gates.open[1].set()
        flow_thread.join(120)
        assert not flow_thread.is_alive() and result
        by_kind, report = result[0]
        assert report.rows_read == report.ticks_processed + report.dead_letters
        assert_state_matches_ledger(client, cfg, by_kind, report)
    finally:
        for g in gates.open:
            g.set()
        server.stop()


def test_redis_down_from_the_start_does_not_stop_the_flow(
    ticks_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis.log")  # never started: nothing listens there
    url = f"redis://:not-a-real-password@127.0.0.1:{server.port}/0"
    cfg = redis_config(ticks_dir, url, "down:", close_timeout_s=0.5)
    reference = make_config(ticks_dir)
    caplog.set_level(logging.INFO, logger="alpha_panda.redis")
    by_kind, report = run_graph(cfg, tmp_path)
    plain, _ = run_graph(reference, tmp_path)
    assert by_kind == plain and report.ticks_processed > 0  # trading unaffected
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable (" in m for m in messages) == 1
    assert any("final state was not written" in m for m in messages)
    assert all("not-a-real-password" not in m for m in messages)
    assert any(":***@127.0.0.1" in m for m in messages)
    view = status_of(RedisConfig(url=url))
    assert view.flow == "unreachable" and view.exit_code == NO_DATA
    assert "not-a-real-password" not in view.model_dump_json()


def test_status_reads_health_history_in_window_order(ticks_dir: Path, tmp_path: Path) -> None:
    url = shared_url()
    cfg = redis_config(ticks_dir, url, f"test-{uuid.uuid4().hex[:8]}:")
    client = redis.Redis.from_url(url)
    try:
        by_kind, _ = run_graph(cfg, tmp_path)
        view = status_of(cfg.redis, history=3)
        paper = next(b for b in view.brokers if b.broker == "paper")
        ledger: list[StageHealth] = [h for h in by_kind["health"] if h.broker == "paper"]
        last3 = sorted({h.window_start for h in ledger})[-3:]
        expect = sorted(
            (h for h in ledger if h.window_start in last3), key=lambda h: (h.window_start, h.stage)
        )
        assert paper.history == expect and len(expect) == 3 * len(Stage)
    finally:
        for key in client.scan_iter(match=f"{cfg.redis.key_prefix}*"):
            client.delete(key)
