"""Kafka topic names: the one place that spells them. Sinks, the topic command and tests use it."""

from __future__ import annotations

from schemas.enums import Broker
from schemas.events import (
    DeadLetter,
    FeesSettled,
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

TICKS_TOPIC = "market.ticks"
"""Default tick topic: one JSON MarketTick per message, key = instrument token."""

DLQ_SUFFIX = ".dlq"

BROKER_TOPICS: dict[type[Model], str] = {
    TradingSignal: "signals.raw",
    ValidatedSignal: "signals.validated",
    RejectedSignal: "signals.rejected",
    OrderPlaced: "orders.placed",
    OrderFilled: "orders.filled",
    OrderFailed: "orders.failed",
    FeesSettled: "orders.fees",
    PnlSnapshot: "pnl.snapshots",
    StageHealth: "health",
    TradingStateChanged: "trading.state",
}
"""Event type → per-broker topic suffix: ``{broker}.{suffix}``."""


def broker_topic(broker: Broker | str, event: type[Model], prefix: str = "") -> str:
    """``{prefix}{broker}.signals.raw`` and friends (``kafka.topic_prefix``, default none)."""
    if event is DeadLetter:
        raise ValueError("dead letters go to dlq_topic(source topic)")
    return f"{prefix}{Broker(broker).value}.{BROKER_TOPICS[event]}"


def dlq_topic(topic: str) -> str:
    """Dead letters of records read from ``topic``."""
    return f"{topic}{DLQ_SUFFIX}"


def all_topics(
    brokers: list[Broker], ticks_topic: str = TICKS_TOPIC, prefix: str = ""
) -> list[str]:
    """Every topic a deployment uses, sorted: ticks, its DLQ, and each broker's topics."""
    names = {ticks_topic, dlq_topic(ticks_topic)}
    names.update(broker_topic(b, e, prefix) for b in brokers for e in BROKER_TOPICS)
    return sorted(names)
