"""Paper venue: a validated order is placed and filled at once, at the signal's tick price
moved against the order by ``slippage_bps``, rounded to the instrument's tick size."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from operators.account import orders
from operators.accounting import fees
from schemas.config import CostModel
from schemas.enums import SignalType
from schemas.events import OrderEvent, ValidatedSignal
from schemas.kite import OrderUpdate
from schemas.ticks import OrderLatency


def slipped_price(price: float, side: SignalType | str, bps: float, tick: float) -> float:
    """Move ``price`` against the order by ``bps`` and round outward to a multiple of ``tick``."""
    buy = SignalType(side) is SignalType.BUY
    raw = price * (1 + bps / 1e4) if buy else price * (1 - bps / 1e4)
    steps = raw / tick
    n = math.ceil(steps - 1e-9) if buy else max(1, math.floor(steps + 1e-9))
    return round(n * tick, 2)


class PaperVenue:
    """Pure logic: one validated order → OrderPlaced, then OrderFilled."""

    state: None = None

    def __init__(
        self, slippage_bps: float, costs: CostModel, tick_sizes: Mapping[int, float]
    ) -> None:
        self.bps, self.costs, self.tick_sizes = slippage_bps, costs, tick_sizes

    def send(self, v: ValidatedSignal, order_type: str) -> list[OrderEvent]:
        s = v.signal
        tick = self.tick_sizes.get(s.instrument_token, 0.05)
        price = slipped_price(s.price, v.side, self.bps, tick)
        fee = fees(self.costs, v.side, v.quantity, price)
        return [
            orders.placed(v, None, order_type, s.timestamp),
            orders.filled(v, None, v.quantity, price, fee, v.quantity, s.timestamp),
        ]

    def knows(self, v: ValidatedSignal) -> bool:
        return False  # paper orders end at once: a signal is never seen twice

    def update(self, u: OrderUpdate) -> list[OrderEvent]:
        return []  # paper orders end at once: no updates

    def venue_state(self) -> Any:
        return None

    def drain_latency(self) -> list[OrderLatency]:
        return []  # simulated: no wall-clock latency
