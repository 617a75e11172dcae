"""Accounting of the account's books: fees, average-cost positions, round trips net of fees.

Identity kept at every step: cash + Σ qty·mark = starting cash + realized + unrealized − fees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.config import CostModel
from schemas.enums import SignalType


def fees(costs: CostModel, side: SignalType | str, quantity: int, price: float) -> float:
    """Charges of one fill under the cost model, rounded to the paisa."""
    turnover = quantity * price
    brokerage = min(costs.brokerage_cap, costs.brokerage_pct * turnover)
    transaction = costs.transaction_pct * turnover
    sebi = costs.sebi_per_crore * turnover / 1e7
    sell = SignalType(side) is SignalType.SELL
    stt = costs.stt_sell_pct * turnover if sell else 0.0
    stamp = 0.0 if sell else costs.stamp_buy_pct * turnover
    gst = costs.gst_pct * (brokerage + transaction + sebi)
    return round(brokerage + transaction + sebi + stt + stamp + gst, 2)


def signed(side: SignalType | str, quantity: int) -> int:
    return quantity if SignalType(side) is SignalType.BUY else -quantity


@dataclass
class Lot:
    quantity: int = 0
    average_price: float = 0.0
    realized: float = 0.0
    mark: float | None = None
    entry_fees: float = 0.0  # fees paid opening the quantity still held
    trip_net: float = 0.0  # net PnL (after fees) of the round trip in progress


@dataclass(frozen=True)
class Applied:
    """What one fill did: realized PnL (before fees), and the net PnL of the round trip it
    ended (after entry and exit fees), or None if no round trip ended."""

    realized: float
    trip_net: float | None


@dataclass
class Book:
    """Cash and average-cost positions (long and short) of one broker or strategy.

    Sums over positions are kept incrementally, so every call is O(1) in the number of
    instruments held.
    """

    starting_cash: float
    cash: float = field(init=False)
    realized: float = 0.0
    fees: float = 0.0
    lots: dict[int, Lot] = field(default_factory=dict)
    _value: float = 0.0  # Σ qty · mark
    _basis: float = 0.0  # Σ qty · average price
    _short: float = 0.0  # Σ |qty| · mark over short positions

    def __post_init__(self) -> None:
        self.cash = self.starting_cash

    def _count(self, lot: Lot, sign: int) -> None:
        mark = lot.mark if lot.mark is not None else lot.average_price
        self._value += sign * lot.quantity * mark
        self._basis += sign * lot.quantity * lot.average_price
        if lot.quantity < 0:
            self._short -= sign * lot.quantity * mark

    def recount(self) -> None:
        """Recompute the running sums from the positions (clears float drift)."""
        self._value = self._basis = self._short = 0.0
        for lot in self.lots.values():
            self._count(lot, +1)

    def position(self, token: int) -> int:
        lot = self.lots.get(token)
        return lot.quantity if lot else 0

    def apply(
        self, token: int, side: SignalType | str, quantity: int, price: float, fee: float
    ) -> Applied:
        """Apply one fill (marking the instrument at its price)."""
        lot = self.lots.setdefault(token, Lot())
        self._count(lot, -1)
        delta = signed(side, quantity)
        self.cash -= delta * price + fee
        self.fees += fee
        realized, trip = 0.0, None
        q = lot.quantity
        if q == 0 or (q > 0) == (delta > 0):
            lot.average_price = (q * lot.average_price + delta * price) / (q + delta)
            lot.quantity = q + delta
            lot.entry_fees += fee
        else:
            closed = min(abs(q), abs(delta))
            realized = closed * (price - lot.average_price) * (1 if q > 0 else -1)
            entry_share = lot.entry_fees if closed == abs(q) else lot.entry_fees * closed / abs(q)
            exit_share = fee if closed == abs(delta) else fee * closed / abs(delta)
            lot.entry_fees -= entry_share
            lot.trip_net += realized - entry_share - exit_share
            lot.quantity = q + delta
            if lot.quantity == 0 or (lot.quantity > 0) != (q > 0):
                trip, lot.trip_net = lot.trip_net, 0.0
                lot.entry_fees = fee - exit_share  # the flipped remainder's share, else 0
                lot.average_price = price if lot.quantity else 0.0
        lot.realized += realized
        self.realized += realized
        lot.mark = price
        self._count(lot, +1)
        return Applied(realized, trip)

    def mark(self, token: int, price: float) -> None:
        lot = self.lots.get(token)
        if lot is not None:
            self._count(lot, -1)
            lot.mark = price
            self._count(lot, +1)

    def unrealized(self) -> float:
        return self._value - self._basis

    def market_value(self) -> float:
        return self._value

    def equity(self) -> float:
        return self.cash + self._value

    def net_pnl(self) -> float:
        return self.realized + self.unrealized() - self.fees

    def short_value(self) -> float:
        return self._short

    def last_price(self, token: int) -> float | None:
        lot = self.lots.get(token)
        return lot.mark if lot is not None else None

    def positions(self) -> list[dict[str, float | int]]:
        """Open or traded positions, as Position field dicts (validated by the snapshot)."""
        out: list[dict[str, float | int]] = []
        for token in sorted(self.lots):
            lot = self.lots[token]
            if lot.quantity == 0 and lot.realized == 0.0:
                continue
            mark = lot.mark if lot.mark is not None else lot.average_price
            out.append(
                {
                    "instrument_token": token,
                    "quantity": lot.quantity,
                    "average_price": lot.average_price,
                    "last_price": mark,
                    "realized_pnl": lot.realized,
                    "unrealized_pnl": lot.quantity * (mark - lot.average_price),
                }
            )
        return out
