"""Accounting of the account's books: average-cost positions, round trips net of fees (the
fees themselves: operators.charges).

Identity kept at every step: cash + Σ qty·mark = starting cash + realized + unrealized − fees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from schemas.enums import Product, SignalType
from schemas.ticks import universe_id


def buys(side: SignalType | str) -> bool:
    """``SignalType(side) is SignalType.BUY`` (raising like it), without the enum call for
    the two values."""
    if side == "BUY":
        return True
    if side == "SELL":
        return False
    return SignalType(side) is SignalType.BUY


def is_cnc(product: Product | str) -> bool:
    """``Product(product) is Product.CNC`` (raising like it), without the enum call for the
    two values."""
    if product == "MIS":
        return False
    if product == "CNC":
        return True
    return Product(product) is Product.CNC


def signed(side: SignalType | str, quantity: int) -> int:
    return quantity if buys(side) else -quantity


@dataclass
class Lot:
    quantity: int = 0
    average_price: float = 0.0
    realized: float = 0.0
    entry_fees: float = 0.0  # fees paid opening the quantity still held
    trip_net: float = 0.0  # net PnL (after fees) of the round trip in progress


@dataclass(frozen=True)
class Applied:
    """What one fill did: realized PnL (before fees), and the net PnL of the round trip it
    ended (after entry and exit fees), or None if no round trip ended."""

    realized: float
    trip_net: float | None


MONEY_DIGITS = 6  # reported rupees: to a millionth (off the float noise of long sums)
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Book:
    """Cash and average-cost positions (long and short) of one broker or strategy.

    Quantities and marks of the instruments traded live in numpy arrays (one slot per
    instrument, in the order first traded), so marking many instruments at once and every
    sum over positions cost one vectorised pass, whatever the number held.
    """

    starting_cash: float
    universe: Sequence[int] = ()  # instruments given slots up front (others get one on use)
    cash: float = field(init=False)
    realized: float = 0.0
    fees: float = 0.0
    lots: dict[int, Lot] = field(default_factory=dict)
    _slot: dict[int, int] = field(init=False)
    _qty: F64 = field(init=False)
    _mark: F64 = field(init=False)
    _seen: npt.NDArray[np.bool_] = field(init=False)  # marked at least once
    _sorted: I64 = field(init=False)
    _order: I64 = field(init=False)
    _basis: float = 0.0  # Σ qty · average price
    _universe_n: int = field(init=False)
    _universe_id: int = field(init=False)
    _value: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cash = self.starting_cash
        tokens = sorted(set(self.universe))
        self._slot = {t: i for i, t in enumerate(tokens)}
        n = max(len(tokens), 8)
        self._qty, self._mark = np.zeros(n), np.zeros(n)
        self._seen = np.zeros(n, dtype=bool)
        self._sorted = _frozen(np.array(tokens, dtype=np.int64))
        self._order = _frozen(np.arange(len(tokens), dtype=np.int64))
        self._universe_n = len(tokens)
        self._universe_id = universe_id(self._sorted)

    def _slot_of(self, token: int) -> int:
        slot = self._slot.get(token)
        if slot is not None:
            return slot
        slot = self._slot[token] = len(self._slot)
        self._value = None
        if slot >= len(self._qty):
            grow = max(8, len(self._qty))
            self._qty = np.concatenate((self._qty, np.zeros(grow)))
            self._mark = np.concatenate((self._mark, np.zeros(grow)))
            self._seen = np.concatenate((self._seen, np.zeros(grow, dtype=bool)))
        tokens = np.fromiter(self._slot, dtype=np.int64, count=len(self._slot))
        self._order = _frozen(np.argsort(tokens, kind="stable"))
        self._sorted = _frozen(tokens[self._order])
        return slot

    def recount(self) -> None:
        """Recompute the cost basis from the positions (clears float drift)."""
        self._basis = sum(lot.quantity * lot.average_price for lot in self.lots.values())

    def position(self, token: int) -> int:
        lot = self.lots.get(token)
        return lot.quantity if lot else 0

    def apply(
        self, token: int, side: SignalType | str, quantity: int, price: float, fee: float
    ) -> Applied:
        """Apply one fill (marking the instrument at its price)."""
        lot = self.lots.get(token)
        if lot is None:
            lot = self.lots[token] = Lot()
        slot = self._slot_of(token)
        self._basis -= lot.quantity * lot.average_price
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
        self._basis += lot.quantity * lot.average_price
        self._qty[slot] = lot.quantity
        self._mark[slot], self._seen[slot] = price, True
        self._value = None
        return Applied(realized, trip)

    def mark(self, token: int, price: float) -> None:
        """Mark one instrument (one of the universe, or one traded)."""
        slot = self._slot.get(token)
        if slot is not None:
            self._mark[slot], self._seen[slot] = price, True
            self._value = None

    def slots_of(self, tokens: I64) -> tuple[I64, npt.NDArray[np.bool_]]:
        """Each token's slot (valid where the mask is true: the book has a slot for it)."""
        n = len(self._sorted)
        if not n:
            return np.zeros(len(tokens), dtype=np.int64), np.zeros(len(tokens), dtype=bool)
        idx = np.minimum(np.searchsorted(self._sorted, tokens), n - 1)
        return self._order[idx], self._sorted[idx] == tokens

    def trusts(self, universe: int) -> bool:
        """Slots computed over universe ``universe`` (a ``universe_id``) are this book's:
        it is the book's universe and no instrument was added beyond it."""
        return universe == self._universe_id and len(self._slot) == self._universe_n

    def slots_for(
        self, tokens: I64, given: I64 | None, universe: int = 0
    ) -> tuple[I64, npt.NDArray[np.bool_] | None]:
        """``slots_of``, or ``given`` (the tokens' indices in the sorted universe
        ``universe``, as the ordering stage computes them) when the book ``trusts`` them; the
        mask is None when every token has a slot."""
        if given is not None and self.trusts(universe):
            return given, None
        return self.slots_of(tokens)

    def mark_many(
        self, tokens: I64, prices: F64, slots: I64 | None = None, universe: int = 0
    ) -> None:
        """Mark every instrument among ``tokens`` that has a slot (the others are ignored);
        ``slots``, ``universe``: as for ``slots_for``."""
        if not len(tokens):
            return
        if slots is not None and self.trusts(universe):
            at = slots  # ``slots_for``'s first case, without its tuple
        else:
            at, hit = self.slots_for(tokens, slots, universe)
            if hit is not None:
                at, prices = at[hit], prices[hit]
        self._mark[at] = prices
        self._seen[at] = True
        self._value = None

    def swing(self, slots: I64, hit: npt.NDArray[np.bool_] | None, high: F64, low: F64) -> float:
        """Σ |quantity| x the larger distance from each slot's mark to ``high`` or ``low``
        (slots where ``hit`` is false count 0): the most the book can move over a run of
        marks within those highs and lows."""
        qty, start = self._qty[slots], self._mark[slots]
        if hit is not None:
            qty = np.where(hit, qty, 0.0)
        return float(np.dot(np.abs(qty), np.maximum(high - start, start - low)))

    def quantities(self, slots: I64) -> F64:
        return self._qty[slots]

    def marks(self, slots: I64) -> F64:
        return self._mark[slots]

    def copy_marks(self, other: Book) -> None:
        """Take ``other``'s marks (one vector copy when both books share their slots)."""
        n, self._value = len(self._slot), None
        if n == len(other._slot) and self._same_slots(other):
            self._mark[:n], self._seen[:n] = other._mark[:n], other._seen[:n]
            return
        for token, slot in self._slot.items():
            theirs = other._slot.get(token)
            if theirs is not None and other._seen[theirs]:
                self._mark[slot], self._seen[slot] = other._mark[theirs], True

    def _same_slots(self, other: Book) -> bool:
        """Both books (with as many slots) give every token the same slot. The arrays are
        replaced, never written in place, when a slot is added: once found equal they are
        shared, so later calls cost an identity test."""
        if self._sorted is other._sorted and self._order is other._order:
            return True
        if np.array_equal(self._sorted, other._sorted) and np.array_equal(
            self._order, other._order
        ):
            self._sorted, self._order = other._sorted, other._order
            return True
        return False

    def _q(self) -> F64:
        return self._qty[: len(self._slot)]

    def _m(self) -> F64:
        return self._mark[: len(self._slot)]

    def market_value(self) -> float:
        """Σ quantity × mark (kept until a quantity, a mark or the slots change)."""
        value = self._value
        if value is None:
            n = len(self._slot)
            value = self._value = float(np.dot(self._qty[:n], self._mark[:n]))
        return value

    def unrealized(self) -> float:
        return self.market_value() - self._basis

    def equity(self) -> float:
        return self.cash + self.market_value()

    def net_pnl(self) -> float:
        """realized + unrealized − fees (the market value inline: asked after every fill
        and mark)."""
        value = self._value
        if value is None:
            value = self.market_value()
        return self.realized + (value - self._basis) - self.fees

    def short_value(self) -> float:
        """Σ |quantity| × mark over short positions."""
        return float(-np.dot(np.minimum(self._q(), 0.0), self._m()))

    def gross_value(self) -> float:
        """Σ |quantity| × mark over positions."""
        return float(np.dot(np.abs(self._q()), self._m()))

    def held_count(self) -> int:
        """Instruments with a non-zero position."""
        return int(np.count_nonzero(self._q()))

    def last_prices(self) -> dict[int, float]:
        """Every instrument's latest fill or mark price (those marked at least once)."""
        return {t: float(self._mark[s]) for t, s in self._slot.items() if self._seen[s]}

    def last_price(self, token: int) -> float | None:
        """The latest fill or mark price of ``token``, if any."""
        slot = self._slot.get(token)
        return float(self._mark[slot]) if slot is not None and self._seen[slot] else None

    def positions(self) -> list[dict[str, float | int]]:
        """Open or traded positions, as Position field dicts (validated by the snapshot),
        PnL to MONEY_DIGITS."""
        out: list[dict[str, float | int]] = []
        marks, slots = self._mark.tolist(), self._slot  # Python floats, as float() gives
        lots = self.lots
        for token in sorted(lots):
            lot = lots[token]
            if lot.quantity == 0 and lot.realized == 0.0:
                continue
            mark, q = marks[slots[token]], lot.quantity
            out.append(
                {
                    "instrument_token": token,
                    "quantity": lot.quantity,
                    "average_price": lot.average_price,
                    "last_price": mark,
                    "realized_pnl": round(lot.realized, MONEY_DIGITS),
                    "unrealized_pnl": round(q * (mark - lot.average_price), MONEY_DIGITS),
                }
            )
        return out


def _frozen(a: I64) -> I64:
    """Read-only: books that share their slots share these arrays (see ``_same_slots``)."""
    a.setflags(write=False)
    return a
