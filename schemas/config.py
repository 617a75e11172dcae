"""Configuration schema. Every field of the YAML config is declared here, and only here."""

from __future__ import annotations

import os
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from schemas.enums import Broker, Product
from schemas.redis_keys import DEFAULT_PREFIX
from schemas.topics import TICKS_TOPIC


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ReplaySourceConfig(Section):
    kind: Literal["replay"] = "replay"
    path: str = Field(description="Parquet file or directory of files, read in name order")
    batch_size: int = Field(default=20_000, gt=0, description="max ticks per columnar batch")
    partitions: int = Field(default=4, gt=0, description="replay partitions (instrument buckets)")

    @property
    def name(self) -> str:
        return Path(self.path).stem


class KafkaSourceConfig(Section):
    kind: Literal["kafka"]
    topic: str = Field(default=TICKS_TOPIC, min_length=1)
    tail: bool = Field(default=True, description="wait for new ticks; false stops at the end")
    from_start: bool = Field(default=True, description="first run reads the topic from offset 0")
    batch_size: int = Field(default=5_000, gt=0, description="max messages per poll")
    max_message_bytes: int = Field(default=16_384, gt=0, description="larger → dead letter")
    idle_stop_s: float | None = Field(
        default=None, gt=0, description="tail: finish the run after this long without messages"
    )
    max_delay_s: float | None = Field(
        default=None,
        gt=0,
        description="an instrument silent this long (wall clock) stops holding the others' "
        "signals back (live tailing); None keeps exact event-time order",
    )

    @property
    def name(self) -> str:
        return self.topic


class KiteSourceConfig(Section):
    """Live ticks from the KiteTicker websocket (``kite:`` section: where, and credentials)."""

    kind: Literal["kite"]
    mode: Literal["ltp", "quote", "full"] = Field(
        default="full", description="ticker mode; ltp/quote carry no exchange time (receipt time)"
    )
    stale_after_s: float = Field(
        default=10.0, gt=0, description="silent this long in market hours, socket open: reconnect"
    )
    reconnect_max_delay_s: float = Field(default=5.0, ge=5, description="longest reconnect wait")
    capture: str | None = Field(default=None, description="directory: also write ticks as Parquet")
    capture_rows: int = Field(default=50_000, gt=0, description="ticks per capture file")
    idle_stop_s: float | None = Field(
        default=None, gt=0, description="finish the run after this long without ticks"
    )
    max_delay_s: float | None = Field(
        default=2.0, gt=0, description="as for kafka: quiet instruments cannot hold signals back"
    )

    @property
    def name(self) -> str:
        return "kite"


def _source_kind(v: Any) -> str:
    return str(v.get("kind", "replay") if isinstance(v, dict) else getattr(v, "kind", "replay"))


SourceConfig = Annotated[
    Annotated[ReplaySourceConfig, Tag("replay")]
    | Annotated[KafkaSourceConfig, Tag("kafka")]
    | Annotated[KiteSourceConfig, Tag("kite")],
    Discriminator(_source_kind),
]


class KafkaConfig(Section):
    """Kafka cluster used by the kafka source, the kafka sink and the topic command."""

    brokers: list[str] = Field(default=["127.0.0.1:9092"], min_length=1)
    topic_prefix: str = Field(default="", description="prepended to every per-broker topic")
    partitions: int = Field(default=4, gt=0, description="partitions of topics we create")
    replication_factor: int = Field(default=1, gt=0)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0)
    timeout_s: float = Field(default=5.0, gt=0, description="connect/metadata timeout")
    client: dict[str, str] = Field(default={}, description="extra librdkafka properties")


