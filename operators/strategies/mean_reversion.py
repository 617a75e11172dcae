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
        diff = np.diff(paise)  # diff[i-1] = paise[i] - paise[i-1]
        gains = rolling_sum(np.maximum(diff, 0), p.rsi_period)
        losses = rolling_sum(np.maximum(-diff, 0), p.rsi_period)
        # RSI at tick i uses diff[i-period .. i-1], i.e. gains[i-1].
        g = np.concatenate(([0], gains)).astype(np.float64)
        lo = np.concatenate(([0], losses)).astype(np.float64)
        tot = g + lo
        rsi = np.divide(100.0 * g, tot, out=np.full(len(paise), 50.0), where=tot > 0)
        w = p.bollinger_lookback
        s = rolling_sum(paise, w).astype(np.float64)
        ss = rolling_sum(paise * paise, w).astype(np.float64)
        mean = s / w
        std = np.sqrt(np.maximum(ss / w - mean * mean, 0.0))
        price = paise.astype(np.float64)
        buy = (rsi < p.oversold) & (price < mean - p.bollinger_width * std)
        sell = (rsi > p.overbought) & (price > mean + p.bollinger_width * std)
        reg = buy.astype(np.int8) - sell.astype(np.int8)
        reg[: self.history - 1] = 0  # warm-up: not enough ticks yet
        return reg[n_prev:], rsi[n_prev:]

    def describe(self, value: float, side: int) -> str:
        band = "below the lower" if side > 0 else "above the upper"
        return f"RSI {value:.1f}, price {band} Bollinger band"
