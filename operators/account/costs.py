"""Delivery (CNC) charges across a trading day: Zerodha charges a CNC buy and sell of the
same scrip on the same day as intraday. The matched quantity of a fill is charged at
intraday rates, and the earlier leg it matches is re-priced from delivery to intraday rates
on this fill (heads may go negative: a refund). The rest is delivery; the DP charge falls on
the day's first delivery sell of the scrip. The other leg is re-priced as one order at its
average price (its brokerage cap once)."""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.accounting import Charges, charges
from schemas.config import CostModel
from schemas.enums import Product, SignalType


@dataclass
class Leg:
    """Today's CNC quantity on one side not yet matched by the other, and its value."""

    qty: int = 0
    value: float = 0.0


@dataclass
class CncDays:
    """Per (session, instrument): the day's unmatched CNC buys and sells; DP days paid."""

    legs: dict[tuple[int, int], dict[str, Leg]] = field(default_factory=dict)
    dp_paid: set[tuple[int, int]] = field(default_factory=set)

    def charge(
        self, costs: CostModel, key: tuple[int, int], side: SignalType | str, qty: int, price: float
    ) -> Charges:
        """Charges of a CNC fill of ``qty`` at ``price`` on day/instrument ``key``."""
        side = SignalType(side)
        other_side = SignalType.SELL if side is SignalType.BUY else SignalType.BUY
        legs = self.legs.setdefault(key, {"BUY": Leg(), "SELL": Leg()})
        mine, other = legs[side.value], legs[other_side.value]
        matched, total = min(qty, other.qty), Charges()
        if matched:
            avg = other.value / other.qty
            total = total + charges(costs, side, matched, price, Product.MIS)
            was = charges(costs, other_side, matched, avg, Product.CNC)
            total = total + charges(costs, other_side, matched, avg, Product.MIS) - was
            other.qty, other.value = other.qty - matched, other.value - matched * avg
        rest = qty - matched
        if rest:
            dp = side is SignalType.SELL and key not in self.dp_paid
            if dp:
                self.dp_paid.add(key)
            total = total + charges(costs, side, rest, price, Product.CNC, dp=dp)
            mine.qty, mine.value = mine.qty + rest, mine.value + rest * price
        return total
