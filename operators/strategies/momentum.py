"""Momentum: BUY when the return over ``lookback`` ticks crosses above +threshold, SELL when
it crosses below -threshold."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.strategies.api import Regime, VectorStrategy
from schemas.ticks import F64, I64


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    lookback: int = Field(default=50, ge=1, le=1_000_000)
    threshold: float = Field(default=0.003, gt=0, le=100)
    quantity: int = Field(
        default=10, gt=0, le=10_000_000, description="target size: +quantity or -quantity"
    )
    allow_short: bool = Field(default=True, description="sell zone: short, else go flat")


class Momentum(VectorStrategy):
    def __init__(self, params: MomentumParams) -> None:
        self.p = params
        self.history = params.lookback
        self.quantity = params.quantity
        self.allow_short = params.allow_short

    def regime(self, paise: I64, n_prev: int) -> tuple[Regime, F64]:
        n = len(paise) - n_prev
        out = np.zeros(n, dtype=np.int8)
        value = np.zeros(n)
        lb = self.p.lookback
        start = max(n_prev, lb)  # first index with a full lookback
        if start >= len(paise):
            return out, value
        past = paise[start - lb : len(paise) - lb]
        ret = (paise[start:] - past) / past
        out[start - n_prev :] = (ret > self.p.threshold).astype(np.int8) - (
            ret < -self.p.threshold
        ).astype(np.int8)
        value[start - n_prev :] = ret
        return out, value

    def describe(self, value: float, side: int) -> str:
        return f"momentum {value:+.4%} over {self.p.lookback} ticks"
