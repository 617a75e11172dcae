"""Delivery (CNC) charges across a trading day: Zerodha charges a CNC buy and sell of the
same scrip on the same day as intraday (the account's day, netted per scrip).

A CNC fill is charged at intraday rates for the quantity it matches against the day's
earlier opposite CNC fills (first in, first matched) and at delivery rates for the rest.
The earlier fills it matches are re-priced from delivery to intraday on this fill: heads
may go negative (a refund), and an earlier order's intraday brokerage is capped once per
order however many fills match it. The DP charge falls on the day's first delivery sell of
the scrip, and is refunded when buys the same day match all of that day's delivery sells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from operators.accounting import Charges, charges
from schemas.config import CostModel
from schemas.enums import Product, SignalType


@dataclass
class Leg:
    """An earlier CNC fill of the day: its quantity not yet matched, price, and how much of
    it was matched (turnover) and charged as intraday brokerage so far."""

    qty: int
    price: float
    matched_value: float = 0.0
    brokerage: float = 0.0


@dataclass
class Day:
    legs: dict[str, list[Leg]] = field(default_factory=lambda: {"BUY": [], "SELL": []})
    dp: Charges | None = None  # the DP charge paid today (refunded if no delivery sell is left)


@dataclass
class CncDays:
    """Per (session, instrument): the day's unmatched CNC fills on each side."""

    days: dict[tuple[int, int], Day] = field(default_factory=dict)

    def charge(
        self, costs: CostModel, key: tuple[int, int], side: SignalType | str, qty: int, price: float
    ) -> Charges:
        """Charges of a CNC fill of ``qty`` at ``price`` on day/instrument ``key``."""
        side = SignalType(side)
        other = SignalType.SELL if side is SignalType.BUY else SignalType.BUY
        day = self.days.setdefault(key, Day())
        total, left = Charges(), qty
        for leg in day.legs[other.value]:
            m = min(left, leg.qty)
            if m:
                total = total + _no_brokerage(charges(costs, side, m, price, Product.MIS), costs)
                total = total + _reprice(costs, other, leg, m)
                leg.qty, left = leg.qty - m, left - m
        day.legs[other.value] = [g for g in day.legs[other.value] if g.qty]
        if qty - left:  # this fill's own intraday brokerage: one order, capped once
            b = _intraday_brokerage(costs, (qty - left) * price)
            total = total + Charges(brokerage=b, gst=costs.gst_pct * b)
        if left:
            dp = side is SignalType.SELL and day.dp is None
            part = charges(costs, side, left, price, Product.CNC, dp=dp)
            if dp:
                day.dp = Charges(dp=part.dp, gst=costs.gst_pct * part.dp)
            total = total + part
            day.legs[side.value].append(Leg(left, price))
        if side is SignalType.BUY and day.dp is not None and not day.legs["SELL"]:
            total, day.dp = total - day.dp, None  # no delivery sell left today: no DP
        return total


def _no_brokerage(c: Charges, costs: CostModel) -> Charges:
    """``c`` without its brokerage (and the GST on it)."""
    return c - Charges(brokerage=c.brokerage, gst=costs.gst_pct * c.brokerage)


def _intraday_brokerage(costs: CostModel, turnover: float) -> float:
    return min(costs.brokerage_cap, costs.brokerage_pct * turnover)


def _reprice(costs: CostModel, side: SignalType, leg: Leg, m: int) -> Charges:
    """``m`` of an earlier ``side`` fill re-priced from delivery to intraday; its order's
    intraday brokerage is capped once, over all its matches."""
    was = charges(costs, side, m, leg.price, Product.CNC)
    now = charges(costs, side, m, leg.price, Product.MIS)
    leg.matched_value += m * leg.price
    brokerage = _intraday_brokerage(costs, leg.matched_value) - leg.brokerage
    leg.brokerage += brokerage
    gst = costs.gst_pct * (brokerage - now.brokerage)
    return now - was + Charges(brokerage=brokerage - now.brokerage, gst=gst)
