"""Assemble a run's ``Report`` from its ledger folder."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from flows.analysis import stats
from flows.analysis.load import Fill, RunData, load_run, utc
from flows.analysis.metrics import Grid, group_metrics
from flows.analysis.model import BrokerReport, Conventions, Curve, Report, Trade
from flows.analysis.trips import Trip, close_out, match


def _active_brokers(data: RunData) -> list[str]:
    """Brokers a strategy trades on (per the saved config) or, without a config, those with
    any signal, order, rejection or fill; a broker with neither is left out."""
    brokers = set(data.activity)
    strategies = (data.config or {}).get("strategies")
    if isinstance(strategies, list):
        for s in strategies:
            if isinstance(s, dict) and s.get("enabled", True):
                brokers.update(str(b) for b in s.get("brokers") or [])
    return sorted(b for b in brokers if b in data.snapshots or data.activity.get(b))


def _capital(data: RunData, broker: str) -> float:
    snaps = data.snapshots.get(broker)
    if snaps:
        return float(snaps[0].starting_cash)
    cfg = ((data.config or {}).get("brokers") or {}).get(broker) or {}
    return float(cfg.get("starting_cash", 0.0)) if isinstance(cfg, dict) else 0.0


def _grid(data: RunData, broker: str, fills: list[Fill]) -> Grid | None:
    snaps = data.snapshots.get(broker, [])
    snap_t = np.array(sorted({s.t for s in snaps}), dtype=np.int64)
    t = np.union1d(snap_t, np.array([f.t for f in fills], dtype=np.int64))
    if not len(t):
        return None
    days = [utc(int(x)).astimezone(data.tz).date() for x in t]
    return Grid(t, days, np.isin(t, snap_t), _capital(data, broker))


def _trade(trip: Trip, data: RunData, end_t: int) -> Trade:
    return Trade(
        broker=trip.broker, strategy=trip.strategy, instrument_token=trip.token,
        symbol=data.symbols.get(trip.token, ""),
        direction="LONG" if trip.direction > 0 else "SHORT",
        quantity=trip.quantity, entry_time=utc(trip.start_t),
        exit_time=utc(trip.end_t) if trip.end_t is not None else None,
        holding_s=((trip.end_t or end_t) - trip.start_t) / 1e6,
        entry_price=trip.entry_price, exit_price=trip.exit_price,
        gross_pnl=float(trip.gross), fees=round(float(trip.fees), 6),
        net_pnl=round(float(trip.net), 6), mae=round(trip.mae, 6), mfe=round(trip.mfe, 6),
    )  # fmt: skip


def _broker(data: RunData, broker: str, trips: list[Trip], rf: float) -> BrokerReport | None:
    fills = [f for f in data.fills if f.broker == broker]
    grid = _grid(data, broker, fills)
    if grid is None:
        return None
    own = [t for t in trips if t.broker == broker]
    total, equity, bench = group_metrics("broker", broker, fills, own, grid, data, rf)
    by_strategy = {
        s: group_metrics(
            "strategy", s, [f for f in fills if f.strategy == s],
            [t for t in own if t.strategy == s], grid, data, rf,
        )
        for s in sorted({f.strategy for f in fills})
    }  # fmt: skip
    per_strategy = [m for m, _, _ in by_strategy.values()]
    per_instrument = [
        group_metrics(
            "instrument", data.symbols.get(k) or str(k), [f for f in fills if f.token == k],
            [t for t in own if t.token == k], grid, data, rf,
        )[0]
        for k in sorted({f.token for f in fills}, key=lambda k: (data.symbols.get(k) or "", k))
    ]  # fmt: skip
    finals = [s for s in data.snapshots.get(broker, []) if s.final]
    under = stats.drawdown(grid.t, equity, grid.capital).series
    return BrokerReport(
        broker=broker, starting_cash=grid.capital, final_equity=round(float(equity[-1]), 4),
        ledger_net_pnl=round(float(finals[-1].net_pnl), 4) if finals else None,
        total=total, strategies=per_strategy, instruments=per_instrument,
        trades=[_trade(t, data, int(grid.t[-1])) for t in own],
        curve=Curve(
            time=[utc(int(x)) for x in grid.t], equity=equity.round(4).tolist(),
            drawdown=under.round(4).tolist(), benchmark=bench.round(4).tolist(),
            strategies={s: e.round(4).tolist() for s, (_, e, _) in by_strategy.items()},
        ),
    )  # fmt: skip


def conventions(rf: float, marks: str) -> Conventions:
    return Conventions(
        periods_per_year=stats.PERIODS,
        risk_free_rate=rf,
        capital="each broker's starting cash, for the broker and for each of its strategies "
        "and instruments alike",
        returns="daily: equity at each trading day's last point over the day before's "
        "(the first day over the capital); volatility, Sharpe and Sortino annualised by √252 "
        "(stdev ddof=1; Sortino's downside deviation over all days, target rf/252); "
        "CAGR = growth^(252/days) − 1; Calmar = CAGR / max drawdown; one day: undefined",
        marks=marks,
        round_trips="fills matched FIFO per broker, strategy and instrument, flat to flat; a "
        "flip closes a trip and opens the next (fee split by quantity); win % and profit "
        "factor net of entry and exit fees; MAE/MFE: worst/best running PnL before fees",
        benchmark="buy and hold of the traded instruments, capital split equally at their "
        "first price in the run, held to their last, before costs",
        exposure="time in market: share of each day's span (first to last point) with a "
        "position open; exposure: gross position value / equity at the pnl snapshots",
        slippage="fill price against the order's price (the signal's price; a LIMIT's "
        "limit), times the signed quantity: > 0 is a cost",
    )


def _period(brokers: list[BrokerReport]) -> tuple[Any, Any, int]:
    times = [t for b in brokers for t in (b.curve.time[:1] + b.curve.time[-1:])]
    days: set[date] = {d.date for b in brokers for d in b.total.days}
    return (min(times) if times else None, max(times) if times else None, len(days))


def report(run_dir: str | Path, risk_free: float = 0.0) -> Report:
    """The analysis of one run folder (its ledger, and its ``config.yaml`` when present).
    ``risk_free``: annual risk-free rate for Sharpe and Sortino (a fraction, default 0)."""
    data = load_run(run_dir)
    trips = match(data.fills)
    ends = {b: s[-1].t for b, s in data.snapshots.items() if s}
    for broker in {t.broker for t in trips}:
        own = [t for t in trips if t.broker == broker]
        close_out(own, data.marks, max(ends.get(broker, 0), max(t.legs[-1].t for t in own)))
    brokers = [_broker(data, b, trips, risk_free) for b in _active_brokers(data)]
    kept = [b for b in brokers if b is not None]
    start, end, n_days = _period(kept)
    return Report(
        run_dir=str(data.run_dir), start=start, end=end, trading_days=n_days,
        conventions=conventions(risk_free, data.marks.source), config=data.config,
        run=data.run_report, brokers=kept,
    )  # fmt: skip
