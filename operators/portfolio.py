"""Portfolio fold, per broker: positions (average cost), cash, realized/unrealized PnL, fees.

Emits a PnlSnapshot at every snapshot Clock and a final one (plus a BrokerSummary for the run
report) at end of stream. Fills and clocks pass on for stage health.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bytewax.dataflow import Stream

from operators.accounting import Book, signed
from operators.keyed import stateful_by_key
from schemas.enums import Broker
from schemas.events import OrderFilled, PnlSnapshot
from schemas.ids import content_id
from schemas.report import BrokerSummary, PnlStats
from schemas.ticks import Clock, MarkSet, TickCount, from_us, to_us

PortfolioOut = PnlSnapshot | OrderFilled | Clock | TickCount | BrokerSummary


@dataclass
class Tracker:
    """Trade statistics and drawdown of one book."""

    book: Book
    fills: int = 0
    round_trips: int = 0
    wins: int = 0
    peak: float = 0.0
    max_drawdown: float = 0.0

    def fill(self, f: OrderFilled) -> None:
        before = self.book.position(f.instrument_token)
        realized = self.book.apply(
            f.instrument_token, f.signal_type, f.quantity, f.fill_price, f.fees
        )
        self.fills += 1
        if before and (before > 0) != (signed(f.signal_type, f.quantity) > 0):
            self.round_trips += 1  # a closing (or flipping) fill ends a round trip
            self.wins += realized > 0
        self.observe()

    def observe(self) -> None:
        net = self.book.net_pnl()
        self.peak = max(self.peak, net)
        self.max_drawdown = max(self.max_drawdown, self.peak - net)

    def stats(self, name: str) -> PnlStats:
        b = self.book
        return PnlStats(
            name=name,
            fills=self.fills,
            round_trips=self.round_trips,
            wins=self.wins,
            realized_pnl=round(b.realized, 2),
            unrealized_pnl=round(b.unrealized(), 2),
            fees=round(b.fees, 2),
            net_pnl=round(b.net_pnl(), 2),
            max_drawdown=round(self.max_drawdown, 2),
        )


@dataclass
class PortfolioState:
    total: Tracker
    strategies: dict[str, Tracker] = field(default_factory=dict)
    last_ts: int | None = None


class Portfolio:
    """Pure logic of the portfolio fold for one broker."""

    def __init__(self, broker: Broker, starting_cash: float, state: PortfolioState | None = None):
        self.broker = broker
        self.state = state or PortfolioState(total=Tracker(Book(starting_cash)))

    def snapshot_at(self, ts: int, final: bool) -> PnlSnapshot:
        b = self.state.total.book
        b.recount()
        return PnlSnapshot.model_validate(
            dict(
                event_id=content_id("pnl", self.broker.value, ts, final),
                broker=self.broker,
                timestamp=from_us(ts),
                starting_cash=b.starting_cash,
                cash=b.cash,
                realized_pnl=b.realized,
                unrealized_pnl=b.unrealized(),
                fees=b.fees,
                equity=b.equity(),
                positions=b.positions(),
                final=final,
            )
        )

    def _trackers(self) -> list[Tracker]:
        return [self.state.total, *self.state.strategies.values()]

    def on_item(self, item: Any) -> list[PortfolioOut]:
        st = self.state
        if isinstance(item, OrderFilled):
            st.last_ts = to_us(item.timestamp)
            strat = st.strategies.setdefault(item.strategy_id, Tracker(Book(0.0)))
            st.total.fill(item)
            strat.fill(item)
            return [item]
        if isinstance(item, MarkSet):
            st.last_ts = item.ts
            for t in self._trackers():
                for token, price in item.prices:
                    t.book.mark(token, price)
            return []
        if isinstance(item, TickCount):
            return [item]  # for stage health
        if isinstance(item, Clock):
            st.last_ts = item.ts
            if item.grid != "snapshot":
                return [item]
            for t in self._trackers():
                t.observe()
            return [self.snapshot_at(item.ts, final=False), item]
        return []

    def on_eof(self) -> list[PortfolioOut]:
        st = self.state
        if st.last_ts is None:
            return []
        for t in self._trackers():
            t.observe()
        summary = BrokerSummary(
            broker=self.broker,
            starting_cash=st.total.book.starting_cash,
            equity=round(st.total.book.equity(), 2),
            total=st.total.stats("all"),
            strategies=[st.strategies[k].stats(k) for k in sorted(st.strategies)],
        )
        return [self.snapshot_at(st.last_ts, final=True), summary]


def portfolio_fold(
    step_id: str, up: Stream[tuple[str, list[Any]]], make: Callable[[str, Any], Portfolio]
) -> Stream[tuple[str, list[PortfolioOut]]]:
    """Keyed by broker: fold fills and marks into PnL snapshots (see module doc)."""
    return stateful_by_key(step_id, up, make, batched=True)
