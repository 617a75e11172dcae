"""Outside services and outputs: Kafka, Redis, Kite Connect, operator control, the output
folder."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from schemas.config.base import DAY_S, I64_MAX, Section, seconds
from schemas.redis_keys import DEFAULT_PREFIX


class KafkaConfig(Section):
    """Kafka cluster used by the kafka source, the kafka sink and the topic command."""

    brokers: list[str] = Field(default=["127.0.0.1:9092"], min_length=1)
    topic_prefix: str = Field(default="", description="prepended to every per-broker topic")
    partitions: int = Field(
        default=4, gt=0, le=10_000, description="partitions of topics we create"
    )
    replication_factor: int = Field(default=1, gt=0, le=100)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, gt=0, le=I64_MAX)
    timeout_s: float = seconds(5.0, 3_600, description="connect/metadata timeout")
    client: dict[str, str] = Field(default={}, description="extra librdkafka properties")

    @field_validator("brokers")
    @classmethod
    def _addresses(cls, brokers: list[str]) -> list[str]:
        if any(not b.strip() for b in brokers):
            raise ValueError("an empty broker address")
        return brokers


REDIS_URL_ENV = "REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisConfig(Section):
    """Live state in Redis (sink ``redis``) and where ``flows.status`` reads it."""

    url: str | None = Field(
        default=None,
        min_length=1,
        description=f"redis:// URL; unset: ${REDIS_URL_ENV}, else {DEFAULT_REDIS_URL}",
    )
    key_prefix: str = Field(
        default=DEFAULT_PREFIX, min_length=1, description="one prefix per deployment"
    )
    history_windows: int = Field(
        default=500, gt=0, le=1_000_000, description="health windows kept per broker"
    )
    flush_interval_s: float = seconds(0.25, 3_600, description="least time between writes")
    heartbeat_s: float = seconds(5.0, 3_600, description="writer heartbeat period")
    stale_after_s: float = seconds(30.0, description="status: writer silent → stale")
    timeout_s: float = seconds(2.0, 3_600, description="connect and command timeout")
    retry_max_s: float = seconds(10.0, 3_600, description="longest backoff between retries")
    log_interval_s: float = seconds(60.0, description="at most one error log per")
    close_timeout_s: float = Field(
        default=5.0, ge=0, le=3_600, description="end of run: wait to flush"
    )

    def resolved_url(self) -> str:
        """``url``, else ``$REDIS_URL``, else the local default."""
        return self.url or os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


class KiteConfig(Section):
    """Kite Connect for the ``kite`` source and the ``zerodha`` broker. Credentials come only
    from the environment (see schemas.kite)."""

    api_root: str = Field(
        default="https://api.kite.trade", min_length=1, description="HTTP API base URL"
    )
    ws_root: str = Field(
        default="wss://ws.kite.trade", min_length=1, description="KiteTicker base URL"
    )
    timeout_s: float = seconds(7.0, 300, description="HTTP request timeout")
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

    max_orders_per_s: float = Field(
        default=10.0, gt=0, le=1_000, description="client-side order rate"
    )
    attempts: int = Field(
        default=6, gt=0, le=100, description="tries per order (429, 5xx, timeouts)"
    )
    backoff_max_s: float = seconds(2.0, 3_600, description="longest wait between tries")
    intent_ttl_s: int = Field(
        default=3 * DAY_S, gt=0, le=366 * DAY_S, description="order intents kept in Redis"
    )
    poll_s: float = seconds(5.0, 3_600, description="orders() poll, beside order messages")
    max_signal_age_s: float | None = seconds(
        30.0,
        description="an order whose signal's tick was received longer ago than this (wall "
        "clock) is never placed; null: no limit",
    )
    require_persistent_redis: bool = Field(
        default=True,
        description="refuse live orders when Redis keeps no data on disk (AOF or RDB): a "
        "restart would forget the order intents",
    )
    reconcile_s: float = seconds(
        30.0, description="how often Kite's positions are compared with the zerodha account's"
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


class ControlConfig(Section):
    """Operator commands (halt, flatten, resume) to the accounts."""

    path: str | None = Field(
        default=None,
        min_length=1,
        description='JSON lines {"ts": ISO-8601, "broker": "paper", "command": "flatten"}, '
        "applied at that event time (replay and live)",
    )
    redis: bool | None = Field(
        default=None,
        description="listen for `flows.control` commands through Redis; unset: on for live sources",
    )


class OutputConfig(Section):
    dir: str | None = Field(default=None, min_length=1, description="default runs/<run-id>")
    rows_per_file: int = Field(default=100_000, gt=0, le=100_000_000)
    report: bool = True
    analysis: bool = Field(
        default=True,
        description="when the run ends: report.txt/.json/.html with returns, ratios, trades "
        "and plots written into the run folder (flows.analysis)",
    )
