"""Order events, built in one place for every venue (paper and zerodha)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.enums import OrderStatus
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, ValidatedSignal
from schemas.ids import content_id


def _common(
    v: ValidatedSignal, broker_order_id: str | None, status: OrderStatus, ts: datetime
) -> dict[str, Any]:
    s = v.signal
    return dict(
        order_id=v.order_id,
        correlation_id=v.correlation_id,
        broker=v.broker,
        broker_order_id=broker_order_id,
        status=status,
        signal_id=s.signal_id,
        strategy_id=s.strategy_id,
        instrument_token=s.instrument_token,
        side=v.side,
        timestamp=ts,
    )


def placed(
    v: ValidatedSignal, broker_order_id: str | None, order_type: str, ts: datetime
) -> OrderPlaced:
    """The venue accepted the order."""
    return OrderPlaced(
        **_common(v, broker_order_id, OrderStatus.PLACED, ts),
        event_id=content_id("placed", v.order_id),
        causation_id=v.event_id,
        quantity=v.quantity,
        order_type=order_type,
        price=v.signal.price,
    )


def filled(
    v: ValidatedSignal,
    broker_order_id: str | None,
    quantity: int,
    price: float,
    fee: float,
    cumulative: int,
    ts: datetime,
) -> OrderFilled:
    """``quantity`` more filled at ``price``; ``cumulative`` filled so far (makes the id)."""
    status = OrderStatus.FILLED if cumulative >= v.quantity else OrderStatus.PARTIALLY_FILLED
    return OrderFilled(
        **_common(v, broker_order_id, status, ts),
        event_id=content_id("fill", v.order_id, cumulative),
        causation_id=content_id("placed", v.order_id),
        quantity=quantity,
        fill_price=price,
        fees=fee,
    )


def failed(
    v: ValidatedSignal,
    broker_order_id: str | None,
    status: OrderStatus,
    unfilled: int,
    reason: str,
    ts: datetime,
) -> OrderFailed:
    """The order ended (rejected, cancelled) or could not be sent, ``unfilled`` left over."""
    return OrderFailed(
        **_common(v, broker_order_id, status, ts),
        event_id=content_id("failed", v.order_id, status.value),
        causation_id=content_id("placed", v.order_id),
        quantity=unfilled,
        reason=reason,
    )
