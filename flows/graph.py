"""The one dataflow, as the README draws it:

    ingest → signals → account → health → sinks

Each stage is a composite operator (bytewax ``@operator``), so step ids nest under it
(``alpha_panda.account.logic``). ``build_flow`` only wires: whatever touches the outside
world was resolved by ``flows.plan.prepare`` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator

from connectors import stop
from connectors.control import FileControl, RedisControl
from connectors.kite.placement import PlacementWorker
from connectors.ledger import LedgerOpenSource, ParquetLedger, shard_key
from connectors.progress import progress
from connectors.replay import RowsRead
from connectors.report import ReportOpen, ReportSink
from flows.config import build_strategies
from flows.plan import Plan
from operators.account.account import Account, AccountSetup, Inbox, account
from operators.account.exits import ExitRule
from operators.account.paper import PaperVenue
from operators.account.zerodha import ZerodhaVenue
from operators.health import (
    HealthJudge,
    feed_latency,
    feed_notes,
    health_events,
    stage_health,
)
from operators.keyed import stateful_by_key
from operators.live import live_counters
from operators.ordering import order_by_event_time
from operators.report import REPORT_KEY, ReportBuilder, Tally
from operators.session import MarketSession
from operators.strategies.runner import (
    STRATEGY_PARTITION,
    RunnerOptions,
    StrategyRunner,
    run_strategies,
)
from operators.ticks import route_ticks
from schemas.config import AppConfig, KafkaSourceConfig
from schemas.enums import Broker, Stage
from schemas.events import (
    DeadLetter,
    Model,
    PnlSnapshot,
    StageHealth,
    TradingStateChanged,
)
from schemas.keys import parse_route_key, parse_stage_key
from schemas.kite import KiteAlert, KitePositions, OrderUpdate
from schemas.ledger import KIND_OF, LEDGER_KINDS
from schemas.redis_keys import RunMeta
from schemas.report import BrokerSummary
from schemas.ticks import US, FeedStale, TickBatch
from schemas.topics import BROKER_TOPICS, TICKS_TOPIC

PER_BROKER_KINDS = (
    "signals",
    "rejections",
    "orders",
    "order_failures",
    "fills",
    "fee_notes",
    "pnl",
    "trading_states",
)
ACCOUNT_STAGES = (Stage.RISK_VALIDATION, Stage.ORDER_EXECUTION, Stage.PORTFOLIO_UPDATES)


@dataclass(frozen=True)
class Inputs:
    batches: Stream[TickBatch]
    dead: Stream[DeadLetter]
    updates: Stream[tuple[str, list[OrderUpdate]]]
    stale: Stream[FeedStale]
    other: Stream[Any]  # rows-read counts, for the report


@dataclass(frozen=True)
class Signals:
    ordered: Stream[tuple[str, list[Any]]]  # per broker, in event-time order
    dead: Stream[DeadLetter]  # strategy failures


def _brokers(plan: Plan) -> list[Broker]:
    return sorted(plan.cfg.brokers, key=lambda b: b.value)


@operator
def ingest(step_id: str, flow: Dataflow, plan: Plan) -> Inputs:
    """Ticks (and Kite order updates) in; valid batches, dead letters, updates, feed notes."""
    items = op.input("ticks", flow, plan.source)
    if plan.order_updates is not None:
        items = op.merge("inputs", items, op.input("order_updates", flow, plan.order_updates))
    valid = op.branch("valid", items, lambda x: isinstance(x, TickBatch))
    other = op.branch("dead", valid.falses, lambda x: isinstance(x, DeadLetter))
    notes = op.branch(
        "split_updates",
        other.falses,
        lambda x: isinstance(x, (OrderUpdate, KiteAlert, KitePositions)),
    )
    updates = op.map("updates_keyed", notes.trues, lambda u: (Broker.ZERODHA.value, [u]))
    feed = op.branch("feed_stale", notes.falses, lambda x: isinstance(x, FeedStale))
    return Inputs(valid.trues, other.trues, updates, feed.trues, feed.falses)


def _runner_options(cfg: AppConfig, session: MarketSession) -> RunnerOptions:
    """How the paper fill model finds the ticks that execute signals (config.execution)."""
    ex = cfg.execution
    return RunnerOptions(
        exec_latency_us=ex.latency_ms * 1000,
        order_types={s.id: s.order_type for s in cfg.strategies},
        stop_offsets=cfg.stop_offsets(),
        tick_size={i.instrument_token: i.tick_size for i in cfg.instruments},
        lot_size={i.instrument_token: i.lot_size for i in cfg.instruments},
        limit_wait_us=round(ex.limit_timeout_s * US) or 86_400 * US,
        protection=cfg.paper_protection(),
        participation=ex.max_participation,
        session_reset=frozenset(s.id for s in cfg.strategies if s.session_reset),
        day_end=session.day_end,
    )


@operator
def signals(step_id: str, batches: Stream[TickBatch], plan: Plan) -> Signals:
    """Fan out to (broker, instrument) keys, run strategies, order per broker by event time."""
    cfg = plan.cfg
    window_us = cfg.health.window_s * US
    grids = {"health": window_us, "snapshot": cfg.portfolio.snapshot_interval_s * US}
    strategies = build_strategies(cfg)
    session = MarketSession(cfg.session)
    max_delay_s = getattr(cfg.source, "max_delay_s", None)
    options = _runner_options(cfg, session)

    def make_runner(key: str, resume: Any) -> StrategyRunner:
        broker, tok = parse_route_key(key)
        mine = [
            (s.id, strategies[s.id])
            for s in cfg.strategies
            if s.enabled and broker in s.brokers and tok in cfg.strategy_instruments(s)
        ]
        mark_us = round(cfg.brokers[broker].risk.mark_interval_s * US)
        return StrategyRunner(broker, tok, mine, mark_us, window_us, resume, options)

    to_run, progress = route_ticks("route", batches, cfg.routes(), _brokers(plan), window_us)
    outputs = run_strategies("strategies", to_run, make_runner, stop.requested)
    dead = op.flat_map("failures", outputs, lambda kv: list(kv[1].dead))
    merged = op.merge("outputs", outputs, progress)
    tokens = [i.instrument_token for i in cfg.instruments]
    max_delay_us = int(max_delay_s * US) if max_delay_s is not None else None
    ordered = order_by_event_time("order", merged, tokens, grids, max_delay_us, stop.requested)
    return Signals(ordered, dead)


def _inbox(plan: Plan, broker: Broker) -> Inbox | None:
    if plan.cfg.control.path:
        return FileControl(plan.commands, broker)
    if plan.cfg.control_by_redis():
        return RedisControl(plan.cfg.redis, broker, since_ms=plan.started_ms)
    return None


@operator
def accounts(
    step_id: str,
    ordered: Stream[tuple[str, list[Any]]],
    updates: Stream[tuple[str, list[OrderUpdate]]],
    plan: Plan,
) -> Stream[tuple[str, list[Any]]]:
    """ONE account per broker: risk, venue, book and trading state (operators.account)."""
    cfg = plan.cfg
    setup = AccountSetup(
        costs=cfg.costs,
        session=MarketSession(cfg.session),
        lot_sizes={i.instrument_token: i.lot_size for i in cfg.instruments},
        order_types={s.id: s.order_type for s in cfg.strategies},
        universe=tuple(i.instrument_token for i in cfg.instruments),
        products={s.id: s.product for s in cfg.strategies},
        circuits={i.instrument_token: i.circuit_pct for i in cfg.instruments if i.circuit_pct},
        stops=cfg.stop_offsets(),
        tick_sizes={i.instrument_token: i.tick_size for i in cfg.instruments},
        symbols={i.tradingsymbol: i.instrument_token for i in cfg.instruments},
        exits={
            s.id: ExitRule(s.stop_loss_pct, s.take_profit_pct, s.trailing_stop_pct)
            for s in cfg.strategies
        },
    )
    ticks = setup.tick_sizes
    timeout_us = round(cfg.execution.limit_timeout_s * US)  # LIMIT orders, both venues

    def make(key: str, resume: Any) -> Account:
        b = Broker(key)
        bc = plan.broker_config(b)

        def venue(state: Any) -> Any:
            if b is Broker.ZERODHA and plan.placer is not None:
                worker = PlacementWorker(plan.placer, cfg.kite.placement_queue)
                return ZerodhaVenue(
                    cfg.costs, plan.placer, setup.order_types, state, worker, timeout_us
                )
            closes = setup.session.closes if bc.risk.enforce_session else None
            hours = setup.session.open_mask if bc.risk.enforce_session else None
            protection = cfg.paper_protection()
            return PaperVenue(bc.slippage_bps, cfg.costs, ticks, closes, state, timeout_us,
                              protection, hours, setup.lot_sizes)  # fmt: skip

        return Account(b, bc, setup, venue, _inbox(plan, b), resume)

    return account("logic", op.merge("in", ordered, updates), make, stop.requested)


@operator
def health(
    step_id: str,
    batches: Stream[TickBatch],
    ordered: Stream[tuple[str, list[Any]]],
    booked: Stream[tuple[str, list[Any]]],
    stale: Stream[FeedStale],
    plan: Plan,
) -> Stream[tuple[str, StageHealth]]:
    """Windowed stage health per (broker, stage), computed from the flow's own events."""
    cfg = plan.cfg
    brokers, trading = _brokers(plan), cfg.routes_brokers()
    session = MarketSession(cfg.session)
    events = op.merge(  # the feed's own first: ahead of the ordered stream, as they came
        "events",
        op.flat_map("feed_latency", batches, feed_latency(brokers, cfg.health.window_s * US)),
        op.flat_map("stale", stale, feed_notes(brokers)),
        health_events("ordered", ordered, (Stage.MARKET_DATA, Stage.SIGNAL_GENERATION)),
        health_events("account", booked, ACCOUNT_STAGES),
    )

    def make_judge(key: str, resume: Any) -> HealthJudge:
        b, stage = parse_stage_key(key)
        return HealthJudge(b, stage, cfg.health, b in trading, session, resume)

    return stage_health("judge", events, cfg.health, make_judge, stop.requested)