REDIS_URL_ENV = "REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisConfig(Section):
    """Live state in Redis (sink ``redis``) and where ``flows.status`` reads it."""

    url: str | None = Field(
        default=None, description=f"redis:// URL; unset: ${REDIS_URL_ENV}, else {DEFAULT_REDIS_URL}"
    )
    key_prefix: str = Field(default=DEFAULT_PREFIX, description="one prefix per deployment")
    history_windows: int = Field(default=500, gt=0, description="health windows kept per broker")
    flush_interval_s: float = Field(default=0.25, gt=0, description="least time between writes")
    heartbeat_s: float = Field(default=5.0, gt=0, description="writer heartbeat period")
    stale_after_s: float = Field(default=30.0, gt=0, description="status: writer silent → stale")
    timeout_s: float = Field(default=2.0, gt=0, description="connect and command timeout")
    retry_max_s: float = Field(default=10.0, gt=0, description="longest backoff between retries")
    log_interval_s: float = Field(default=60.0, gt=0, description="at most one error log per")
    close_timeout_s: float = Field(default=5.0, ge=0, description="end of run: wait to flush")

    def resolved_url(self) -> str:
        """``url``, else ``$REDIS_URL``, else the local default."""
        return self.url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


class KiteConfig(Section):
    """Kite Connect for the ``kite`` source and the ``zerodha`` broker. Credentials come only
    from the environment (see schemas.kite)."""

    api_root: str = Field(default="https://api.kite.trade", description="HTTP API base URL")
    ws_root: str = Field(default="wss://ws.kite.trade", description="KiteTicker base URL")
    timeout_s: float = Field(default=7.0, gt=0, description="HTTP request timeout")
    market_protection: float = Field(
        default=2.0,
        ge=-1,
        le=100,
        description="% band sent with every MARKET and SL-M order (Kite rejects them without "
        "one since April 2026); -1: Kite's own band",
    )
    algo_id: str | None = Field(default=None, description="exchange algo id, when registered")

    @field_validator("market_protection")
    @classmethod
    def _protected(cls, pct: float) -> float:
        if pct != -1 and pct <= 0:
            raise ValueError("must be -1 (Kite's band) or a percentage in (0, 100]")
        return pct

    max_orders_per_s: float = Field(default=10.0, gt=0, description="client-side order rate")
    attempts: int = Field(default=6, gt=0, description="tries per order (429, 5xx, timeouts)")
    backoff_max_s: float = Field(default=2.0, gt=0, description="longest wait between tries")
    intent_ttl_s: int = Field(default=3 * 86_400, gt=0, description="order intents kept in Redis")
    poll_s: float = Field(default=5.0, gt=0, description="orders() poll, beside order messages")
    max_signal_age_s: float | None = Field(
        default=30.0,
        gt=0,
        description="an order whose signal's tick was received longer ago than this (wall "
        "clock) is never placed; null: no limit",
    )
    require_persistent_redis: bool = Field(
        default=True,
        description="refuse live orders when Redis keeps no data on disk (AOF or RDB): a "
        "restart would forget the order intents",
    )
    reconcile_s: float = Field(
        default=30.0,
        gt=0,
        description="how often Kite's positions are compared with the zerodha account's",
    )
    placement_queue: int = Field(
        default=64,
        gt=0,
        le=10_000,
        description="orders waiting for the placement thread at most; full: the account halts",
    )
    ambiguous_window_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="after an ambiguous reply, how long Kite's orders are polled for the order "
        "(not found: never placed again, its fate left to Kite's updates)",
    )


class Instrument(Section):
    instrument_token: int = Field(gt=0)
    tradingsymbol: str
    exchange: str = "NSE"
    tick_size: float | Literal["auto"] = Field(
        default=0.05, description="₹, or auto: NSE's band for the price (operators.market)"
    )

    @field_validator("tick_size")
    @classmethod
    def _positive_tick(cls, tick: float | str) -> float | str:
        if tick != "auto" and not (isinstance(tick, float | int) and tick > 0):
            raise ValueError("must be > 0 or auto")
        return tick

    lot_size: int = Field(default=1, gt=0)
    circuit_pct: float | None = Field(
        default=None, gt=0, le=100, description="price band around the previous close, %"
    )


