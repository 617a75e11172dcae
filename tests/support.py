"""Shared test support: synthetic data and configs, in-process and CLI runs, event
examples, Kite simulator helpers. Test files import from here (fixtures live in conftest)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import requests
import yaml
from bytewax.testing import TestingSink, run_main
from kiteconnect import KiteConnect

from connectors.kite.sim.__main__ import SIM_DEFAULTS
from data.generate import generate, sample_instruments
from flows.config import DEFAULT_CONFIG, parse_config
from flows.graph import build_flow
from flows.plan import prepare
from operators.report import RunReport
from schemas.config import AppConfig
from schemas.events import (
    DeadLetter,
    FeesSettled,
    MarketTick,
    Model,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    PnlSnapshot,
    RejectedSignal,
    StageHealth,
    TradingSignal,
    TradingStateChanged,
    ValidatedSignal,
)
from schemas.ledger import LEDGER_KINDS

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET, TOKEN = (
    SIM_DEFAULTS[k] for k in ("KITE_API_KEY", "KITE_API_SECRET", "KITE_ACCESS_TOKEN")
)

DAY = date(2026, 11, 20)
INSTRUMENTS = [(t, s, 0.05) for t, s, _ in sample_instruments()[:6]]  # the tests' own grid
TOKENS = [t for t, _, _ in INSTRUMENTS]


def small_ticks(folder: Path, days: int = 1, gap_s: float = 6.0, bad_rows: bool = True) -> Path:
    """A few instruments, ~4k ticks each per day, one file per day (with the bad rows)."""
    from data.generate import trading_days

    out = folder / "ticks"
    generate(
        out, INSTRUMENTS, trading_days(DAY, days), seed=11, mean_gap_s=gap_s, bad_rows=bad_rows
    )
    return out


def config_dict(ticks: Path, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "source": {"path": str(ticks), "batch_size": 700, "partitions": 3},
        "instruments": [
            {"instrument_token": t, "tradingsymbol": s, "tick_size": ts} for t, s, ts in INSTRUMENTS
        ],
        "brokers": {"paper": {"starting_cash": 1_000_000}, "zerodha": {}},
        "strategies": [
            {
                "id": "mom",
                "type": "momentum",
                "instruments": TOKENS[:3],
                "brokers": ["paper"],
                "params": {"lookback": 60, "threshold": 0.003, "quantity": 5},
            },
            {
                "id": "mr",
                "type": "mean_reversion",
                "instruments": TOKENS[2:],
                "brokers": ["paper"],
                "params": {"bollinger_lookback": 30, "bollinger_width": 2.0, "quantity": 5},
            },
        ],
        "portfolio": {"snapshot_interval_s": 300},
        "health": {"window_s": 60},
    }
    raw.update(over)
    return raw


def make_config(ticks: Path, **over: Any) -> AppConfig:
    return parse_config(config_dict(ticks, **over), Path("."))


def read_ledger(root: Path, kind: str) -> list[dict[str, Any]]:
    return ds.dataset(root / kind).to_table().to_pylist()


def flow_env(config: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ALPHA_PANDA_CONFIG"}
    if config is not None:
        env["ALPHA_PANDA_CONFIG"] = str(config)
    env["PYTHONPATH"] = str(ROOT)
    return env


def bytewax_run(args: list[str], config: Path | None, cwd: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main", *args]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=flow_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def python_script(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (dedented) in a fresh interpreter with the project importable."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def finish(p: subprocess.Popen[str]) -> str:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return out


def ledger_bytes(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*.parquet"))}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_graph(
    cfg: AppConfig,
    tmp: Path,
    shards: dict[str, list[Any]] | None = None,
    source: Any = None,
) -> tuple[dict[str, list[Any]], RunReport]:
    """Run in-process; returns rows per kind (and, in ``shards``, per shard in write order).
    ``source`` replaces the config's source (one partition, ``replay-0``)."""
    rows: list[tuple[str, Any]] = []
    reports: list[RunReport] = []
    plan = prepare(
        cfg,
        source=source,
        source_parts=["replay-0"] if source is not None else None,
        ledger=TestingSink(rows),
        report=TestingSink(reports),
        out_dir=tmp,
    )
    flow = build_flow(plan)
    run_main(flow)
    by_kind: dict[str, list[Any]] = {k: [] for k in LEDGER_KINDS}
    for key, item in rows:
        if hasattr(item, "model_dump"):
            by_kind[key.split("/")[0]].append(item)
            if shards is not None:
                shards.setdefault(key, []).append(item)
    assert len(reports) == 1
    return by_kind, reports[0]


T = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)
SIGNAL: dict[str, Any] = dict(
    signal_id="sig-1", correlation_id="corr-1", strategy_id="mom", broker="paper",
    instrument_token=738561, target_quantity=5, price=2900.5, timestamp=T, reason="x",
)  # fmt: skip
ORDER: dict[str, Any] = dict(
    event_id="e", order_id="o", correlation_id="corr-1", causation_id="c", broker="paper",
    broker_order_id=None,
    signal_id="sig-1", strategy_id="mom", instrument_token=738561, side="BUY", timestamp=T,
)  # fmt: skip
REQUEST: dict[str, Any] = dict(
    event_id="v", order_id="o", correlation_id="corr-1", causation_id="sig-1", broker="paper",
    timestamp=T, signal=SIGNAL, side="BUY", quantity=5,
)  # fmt: skip
EXAMPLES: dict[type[Model], dict[str, Any]] = {
    MarketTick: dict(instrument_token=738561, last_price=2900.5, timestamp=T),
    TradingSignal: SIGNAL,
    ValidatedSignal: REQUEST,
    RejectedSignal: {**REQUEST, "reasons": ["MARKET_CLOSED"], "detail": "closed"},
    OrderPlaced: {
        **ORDER,
        "status": "PLACED",
        "quantity": 5,
        "order_type": "MARKET",
        "price": 2900.5,
    },
    OrderFilled: {
        **ORDER,
        "status": "FILLED",
        "quantity": 5,
        "fill_price": 2901.0,
        "fees": 1.5,
    },
    OrderFailed: {**ORDER, "status": "REJECTED", "quantity": 5, "reason": "insufficient margin"},
    FeesSettled: {
        **ORDER,
        "status": "FILLED",
        "quantity": 5,
        "model_fees": 5.21,
        "note_fees": 5.0,
        "adjustment": -0.21,
        "stt": 4.0,
    },
    TradingStateChanged: dict(
        event_id="ts",
        broker="paper",
        state="REDUCING",
        previous="ACTIVE",
        reason="DAILY_LOSS_BREACHED",
        detail="day loss 3,100.00 >= limit 3,000.00",
        timestamp=T,
    ),
    PnlSnapshot: dict(
        event_id="p",
        broker="paper",
        timestamp=T,
        starting_cash=1e6,
        cash=1e6,
        realized_pnl=0.0,
        unrealized_pnl=0.0,
        fees=0.0,
        equity=1e6,
        positions=[],
        final=False,
    ),
    StageHealth: dict(
        event_id="h",
        broker="zerodha",
        stage="market_data",
        status="idle",
        reason="MARKET_CLOSED",
        window_start=T,
        window_end=T,
        count=0,
        rate_per_s=0.0,
        last_event_time=None,
        latency_p50_ms=None,
        latency_p99_ms=None,
    ),
    DeadLetter: dict(
        event_id="d",
        reason="INVALID_PRICE",
        detail="x",
        source="f.parquet",
        source_partition="replay-0",
        offset=3,
        timestamp=None,
        raw="{}",
    ),
}


def client(root: str, token: str | None = TOKEN, timeout: int = 7) -> KiteConnect:
    kite = KiteConnect(api_key=KEY, root=root, timeout=timeout)
    if token:
        kite.set_access_token(token)
    return kite


def advance(root: str, ticks: int) -> dict[str, Any]:
    r = requests.post(f"{root}/_sim/advance", json={"ticks": ticks}, timeout=60)
    data: dict[str, Any] = r.json()["data"]
    return data


def faults(root: str, **kw: Any) -> None:
    assert requests.post(f"{root}/_sim/faults", json=kw, timeout=5).status_code == 200


def to_tick(x: float, tick: float) -> float:
    """``x`` at the nearest multiple of ``tick`` (what Kite accepts as a price), 2 decimals."""
    return round(round(x / tick) * tick, 2)


def place(kite: KiteConnect, qty: int = 5, tag: str | None = "t1", **kw: Any) -> str:
    """A MARKET order (protected by 5%, as Kite requires) unless ``kw`` says otherwise."""
    if kw.get("order_type", "MARKET") in ("MARKET", "SL-M"):
        kw.setdefault("market_protection", 5)
    order_id: str = kite.place_order(
        variety="regular", exchange="NSE", tradingsymbol=kw.pop("tradingsymbol", "INFY"),
        transaction_type=kw.pop("transaction_type", "BUY"), quantity=qty,
        product=kw.pop("product", "MIS"),
        order_type=kw.pop("order_type", "MARKET"), tag=tag, **kw,
    )  # fmt: skip
    return order_id


def drain(part: Any) -> list[Any]:
    """Everything a finite source partition emits, batch after batch, until it ends."""
    items: list[Any] = []
    while True:
        try:
            items.extend(part.next_batch())
        except StopIteration:
            return items


