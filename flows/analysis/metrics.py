"""Metrics of a group of fills (a broker, one of its strategies, one of its instruments):
the equity curve on the broker's evaluation points, daily returns and their ratios,
drawdown, exposure, turnover, trade statistics, costs, slippage and the benchmark.

Evaluation points are the broker's pnl snapshot times and its fill times. At each point a
group's PnL is its cash flow so far (−Σ qty·price − fees) plus its positions at their last
mark, so every group's final PnL adds up to the broker's, whatever the matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np

from flows.analysis import stats
from flows.analysis.load import F64, FEE_HEADS, I64, Fill, Marks, RunData, utc
from flows.analysis.model import Benchmark, DayRow, Metrics, SideStats
from flows.analysis.trips import ZERO, Trip


@dataclass(frozen=True)
class Grid:
    """A broker's evaluation points, their trading day, and which are snapshot times."""

    t: I64
    day: list[date]
    snap: np.ndarray  # bool mask: a pnl snapshot time
    capital: float

    def closes(self) -> tuple[list[date], I64]:
        """Each day and the index of its last point."""
        days: list[date] = []
        last: list[int] = []
        for i, d in enumerate(self.day):
            if days and days[-1] == d:
                last[-1] = i
            else:
                days.append(d)
                last.append(i)
        return days, np.array(last, dtype=np.int64)

    def spans(self) -> list[tuple[int, int]]:
        """Each trading day's first and last point (µs)."""
        _, last = self.closes()
        first = np.concatenate(([0], last[:-1] + 1))
        return [(int(self.t[a]), int(self.t[b])) for a, b in zip(first, last, strict=True)]


def curve(fills: Sequence[Fill], grid: Grid, marks: Marks) -> tuple[F64, F64]:
    """(PnL, gross exposure) of ``fills`` at every point of ``grid``."""
    pnl, expo = np.zeros(len(grid.t)), np.zeros(len(grid.t))
    by_token: dict[int, list[Fill]] = {}
    for f in fills:
        by_token.setdefault(f.token, []).append(f)
    for token, own in sorted(by_token.items()):
        tf = np.array([f.t for f in own], dtype=np.int64)
        q = np.cumsum([f.qty for f in own])
        cash = np.cumsum([-float(f.qty * f.price + f.fee) for f in own])
        idx = np.searchsorted(tf, grid.t, side="right") - 1
        pos = np.where(idx >= 0, q[np.maximum(idx, 0)], 0)
        flow = np.where(idx >= 0, cash[np.maximum(idx, 0)], 0.0)
        mark = np.nan_to_num(marks.at(token, grid.t))
        pnl += flow + pos * mark
        expo += np.abs(pos) * mark
    return pnl, expo


def time_in_market(fills: Sequence[Fill], spans: list[tuple[int, int]]) -> float:
    """Share of trading time (each day from its first to last point) with a position open."""
    pos: dict[int, int] = {}
    changes: list[tuple[int, bool]] = []
    for f in sorted(fills, key=lambda f: f.t):
        pos[f.token] = pos.get(f.token, 0) + f.qty
        changes.append((f.t, any(pos.values())))
    total = sum(b - a for a, b in spans)
    if not total:
        return 0.0
    held = 0
    for a, b in spans:
        is_open = next((o for t, o in reversed(changes) if t <= a), False)
        at = a
        for t, o in changes:
            if a < t <= b:
                held += (t - at) if is_open else 0
                at, is_open = t, o
        held += (b - at) if is_open else 0
    return held / total


def _side(trips: Sequence[Trip]) -> SideStats:
    nets = [float(t.net) for t in trips]
    return SideStats(
        trips=len(trips),
        win_rate=stats.win_rate(nets),
        net_pnl=float(sum((t.net for t in trips), ZERO)),
        profit_factor=stats.profit_factor(nets),
        expectancy=stats.expectancy(nets),
    )


def benchmark(tokens: list[int], grid: Grid, marks: Marks) -> tuple[Benchmark, F64]:
    """Equal-weight buy and hold of ``tokens`` from their first price in the run to the end."""
    if not tokens or not len(grid.t):
        return Benchmark(
            instruments=tokens, net_pnl=0.0, total_return=None, cagr=None, sharpe=None,
            max_drawdown_pct=0.0,
        ), np.full(len(grid.t), grid.capital)  # fmt: skip
    rel = np.zeros(len(grid.t))
    for token in tokens:
        t, p = marks.bench.get(token, (np.zeros(0, np.int64), np.zeros(0)))
        inside = np.flatnonzero(t >= grid.t[0])
        p0 = p[inside[0]] if len(inside) else (p[0] if len(p) else np.nan)
        idx = np.searchsorted(t, grid.t, side="right") - 1
        now = np.where(idx >= 0, p[np.maximum(idx, 0)] if len(p) else np.nan, p0)
        rel += np.where(np.isnan(now), 1.0, now / p0)
    equity = grid.capital * rel / len(tokens)
    days, last = grid.closes()
    growth = stats.cagr(grid.capital, float(equity[-1]), len(days))
    dd = stats.drawdown(grid.t, equity, grid.capital)
    return Benchmark(
        instruments=tokens,
        net_pnl=float(equity[-1] - grid.capital),
        total_return=float(equity[-1] / grid.capital - 1.0),
        cagr=growth,
        sharpe=stats.sharpe(stats.daily_returns(equity[last].tolist(), grid.capital)),
        max_drawdown_pct=dd.fraction,
    ), equity


