"""Live trading end to end, every hop real: simulator ticks over the KiteTicker websocket →
flow (subprocess) → signals → risk → Kite orders through kiteconnect → order updates →
fills → the zerodha portfolio, with paper trading the same signals alongside; a silent feed
and a dropped socket on the way; and no secret in any output."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis
import yaml

from connectors.kite.sim.fills import kite_time
from flows.analysis import report
from schemas.kite import order_tag
from schemas.redis_keys import LiveKeys
from tests.live_sim import (
    SECRETS,
    Sim,
    drive,
    dump,
    grep,
    live_config,
    tape,
    wait,
)
from tests.redis_server import shared_url
from tests.support import flow_env, read_ledger


def _same(signal: dict) -> tuple:
    return (signal["strategy_id"], signal["instrument_token"], signal["timestamp"],
            signal["target_quantity"])  # fmt: skip


def test_live_session_against_the_simulator(tmp_path: Path) -> None:
    url = shared_url()
    r = redis.Redis.from_url(url)
    keys = LiveKeys(f"live-{uuid.uuid4().hex[:8]}:")
    ticks = tape(tmp_path)
    sim = Sim(ticks, tmp_path / "sim.log")
    capture = tmp_path / "capture"
    cfg = live_config(tmp_path, sim, url, keys.prefix, idle_stop_s=6, capture=str(capture))
    out, err = tmp_path / "flow.out", tmp_path / "flow.err"
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
    env = {**flow_env(cfg), **SECRETS}
    try:
        with out.open("w") as o, err.open("w") as e:
            flow = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=o, stderr=e)
            wait(lambda: sim.state()["ws_clients"] == 1, 30, "the flow's ticker")
            total = sim.state()["ticks"]
            drive(sim, r, keys, 2000, total // 3)
            sim.post("/_sim/faults", ws_silent=1)  # open but mute: the watchdog must notice
            wait(lambda: sim.state()["ws_connections"] == 2, 30, "the watchdog's reconnect")
            drive(sim, r, keys, 2000, 2 * total // 3)
            sim.post("/_sim/faults", ws_drop=1)
            wait(lambda: sim.state()["ws_connections"] == 3, 30, "KiteTicker's reconnect")
            cursor = drive(sim, r, keys, 2000)
            assert flow.wait(60) == 0, err.read_text()[-3000:]
        orders = sim.orders()
    finally:
        sim.stop()
    run = tmp_path / "run"
    assert cursor == total
    assert f"ticks: {total:,} read = {total:,} processed + 0 dead letters" in out.read_text()

    # Every validated zerodha signal has exactly one order at Kite, under its tag.
    signals = {b: [s for s in read_ledger(run, "signals") if s["broker"] == b]
               for b in ("paper", "zerodha")}  # fmt: skip
    rejected = {x["signal"]["signal_id"] for x in read_ledger(run, "rejections")}
    valid = [s for s in signals["zerodha"] if s["signal_id"] not in rejected]
    assert len(valid) >= 10
    tags = Counter(o["tag"] for o in orders)
    assert max(tags.values()) == 1
    assert set(tags) == {order_tag(s["signal_id"]) for s in valid}
    placed = [o for o in read_ledger(run, "orders") if o["broker"] == "zerodha"]
    assert sorted(p["broker_order_id"] for p in placed) == sorted(o["order_id"] for o in orders)

    # Fills: what Kite filled, at Kite's price, and nothing else.
    kite_fills = {o["order_id"]: (o["filled_quantity"], o["average_price"])
                  for o in orders if o["status"] == "COMPLETE"}  # fmt: skip
    fills = [f for f in read_ledger(run, "fills") if f["broker"] == "zerodha"]
    # Orders are placed off the dataflow thread: those Kite took after the tape's last tick
    # never see a tick to fill at; every other one filled.
    last = kite_time(int(pc.max(pq.read_table(ticks)["timestamp"]).cast("int64").as_py()))
    assert len(kite_fills) >= 10
    assert all(o["status"] == "COMPLETE" for o in orders if o["exchange_timestamp"] < last)
    booked: dict[str, tuple[int, float]] = {}  # per order: quantity, value (fills may be parts)
    for f in fills:
        q, v = booked.get(f["broker_order_id"], (0, 0.0))
        booked[f["broker_order_id"]] = (q + f["quantity"], v + f["quantity"] * f["fill_price"])
    # Kite's average_price of an order filled in parts keeps more than two decimals.
    whole = {k: (q, v / q) for k, (q, v) in booked.items() if k in kite_fills}
    assert whole.keys() == kite_fills.keys()
    assert all(whole[k][0] == q and abs(whole[k][1] - p) < 1e-6 for k, (q, p) in kite_fills.items())
    assert set(booked) <= {o["order_id"] for o in orders}
    final = [p for p in read_ledger(run, "pnl") if p["broker"] == "zerodha" and p["final"]]
    # Fees: the cost model's at each fill, then Kite's contract note once the order completed.
    notes = [n for n in read_ledger(run, "fee_notes") if n["broker"] == "zerodha"]
    noted = Counter(n["broker_order_id"] for n in notes)
    assert notes and max(noted.values()) == 1 and set(noted) <= set(kite_fills)
    for n in notes:
        model = sum(f["fees"] for f in fills if f["broker_order_id"] == n["broker_order_id"])
        assert abs(n["model_fees"] - model) < 0.005 and n["note_fees"] > 0
    booked_fees = sum(f["fees"] for f in fills) + sum(n["adjustment"] for n in notes)
    assert final and round(final[0]["fees"], 2) == round(booked_fees, 2)
    [zerodha] = [b for b in report(run).brokers if b.broker == "zerodha"]  # the analysis too
    assert zerodha.ledger_net_pnl is not None
    assert abs(zerodha.total.net_pnl - zerodha.ledger_net_pnl) < 0.01
    assert abs(zerodha.total.fees - booked_fees) < 0.01

    # Paper traded the same signals alongside.
    assert sorted(map(_same, signals["paper"])) == sorted(map(_same, signals["zerodha"]))

    # The silent feed was reported on market_data and the socket reconnected.
    md = [h for h in read_ledger(run, "health") if h["stage"] == "market_data"]
    assert {(h["broker"], h["status"]) for h in md if h["reason"] == "FEED_STALE"} == {
        ("paper", "warning"),
        ("zerodha", "warning"),
    }
    assert "silent" in err.read_text() and "reconnecting" in err.read_text()

    # Kite answers off the dataflow thread, after later heartbeats: every zerodha order and
    # failure still counts in an order_execution window, with its signal → order latency.
    failed = [f for f in read_ledger(run, "order_failures") if f["broker"] == "zerodha"]
    oe = [h for h in read_ledger(run, "health")
          if (h["broker"], h["stage"]) == ("zerodha", "order_execution")]  # fmt: skip
    assert sum(h["count"] for h in oe) == len(placed) + len(failed)
    assert any(h["latency_p50_ms"] is not None for h in oe)

    # The capture replays: the same ticks give the same signals.
    captured = pq.read_table(capture)
    assert captured.num_rows == total
    raw = yaml.safe_load(cfg.read_text())
    raw["source"] = {"kind": "replay", "path": str(capture)}
    raw["strategies"][0]["brokers"] = ["paper"]
    raw["output"]["dir"] = str(tmp_path / "replay")
    replay = tmp_path / "replay.yaml"
    replay.write_text(yaml.safe_dump(raw))
    done = subprocess.run(cmd, cwd=tmp_path, env=flow_env(replay), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    again = [s for s in read_ledger(tmp_path / "replay", "signals") if s["broker"] == "paper"]
    assert sorted(map(_same, again)) == sorted(map(_same, signals["paper"]))

    # No secret anywhere: logs, ledger and report files, Redis values.
    blobs = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
             and p.name not in ("live.yaml", "replay.yaml")}  # fmt: skip
    blobs |= {k.decode(): dump(r.dump(k)) for k in r.scan_iter(f"{keys.prefix}*")}
    assert len(blobs) > 20
    assert grep(list(SECRETS.values()), blobs) == []
    for k in r.scan_iter(f"{keys.prefix}*"):
        r.delete(k)