class CostModel(Section):
    """Zerodha equity charges (published schedules): intraday (MIS) and delivery (CNC)."""

    brokerage_pct: float = Field(default=0.0003, ge=0, description="intraday, per order")
    brokerage_cap: float = Field(default=20.0, ge=0, description="intraday, ₹ per order")
    stt_sell_pct: float = Field(default=0.00025, ge=0, description="intraday, on sells")
    transaction_pct: float = Field(default=0.0000297, ge=0, description="NSE, both products")
    sebi_per_crore: float = Field(default=10.0, ge=0)
    stamp_buy_pct: float = Field(default=0.00003, ge=0, description="intraday, on buys")
    gst_pct: float = Field(default=0.18, ge=0, description="on brokerage, exchange, SEBI, DP")
    delivery_brokerage_pct: float = Field(default=0.0, ge=0, description="CNC: free")
    delivery_stt_pct: float = Field(default=0.001, ge=0, description="CNC, buys and sells")
    delivery_stamp_buy_pct: float = Field(default=0.00015, ge=0, description="CNC, on buys")
    dp_per_scrip: float = Field(default=13.0, ge=0, description="CNC: ₹ per scrip per sell day")
    square_off_charge: float = Field(
        default=50.0, ge=0, description="₹ per order the broker squares off at the MIS cut-off"
    )


class SpecialSession(Section):
    """A session on a day the calendar does not trade (e.g. Muhurat trading), its hours."""

    date: date
    open: time
    close: time


class SessionConfig(Section):
    """Market session; in replay judged by tick time. Trading days come from ``calendar``
    (exchange_calendars: XBOM, whose holidays NSE shares), less ``holidays``, plus
    ``special_sessions``; outside the calendar's years, ``weekdays`` less ``holidays``."""

    calendar: str | None = Field(
        default="XBOM", description="exchange_calendars name; null: weekdays and holidays only"
    )
    special_sessions: list[SpecialSession] = []

    open: time = time(9, 15)
    close: time = time(15, 30)
    mis_cutoff: time = Field(
        default=time(15, 20), description="MIS: no new entries from here, open ones squared off"
    )
    timezone: str = "Asia/Kolkata"
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4], description="0 = Monday")
    holidays: list[date] = []

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str | None) -> str | None:
        if name is not None:
            import exchange_calendars  # pandas: only when a calendar is asked for

            if name not in exchange_calendars.get_calendar_names():
                raise ValueError(f"unknown exchange calendar {name!r}")
        return name


class RiskConfig(Section):
    """Checks on every order request of one broker's account; each refusal names its code."""

    max_position_qty: int = Field(default=1000, gt=0, description="|position| per instrument")
    max_position_value: float = Field(
        default=1_000_000.0, gt=0, description="|position| × price per instrument, after the order"
    )
    max_gross_exposure: float = Field(
        default=5_000_000.0, gt=0, description="Σ |position| × price over instruments, after it"
    )
    max_open_positions: int = Field(default=50, gt=0, description="instruments held at once")
    max_order_value: float = Field(default=500_000.0, gt=0)
    max_daily_loss: float = Field(default=50_000.0, gt=0)
    flatten_on_breach: bool = Field(
        default=True, description="daily loss breached: close every position at once"
    )
    mark_interval_s: float = Field(
        default=1.0, gt=0, description="event-time cadence of marks (loss limit checked on each)"
    )
    price_band_pct: float = Field(
        default=5.0, gt=0, description="LIMIT price at most this % from the last price"
    )
    max_orders_per_second: int = Field(default=10, gt=0)
    max_orders_per_minute: int = Field(default=400, gt=0)
    max_orders_per_day: int = Field(default=5000, gt=0)
    allowed_instruments: list[int] | None = None
    enforce_session: bool = True
    circuit_pct: float | None = Field(
        default=None, gt=0, le=100, description="band for instruments without their own, %"
    )


