"""A Kite simulator process and a live flow process for the end-to-end tests, with
distinctive credentials so that the tests can look for them in every output."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
import requests
import yaml
from kiteconnect import KiteTicker

from connectors.kite.client import call_in_reactor, start_ticker
from schemas.kite import ACCESS_TOKEN_ENV, API_KEY_ENV, API_SECRET_ENV
from schemas.redis_keys import KeyKind, LiveKeys, decode
from tests.support import KEY, ROOT, TOKEN, flow_env, free_ports

SECRETS = {
    API_KEY_ENV: "apikey7Qw2LxZ9",
    API_SECRET_ENV: "apisecret4Hn8RtV1",
    ACCESS_TOKEN_ENV: "accesstoken6Pm3KdS5",
}
TOKENS = [738561, 408065, 2953217, 341249]


def tape(folder: Path, hours: float = 2.0) -> Path:
    """The bundled sample, four instruments, its first ``hours``."""
    t = pq.read_table(ROOT / "data" / "sample_ticks.parquet")
    t = t.filter(pc.is_in(t["instrument_token"], pc.cast(TOKENS, "int64")))
    t = t.filter(pc.is_valid(t["timestamp"]))
    start = pc.min(t["timestamp"]).as_py()
    end = start.timestamp() + hours * 3600
    t = t.filter(pc.less(pc.cast(t["timestamp"], "int64"), int(end * 1e6)))
    out = folder / "tape.parquet"
    pq.write_table(t, out)
    return out


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Sim:
    def __init__(self, ticks: Path, log: Path) -> None:
        self.port = free_ports(1)[0]
        self.root = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "connectors.kite.sim", "--ticks", str(ticks),
               "--port", str(self.port), "--speed", "0"]  # fmt: skip
        with log.open("w") as fh:
            self.proc = subprocess.Popen(
                cmd, env={**flow_env(None), **SECRETS}, stdout=fh, stderr=fh
            )
        wait(self._up, 30, "the simulator")

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.root}/_sim/state", timeout=1).ok
        except requests.ConnectionError:
            return False

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = requests.get(f"{self.root}/_sim/state", timeout=5).json()["data"]
        return data

    def post(self, path: str, **body: Any) -> dict[str, Any]:
        r = requests.post(f"{self.root}{path}", json=body, timeout=5)
        data: dict[str, Any] = r.json()["data"]
        return data

    def orders(self) -> list[dict[str, Any]]:
        auth = f"token {SECRETS[API_KEY_ENV]}:{SECRETS[ACCESS_TOKEN_ENV]}"
        r = requests.get(f"{self.root}/orders", headers={"Authorization": auth}, timeout=5)
        rows: list[dict[str, Any]] = r.json()["data"]
        return rows

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def flow_config(
    tmp: Path, redis_url: str, prefix: str, source: dict[str, Any], brokers: list[str]
) -> dict[str, Any]:
    """A live flow's config: momentum on the four tape instruments for ``brokers``, the
    session open all day every day, ledger and Redis sinks."""
    return {
        "source": source,
        "sinks": ["ledger", "redis"],
        "redis": {"url": redis_url, "key_prefix": prefix, "flush_interval_s": 0.05},
        "instruments": str(ROOT / "data" / "instruments.csv"),
        "brokers": {"paper": {"slippage_bps": 0}, **{b: {} for b in brokers if b != "paper"}},
        "strategies": [
            {
                "id": "mom",
                "type": "momentum",
                "instruments": TOKENS,
                "brokers": brokers,
                "params": {"lookback": 120, "threshold": 0.003, "quantity": 5},
            }
        ],
        # open all day, every day, whatever the wall clock (some tests stamp ticks with it)
        "session": {
            "open": "00:00:00",
            "close": "23:59:59",
            "mis_cutoff": "23:59:59",
            "calendar": None,
            "weekdays": [0, 1, 2, 3, 4, 5, 6],
        },
        "output": {"dir": str(tmp / "run")},
    }


def live_config(tmp: Path, sim: Sim, redis_url: str, prefix: str, **source: Any) -> Path:
    kite = {"kind": "kite", "stale_after_s": 1.5, **source}
    raw = flow_config(tmp, redis_url, prefix, kite, ["paper", "zerodha"])
    raw["kite"] = {
        "api_root": sim.root,
        "ws_root": sim.root.replace("http", "ws"),
        "poll_s": 0.5,
        "timeout_s": 2,
        "require_persistent_redis": False,  # the shared test Redis keeps nothing on disk
    }
    path = tmp / "live.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_counters(r: redis.Redis, keys: LiveKeys) -> Any:
    raw = r.get(keys.run_counters())
    return None if raw is None else decode(KeyKind.RUN_COUNTERS, raw)


def drive(sim: Sim, r: redis.Redis, keys: LiveKeys, step: int, until: int | None = None) -> int:
    """Advance the tape ``step`` ticks at a time, each time until the flow has read them all;
    stop at ``until`` ticks (or the tape's end). Returns the cursor."""
    cursor = sim.state()["cursor"]
    while until is None or cursor < until:
        n = step if until is None else min(step, until - cursor)
        moved = sim.post("/_sim/advance", ticks=n)
        if not moved["advanced"]:
            break
        cursor = moved["cursor"]
        wait(lambda c=cursor: (rc := run_counters(r, keys)) and rc.rows_read >= c,  # type: ignore[misc]
             60, f"the flow to read {cursor} ticks")  # fmt: skip
    return cursor


def grep(secret_values: list[str], blobs: dict[str, bytes]) -> list[str]:
    return [f"{name} holds a secret" for name, b in blobs.items() for s in secret_values
            if s.encode() in b]  # fmt: skip


def dump(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


class Recorder:
    """A KiteTicker on the shared reactor, recording what its callbacks receive."""

    def __init__(self, root: str, modes: dict[str, list[int]]) -> None:
        self.ticks: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.orders: list[dict[str, Any]] = []
        self.connects = 0
        self.kws = KiteTicker(KEY, TOKEN, root=root.replace("http", "ws"), reconnect_max_delay=5)

        def on_connect(ws: KiteTicker, response: Any) -> None:
            self.connects += 1
            for mode, tokens in modes.items():
                ws.subscribe(tokens)
                ws.set_mode(mode, tokens)

        self.kws.on_connect = on_connect
        self.kws.on_ticks = lambda ws, ticks: self._put(ticks)
        self.kws.on_order_update = lambda ws, data: self.orders.append(data)
        start_ticker(self.kws)
        wait(lambda: self.connects, 10, "the ticker to connect")

    def _put(self, ticks: list[dict[str, Any]]) -> None:
        for t in ticks:
            self.ticks.put(t)

    def drain(self, settle: float = 0.3) -> list[dict[str, Any]]:
        time.sleep(settle)
        out = []
        while not self.ticks.empty():
            out.append(self.ticks.get())
        return out

    def close(self) -> None:
        call_in_reactor(self.kws.close)