def _to_ledger(kinds: Iterable[str]) -> Any:
    wanted = {LEDGER_KINDS[k] for k in kinds}

    def rows(kv: tuple[str, list[Any]]) -> list[tuple[str, Model]]:
        broker, items = kv
        return [(shard_key(KIND_OF[type(i)], broker), i) for i in items if type(i) in wanted]

    return rows


def _ledger(
    flow: Dataflow,
    plan: Plan,
    booked: Stream[Any],
    judged: Stream[Any],
    dead: Stream[DeadLetter],
) -> None:
    def health_row(kv: tuple[str, StageHealth]) -> tuple[str, Model]:
        return (shard_key("health", kv[0].replace(":", "-")), kv[1])

    rows = op.merge(  # signals too come from the account: with its own (flattens, square-offs)
        "ledger_rows",
        op.flat_map("ledger_account", booked, _to_ledger(list(PER_BROKER_KINDS))),
        op.map("ledger_health", judged, health_row),
        op.map("ledger_dead", dead, lambda d: (shard_key("dead_letters", d.source_partition), d)),
    )
    brokers = [b.value for b in _brokers(plan)]
    shards = {k: brokers for k in PER_BROKER_KINDS}
    shards["health"] = [f"{b}-{s.value}" for b in brokers for s in Stage]
    shards["dead_letters"] = [*plan.parts, STRATEGY_PARTITION]
    keys = sorted(shard_key(k, s) for k, names in shards.items() for s in names)
    opened = op.input("ledger_open", flow, LedgerOpenSource(keys))
    sink = plan.ledger or ParquetLedger(plan.out, shards, plan.cfg.output.rows_per_file)
    op.output("ledger", op.merge("ledger_all", opened, rows), sink)