class ExecutionConfig(Section):
    """The paper fill model (operators.account.paper)."""

    latency_ms: int = Field(
        default=0,
        ge=0,
        le=3_600_000,
        description="0: a signal's order fills at its instrument's next tick; more: at the "
        "first tick at or after the signal time plus this latency",
    )
    limit_timeout_s: float = Field(
        default=0, ge=0, description="a resting LIMIT is cancelled after this (0: at the close)"
    )
    market_protection: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="% beyond the signal price a MARKET order may fill (as Kite's market "
        "protection; the rest rests at that price); 0: none; null: kite.market_protection",
    )
    max_participation: float | None = Field(
        default=1.0,
        gt=0,
        le=1,
        description="an order fills at most this share of the volume traded at each tick "
        "(null: no cap)",
    )


class BrokerConfig(Section):
    starting_cash: float = Field(default=1_000_000.0, gt=0)
    slippage_bps: float = Field(default=2.0, ge=0)
    risk: RiskConfig = RiskConfig()


class StrategyConfig(Section):
    id: str = Field(min_length=1)
    type: str | None = Field(default=None, description="built-in strategy name")
    class_path: str | None = Field(default=None, alias="class", description="module:Class")
    instruments: list[int] | Literal["all"]
    brokers: list[Broker] = Field(min_length=1)
    params: dict[str, Any] = {}
    enabled: bool = True
    order_type: Literal["MARKET", "LIMIT", "SL", "SL-M"] = "MARKET"
    stop_offset_bps: float | None = Field(
        default=None,
        gt=0,
        le=5_000,
        description="SL / SL-M: the trigger this far beyond the signal price (a buy above, a "
        "sell below); SL's limit is its trigger",
    )
    product: Product = Field(
        default=Product.MIS, description="MIS: intraday, squared off at the cut-off; CNC: delivery"
    )
    stop_loss_pct: float | None = Field(
        default=None, gt=0, le=100, description="exit when the position loses this % of its price"
    )
    take_profit_pct: float | None = Field(
        default=None, gt=0, description="exit when the position gains this % of its price"
    )
    trailing_stop_pct: float | None = Field(
        default=None, gt=0, le=100, description="exit this % off the best mark since it opened"
    )
    session_reset: bool = Field(
        default=False, description="forget the strategy's state at each new trading day"
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    @model_validator(mode="after")
    def _one_kind(self) -> StrategyConfig:
        if (self.type is None) == (self.class_path is None):
            raise ValueError("set exactly one of 'type' or 'class'")
        if self.order_type in ("SL", "SL-M") and self.stop_offset_bps is None:
            raise ValueError(f"stop_offset_bps: required for order_type {self.order_type}")
        return self


class ControlConfig(Section):
    """Operator commands (halt, flatten, resume) to the accounts."""

    path: str | None = Field(
        default=None,
        description='JSON lines {"ts": ISO-8601, "broker": "paper", "command": "flatten"}, '
        "applied at that event time (replay and live)",
    )
    redis: bool | None = Field(
        default=None,
        description="listen for `flows.control` commands through Redis; unset: on for live sources",
    )


class PortfolioConfig(Section):
    snapshot_interval_s: int = Field(default=300, gt=0)


class HealthConfig(Section):
    window_s: int = Field(default=60, gt=0)
    startup_windows: int = Field(default=1, ge=0)
    latency_warning_s: float = Field(default=5.0, gt=0)
    latency_critical_s: float = Field(default=15.0, gt=0)
    market_data_silence_warning_windows: int = Field(default=1, gt=0)
    market_data_silence_critical_windows: int = Field(default=3, gt=0)
    stall_warning_windows: int = Field(default=30, gt=0)
    stall_critical_windows: int = Field(default=60, gt=0)


class OutputConfig(Section):
    dir: str | None = Field(default=None, description="default runs/<run-id>")
    rows_per_file: int = Field(default=100_000, gt=0)
    report: bool = True


Sink = Literal["ledger", "kafka", "redis"]


class AppConfig(Section):
    source: SourceConfig
    sinks: list[Sink] = Field(default=["ledger"], min_length=1)
    kafka: KafkaConfig = KafkaConfig()
    redis: RedisConfig = RedisConfig()
    kite: KiteConfig = KiteConfig()
    instruments: list[Instrument] = Field(min_length=1)
    brokers: dict[Broker, BrokerConfig] = Field(min_length=1)
    strategies: list[StrategyConfig] = []
    costs: CostModel = CostModel()
    execution: ExecutionConfig = ExecutionConfig()
    session: SessionConfig = SessionConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    health: HealthConfig = HealthConfig()
    output: OutputConfig = OutputConfig()
    control: ControlConfig = ControlConfig()

    @model_validator(mode="after")
    def _cross_checks(self) -> AppConfig:
        if len(set(self.sinks)) != len(self.sinks):
            raise ValueError("sinks: listed twice")
        tokens = {i.instrument_token for i in self.instruments}
        if len(tokens) != len(self.instruments):
            raise ValueError("instruments: duplicate instrument_token")
        seen: set[str] = set()
        for s in self.strategies:
            if s.id in seen:
                raise ValueError(f"strategies[{s.id}].id: duplicate strategy id")
            seen.add(s.id)
            if s.instruments != "all":
                unknown = sorted(set(s.instruments) - tokens)
                if unknown:
                    raise ValueError(
                        f"strategies[{s.id}].instruments: not in the instrument list: {unknown}"
                    )
            missing = [b.value for b in s.brokers if b not in self.brokers]
            if missing:
                raise ValueError(
                    f"strategies[{s.id}].brokers: not configured in brokers: {missing}"
                )
        if Broker.ZERODHA in self.routes_brokers() and not self.is_live():
            raise ValueError(
                "source.kind: a strategy trades on zerodha (real orders), which needs a live "
                "source (kite, or kafka with tail: true)"
            )
        for b, bc in self.brokers.items():
            mark_us = round(bc.risk.mark_interval_s * 1e6)
            if mark_us < 1 or (self.portfolio.snapshot_interval_s * 10**6) % mark_us:
                raise ValueError(
                    f"brokers.{b.value}.risk.mark_interval_s: must divide "
                    "portfolio.snapshot_interval_s"
                )
        if self.portfolio.snapshot_interval_s % self.health.window_s:
            raise ValueError("portfolio.snapshot_interval_s: must be a multiple of health.window_s")
        return self

    def is_live(self) -> bool:
        """Ticks arrive as they happen (kite, or kafka with tail)."""
        return isinstance(self.source, KiteSourceConfig) or (
            isinstance(self.source, KafkaSourceConfig) and self.source.tail
        )

    def control_by_redis(self) -> bool:
        return self.control.redis if self.control.redis is not None else self.is_live()

    def paper_protection(self) -> float:
        """The paper venue's market protection as a fraction: ``execution.market_protection``,
        else the one the Kite orders carry (Kite's own band, -1, modelled as 2%)."""
        pct = self.execution.market_protection
        if pct is None:
            pct = self.kite.market_protection if self.kite.market_protection > 0 else 2.0
        return pct / 100

    def stop_offsets(self) -> dict[str, float]:
        """SL / SL-M strategies: the trigger's offset (bps) from the signal price."""
        return {
            s.id: s.stop_offset_bps
            for s in self.strategies
            if s.order_type in ("SL", "SL-M") and s.stop_offset_bps is not None
        }

    def strategy_instruments(self, s: StrategyConfig) -> list[int]:
        if s.instruments == "all":
            return [i.instrument_token for i in self.instruments]
        return list(s.instruments)

    def routes_brokers(self) -> set[Broker]:
        """Brokers some enabled strategy trades on."""
        return {b for bs in self.routes().values() for b in bs}

    def routes(self) -> dict[int, list[Broker]]:
        """instrument token → brokers with an enabled strategy on it (sorted)."""
        out: dict[int, set[Broker]] = {}
        for s in self.strategies:
            if s.enabled:
                for tok in self.strategy_instruments(s):
                    out.setdefault(tok, set()).update(s.brokers)
        return {t: sorted(b, key=lambda x: x.value) for t, b in sorted(out.items())}


class ConfigError(ValueError):
    """Bad configuration; the message names the offending field."""


class SourceUnavailable(RuntimeError):
    """A configured source or sink cannot be reached; the message names the setting."""