def _costs(fills: Sequence[Fill]) -> tuple[dict[str, float], Decimal]:
    heads = {h: sum((f.heads[h] for f in fills), ZERO) for h in FEE_HEADS}
    total = sum((f.fee for f in fills), ZERO)
    return {**{h: float(v) for h, v in heads.items() if v}, "total": float(total)}, total


def _slippage(fills: Sequence[Fill], order_price: dict[str, Decimal]) -> Decimal:
    """Σ (fill price − the order's price) · signed quantity: > 0 is a cost."""
    return sum(
        ((f.price - order_price[f.order_id]) * f.qty for f in fills if f.order_id in order_price),
        ZERO,
    )


def _days(
    fills: Sequence[Fill], trips: Sequence[Trip], grid: Grid, equity: F64, under: F64, data: RunData
) -> list[DayRow]:
    days, last = grid.closes()
    fills_on: dict[date, list[Fill]] = {}
    for f in fills:
        fills_on.setdefault(utc(f.t).astimezone(data.tz).date(), []).append(f)
    trips_on: dict[date, int] = {}
    for t in trips:
        if t.end_t is not None:
            d = utc(t.end_t).astimezone(data.tz).date()
            trips_on[d] = trips_on.get(d, 0) + 1
    rows, prev = [], grid.capital
    for d, i in zip(days, last, strict=True):
        own = fills_on.get(d, [])
        fees = float(sum((f.fee for f in own), ZERO))
        net = float(equity[i]) - prev
        rows.append(
            DayRow(
                date=d, fills=len(own), trips=trips_on.get(d, 0),
                turnover=float(sum((abs(f.qty) * f.price for f in own), ZERO)), fees=fees,
                gross_pnl=round(net + fees, 4), net_pnl=round(net, 4),
                ret=net / prev if prev else 0.0, equity=round(float(equity[i]), 4),
                drawdown=round(float(-under[i]), 4),
            )
        )  # fmt: skip
        prev = float(equity[i])
    return rows


def _trade_stats(trips: Sequence[Trip], end_t: int) -> dict[str, Any]:
    closed = [t for t in trips if not t.is_open]
    nets = [float(t.net) for t in closed]
    wins, losses = [n for n in nets if n > 0], [n for n in nets if n <= 0]
    held = [((t.end_t or end_t) - t.start_t) / 1e6 for t in closed]
    return {
        "trips": len(closed),
        "open_trips": len(trips) - len(closed),
        "profit_factor": stats.profit_factor(nets),
        "expectancy": stats.expectancy(nets),
        "win_rate": stats.win_rate(nets),
        "avg_win": sum(wins) / len(wins) if wins else None,
        "avg_loss": sum(losses) / len(losses) if losses else None,
        "best_trade": max(nets, default=None),
        "worst_trade": min(nets, default=None),
        "avg_holding_s": sum(held) / len(held) if held else None,
    }


def group_metrics(
    scope: str, name: str, fills: Sequence[Fill], trips: Sequence[Trip], grid: Grid,
    data: RunData, risk_free: float,
) -> tuple[Metrics, F64, F64]:  # fmt: skip
    """Metrics of one group; also its equity and benchmark curves on the grid."""
    cap = grid.capital
    pnl, expo = curve(fills, grid, data.marks)
    equity = cap + pnl
    dd = stats.drawdown(grid.t, equity, cap)
    days = _days(fills, trips, grid, equity, dd.series, data)
    r = stats.daily_returns([d.equity for d in days], cap)
    net = sum((t.net for t in trips), ZERO)
    costs, fees = _costs(fills)
    growth = stats.cagr(cap, cap + float(net), len(days))
    turnover = float(sum((abs(f.qty) * f.price for f in fills), ZERO))
    slip = float(_slippage(fills, data.order_price))
    snap_ratio = expo[grid.snap] / equity[grid.snap] if grid.snap.any() else np.zeros(1)
    best = max(days, key=lambda d: d.net_pnl, default=None)
    worst = min(days, key=lambda d: d.net_pnl, default=None)
    bench, bench_curve = benchmark(sorted({f.token for f in fills}), grid, data.marks)
    m = Metrics(
        scope=scope, name=name, fills=len(fills), **_trade_stats(trips, int(grid.t[-1])),
        gross_pnl=float(net + fees), fees=float(fees), net_pnl=float(net),
        total_return=float(net) / cap if cap else 0.0, cagr=growth,
        volatility=stats.volatility(r), sharpe=stats.sharpe(r, risk_free),
        sortino=stats.sortino(r, risk_free), calmar=stats.calmar(growth, dd.fraction),
        max_drawdown=round(dd.amount, 4), max_drawdown_pct=dd.fraction,
        max_drawdown_duration_s=dd.duration_us / 1e6, drawdown_recovered=dd.recovered,
        drawdown_peak=utc(dd.peak_t) if dd.peak_t is not None else None,
        drawdown_trough=utc(dd.trough_t) if dd.trough_t is not None else None,
        time_in_market=time_in_market(fills, grid.spans()),
        avg_exposure=float(snap_ratio.mean()), max_exposure=float(snap_ratio.max()),
        turnover=turnover, turnover_ratio=turnover / cap if cap else 0.0,
        best_day=best.date if best else None, best_day_pnl=best.net_pnl if best else None,
        worst_day=worst.date if worst else None, worst_day_pnl=worst.net_pnl if worst else None,
        long=_side([t for t in trips if not t.is_open and t.direction > 0]),
        short=_side([t for t in trips if not t.is_open and t.direction < 0]),
        costs=costs, slippage=slip, slippage_bps=slip / turnover * 1e4 if turnover else None,
        benchmark=bench, days=days,
    )  # fmt: skip
    return m, equity, bench_curve
