"""Order events, built in one place for every venue (paper and zerodha)."""

from __future__ import annotations

import math
from datetime import datetime
from functools import lru_cache
from typing import Any

from operators.charges import Charges
from schemas.enums import OrderStatus
from schemas.events import FeesSettled, OrderFailed, OrderFilled, OrderPlaced, ValidatedSignal
from schemas.ids import content_id


@lru_cache(maxsize=4096, typed=True)
def order_id(signal_id: str) -> str:
    """The order id of a signal's order (kept: asked at its decision and at its ticks)."""
    return content_id("ord", signal_id)


@lru_cache(maxsize=4096, typed=True)
def placed_id(order_id: str) -> str:
    """The id of an order's placement, every later event's cause (kept: asked per event)."""
    return content_id("placed", order_id)


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
        event_id=placed_id(v.order_id),
        causation_id=v.event_id,
        quantity=v.quantity,
        order_type=order_type,
        price=v.signal.price,
        trigger_price=v.trigger_price,
    )


def filled(
    v: ValidatedSignal,
    broker_order_id: str | None,
    quantity: int,
    price: float,
    charged: Charges,
    cumulative: int,
    ts: datetime,
    auto_square_off: bool = False,
    fee: float | None = None,
) -> OrderFilled:
    """``quantity`` more filled at ``price`` with its ``charged`` charges; ``cumulative``
    filled so far (makes the id); ``auto_square_off``: the broker closed it at the cut-off;
    ``fee``: the fill's share of its order's rounded charges (default: ``charged.total``)."""
    status = OrderStatus.FILLED if cumulative >= v.quantity else OrderStatus.PARTIALLY_FILLED
    return OrderFilled(
        **_common(v, broker_order_id, status, ts),
        event_id=content_id("fill", v.order_id, cumulative),
        causation_id=placed_id(v.order_id),
        quantity=quantity,
        fill_price=price,
        fees=charged.total if fee is None else fee,
        product=v.product,
        auto_square_off=auto_square_off,
        **charged.columns(),
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
        causation_id=placed_id(v.order_id),
        quantity=unfilled,
        reason=reason,
    )


NOTE_CAP_PCT = 1.0  # a note charging more than 1% of the turnover (+ ₹100) is not believed


def _amount(x: Any) -> float:
    """A contract note's amount: a finite non-negative number (not a bool, not text)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"contract note amount {x!r} is not a number")
    v = float(x)  # OverflowError on an integer beyond a float
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"contract note amount {x!r} not finite and non-negative")
    return v


NOTE_HEADS = {  # Kite's contract-note charge names → ours
    "brokerage": "brokerage",
    "transaction_tax": "stt",
    "exchange_turnover_charge": "exchange",
    "sebi_turnover_charge": "sebi",
    "stamp_duty": "stamp",
}


def fees_settled(
    v: ValidatedSignal,
    broker_order_id: str,
    filled: int,
    model_fees: float,
    turnover: float,
    note: dict[str, Any],
    ts: datetime,
) -> FeesSettled:
    """Kite's contract note ``note`` (its ``charges`` object) for the order that ended with
    ``filled`` (worth ``turnover``) at ``ts``; ``model_fees``: what its fills were charged.
    Raises ValueError/KeyError/TypeError/ArithmeticError on a note that is not one: a head
    not a finite non-negative number, a total not the sum of its heads, or charges beyond
    ``NOTE_CAP_PCT`` of the turnover + ₹100."""
    gst = note.get("gst")
    heads = {ours: _amount(note[theirs]) for theirs, ours in NOTE_HEADS.items()}
    heads["gst"] = _amount(gst["total"] if isinstance(gst, dict) else gst or 0.0)
    total = round(_amount(note["total"]), 2)
    if abs(total - sum(heads.values())) > 1.0:  # Kite's heads are rounded; a rupee at most
        raise ValueError(f"contract note total {total} is not the sum of its heads")
    if total > turnover * NOTE_CAP_PCT / 100 + 100:
        raise ValueError(f"contract note total {total} on a turnover of {turnover:.2f}")
    return FeesSettled(
        **_common(v, broker_order_id, OrderStatus.FILLED, ts),
        event_id=content_id("note", v.order_id),
        causation_id=placed_id(v.order_id),
        quantity=filled,
        model_fees=round(model_fees, 2),
        note_fees=total,
        adjustment=round(total - model_fees, 2),
        **heads,
    )
