"""EventEnvelope: how any event travels outside the flow (Kafka, logs). Built in one place.

``broker`` is the broker the event belongs to. Only dead letters of the tick stream have
none (``null``): they were refused before the fan-out to brokers.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, model_validator

from schemas.enums import Broker, EventType, Stage
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
from schemas.ids import content_id
from schemas.keys import route_key

ENVELOPE_VERSION = 1

EVENT_TYPES: dict[type[Model], EventType] = {
    MarketTick: EventType.MARKET_TICK,
    TradingSignal: EventType.TRADING_SIGNAL,
    ValidatedSignal: EventType.VALIDATED_SIGNAL,
    RejectedSignal: EventType.REJECTED_SIGNAL,
    OrderPlaced: EventType.ORDER_PLACED,
    OrderFilled: EventType.ORDER_FILLED,
    OrderFailed: EventType.ORDER_FAILED,
    FeesSettled: EventType.FEES_SETTLED,
    PnlSnapshot: EventType.PNL_SNAPSHOT,
    StageHealth: EventType.STAGE_HEALTH,
    DeadLetter: EventType.DEAD_LETTER,
    TradingStateChanged: EventType.TRADING_STATE_CHANGED,
}


class EventEnvelope(Model):
    id: str
    type: EventType
    broker: Broker | None
    key: str
    source: Stage
    correlation_id: str
    causation_id: str | None
    version: int
    ts: AwareDatetime | None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _broker_set(self) -> EventEnvelope:
        if self.broker is None and self.type != EventType.DEAD_LETTER.value:
            raise ValueError(f"broker: required for {self.type} events")
        return self


def _ids(event: Model) -> tuple[str, str, str | None]:
    """(own id, correlation id, causation id) of an event."""
    if isinstance(event, TradingSignal):
        return event.signal_id, event.correlation_id, event.correlation_id
    own = getattr(event, "event_id", None)
    if own is not None:
        return own, getattr(event, "correlation_id", own), getattr(event, "causation_id", None)
    raise TypeError(f"{type(event).__name__} carries no event id")


def envelope_key(broker: Broker | str, token: int | None) -> str:
    """Message key: ``"{broker}:{instrument_token}"``, or ``"{broker}"`` for broker-wide events."""
    return route_key(broker, token) if token is not None else Broker(broker).value


def wrap(event: Model, source: Stage, broker: Broker | str | None = None) -> EventEnvelope:
    """Wrap an event; ``broker`` comes from the event (or the argument, for dead letters).

    A dead letter without a broker is keyed by its source partition.
    """
    given = getattr(event, "broker", None) or broker
    chosen = Broker(given) if given is not None else None
    if chosen is None and not isinstance(event, DeadLetter):
        raise ValueError(f"{type(event).__name__} has no broker: pass broker= explicitly")
    token = getattr(event, "instrument_token", None)
    if token is None and isinstance(event, (ValidatedSignal, RejectedSignal)):
        token = event.signal.instrument_token
    own, corr, cause = _ids(event)
    ts = getattr(event, "timestamp", None) or getattr(event, "window_end", None)
    etype = EVENT_TYPES[type(event)]
    if chosen is None:
        assert isinstance(event, DeadLetter)
        key = event.source_partition
    else:
        key = envelope_key(chosen, token)
    return EventEnvelope(
        id=content_id("env", etype.value, own, chosen.value if chosen else ""),
        type=etype,
        broker=chosen,
        key=key,
        source=source,
        correlation_id=corr,
        causation_id=cause,
        version=ENVELOPE_VERSION,
        ts=ts,
        data=event.model_dump(mode="json"),
    )
