"""Paper execution: fill validated orders at the signal's tick price moved against the order
by ``slippage_bps``, rounded to the instrument's tick size; fees by the cost model."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from bytewax.dataflow import Stream

from operators.accounting import fees
from operators.keyed import KeyedLogic, stateful_by_key
from schemas.config import CostModel
from schemas.enums import Broker, OrderStatus, SignalType
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, RejectedSignal, ValidatedSignal
from schemas.ids import content_id
from schemas.ticks import Clock, MarkSet, TickCount

ExecOut = OrderPlaced | OrderFilled | OrderFailed | MarkSet | Clock | TickCount
PASS_THROUGH = (MarkSet, Clock, TickCount)  # what every execution logic hands on unchanged


def slipped_price(price: float, side: SignalType | str, bps: float, tick: float) -> float:
    """Move ``price`` against the order by ``bps`` and round outward to a multiple of ``tick``."""
    buy = SignalType(side) is SignalType.BUY
    raw = price * (1 + bps / 1e4) if buy else price * (1 - bps / 1e4)
    steps = raw / tick
    n = math.ceil(steps - 1e-9) if buy else max(1, math.floor(steps + 1e-9))
    return round(n * tick, 2)


class PaperExecution:
    """Pure logic: one validated signal → OrderPlaced then OrderFilled."""

    state: None = None

    def __init__(
        self, broker: Broker, slippage_bps: float, costs: CostModel, tick_sizes: Mapping[int, float]
    ) -> None:
        self.broker = broker
        self.bps = slippage_bps
        self.costs = costs
        self.tick_sizes = tick_sizes

    def execute(self, v: ValidatedSignal) -> list[ExecOut]:
        s = v.signal
        order_id = content_id("ord", s.signal_id)
        placed = OrderPlaced(
            event_id=content_id("placed", order_id),
            order_id=order_id,
            correlation_id=v.correlation_id,
            causation_id=v.event_id,
            broker=self.broker,
            broker_order_id=None,
            status=OrderStatus.PLACED,
            signal_id=s.signal_id,
            strategy_id=s.strategy_id,
            instrument_token=s.instrument_token,
            signal_type=s.signal_type,
            quantity=s.quantity,
            order_type="MARKET",
            price=s.price,
            timestamp=s.timestamp,
        )
        tick = self.tick_sizes.get(s.instrument_token, 0.05)
        price = slipped_price(s.price, s.signal_type, self.bps, tick)
        filled = OrderFilled(
            event_id=content_id("fill", order_id),
            order_id=order_id,
            correlation_id=v.correlation_id,
            causation_id=placed.event_id,
            broker=self.broker,
            broker_order_id=None,
            status=OrderStatus.FILLED,
            signal_id=s.signal_id,
            strategy_id=s.strategy_id,
            instrument_token=s.instrument_token,
            signal_type=s.signal_type,
            quantity=s.quantity,
            fill_price=price,
            fees=fees(self.costs, s.signal_type, s.quantity, price),
            timestamp=s.timestamp,
        )
        return [placed, filled]

    def on_item(self, item: Any) -> list[ExecOut]:
        if isinstance(item, ValidatedSignal):
            return self.execute(item)
        if isinstance(item, PASS_THROUGH):
            return [item]
        return []

    def on_eof(self) -> list[ExecOut]:
        return []


def execute_orders(
    step_id: str,
    up: Stream[tuple[str, list[ValidatedSignal | RejectedSignal | MarkSet | Clock | TickCount]]],
    make: Callable[[str, Any], KeyedLogic[Any, ExecOut]],
) -> Stream[tuple[str, list[ExecOut]]]:
    """Keyed by broker: orders and fills for validated signals (paper: simulated; zerodha:
    Kite orders and their updates, see operators.zerodha); marks and clocks pass."""
    return stateful_by_key(step_id, up, make, batched=True)