class StubVenue:
    """A venue for account tests: fills like paper at the signal price, except that orders
    on ``reject`` instruments are refused (as Kite's RMS would) and on ``down`` ones the
    broker cannot be reached."""

    def __init__(
        self,
        reject: frozenset[int] = frozenset(),
        down: frozenset[int] = frozenset(),
        rest: frozenset[int] = frozenset(),
    ) -> None:
        self.reject, self.down, self.rest = reject, down, rest  # rest: placed, never filled
        self.sent: list[Any] = []

    def send(
        self, v: Any, order_type: str, on_mark: bool = False, square_off: bool = False
    ) -> list[Any]:
        from operators.account import orders
        from operators.charges import Charges
        from schemas.enums import OrderStatus

        self.sent.append(v)
        tok, ts = v.signal.instrument_token, v.signal.timestamp
        if tok in self.reject:
            return [orders.failed(v, None, OrderStatus.REJECTED, v.quantity, "RMS: blocked", ts)]
        if tok in self.down:
            why = "KITE_UNAVAILABLE: no answer"
            return [orders.failed(v, None, OrderStatus.FAILED, v.quantity, why, ts)]
        if tok in self.rest:
            return [orders.placed(v, "B1", order_type, ts)]
        return [
            orders.placed(v, "B1", order_type, ts),
            orders.filled(v, "B1", v.quantity, v.signal.price, Charges(), v.quantity, ts),
        ]

    def update(self, u: Any) -> list[Any]:
        return []

    def on_exec(self, e: Any) -> list[Any]:
        return []

    def waiting(self, until: int) -> bool:
        return False

    def next_fill(self, times: Any, tokens: Any, prices: Any) -> int | None:
        return None

    def on_marks(self, times: Any, tokens: Any, prices: Any) -> list[Any]:
        return []

    def cancel(self, order_id: str, ts: int, why: str) -> list[Any]:
        return []

    simulated = False  # fills at once: no square-off is ever left for a close

    def expire(self, ts: int) -> list[Any]:
        return []

    def settle(self, close: int) -> list[Any]:
        return []

    def knows(self, v: Any) -> bool:
        return False

    def venue_state(self) -> Any:
        return None

    def drain_latency(self) -> list[Any]:
        return []

    def drain_alerts(self) -> list[Any]:
        return []

    def collect(self, final: bool = False) -> list[Any]:
        return []

    def reconciled(self) -> list[Any]:
        return []


class FailingStrategy:
    """A per-tick user strategy that raises on its ``fail_at``-th tick (1-based)."""

    def __init__(self, fail_at: int = 200, quantity: int = 5) -> None:
        self.fail_at, self.quantity = fail_at, quantity

    def on_tick(self, tick: Any, state: dict[str, Any]) -> Any:
        from operators.strategies.api import Signal

        state["n"] = state.get("n", 0) + 1
        if state["n"] == self.fail_at:
            raise RuntimeError(f"boom at tick {state['n']}")
        if state["n"] % 50 == 0:
            return Signal("BUY" if state["n"] % 100 else "SELL", self.quantity)
        return None


class ZeroQuantityStrategy:
    """A per-tick user strategy whose first signal is ``Signal("BUY", 0)`` (invalid)."""

    def __init__(self, at: int = 120) -> None:
        self.at = at

    def on_tick(self, tick: Any, state: dict[str, Any]) -> Any:
        from operators.strategies.api import Signal

        state["n"] = state.get("n", 0) + 1
        return Signal("BUY", 0) if state["n"] == self.at else None


class CountingStrategy:
    """A per-tick user strategy that targets ±``quantity`` (``side``) on its ``at``-th tick
    (its state counts ticks: a session reset starts the count again)."""

    def __init__(self, at: int = 3, quantity: int = 5, side: str = "BUY") -> None:
        self.at, self.quantity, self.side = at, quantity, side

    def on_tick(self, tick: Any, state: dict[str, Any]) -> Any:
        from operators.strategies.api import Signal

        state["n"] = state.get("n", 0) + 1
        return Signal(self.side, self.quantity) if state["n"] == self.at else None


def zerodha_signal(
    n: int, target: int, token: int = 408065, price: float = 1500.0
) -> TradingSignal:
    """Signal ``n`` (a unique id) of strategy ``mom`` on zerodha: hold ``target``."""
    import uuid
    from datetime import timedelta

    return TradingSignal(
        signal_id=f"z-{uuid.uuid4().hex[:8]}-{n}", correlation_id=f"c{n}", strategy_id="mom",
        broker="zerodha", instrument_token=token, target_quantity=target, price=price,
        timestamp=datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc) + timedelta(seconds=n),
        reason="test",
    )  # fmt: skip


