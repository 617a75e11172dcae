"""Events → Kafka: one JSON EventEnvelope per message, on the topic the topic module names.

The sink (connectors.kafka.watch) produces like Bytewax's KafkaSink: at-least-once. After a
resume from recovery, events of the epoch in flight are produced again with the same envelope
id, so consumers drop duplicates by ``id`` (also in the ``event_id`` header).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage

from connectors.kafka import metadata
from connectors.kafka.watch import EventSink
from schemas.config import KafkaConfig
from schemas.enums import Stage
from schemas.envelope import wrap
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
from schemas.topics import broker_topic, dlq_topic

Message = KafkaSinkMessage[bytes, bytes]

PRODUCED_BY: dict[type[Model], Stage] = {
    TradingSignal: Stage.SIGNAL_GENERATION,
    ValidatedSignal: Stage.RISK_VALIDATION,
    RejectedSignal: Stage.RISK_VALIDATION,
    OrderPlaced: Stage.ORDER_EXECUTION,
    OrderFilled: Stage.ORDER_EXECUTION,
    OrderFailed: Stage.ORDER_EXECUTION,
    FeesSettled: Stage.ORDER_EXECUTION,
    PnlSnapshot: Stage.PORTFOLIO_UPDATES,
    TradingStateChanged: Stage.RISK_VALIDATION,
    DeadLetter: Stage.MARKET_DATA,
}
"""Stage recorded as an envelope's ``source`` (StageHealth: the stage it judges)."""


def to_message(event: Model, ticks_topic: str, prefix: str = "") -> Message:
    """The envelope of ``event`` as a message: key ``{broker}:{token}``, headers for routing."""
    stage = Stage(event.stage) if isinstance(event, StageHealth) else PRODUCED_BY[type(event)]
    env = wrap(event, stage)
    headers = [
        ("event_type", str(env.type).encode()),
        ("event_id", env.id.encode()),
        ("correlation_id", env.correlation_id.encode()),
    ]
    if env.broker is not None:
        headers.insert(1, ("broker", str(env.broker).encode()))
        topic = broker_topic(env.broker, type(event), prefix)
    else:
        assert isinstance(event, DeadLetter)
        topic = dlq_topic(ticks_topic)
        headers += [
            ("reason", str(event.reason).encode()),
            ("source_topic", event.source.encode()),
            ("source_partition", event.source_partition.encode()),
            ("source_offset", str(event.offset).encode()),
        ]
    return KafkaSinkMessage(
        key=env.key.encode(), value=env.model_dump_json().encode(), topic=topic, headers=headers
    )


def messages_of(
    kinds: tuple[type[Model], ...], ticks_topic: str, prefix: str = ""
) -> Callable[[Any], Iterable[Message]]:
    """flat_map function: the messages of the wanted event types in a keyed list of items."""

    def pick(kv: tuple[str, Any]) -> list[Message]:
        items = kv[1] if isinstance(kv[1], list) else [kv[1]]
        return [to_message(i, ticks_topic, prefix) for i in items if type(i) in kinds]

    return pick


def event_sink(cfg: KafkaConfig) -> EventSink:
    """The event sink on ``cfg``'s cluster; each message names its topic. Fails fast
    (KafkaUnavailable, the address named) when the cluster cannot be reached; while the
    flow runs, a topic that disappears (a broker back empty) is logged."""
    metadata(cfg)  # like the source: an unreachable cluster stops the run before it starts
    return EventSink(cfg)
