"""Mean reversion: BUY when RSI is oversold and price is below the lower Bollinger band,
SELL when RSI is overbought and price is above the upper band."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from operators.strategies.api import Regime, VectorStrategy, rolling_sum
from schemas.ticks import F64, I64


class MeanReversionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    rsi_period: int = Field(default=14, ge=2, le=1_000_000)
    oversold: float = Field(default=30.0, gt=0, lt=100)
    overbought: float = Field(default=70.0, gt=0, lt=100)
    bollinger_lookback: int = Field(default=20, ge=2, le=1_000_000)
    bollinger_width: float = Field(default=2.0, gt=0, le=100)
    quantity: int = Field(
        default=10, gt=0, le=10_000_000, description="target size: +quantity or -quantity"
    )
    allow_short: bool = Field(default=True, description="sell zone: short, else go flat")

    @model_validator(mode="after")
    def _bands(self) -> MeanReversionParams:
        if self.oversold >= self.overbought:
            raise ValueError("oversold must be below overbought")
        return self


class MeanReversion(VectorStrategy):
    def __init__(self, params: MeanReversionParams) -> None:
        self.p = params
        self.history = max(params.rsi_period + 1, params.bollinger_lookback)
        self.quantity = params.quantity
        self.allow_short = params.allow_short

    def regime(self, paise: I64, n_prev: int) -> tuple[Regime, F64]:
        p = self.p
        n = len(paise) - n_prev
        if len(paise) < self.history:
            return np.zeros(n, dtype=np.int8), np.zeros(n)
        rsi = _rsi(paise, p.rsi_period)
        reg = np.zeros(len(paise), dtype=np.int8)
        first = max(n_prev, self.history - 1)  # warm-up: not enough ticks before
        tail = rsi[first:]
        # Both bands need an extreme RSI: the bands are worked out at those ticks only.
        at = first + np.flatnonzero((tail < p.oversold) | (tail > p.overbought))
        w = p.bollinger_lookback
        s = _window_sums(paise, w, at).astype(np.float64)
        ss = _window_sums(paise * paise, w, at).astype(np.float64)
        mean = s / w
        std = np.sqrt(np.maximum(ss / w - mean * mean, 0.0))
        price, r = paise[at].astype(np.float64), rsi[at]
        buy = (r < p.oversold) & (price < mean - p.bollinger_width * std)
        sell = (r > p.overbought) & (price > mean + p.bollinger_width * std)
        reg[at] = buy.astype(np.int8) - sell.astype(np.int8)
        return reg[n_prev:], rsi[n_prev:]

    def describe(self, value: float, side: int) -> str:
        band = "below the lower" if side > 0 else "above the upper"
        return f"RSI {value:.1f}, price {band} Bollinger band"


def _rsi(paise: I64, period: int) -> F64:
    """RSI at each tick over the ``period`` price changes before it (50 where nothing moved
    and before ``period`` changes). A window's gains less its losses are the change across
    it, so one running sum (of the absolute changes) gives both."""
    diff = np.diff(paise)  # diff[i-1] = paise[i] - paise[i-1]
    moved = rolling_sum(np.abs(diff), period)  # gains + losses (0 before a full window)
    net = np.zeros(len(diff), dtype=np.int64)
    net[period - 1 :] = paise[period:] - paise[: len(paise) - period]  # gains - losses
    # RSI at tick i uses diff[i-period .. i-1], i.e. the window ending at diff[i-1].
    gains2, tot = np.zeros(len(paise)), np.zeros(len(paise))  # twice the gains: 100 g = 50 (2 g)
    gains2[1:], tot[1:] = moved + net, moved
    return np.divide(50.0 * gains2, tot, out=np.full(len(paise), 50.0), where=tot > 0)


def _window_sums(x: I64, width: int, at: I64) -> I64:
    """x[i-width+1] + ... + x[i] for each i of ``at`` (all >= width-1; exact in int64)."""
    cs = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, dtype=np.int64, out=cs[1:])
    return cs[at + 1] - cs[at + 1 - width]