def zerodha_validated(
    n: int, qty: int = 5, side: str = "BUY", prefix: str = "sig", token: int = 408065
) -> ValidatedSignal:
    """The order for signal ``n`` (id ``{prefix}-{n}``) of a flat strategy ``mom`` on
    zerodha: its target is the order itself."""
    from datetime import timedelta

    from schemas.ids import content_id

    s = TradingSignal(
        signal_id=f"{prefix}-{n}", correlation_id=f"c-{n}", strategy_id="mom",
        broker="zerodha", instrument_token=token, target_quantity=qty if side == "BUY" else -qty,
        price=1500.0, timestamp=datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)
        + timedelta(seconds=n), reason="test",
    )  # fmt: skip
    return ValidatedSignal(
        event_id=f"v-{n}", order_id=content_id("ord", s.signal_id), correlation_id=s.correlation_id,
        causation_id=s.signal_id, broker="zerodha", timestamp=s.timestamp, signal=s,
        side=side, quantity=qty,
    )  # fmt: skip


class StubWorker:
    """A placement worker that keeps what it is offered; the test hands back outcomes."""

    def __init__(self, room: int = 100) -> None:
        self.room, self.offered, self.cancels = room, list[Any](), list[str]()
        self.answers: list[Any] = []
        self.notes: list[tuple[str, dict[str, Any]]] = []  # contract notes asked for

    def offer(self, intent: Any, order_type: str) -> bool:
        if len(self.offered) >= self.room:
            return False
        self.offered.append(intent)
        return True

    def offer_cancel(self, kite_order_id: str) -> bool:
        self.cancels.append(kite_order_id)
        return True

    def offer_note(self, tag: str, order: dict[str, Any]) -> bool:
        self.notes.append((tag, order))
        return True

    def outcomes(self) -> list[Any]:
        out, self.answers = self.answers, []
        return out

    def finish(self, timeout_s: float) -> None:
        return None


class StubPlacer:
    """A placer for a venue fed by StubWorker: Kite lists nothing, intents as given."""

    def __init__(self, intents: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.intents, self.fail = intents or {}, fail

    def submit(self, intent: Any, order_type: str) -> Any:
        raise AssertionError("placed through the worker only")

    def recall(self, tag: str) -> Any:
        if self.fail:
            import redis

            raise redis.ConnectionError("Redis is away")
        return self.intents.get(tag)

    def today(self) -> list[dict[str, Any]]:
        return []

    def cancel(self, kite_order_id: str) -> None:
        return None

    def contract_note(self, order: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("asked through the worker only")


def signal_once_writing(p: subprocess.Popen[str], out: Path, sig: int) -> tuple[str, str]:
    """Send ``sig`` to a ``bytewax_run`` flow once a ledger file exists under ``out`` (the
    flow is running), then wait for it; returns (stdout, stderr). Fails if it ends first."""
    import time

    deadline = time.monotonic() + 120
    while not any(out.rglob("*.parquet")):
        assert p.poll() is None, f"the flow ended before the signal: {p.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the flow wrote nothing in 120 s"
        time.sleep(0.05)
    p.send_signal(sig)
    return p.communicate(timeout=120)


SAMPLE_ROWS = 314_968


def long_replay(tmp: Path, out: Path) -> Path:
    """The bundled sample in batches of 50 ticks: long enough to be stopped half way."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["source"]["batch_size"] = 50
    raw["source"]["path"] = str((DEFAULT_CONFIG.parent / raw["source"]["path"]).resolve())
    raw["instruments"] = str((DEFAULT_CONFIG.parent / raw["instruments"]).resolve())
    raw["output"] = {"dir": str(out), "rows_per_file": 20}
    path = tmp / "long.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


INFY = 408065  # the sample's INFY (data/instruments.csv)


def ist_us(day: str, hhmm: str) -> int:
    """µs UTC of ``hhmm`` Indian time on ``day`` (ISO date)."""
    at = datetime.fromisoformat(f"{day}T{hhmm}:00+05:30")
    return int(at.timestamp() * 1_000_000)


def tape_ticks(api: Any, token: int, start: int | None = None) -> list[int]:
    """The Kite simulator's tape indexes of the instrument's ticks from ``start`` (default:
    its cursor)."""
    tape = api.ex.tape
    first = api.ex.cursor if start is None else start
    return [i for i in np.flatnonzero(tape.token == token).tolist() if i >= first]


def advance_to(root: str, api: Any, i: int) -> None:
    """Advance the simulator so that tape index ``i`` is the last tick seen."""
    advance(root, i + 1 - api.ex.cursor)


def sim_config(root: str, **kw: Any) -> dict[str, Any]:
    """Change the simulator's exchange settings; what they are now."""
    r = requests.post(f"{root}/_sim/config", json=kw, timeout=5)
    assert r.ok, r.text
    data: dict[str, Any] = r.json()["data"]
    return data
