"""Benchmark (not a test): end-to-end replay throughput against two baselines.

    python -m flows.bench [--instruments 200] [--days 2] [--data bench_data]

Runs, each in its own process (so peak memory is its own), over the same generated ticks:
  e2e          the full flow (default strategies, risk, paper execution, portfolio, health,
               Parquet ledger), one worker;
  passthrough  a bare Bytewax flow over the same replay source (read + validate + count);
  plain        a plain-Python loop running the same strategy code over the same batches.
Each runs ``--repeat`` times (default 3, the phases taking turns); prints each one's
fastest run in ticks/s with the median beside it, the ratios between the fastest runs, and
peak RSS; then the account's cost per signal (risk, paper venue and book, alone: the part
that grows with signals, not ticks).

With ``--redis URL`` it also runs e2e_redis: the full flow plus the Redis live-state sink
(key prefix ``bench:``), to price the live state against plain e2e.

With ``--kafka HOST:PORT`` it then loads one day of ``--kafka-instruments`` instruments to
a 4-partition topic and measures Kafka → flow → Kafka (every event topic) with 1 and 2
processes, against a plain confluent-kafka loop that consumes and produces each message.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from data.generate import (
    SAMPLE_DAY,
    generate,
    synthetic_instruments,
    trading_days,
    write_instruments,
)


def raw_config(data: Path, out: Path, batch: int) -> dict[str, Any]:
    import csv

    with (data / "instruments.csv").open() as fh:
        tokens = [int(r["instrument_token"]) for r in csv.DictReader(fh)]
    raw = {
        "source": {"path": str(data.resolve()), "batch_size": batch, "partitions": 4},
        "instruments": "instruments.csv",
        "brokers": {"paper": {"starting_cash": 10_000_000, "risk": {"max_open_positions": 200}}},
        "strategies": [
            {"id": "momentum", "type": "momentum", "instruments": tokens[::2], "brokers": ["paper"],
             "params": {"lookback": 300, "threshold": 0.006, "quantity": 10}},
            {"id": "mean_reversion", "type": "mean_reversion", "instruments": tokens[1::2],
             "brokers": ["paper"], "params": {"oversold": 20, "overbought": 80,
                                              "bollinger_lookback": 60, "bollinger_width": 3.0}},
        ],
        "output": {"dir": str(out), "report": False},
    }  # fmt: skip
    return raw


def _config(data: Path, out: Path, batch: int) -> Any:
    from flows.config import parse_config

    return parse_config(raw_config(data, out, batch), data)


def _warm_imports() -> None:
    """Imports stay out of every phase's timer: pyarrow imports pandas on its first
    conversion (about 0.2 s, once per process, never per tick), so that is done here."""
    import pyarrow as pa

    pa.array([0]).to_numpy()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_e2e(data: Path, batch: int, redis_url: str | None = None) -> dict[str, Any]:
    from bytewax.testing import TestingSink, run_main

    from flows.config import parse_config
    from flows.graph import build_flow
    from flows.plan import RunFlags, prepare

    with tempfile.TemporaryDirectory() as tmp:
        raw = raw_config(data, Path(tmp), batch)
        if redis_url:
            raw |= {
                "sinks": ["ledger", "redis"],
                "redis": {"url": redis_url, "key_prefix": "bench:"},
            }
        cfg = parse_config(raw, data)
        reports: list[Any] = []
        _warm_imports()
        t0 = time.perf_counter()
        plan = prepare(cfg, report=TestingSink(reports))
        plan.read_ahead(RunFlags())  # as flows.main does for a fresh run of one process
        run_main(build_flow(plan))
        secs = time.perf_counter() - t0
    r = reports[0]
    fills = sum(b.total.fills for b in r.brokers)
    return {"ticks": r.ticks_processed, "seconds": secs, "fills": fills}


def phase_passthrough(data: Path, batch: int) -> dict[str, Any]:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    from connectors.replay import ReplaySource
    from schemas.ticks import TickBatch

    cfg = _config(data, Path("."), batch)
    src = ReplaySource(data, [i.instrument_token for i in cfg.instruments], batch, 4)
    flow = Dataflow("passthrough")
    counts = op.map(
        "len", op.input("in", flow, src), lambda x: len(x) if isinstance(x, TickBatch) else 0
    )
    total = op.reduce_final("sum", op.key_on("k", counts, lambda _: "all"), lambda a, b: a + b)
    out: list[Any] = []
    op.output("out", total, TestingSink(out))
    _warm_imports()
    t0 = time.perf_counter()
    run_main(flow)
    return {"ticks": out[0][1], "seconds": time.perf_counter() - t0}


def phase_plain(data: Path, batch: int) -> dict[str, Any]:
    from connectors.replay_read import decode
    from flows.config import build_strategies
    from operators.strategies.runner import StrategyRunner
    from schemas.enums import Broker
    from schemas.ticks import US, TickBatch

    cfg = _config(data, Path("."), batch)
    impls = build_strategies(cfg)
    by_token = {
        t: [(s.id, impls[s.id])] for s in cfg.strategies for t in cfg.strategy_instruments(s)
    }
    _warm_imports()
    t0 = time.perf_counter()
    runners: dict[int, StrategyRunner] = {}
    ticks = signals = 0
    for f in sorted(data.glob("*.parquet")):
        d = decode(f, None, "UTC")  # the replay source's own reader: same columns, grouping
        ts, price, vol = d.ts, d.price, d.volume
        for token, (first, end) in d.spans.items():
            r = runners.setdefault(
                token, StrategyRunner(Broker.PAPER, token, by_token[token], 300 * US, 60 * US)
            )
            for a in range(first, end, batch):
                b = min(end, a + batch)
                out = r.process(TickBatch(token, ts[a:b], price[a:b], vol[a:b], int(ts[b - 1])))
                ticks += b - a
                signals += len(out.signals)
    return {"ticks": ticks, "seconds": time.perf_counter() - t0, "signals": signals}


def phase_account(data: Path, batch: int, n: int = 20_000) -> dict[str, Any]:
    """The per-signal cost of one broker's account (risk, paper venue, book), alone: ``n``
    target signals over 200 instruments and 8 strategies, with a 1 s mark set between them."""
    from datetime import datetime, timezone

    from operators.account.account import Account, AccountSetup
    from operators.account.paper import PaperVenue
    from operators.session import MarketSession
    from schemas.config import BrokerConfig, CostModel, RiskConfig, SessionConfig
    from schemas.enums import Broker
    from schemas.events import TradingSignal
    from schemas.ticks import US, ExecTick, MarkSet, from_us, to_us

    t0_us = to_us(datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc))
    risk = RiskConfig(max_orders_per_second=10**6, max_orders_per_minute=10**6,
                      max_orders_per_day=10**7, max_daily_loss=1e12)  # fmt: skip
    cfg = BrokerConfig(starting_cash=1e9, risk=risk)
    setup = AccountSetup(CostModel(), MarketSession(SessionConfig()), {}, {}, tuple(range(1, 201)))
    venue = PaperVenue(2.0, CostModel(), {})
    acct = Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)
    items: list[Any] = []
    for i in range(n):
        ts = t0_us + i * US // 4
        if i % 4 == 0:
            items.append(MarkSet.of(ts, [(t, 100.0 + i % 7) for t in range(1, 201)]))
        items.append(TradingSignal(
            signal_id=f"s{i}", correlation_id=f"c{i}", strategy_id=f"st{i % 8}", broker="paper",
            instrument_token=1 + i % 200, target_quantity=10 if (i // 200) % 2 else -10,
            price=100.0 + i % 7, timestamp=from_us(ts), reason="",
        ))  # fmt: skip
    started = time.perf_counter()
    for item in items:
        acct.on_item(item)
        if isinstance(item, TradingSignal):  # its next tick, as the strategy runner sends
            ts = to_us(item.timestamp) + 1
            acct.on_item(ExecTick(ts, item.instrument_token, item.price, (item.signal_id,)))
    secs = time.perf_counter() - started
    return {"ticks": n, "seconds": secs, "us_per_signal": secs / n * 1e6}


def phase_e2e_redis(data: Path, batch: int) -> dict[str, Any]:
    return phase_e2e(data, batch, os.environ["ALPHA_PANDA_BENCH_REDIS"])


PHASES = {
    "e2e": phase_e2e,
    "e2e_redis": phase_e2e_redis,
    "account": phase_account,
    "passthrough": phase_passthrough,
    "plain": phase_plain,
}


def ensure_data(data: Path, instruments: int, days: int) -> None:
    if (data / "instruments.csv").exists() and len(list(data.glob("*.parquet"))) == days:
        return
    print(f"generating {instruments} instruments x {days} days into {data} ...", flush=True)
    inst = synthetic_instruments(instruments)
    generate(data, inst, trading_days(SAMPLE_DAY, days), seed=7)
    write_instruments(data / "instruments.csv", inst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instruments", type=int, default=200)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--data", type=Path, default=Path("bench_data"))
    ap.add_argument("--batch-size", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each phase (best and median)")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--redis", metavar="URL", help="also run e2e with the Redis live-state sink")
    ap.add_argument("--kafka", metavar="HOST:PORT", help="also run the Kafka phases on a broker")
    ap.add_argument("--kafka-instruments", type=int, default=40)
    ap.add_argument("--kafka-only", action="store_true", help="skip the replay phases")
    ap.add_argument("--kafka-plain", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat: must be at least 1")
    if args.kafka_plain:
        from flows.bench_kafka import kafka_plain

        print(json.dumps(kafka_plain(args.kafka_plain, str(args.data))))
        return
    if args.phase:
        res = PHASES[args.phase](args.data, args.batch_size)
        res["peak_rss_mb"] = _peak_mb()
        print(json.dumps(res))
        return
    if args.kafka_only:
        if not args.kafka:
            raise SystemExit("--kafka-only needs --kafka HOST:PORT")
        kafka_phases(args)
        return
    ensure_data(args.data, args.instruments, args.days)
    env = dict(os.environ, ALPHA_PANDA_BENCH_REDIS=args.redis or "")
    names = ("e2e", "passthrough", "plain", *(["e2e_redis"] if args.redis else []))
    results = _best_of(names, args, env)
    e2e = results["e2e"]["rate"]
    print(f"e2e / passthrough = {e2e / results['passthrough']['rate']:.2f}")
    print(f"e2e / plain loop  = {e2e / results['plain']['rate']:.2f}")
    if args.redis:
        print(f"e2e_redis / e2e   = {results['e2e_redis']['rate'] / e2e:.2f}")
    acct = json.loads(subprocess.run(
        [sys.executable, "-m", "flows.bench", "--phase", "account", "--data", str(args.data)],
        check=True, capture_output=True, text=True, env=env).stdout.splitlines()[-1])  # fmt: skip
    print(f"account: {acct['us_per_signal']:.1f} µs per signal (risk + paper venue + book, "
          "with a 200-instrument mark set every 4 signals)")  # fmt: skip
    median = results["e2e"]["median_rate"]
    print(f"fills: {results['e2e']['fills']:,}; target 2,000,000 ticks/s per process: "
          f"{'met' if e2e >= 2e6 else 'NOT met'} (best of {args.repeat}; "
          f"median {median:,.0f}: {'met' if median >= 2e6 else 'NOT met'})")  # fmt: skip
    if args.kafka:
        kafka_phases(args)


def _best_of(
    names: tuple[str, ...], args: argparse.Namespace, env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each phase ``args.repeat`` times, each run in its own process, the phases taking
    turns (so a noisy minute hits all alike); per phase its fastest run, with the median
    rate beside it. Prints one line per phase."""
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _ in range(args.repeat):
        for name in names:
            cmd = [sys.executable, "-m", "flows.bench", "--phase", name, "--data",
                   str(args.data), "--batch-size", str(args.batch_size)]  # fmt: skip
            run = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            runs[name].append(json.loads(run.stdout.splitlines()[-1]))
    results = {}
    for name in names:
        by_time = sorted(runs[name], key=lambda r: r["seconds"])
        results[name] = r = by_time[0]
        r["rate"] = r["ticks"] / r["seconds"]
        r["median_rate"] = r["ticks"] / by_time[len(by_time) // 2]["seconds"]
        print(
            f"{name:<12} {r['ticks']:>11,} ticks {r['seconds']:>7.2f} s "
            f"{r['rate']:>12,.0f} ticks/s  (median {r['median_rate']:>10,.0f})  "
            f"peak RSS {r['peak_rss_mb']:>5.0f} MB",
            flush=True,
        )
    return results


def kafka_phases(args: argparse.Namespace) -> None:
    from flows.bench_kafka import kafka_bench

    kdata = args.data.with_name(f"{args.data.name}_kafka")
    ensure_data(kdata, args.kafka_instruments, 1)
    kafka_bench(args.kafka, kdata)


if __name__ == "__main__":
    main()
