"""Delivery (CNC) charges across a trading day: Zerodha charges a CNC buy and sell of the
same scrip on the same day as intraday (the account's day, netted per scrip).

A CNC fill is charged at intraday rates for the quantity it matches against the day's
earlier opposite CNC fills (first in, first matched) and at delivery rates for the rest.
The earlier fills it matches are re-priced from delivery to intraday on this fill: heads
may go negative (a refund). Intraday brokerage is per executed order, as Zerodha charges
it: 0.03% of the order's matched turnover, capped at ₹20 once per order over all its
fills, whether the order's fill matched or was matched later (the delivery part pays
none). The DP charge falls on the day's first delivery sell of the scrip, and is refunded
when buys the same day match all of that day's delivery sells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.charges import Charges, charges
from schemas.config import CostModel
from schemas.enums import Product, SignalType


@dataclass
class Leg:
    """An earlier CNC fill of the day: its quantity not yet matched, price, and order."""

    qty: int
    price: float
    order: str


@dataclass
class Matched:
    """An order's turnover matched intraday so far, and the intraday brokerage charged on it
    (capped once for the whole order)."""

    value: float = 0.0
    brokerage: float = 0.0


@dataclass
class Day:
    legs: dict[str, list[Leg]] = field(default_factory=lambda: {"BUY": [], "SELL": []})
    orders: dict[str, Matched] = field(default_factory=dict)  # by order id
    dp: Charges | None = None  # the DP charge paid today (refunded if no delivery sell is left)
    fills: int = 0  # fills charged today (names the fills given without an order)


@dataclass
class CncDays:
    """Per (session, instrument): the day's unmatched CNC fills on each side."""

    days: dict[tuple[int, int], Day] = field(default_factory=dict)

    def charge(
        self,
        costs: CostModel,
        key: tuple[int, int],
        side: SignalType | str,
        qty: int,
        price: float,
        order: str | None = None,
    ) -> Charges:
        """Charges of a CNC fill of ``qty`` at ``price`` on day/instrument ``key``, part of
        order ``order`` (None: an order of its own)."""
        side = SignalType(side)
        other = SignalType.SELL if side is SignalType.BUY else SignalType.BUY
        day = self.days.setdefault(key, Day())
        day.fills += 1
        order = f"#{day.fills}" if order is None else order
        mine = day.orders.setdefault(order, Matched())
        total, left = Charges(), qty
        for leg in day.legs[other.value]:
            m = min(left, leg.qty)
            if m:
                total = total + _no_brokerage(charges(costs, side, m, price, Product.MIS), costs)
                total = total + _reprice(costs, other, leg, m, day.orders[leg.order])
                leg.qty, left = leg.qty - m, left - m
        day.legs[other.value] = [g for g in day.legs[other.value] if g.qty]
        if qty - left:  # this fill's matched part: its order's brokerage, capped per order
            total = total + _brokerage(costs, mine, (qty - left) * price)
        if left:
            dp = side is SignalType.SELL and day.dp is None
            part = charges(costs, side, left, price, Product.CNC, dp=dp)
            if dp:
                day.dp = Charges(dp=part.dp, gst=costs.gst_pct * part.dp)
            total = total + part
            day.legs[side.value].append(Leg(left, price, order))
        if side is SignalType.BUY and day.dp is not None and not day.legs["SELL"]:
            total, day.dp = total - day.dp, None  # no delivery sell left today: no DP
        return total


def _no_brokerage(c: Charges, costs: CostModel) -> Charges:
    """``c`` without its brokerage (and the GST on it)."""
    return c - Charges(brokerage=c.brokerage, gst=costs.gst_pct * c.brokerage)


def _brokerage(costs: CostModel, order: Matched, value: float) -> Charges:
    """``value`` more of ``order`` matched intraday: the intraday brokerage (and its GST)
    this adds, the order's whole matched turnover capped once."""
    order.value += value
    b = min(costs.brokerage_cap, costs.brokerage_pct * order.value) - order.brokerage
    order.brokerage += b
    return Charges(brokerage=b, gst=costs.gst_pct * b)


def _reprice(costs: CostModel, side: SignalType, leg: Leg, m: int, order: Matched) -> Charges:
    """``m`` of an earlier ``side`` fill re-priced from delivery to intraday; its order's
    intraday brokerage is capped once, over all its matched fills."""
    was = charges(costs, side, m, leg.price, Product.CNC)
    now = _no_brokerage(charges(costs, side, m, leg.price, Product.MIS), costs)
    return now - was + _brokerage(costs, order, m * leg.price)
