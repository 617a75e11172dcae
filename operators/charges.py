"""Charges of a fill under Zerodha's published schedule, by head (brokerage, STT, exchange
transaction charges, SEBI fees, stamp duty, GST, DP charge, square-off charge)."""

from __future__ import annotations

from dataclasses import dataclass

from operators.accounting import buys, is_cnc
from schemas.config import CostModel
from schemas.enums import Product, SignalType


@dataclass(frozen=True)
class Charges:
    """One fill's charges by head (each to 0.0001); ``total`` is their sum to the paisa."""

    brokerage: float = 0.0
    stt: float = 0.0
    exchange: float = 0.0
    sebi: float = 0.0
    stamp: float = 0.0
    gst: float = 0.0
    dp: float = 0.0
    square_off: float = 0.0

    @property
    def total(self) -> float:
        parts = (self.brokerage, self.stt, self.exchange, self.sebi, self.stamp, self.gst)
        return round(sum(parts) + self.dp + self.square_off, 2)

    def columns(self) -> dict[str, float]:
        return {
            "brokerage": round(self.brokerage, 4),
            "stt": round(self.stt, 4),
            "exchange": round(self.exchange, 4),
            "sebi": round(self.sebi, 4),
            "stamp": round(self.stamp, 4),
            "gst": round(self.gst, 4),
            "dp": round(self.dp, 4),
            "square_off": round(self.square_off, 4),
        }

    def __add__(self, other: Charges) -> Charges:
        mine, theirs = self.__dict__, other.__dict__
        return Charges(**{k: mine[k] + theirs[k] for k in mine})

    def __sub__(self, other: Charges) -> Charges:
        mine, theirs = self.__dict__, other.__dict__
        return Charges(**{k: mine[k] - theirs[k] for k in mine})

    def minus(self, earlier: Charges) -> Charges:
        """What is charged beyond ``earlier`` (a partial fill: the whole so far less before)."""
        e = earlier
        return Charges(
            max(self.brokerage - e.brokerage, 0.0),
            max(self.stt - e.stt, 0.0),
            max(self.exchange - e.exchange, 0.0),
            max(self.sebi - e.sebi, 0.0),
            max(self.stamp - e.stamp, 0.0),
            max(self.gst - e.gst, 0.0),
            max(self.dp - e.dp, 0.0),
            max(self.square_off - e.square_off, 0.0),
        )


NO_CHARGES = Charges()  # immutable: shared by every order with nothing charged yet


def _heads(
    costs: CostModel,
    side: SignalType | str,
    quantity: int,
    price: float,
    product: Product | str,
    dp: bool,
    square_off: bool,
) -> tuple[float, float, float, float, float, float, float, float]:
    """The charges' heads, in ``Charges``' field order."""
    turnover = quantity * price
    sell = not buys(side)
    if is_cnc(product):
        brokerage = costs.delivery_brokerage_pct * turnover
        stt = costs.delivery_stt_pct * turnover
        stamp = 0.0 if sell else costs.delivery_stamp_buy_pct * turnover
    else:
        brokerage = min(costs.brokerage_cap, costs.brokerage_pct * turnover)
        stt = costs.stt_sell_pct * turnover if sell else 0.0
        stamp = 0.0 if sell else costs.stamp_buy_pct * turnover
    exchange = costs.transaction_pct * turnover
    sebi = costs.sebi_per_crore * turnover / 1e7
    dp_fee = costs.dp_per_scrip if dp and sell else 0.0
    sq = costs.square_off_charge if square_off else 0.0
    gst = costs.gst_pct * (brokerage + exchange + sebi + dp_fee + sq)
    return brokerage, stt, exchange, sebi, stamp, gst, dp_fee, sq


def charges(
    costs: CostModel,
    side: SignalType | str,
    quantity: int,
    price: float,
    product: Product | str = Product.MIS,
    dp: bool = False,
    square_off: bool = False,
) -> Charges:
    """Charges of one fill under Zerodha's schedule for its product; ``dp``: the first CNC
    sell of the scrip that day (DP charge), ``square_off``: the broker squared it off."""
    return Charges(*_heads(costs, side, quantity, price, product, dp, square_off))


def fees(
    costs: CostModel,
    side: SignalType | str,
    quantity: int,
    price: float,
    product: Product | str = Product.MIS,
) -> float:
    """Charges of one fill under the cost model, rounded to the paisa (``Charges.total``,
    without building them)."""
    *parts, dp, square_off = _heads(costs, side, quantity, price, product, False, False)
    return round(sum(parts) + dp + square_off, 2)
