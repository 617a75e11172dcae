"""Everything the flow needs that touches the outside world, resolved BEFORE the graph is
built: the tick source (Kafka is listed, Kite credentials checked), the Kite placer (Redis
pinged), the control file, the output folder. ``build_flow`` only wires steps."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.replay import ReplaySource
from flows.config import output_dir
from operators.report import RunReport
from operators.session import MarketSession
from schemas.config import AppConfig, KafkaSourceConfig, KiteSourceConfig
from schemas.control import ControlCommand, load_control_file
from schemas.enums import Broker


@dataclass
class Plan:
    cfg: AppConfig
    source: Source[Any]
    parts: list[str]
    out: Path
    ledger: Sink[Any] | None = None
    report: Sink[RunReport] | None = None
    placer: Any = None  # connectors.kite.orders.KiteOrders, when zerodha trades
    order_updates: Source[Any] | None = None  # zerodha fed by a non-Kite tick source
    commands: list[ControlCommand] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # wall clock


def _source(cfg: AppConfig, tokens: list[int]) -> tuple[Source[Any], list[str]]:
    if isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.ticks import KiteTickSource

        zerodha = Broker.ZERODHA in cfg.routes_brokers()
        kite = KiteTickSource(cfg.source, cfg.kite, cfg.session, tokens, with_orders=zerodha)
        return kite, kite.list_parts()
    if isinstance(cfg.source, KafkaSourceConfig):
        from connectors.kafka.source import KafkaTickSource

        days = MarketSession(cfg.session).trading_mask
        kafka = KafkaTickSource(cfg.source, cfg.kafka, tokens, days)
        return kafka, kafka.list_parts()  # fails fast, naming the address, if unreachable
    src = cfg.source
    days = MarketSession(cfg.session).trading_mask  # Kite streams only on trading days
    replay = ReplaySource(src.path, tokens, src.batch_size, src.partitions, days)
    return replay, replay.part_names()


def _parts(cfg: AppConfig) -> list[str]:
    if isinstance(cfg.source, KiteSourceConfig):
        return ["kite"]
    if isinstance(cfg.source, KafkaSourceConfig):
        raise ValueError("pass source_parts with a custom source on a kafka config")
    return [f"replay-{k}" for k in range(cfg.source.partitions)]


def prepare(
    cfg: AppConfig,
    *,
    source: Source[Any] | None = None,
    source_parts: list[str] | None = None,
    ledger: Sink[Any] | None = None,
    report: Sink[RunReport] | None = None,
    out_dir: Path | None = None,
) -> Plan:
    """Resolve the outside world for ``cfg``; tests pass their own source and sinks. Raises
    ConfigError / SourceUnavailable naming the setting when something is missing."""
    started = time.perf_counter()
    if source is None:
        source, source_parts = _source(cfg, [i.instrument_token for i in cfg.instruments])
    plan = Plan(cfg, source, source_parts or _parts(cfg), out_dir or output_dir(cfg))
    plan.ledger, plan.report, plan.started = ledger, report, started
    if cfg.control.path:
        plan.commands = load_control_file(cfg.control.path, cfg.brokers)
    if Broker.ZERODHA in cfg.routes_brokers() or isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.client import check_session

        check_session(cfg.kite)  # credentials and token: fail fast, before any output
    if Broker.ZERODHA in cfg.routes_brokers():  # Redis: fail fast, named
        from connectors.kite.orders import kite_orders

        plan.placer = kite_orders(cfg)
        if not isinstance(cfg.source, KiteSourceConfig):
            from connectors.kite.updates import PART, KiteOrderSource

            plan.order_updates = KiteOrderSource(cfg.kite)
            plan.parts = [*plan.parts, PART]
    return plan
