"""Zerodha execution: validated signals → Kite orders (never twice, see connectors.kite.orders);
Kite's order updates → OrderFilled / OrderFailed for the zerodha portfolio.

Keyed by broker like paper execution, and in the same place in the graph: order updates
from the order feed are merged into its input. An order's tag derives from the signal id,
so an update (or a replayed signal after a resume) finds its order even when this stage's
state was rolled back: the intent stored in Redis says which signal the tag belongs to.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from operators.accounting import fees
from operators.execution import PASS_THROUGH, ExecOut
from schemas.config import CostModel
from schemas.enums import Broker, OrderStatus
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, ValidatedSignal
from schemas.ids import content_id
from schemas.kite import TERMINAL, KiteUnavailable, OrderRejected, OrderUpdate, order_tag
from schemas.redis_keys import OrderIntent

log = logging.getLogger("alpha_panda.zerodha")


class Placer(Protocol):
    """What this stage needs of connectors.kite.orders.KiteOrders (tests may pass another)."""

    def submit(self, intent: OrderIntent, order_type: str) -> Any: ...

    def recall(self, tag: str) -> OrderIntent | None: ...


@dataclass
class Tracked:
    validated: ValidatedSignal
    kite_order_id: str | None
    announced: bool  # OrderPlaced emitted
    done: bool = False  # filled, failed, rejected or cancelled: nothing more to emit


@dataclass
class ZerodhaState:
    orders: dict[str, Tracked] = field(default_factory=dict)  # by tag


class ZerodhaExecution:
    """Pure logic around a ``Placer``: which events each signal and update cause."""

    def __init__(
        self,
        broker: Broker,
        costs: CostModel,
        placer: Placer,
        order_types: Mapping[str, str],
        state: ZerodhaState | None = None,
    ) -> None:
        self.broker, self.costs, self.placer = broker, costs, placer
        self.order_types = order_types
        self.state = state or ZerodhaState()

    def _ids(self, v: ValidatedSignal) -> dict[str, Any]:
        s = v.signal
        return dict(
            order_id=content_id("ord", s.signal_id),
            correlation_id=v.correlation_id,
            broker=self.broker,
            signal_id=s.signal_id,
            strategy_id=s.strategy_id,
            instrument_token=s.instrument_token,
        )

    def _placed(self, t: Tracked) -> OrderPlaced:
        v, s = t.validated, t.validated.signal
        ids = self._ids(v)
        t.announced = True
        return OrderPlaced(
            **ids,
            event_id=content_id("placed", ids["order_id"]),
            causation_id=v.event_id,
            broker_order_id=t.kite_order_id,
            status=OrderStatus.PLACED,
            signal_type=s.signal_type,
            quantity=s.quantity,
            order_type=self.order_types.get(s.strategy_id, "MARKET"),
            price=s.price,
            timestamp=s.timestamp,
        )

    def _failed(self, t: Tracked, status: OrderStatus, reason: str, ts: Any) -> OrderFailed:
        ids = self._ids(t.validated)
        return OrderFailed(
            **ids,
            event_id=content_id("failed", ids["order_id"], status.value),
            causation_id=content_id("placed", ids["order_id"]),
            broker_order_id=t.kite_order_id,
            status=status,
            reason=reason,
            timestamp=ts,
        )

    def place(self, v: ValidatedSignal) -> list[ExecOut]:
        tag = order_tag(v.signal.signal_id)
        known = self.state.orders.get(tag)
        if known is not None:  # seen before (a replay after a resume): announce at most once
            return [] if known.announced else [self._placed(known)]
        t = self.state.orders[tag] = Tracked(v, None, announced=False)
        order_type = self.order_types.get(v.signal.strategy_id, "MARKET")
        try:
            submitted = self.placer.submit(OrderIntent(tag=tag, validated=v), order_type)
        except OrderRejected as e:
            t.done = True
            return [self._failed(t, OrderStatus.REJECTED, e.message, v.signal.timestamp)]
        except KiteUnavailable as e:
            # Not settled (not done): an update may still report the order, and is then applied.
            return [self._failed(t, OrderStatus.FAILED, f"KITE_UNAVAILABLE: {e}", v.timestamp)]
        t.kite_order_id = submitted.order_id
        return [self._placed(t)]

    def update(self, u: OrderUpdate) -> list[ExecOut]:
        t = self.state.orders.get(u.tag)
        if t is None:
            intent = self.placer.recall(u.tag)  # placed before a restart rolled state back
            if intent is None:
                log.warning("Kite order %s: our tag %s, no intent", u.order_id, u.tag)
                return []
            t = self.state.orders[u.tag] = Tracked(intent.validated, u.order_id, announced=False)
        if t.done or u.status not in TERMINAL:
            return []
        t.kite_order_id = u.order_id
        out: list[ExecOut] = [] if t.announced else [self._placed(t)]
        if u.filled_quantity > 0 and u.average_price > 0:
            out.append(self._filled(t, u))
        if u.status != "COMPLETE":
            reason = u.status_message or u.status
            out.append(self._failed(t, OrderStatus(u.status), reason, u.timestamp))
        t.done = True
        return out

    def _filled(self, t: Tracked, u: OrderUpdate) -> OrderFilled:
        ids = self._ids(t.validated)
        s = t.validated.signal
        return OrderFilled(
            **ids,
            event_id=content_id("fill", ids["order_id"]),
            causation_id=content_id("placed", ids["order_id"]),
            broker_order_id=u.order_id,
            status=OrderStatus.FILLED,
            signal_type=s.signal_type,
            quantity=u.filled_quantity,
            fill_price=u.average_price,
            fees=fees(self.costs, s.signal_type, u.filled_quantity, u.average_price),
            timestamp=u.timestamp,
        )

    def on_item(self, item: Any) -> list[ExecOut]:
        if isinstance(item, ValidatedSignal):
            return self.place(item)
        if isinstance(item, OrderUpdate):
            return self.update(item)
        if isinstance(item, PASS_THROUGH):
            return [item]
        return []

    def on_eof(self) -> list[ExecOut]:
        return []
