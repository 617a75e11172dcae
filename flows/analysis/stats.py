"""Performance statistics on plain series (no ledger knowledge), with their conventions:

- daily returns r_d = (E_d − E_{d−1}) / E_{d−1}, E_0 the capital, E_d the equity at the
  last point of trading day d (only days with data count);
- ``PERIODS`` = 252 trading days a year; the risk-free rate is annual (default 0) and is
  taken as rf / 252 a day;
- volatility = stdev(r, ddof=1) · √252; Sharpe = mean(r − rf_d) / stdev(r, ddof=1) · √252;
  Sortino = mean(r − rf_d) / √(mean(min(r − rf_d, 0)²)) · √252 (downside deviation over
  every day, target rf); these and CAGR need two days or more;
- CAGR = (E_end / E_0)^(252 / days) − 1; Calmar = CAGR / max drawdown (as a fraction);
- drawdown on the equity curve at every point: peak − equity (₹) and (peak − equity) / peak;
  its duration is calendar time from the last point at the peak to the first point back
  at it (or to the last point, when not recovered).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PERIODS = 252
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def daily_returns(closes: Sequence[float], capital: float) -> F64:
    e = np.array([capital, *closes], dtype=np.float64)
    return np.diff(e) / e[:-1]


def volatility(r: F64) -> float | None:
    return float(np.std(r, ddof=1) * math.sqrt(PERIODS)) if len(r) >= 2 else None


def sharpe(r: F64, risk_free: float = 0.0) -> float | None:
    if len(r) < 2:
        return None
    sd = float(np.std(r, ddof=1))
    ex = r - risk_free / PERIODS
    return float(np.mean(ex)) / sd * math.sqrt(PERIODS) if sd > 0 else None


def sortino(r: F64, risk_free: float = 0.0) -> float | None:
    if len(r) < 2:
        return None
    ex = r - risk_free / PERIODS
    dd = math.sqrt(float(np.mean(np.minimum(ex, 0.0) ** 2)))
    return float(np.mean(ex)) / dd * math.sqrt(PERIODS) if dd > 0 else None


def cagr(start: float, end: float, days: int) -> float | None:
    """Annualised growth; undefined over fewer than two days (one day's move to the 252nd
    power says nothing)."""
    if days < 2 or start <= 0 or end <= 0:
        return None
    return float((end / start) ** (PERIODS / days) - 1.0)


def calmar(growth: float | None, max_dd_fraction: float) -> float | None:
    if growth is None or max_dd_fraction <= 0:
        return None
    return growth / max_dd_fraction


@dataclass(frozen=True)
class Drawdown:
    amount: float  # ₹, ≥ 0
    fraction: float  # of the peak, ≥ 0
    duration_us: int  # the longest time under a peak
    recovered: bool  # that longest stretch ended back at its peak
    peak_t: int | None  # start of the largest drawdown (₹), and its bottom
    trough_t: int | None
    series: F64  # equity − peak at every point (≤ 0)


def drawdown(times: I64, equity: F64, capital: float) -> Drawdown:
    """Drawdown of an equity curve that starts from ``capital`` before its first point."""
    if not len(equity):
        return Drawdown(0.0, 0.0, 0, True, None, None, np.zeros(0))
    peak = np.maximum.accumulate(np.maximum(equity, capital))
    under = equity - peak
    tol = 1e-9 * max(abs(capital), 1.0)
    below = under < -tol
    amount = float(-under.min()) if below.any() else 0.0
    fraction = float(((peak - equity) / peak).max()) if below.any() else 0.0
    trough = int(np.argmin(under))
    at_peak = np.flatnonzero(~below[: trough + 1])
    peak_i = int(at_peak[-1]) if len(at_peak) else None
    longest, recovered, start = 0, True, None
    for i in range(len(equity)):
        if below[i] and start is None:
            start = int(times[i - 1]) if i > 0 else int(times[0])
        elif not below[i] and start is not None:
            if times[i] - start > longest:
                longest, recovered = int(times[i] - start), True
            start = None
    if start is not None and times[-1] - start > longest:
        longest, recovered = int(times[-1] - start), False
    return Drawdown(
        amount, fraction, longest, recovered,
        int(times[peak_i]) if peak_i is not None else (int(times[0]) if below.any() else None),
        int(times[trough]) if below.any() else None, under,
    )  # fmt: skip


def profit_factor(pnls: Sequence[float]) -> float | None:
    """Gross profit / gross loss of trades (None without a losing trade)."""
    won = sum(p for p in pnls if p > 0)
    lost = -sum(p for p in pnls if p < 0)
    return won / lost if lost > 0 else None


def expectancy(pnls: Sequence[float]) -> float | None:
    return sum(pnls) / len(pnls) if pnls else None


def win_rate(pnls: Sequence[float]) -> float | None:
    """Share of trades with PnL > 0 (pass PnL net of fees)."""
    return sum(1 for p in pnls if p > 0) / len(pnls) if pnls else None
