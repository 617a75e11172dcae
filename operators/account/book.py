"""The account's book: one broker's positions (total and per strategy), open orders, cash,
fees and marks. Every execution outcome is applied here at once; risk reads only this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from operators.accounting import F64, I64, Book, buys, signed
from schemas.enums import SignalType
from schemas.events import FeesSettled, OrderFailed, OrderFilled, OrderPlaced
from schemas.report import PnlStats


def _paise(x: float) -> float:
    return round(x, 2) + 0.0  # never -0.0


@dataclass
class Tracker:
    """One book with its trade statistics and drawdown (the broker's, or one strategy's)."""

    book: Book
    fills: int = 0
    round_trips: int = 0
    wins: int = 0  # round trips with a positive PnL after fees
    peak: float = 0.0
    max_drawdown: float = 0.0

    def fill(self, f: OrderFilled) -> None:
        self.take(f.instrument_token, f.side, f.quantity, f.fill_price, f.fees)

    def take(
        self, token: int, side: SignalType | str, quantity: int, price: float, fee: float
    ) -> None:
        """A fill of ``quantity`` at ``price`` paying ``fee`` (``fill``'s fields)."""
        applied = self.book.apply(token, side, quantity, price, fee)
        self.fills += 1
        if applied.trip_net is not None:
            self.round_trips += 1
            self.wins += applied.trip_net > 0
        self.observe()

    def settle(self, adjustment: float) -> None:
        """The broker's contract note moved an order's fees by ``adjustment``."""
        self.book.cash -= adjustment
        self.book.fees += adjustment
        self.observe()

    def observe(self) -> None:
        net = self.book.net_pnl()
        if net > self.peak:  # max(peak, net), as max compares
            self.peak = net
        if self.peak - net > self.max_drawdown:
            self.max_drawdown = self.peak - net

    def stats(self, name: str) -> PnlStats:
        b = self.book
        return PnlStats(
            name=name,
            fills=self.fills,
            round_trips=self.round_trips,
            wins=self.wins,
            realized_pnl=_paise(b.realized),
            unrealized_pnl=_paise(b.unrealized()),
            fees=_paise(b.fees),
            net_pnl=_paise(b.net_pnl()),
            max_drawdown=_paise(self.max_drawdown),
        )


@dataclass
class OpenOrder:
    strategy_id: str
    token: int
    remaining: int  # signed: + buy, - sell
    price: float


@dataclass
class AccountBook:
    """Positions from fills, open orders and their exposure, cash, fees, marks."""

    total: Tracker
    strategies: dict[str, Tracker] = field(default_factory=dict)
    open: dict[str, OpenOrder] = field(default_factory=dict)  # by order id
    last_ts: int | None = None
    noted_model: float = 0.0  # Σ cost-model fees of the orders a contract note settled
    noted: float = 0.0  # Σ those notes' fees

    @classmethod
    def new(cls, starting_cash: float, universe: Sequence[int] = ()) -> AccountBook:
        """Every book of the account shares the universe's slots (vectorised marks)."""
        return cls(total=Tracker(Book(starting_cash, universe)))

    def trackers(self) -> list[Tracker]:
        return [self.total, *self.strategies.values()]

    def position(self, token: int) -> int:
        return self.total.book.position(token)

    def strategy_position(self, strategy_id: str, token: int) -> int:
        t = self.strategies.get(strategy_id)
        return t.book.position(token) if t else 0

    def pending(self, token: int, strategy_id: str | None = None) -> int:
        """Signed quantity of open orders on ``token`` (of one strategy, or all)."""
        return sum(
            o.remaining
            for o in self.open.values()
            if o.token == token and (strategy_id is None or o.strategy_id == strategy_id)
        )

    def pending_sells(self, token: int, strategy_id: str) -> int:
        """Signed (≤ 0) quantity of a strategy's open sell orders on ``token``: what would
        close a long."""
        return self.closing(token, strategy_id, 1)

    def closing(self, token: int, strategy_id: str, held: int) -> int:
        """Signed quantity of a strategy's open orders on ``token`` that reduce ``held``."""
        return sum(
            o.remaining
            for o in self.open.values()
            if o.token == token and o.strategy_id == strategy_id and (o.remaining > 0) != (held > 0)
        )

    def pending_cash(self) -> float:
        """Cash the open orders would tie up once they all fill, netted per instrument:
        what they add to a long (buys) or to a short (sells beyond the long), at their
        price. Opposing open orders on one instrument net out."""
        out = 0.0
        by_token: dict[int, list[OpenOrder]] = {}  # a literal: no generic alias built per call
        for o in self.open.values():  # grouped once: O(open orders), not O(tokens x orders)
            if o.remaining:
                by_token.setdefault(o.token, []).append(o)
        for token in sorted(by_token):
            mine = by_token[token]
            pos = self.position(token)
            final = pos + sum(o.remaining for o in mine)
            grows = max(0, final - max(pos, 0)) + max(0, min(pos, 0) - final)
            out += grows * max(o.price for o in mine)
        return out

    def exposure(self, token: int) -> int:
        """Position plus open orders: what the instrument holds once they all fill."""
        return self.position(token) + self.pending(token)

    def held_count(self) -> int:
        """How many instruments have a position or an open order (O(open orders))."""
        extra = {o.token for o in self.open.values() if o.remaining and not self.position(o.token)}
        return self.total.book.held_count() + len(extra)

    def last_price(self, token: int) -> float | None:
        return self.total.book.last_price(token)

    def price(self, token: int, fallback: float) -> float:
        got = self.last_price(token)
        return fallback if got is None else got

    def gross_exposure(self) -> float:
        """Σ |position| × mark, plus every open order's |remaining| × price (an upper bound of
        what the instruments hold once they fill); O(open orders)."""
        pending = sum(abs(o.remaining) * o.price for o in self.open.values())
        return self.total.book.gross_value() + pending

    def opened(self, p: OrderPlaced) -> None:
        self.open[p.order_id] = OpenOrder(
            p.strategy_id, p.instrument_token, signed(p.side, p.quantity), p.price
        )

    def fill(self, f: OrderFilled) -> None:
        """Apply a fill to the broker's and the strategy's book; it marks its instrument."""
        oid, side, qty = f.order_id, f.side, f.quantity
        token, price, fee = f.instrument_token, f.fill_price, f.fees
        o = self.open.get(oid)
        if o is not None:
            o.remaining -= signed(side, qty)
            if o.remaining == 0 or (o.remaining > 0) != buys(side):
                del self.open[oid]
        strat = self.strategies.get(f.strategy_id)
        total = self.total.book
        if strat is None:
            strat = self.strategies[f.strategy_id] = Tracker(Book(0.0, total.universe))
        total.mark(token, price)  # as ``mark``
        strat.book.copy_marks(total)  # strategy books are marked when they are read
        self.total.take(token, side, qty, price, fee)
        strat.take(token, side, qty, price, fee)

    def settle(self, n: FeesSettled) -> None:
        """An order's fees become its contract note's (cash and fees, broker and strategy)."""
        self.total.settle(n.adjustment)
        strat = self.strategies.get(n.strategy_id)
        if strat is not None:
            strat.settle(n.adjustment)
        self.noted_model += n.model_fees
        self.noted += n.note_fees

    def release(self, f: OrderFailed) -> None:
        """The order ended or was never sent: its unfilled exposure is gone."""
        self.open.pop(f.order_id, None)

    def mark(self, token: int, price: float) -> None:
        """One instrument's price (a fill's) on the broker's book (strategy books take the
        broker's marks when they are read: ``sync_strategies``)."""
        self.total.book.mark(token, price)

    def mark_many(
        self, tokens: I64, prices: F64, slots: I64 | None = None, universe: int = 0
    ) -> None:
        """Marks on the broker's book in one vectorised pass (``slots``, ``universe``: see
        ``Book.slots_for``)."""
        self.total.book.mark_many(tokens, prices, slots, universe)

    def sync_strategies(self) -> None:
        """Bring every strategy's book to the broker's marks (before reading them)."""
        for t in self.strategies.values():
            t.book.copy_marks(self.total.book)

    def close_plan(self) -> list[tuple[str, int, int]]:
        """Orders that bring every instrument's NET position to zero: (strategy, token,
        signed quantity). Open orders that already reduce a position count as closing it;
        open orders that would grow it do not (a later round closes what they fill). The
        close is shared among the strategies holding the net side, in id order; strategies
        that offset each other are left as they are (the account holds nothing there)."""
        plan: list[tuple[str, int, int]] = []
        for token in sorted(t for t, lot in self.total.book.lots.items() if lot.quantity):
            pos = self.position(token)
            closing = sum(
                o.remaining
                for o in self.open.values()
                if o.token == token and (o.remaining > 0) != (pos > 0)
            )
            left = pos + closing  # still to close, signed like pos (or crossed zero)
            if left == 0 or (left > 0) != (pos > 0):
                continue
            for sid in sorted(self.strategies):
                have = self.strategy_position(sid, token)
                if have and (have > 0) == (left > 0):
                    take = min(abs(have), abs(left)) * (1 if left > 0 else -1)
                    plan.append((sid, token, -take))
                    left -= take
                if left == 0:
                    break
        return plan