def _kafka_out(plan: Plan, booked: Stream[Any], judged: Stream[Any], dead: Stream[Any]) -> None:
    """Every event stream to its Kafka topic as envelopes (see connectors.kafka.sink)."""
    from connectors.kafka.sink import event_sink, messages_of  # confluent-kafka: only if used

    cfg = plan.cfg
    topic = cfg.source.topic if isinstance(cfg.source, KafkaSourceConfig) else TICKS_TOPIC
    pre = cfg.kafka.topic_prefix
    account_kinds = tuple(k for k in BROKER_TOPICS if k is not StageHealth)  # signals included
    dead_msgs = messages_of((DeadLetter,), topic, pre)
    msgs = op.merge(
        "kafka_msgs",
        op.flat_map("kafka_account", booked, messages_of(account_kinds, topic, pre)),
        op.flat_map("kafka_health", judged, messages_of((StageHealth,), topic, pre)),
        op.flat_map("kafka_dead", dead, lambda d: dead_msgs(("", d))),
    )
    op.output("kafka_out", msgs, event_sink(cfg.kafka))


def _redis_out(
    plan: Plan, trading: list[Stream[Any]], booked: Stream[Any], judged: Stream[Any], run: Any
) -> None:
    """Live state (see schemas.redis_keys): PnL, positions, trading state, health, counters."""
    from connectors.redis_state import RedisStateSink

    cfg = plan.cfg
    counters = live_counters("live_counters", trading, run)
    kinds = (PnlSnapshot, TradingStateChanged)
    state = op.flat_map(
        "redis_state", booked, lambda kv: [i for i in kv[1] if isinstance(i, kinds)]
    )
    meta = RunMeta(
        source=cfg.source.name,
        brokers=_brokers(plan),
        workers=1,  # the sink fills in the real count
        window_s=cfg.health.window_s,
        history_windows=cfg.redis.history_windows,
    )
    values = op.merge(
        "redis_values", state, op.map("redis_health", judged, lambda kv: kv[1]), counters
    )
    op.output("redis_out", values, RedisStateSink(cfg.redis, meta))


