"""Run summary models: what the portfolio hands the run report at end of stream."""

from __future__ import annotations

from schemas.enums import Broker
from schemas.events import Model


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
        return self.wins / self.round_trips if self.round_trips else None


class BrokerSummary(Model):
    broker: Broker
    starting_cash: float
    equity: float
    total: PnlStats
    strategies: list[PnlStats]
