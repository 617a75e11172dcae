"""The one dataflow: ticks → strategies → order by event time → risk → execution →
portfolio, with stage health, the Parquet ledger and the run report."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.ledger import LedgerOpenSource, ParquetLedger, shard_key
from connectors.replay import ReplaySource, RowsRead
from connectors.report import ReportSink
from flows.config import build_strategies, output_dir
from operators.execution import PaperExecution, execute_orders
from operators.health import HealthJudge, StageEvent, health_events, stage_health
from operators.keyed import stateful_by_key
from operators.live import live_counters
from operators.ordering import order_by_event_time
from operators.portfolio import Portfolio, portfolio_fold
from operators.report import REPORT_KEY, ReportBuilder, RunReport, Tally
from operators.risk import RiskFilter, risk_filter
from operators.session import MarketSession
from operators.strategies.runner import StrategyRunner, run_strategies
from operators.ticks import route_ticks
from operators.zerodha import ZerodhaExecution
from schemas.config import AppConfig, KafkaSourceConfig, KiteSourceConfig
from schemas.enums import Broker, Stage
from schemas.events import (
    DeadLetter,
    Model,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    PnlSnapshot,
    RejectedSignal,
    StageHealth,
    TradingSignal,
    ValidatedSignal,
)
from schemas.kite import OrderUpdate
from schemas.ledger import KIND_OF, LEDGER_KINDS
from schemas.redis_keys import RunMeta
from schemas.report import BrokerSummary
from schemas.ticks import US, FeedStale, TickBatch
from schemas.topics import TICKS_TOPIC

PER_BROKER_KINDS = ("signals", "rejections", "orders", "order_failures", "fills", "pnl")


def _to_ledger(kinds: Iterable[str]) -> Any:
    wanted = {LEDGER_KINDS[k] for k in kinds}

    def rows(kv: tuple[str, list[Any]]) -> list[tuple[str, Model]]:
        broker, items = kv
        return [(shard_key(KIND_OF[type(i)], broker), i) for i in items if type(i) in wanted]

    return rows


def _source(cfg: AppConfig, tokens: list[int]) -> tuple[Source[Any], list[str]]:
    if isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.ticks import KiteTickSource

        zerodha = Broker.ZERODHA in cfg.routes_brokers()
        kite = KiteTickSource(cfg.source, cfg.kite, cfg.session, tokens, with_orders=zerodha)
        return kite, kite.list_parts()
    if isinstance(cfg.source, KafkaSourceConfig):
        from connectors.kafka.source import KafkaTickSource

        kafka = KafkaTickSource(cfg.source, cfg.kafka, tokens)
        return kafka, kafka.list_parts()  # fails fast, naming the address, if unreachable
    src = cfg.source
    replay = ReplaySource(src.path, tokens, src.batch_size, src.partitions)
    return replay, replay.part_names()


def _source_parts(cfg: AppConfig) -> list[str]:
    if isinstance(cfg.source, KiteSourceConfig):
        return ["kite"]
    if isinstance(cfg.source, KafkaSourceConfig):
        raise ValueError("pass source_parts with a custom source on a kafka config")
    return [f"replay-{k}" for k in range(cfg.source.partitions)]


def _kafka_out(
    cfg: AppConfig,
    ordered: Stream[Any],
    risked: Stream[Any],
    executed: Stream[Any],
    folded: Stream[Any],
    health: Stream[Any],
    dead: Stream[DeadLetter],
) -> None:
    """Every event stream to its Kafka topic as envelopes (see connectors.kafka.sink)."""
    from connectors.kafka.sink import event_sink, messages_of

    topic = cfg.source.topic if isinstance(cfg.source, KafkaSourceConfig) else TICKS_TOPIC
    pre = cfg.kafka.topic_prefix

    def pick(*kinds: type[Model]) -> Any:
        return messages_of(kinds, topic, pre)

    dead_msgs = pick(DeadLetter)
    msgs = op.merge(
        "kafka_msgs",
        op.flat_map("kafka_signals", ordered, pick(TradingSignal)),
        op.flat_map("kafka_risk", risked, pick(ValidatedSignal, RejectedSignal)),
        op.flat_map("kafka_orders", executed, pick(OrderPlaced, OrderFilled, OrderFailed)),
        op.flat_map("kafka_pnl", folded, pick(PnlSnapshot)),
        op.flat_map("kafka_health", health, pick(StageHealth)),
        op.flat_map("kafka_dead", dead, lambda d: dead_msgs(("", d))),
    )
    op.output("kafka_out", msgs, event_sink(cfg.kafka))


def _redis_out(
    cfg: AppConfig,
    trading: list[Stream[Any]],
    folded: Stream[Any],
    health: Stream[Any],
    run: Stream[Any],
) -> None:
    """Live state (see schemas.redis_keys): PnL, positions, stage health, counters."""
    from connectors.redis_state import RedisStateSink

    counters = live_counters("live_counters", trading, run)
    pnl = op.flat_map(
        "redis_pnl", folded, lambda kv: [i for i in kv[1] if isinstance(i, PnlSnapshot)]
    )
    meta = RunMeta(
        source=cfg.source.name,
        brokers=sorted(cfg.brokers, key=lambda b: b.value),
        workers=1,  # the sink fills in the real count
        window_s=cfg.health.window_s,
        history_windows=cfg.redis.history_windows,
    )
    values = op.merge(
        "redis_values", pnl, op.map("redis_health", health, lambda kv: kv[1]), counters
    )
    op.output("redis_out", values, RedisStateSink(cfg.redis, meta))


def build_flow(
    cfg: AppConfig,
    *,
    source: Source[Any] | None = None,
    source_parts: list[str] | None = None,
    ledger: Sink[Any] | None = None,
    report: Sink[RunReport] | None = None,
    out_dir: Path | None = None,
) -> Dataflow:
    """Assemble the flow. Tests pass their own source and sinks; defaults replay the config."""
    started = time.perf_counter()
    out = out_dir or output_dir(cfg)
    brokers = sorted(cfg.brokers, key=lambda b: b.value)
    routes = cfg.routes()
    tokens = [i.instrument_token for i in cfg.instruments]
    session = MarketSession(cfg.session)
    window_us = cfg.health.window_s * US
    grids = {"health": window_us, "snapshot": cfg.portfolio.snapshot_interval_s * US}
    strategies = build_strategies(cfg)
    tick_sizes = {i.instrument_token: i.tick_size for i in cfg.instruments}

    if source is None:
        source, source_parts = _source(cfg, tokens)
    parts = source_parts or _source_parts(cfg)
    max_delay_s = getattr(cfg.source, "max_delay_s", None)
    max_delay_us = int(max_delay_s * US) if max_delay_s is not None else None

    def make_runner(key: str, resume: Any) -> StrategyRunner:
        broker, token = key.split(":")
        tok = int(token)
        mine = [
            (s.id, strategies[s.id])
            for s in cfg.strategies
            if s.enabled and Broker(broker) in s.brokers and tok in cfg.strategy_instruments(s)
        ]
        return StrategyRunner(Broker(broker), tok, mine, grids["snapshot"], window_us, resume)

    def make_risk(key: str, resume: Any) -> RiskFilter:
        b = Broker(key)
        return RiskFilter(b, cfg.brokers[b], cfg.costs, session, resume)

    trading = cfg.routes_brokers()
    live_zerodha = Broker.ZERODHA in trading
    order_types = {s.id: s.order_type for s in cfg.strategies}
    placer = None
    if live_zerodha:  # fails fast, naming what is missing: credentials, Redis
        from connectors.kite.orders import kite_orders

        placer = kite_orders(cfg)
    elif isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.client import credentials

        credentials()

    def make_exec(key: str, resume: Any) -> PaperExecution | ZerodhaExecution:
        b = Broker(key)
        if b is Broker.ZERODHA and placer is not None:
            return ZerodhaExecution(b, cfg.costs, placer, order_types, resume)
        return PaperExecution(b, cfg.brokers[b].slippage_bps, cfg.costs, tick_sizes)

    def make_portfolio(key: str, resume: Any) -> Portfolio:
        b = Broker(key)
        return Portfolio(b, cfg.brokers[b].starting_cash, resume)

    def make_judge(key: str, resume: Any) -> HealthJudge:
        broker, stage = key.split(":")
        b = Broker(broker)
        return HealthJudge(b, Stage(stage), cfg.health, b in trading, session, resume)

    flow = Dataflow("alpha_panda")
    items = op.input("ticks", flow, source)
    if live_zerodha and not isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.updates import PART, KiteOrderSource

        parts = [*parts, PART]
        items = op.merge(
            "inputs", items, op.input("order_updates", flow, KiteOrderSource(cfg.kite))
        )
    valid = op.branch("valid", items, lambda x: isinstance(x, TickBatch))
    batches: Stream[TickBatch] = valid.trues
    other = op.branch("dead", valid.falses, lambda x: isinstance(x, DeadLetter))
    dead: Stream[DeadLetter] = other.trues
    notes = op.branch("split_updates", other.falses, lambda x: isinstance(x, OrderUpdate))
    updates = op.map("updates_keyed", notes.trues, lambda u: (Broker.ZERODHA.value, [u]))
    feed = op.branch("feed_stale", notes.falses, lambda x: isinstance(x, FeedStale))
    md = Stage.MARKET_DATA.value
    stale_events = op.flat_map(
        "health_stale",
        feed.trues,
        lambda f: [(f"{b.value}:{md}", StageEvent(f.ts, 0, stale=1)) for b in brokers],
    )

    to_strategies, progress = route_ticks("route", batches, routes, brokers, window_us)
    outputs = run_strategies("strategies", to_strategies, make_runner)
    merged = op.merge("outputs", outputs, progress)
    ordered = order_by_event_time("order", merged, tokens, grids, max_delay_us)
    risked = risk_filter("risk", ordered, make_risk)
    executed = execute_orders("execution", op.merge("execution_in", risked, updates), make_exec)
    folded = portfolio_fold("portfolio", executed, make_portfolio)

    events = op.merge(
        "health_events",
        health_events("health_ordered", ordered, (Stage.MARKET_DATA, Stage.SIGNAL_GENERATION)),
        health_events("health_risk", risked, (Stage.RISK_VALIDATION,)),
        health_events("health_execution", executed, (Stage.ORDER_EXECUTION,)),
        health_events("health_portfolio", folded, (Stage.PORTFOLIO_UPDATES,)),
        stale_events,
    )
    health = stage_health("health", events, cfg.health, make_judge)

    def health_row(kv: tuple[str, StageHealth]) -> tuple[str, Model]:
        return (shard_key("health", kv[0].replace(":", "-")), kv[1])

    ledger_rows = op.merge(
        "ledger_rows",
        op.flat_map("ledger_signals", ordered, _to_ledger(["signals"])),
        op.flat_map("ledger_risk", risked, _to_ledger(["rejections"])),
        op.flat_map("ledger_orders", executed, _to_ledger(["orders", "order_failures", "fills"])),
        op.flat_map("ledger_pnl", folded, _to_ledger(["pnl"])),
        op.map("ledger_health", health, health_row),
        op.map("ledger_dead", dead, lambda d: (shard_key("dead_letters", d.source_partition), d)),
    )
    if ledger is not None or "ledger" in cfg.sinks:
        shards = {k: [b.value for b in brokers] for k in PER_BROKER_KINDS}
        shards["health"] = [f"{b.value}-{s.value}" for b in brokers for s in Stage]
        shards["dead_letters"] = parts
        keys = sorted(shard_key(k, s) for k, names in shards.items() for s in names)
        opened = op.input("ledger_open", flow, LedgerOpenSource(keys))
        sink = ledger or ParquetLedger(out, shards, cfg.output.rows_per_file)
        op.output("ledger", op.merge("ledger_all", opened, ledger_rows), sink)
    if "kafka" in cfg.sinks:
        _kafka_out(cfg, ordered, risked, executed, folded, health, dead)

    def tally(x: Any) -> tuple[str, Any]:
        if isinstance(x, TickBatch):
            return (REPORT_KEY, Tally(ticks=len(x)))
        if isinstance(x, RowsRead):
            return (REPORT_KEY, Tally(rows_read=x.count))
        return (REPORT_KEY, x)

    summaries = op.flat_map(
        "report_summaries", folded, lambda kv: [i for i in kv[1] if isinstance(i, BrokerSummary)]
    )
    report_in = op.map(
        "report_in", op.merge("report_all", batches, feed.falses, dead, summaries), tally
    )
    if "redis" in cfg.sinks:
        _redis_out(cfg, [ordered, risked, executed], folded, health, report_in)
    built = stateful_by_key(
        "report", report_in, lambda _k, resume: ReportBuilder(str(out), started, resume)
    )
    op.output("report_out", op.key_rm("report_unkey", built), report or ReportSink(out))
    return flow