def _tally(x: Any) -> tuple[str, Any]:
    if isinstance(x, TickBatch):
        return (REPORT_KEY, Tally(ticks=len(x)))
    if isinstance(x, RowsRead):
        return (REPORT_KEY, Tally(rows_read=x.count))
    return (REPORT_KEY, x)


@operator
def sinks(
    step_id: str,
    flow: Dataflow,
    batches: Stream[TickBatch],
    read: Stream[Any],
    booked: Stream[tuple[str, list[Any]]],
    judged: Stream[tuple[str, StageHealth]],
    dead: Stream[DeadLetter],
    plan: Plan,
) -> None:
    """Parquet ledger, Kafka topics, Redis live state and the run report."""
    cfg = plan.cfg
    if plan.ledger is not None or "ledger" in cfg.sinks:
        _ledger(flow, plan, booked, judged, dead)
    if "kafka" in cfg.sinks:
        _kafka_out(plan, booked, judged, dead)
    summaries = op.flat_map(
        "summaries", booked, lambda kv: [i for i in kv[1] if isinstance(i, BrokerSummary)]
    )
    report_in = op.map("report_in", op.merge("report_all", batches, read, dead, summaries), _tally)
    opened = op.input("report_open", flow, ReportOpen())  # a report even with no tick at all
    report_in = op.merge("report_start", opened, report_in)
    if "redis" in cfg.sinks:
        _redis_out(plan, [booked], booked, judged, report_in)
    if plan.progress is not None:  # stderr only: never the ledger
        progress("progress", report_in, booked, judged, plan.progress)
    out = str(plan.out)
    built = stateful_by_key(
        "report", report_in, lambda _k, resume: ReportBuilder(out, plan.started, resume)
    )
    op.output("report_out", op.key_rm("report_unkey", built), plan.report or ReportSink(plan.out))


def build_flow(plan: Plan) -> Dataflow:
    """Wire the flow for a prepared plan (see flows.plan.prepare)."""
    flow = Dataflow("alpha_panda")
    inputs = ingest("ingest", flow, plan)
    sig = signals("signals", inputs.batches, plan)
    booked = accounts("account", sig.ordered, inputs.updates, plan)
    judged = health("health", inputs.batches, sig.ordered, booked, inputs.stale, plan)
    dead = op.merge("dead_letters", inputs.dead, sig.dead)
    sinks("sinks", flow, inputs.batches, inputs.other, booked, judged, dead, plan)
    return flow
