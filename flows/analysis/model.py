"""The report's shape: pydantic models, so the JSON form is ``Report.model_dump_json``.

Money is in rupees (floats made from exact decimal sums, rounded to 0.0001 only where a
fee was split by quantity); ratios are fractions (0.05 = 5 %); times are UTC; durations are
seconds. ``None`` means "not defined" (e.g. a Sharpe ratio from a single day).
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Conventions(Frozen):
    periods_per_year: int
    risk_free_rate: float
    capital: str
    returns: str
    marks: str
    round_trips: str
    benchmark: str
    exposure: str
    slippage: str


class SideStats(Frozen):
    trips: int
    win_rate: float | None
    net_pnl: float
    profit_factor: float | None
    expectancy: float | None


class Benchmark(Frozen):
    """Buy and hold of the traded instruments: the capital split equally among them at
    their first price in the run, held to their last; before costs."""

    instruments: list[int]
    net_pnl: float
    total_return: float | None
    cagr: float | None
    sharpe: float | None
    max_drawdown_pct: float


class DayRow(Frozen):
    date: date
    fills: int
    trips: int  # round trips closed that day
    turnover: float
    fees: float
    gross_pnl: float
    net_pnl: float
    ret: float
    equity: float
    drawdown: float  # ₹ below the running peak at the day's close


class Metrics(Frozen):
    scope: str  # "broker", "strategy" or "instrument"
    name: str
    fills: int
    trips: int  # closed round trips
    open_trips: int
    gross_pnl: float
    fees: float
    net_pnl: float
    total_return: float
    cagr: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    max_drawdown: float
    max_drawdown_pct: float
    max_drawdown_duration_s: float
    drawdown_recovered: bool
    drawdown_peak: datetime | None
    drawdown_trough: datetime | None
    time_in_market: float
    avg_exposure: float
    max_exposure: float
    turnover: float
    turnover_ratio: float
    profit_factor: float | None
    expectancy: float | None
    win_rate: float | None
    avg_win: float | None
    avg_loss: float | None
    best_trade: float | None
    worst_trade: float | None
    best_day: date | None
    best_day_pnl: float | None
    worst_day: date | None
    worst_day_pnl: float | None
    avg_holding_s: float | None
    long: SideStats
    short: SideStats
    costs: dict[str, float]
    slippage: float
    slippage_bps: float | None
    benchmark: Benchmark
    days: list[DayRow]


class Trade(Frozen):
    broker: str
    strategy: str
    instrument_token: int
    symbol: str
    direction: str  # LONG / SHORT
    quantity: int  # largest position held
    entry_time: datetime
    exit_time: datetime | None  # None: still open at the end (valued at the last mark)
    holding_s: float
    entry_price: float
    exit_price: float | None
    gross_pnl: float
    fees: float
    net_pnl: float
    mae: float
    mfe: float


class Curve(Frozen):
    """The broker's equity, drawdown and benchmark at every evaluation point."""

    time: list[datetime]
    equity: list[float]
    drawdown: list[float]
    benchmark: list[float]
    strategies: dict[str, list[float]]  # each strategy's equity (capital + its PnL)


class BrokerReport(Frozen):
    broker: str
    starting_cash: float
    final_equity: float
    ledger_net_pnl: float | None  # the final pnl snapshot's realized + unrealized − fees
    total: Metrics
    strategies: list[Metrics]
    instruments: list[Metrics]
    trades: list[Trade]
    curve: Curve


class Report(Frozen):
    run_dir: str
    start: datetime | None
    end: datetime | None
    trading_days: int
    conventions: Conventions
    config: dict[str, object] | None
    run: dict[str, object] | None  # the flow's own run report (ticks, dead letters, time)
    brokers: list[BrokerReport]
