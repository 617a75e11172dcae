"""What the account reports of its book: PnL snapshots (at every snapshot clock and at the
end) and the broker's summary for the run report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from operators.account.book import AccountBook
from operators.accounting import MONEY_DIGITS
from schemas.enums import Broker
from schemas.events import PnlSnapshot, TradingStateChanged
from schemas.ids import content_id
from schemas.report import BrokerSummary
from schemas.ticks import from_us


def snapshot(broker: Broker, book: AccountBook, ts: int, final: bool) -> PnlSnapshot:
    """The broker's book at event time ``ts``, marked at the latest prices."""
    book.sync_strategies()
    for t in book.trackers():
        t.observe()
    b = book.total.book
    b.recount()
    return PnlSnapshot.model_validate(
        dict(
            event_id=content_id("pnl", broker.value, ts, final),
            broker=broker,
            timestamp=from_us(ts),
            starting_cash=_money(b.starting_cash),
            cash=_money(b.cash),
            realized_pnl=_money(b.realized),
            unrealized_pnl=_money(b.unrealized()),
            fees=_money(b.fees),
            equity=_money(b.equity()),
            positions=b.positions(),
            final=final,
        )
    )


def _money(rupees: float) -> float:
    """Rupees to a millionth: off the float noise of long sums (962884.2999999999 →
    962884.3), far below a paisa, so every identity of the book still holds to 1e-6."""
    return round(rupees, MONEY_DIGITS)


def summary(
    broker: Broker,
    book: AccountBook,
    rejections: Mapping[str, int],
    changes: Sequence[TradingStateChanged],
    failed_strategies: Sequence[str],
) -> BrokerSummary:
    """The broker's block of the run report."""
    book.sync_strategies()
    total = book.total
    return BrokerSummary(
        broker=broker,
        starting_cash=total.book.starting_cash,
        equity=round(total.book.equity(), 2),
        total=total.stats("all"),
        strategies=[book.strategies[k].stats(k) for k in sorted(book.strategies)],
        rejections_by_reason=dict(sorted(rejections.items())),
        trading_states=list(changes),
        failed_strategies=sorted(failed_strategies),
        fees_noted=round(book.noted, 2) if book.noted or book.noted_model else None,
        fees_model=round(book.noted_model, 2) if book.noted or book.noted_model else None,
    )
