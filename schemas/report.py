"""Run summary models: what the portfolio hands the run report at end of stream."""

from __future__ import annotations

from schemas.enums import Broker
from schemas.events import Model, TradingStateChanged


class PnlStats(Model):
    name: str
    fills: int
    round_trips: int
    wins: int
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    net_pnl: float
    max_drawdown: float

    @property
    def win_rate(self) -> float | None:
        """Round trips that made money after fees (entry and exit), of all round trips."""
        return self.wins / self.round_trips if self.round_trips else None


class BrokerSummary(Model):
    broker: Broker
    starting_cash: float
    equity: float
    total: PnlStats
    strategies: list[PnlStats]
    rejections_by_reason: dict[str, int]
    trading_states: list[TradingStateChanged]
    failed_strategies: list[str]  # "strategy on instrument" stopped by STRATEGY_ERROR
    fees_noted: float | None = None  # fees of the orders Kite's contract notes settled
    fees_model: float | None = None  # what the cost model had charged those orders
