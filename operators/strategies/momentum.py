"""Momentum: BUY when the return over ``lookback`` ticks crosses above +threshold, SELL when
it crosses below -threshold."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.strategies.api import Regime, VectorStrategy
from schemas.ticks import I64


class MomentumParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: int = Field(default=50, ge=1)
    threshold: float = Field(default=0.003, gt=0)
    quantity: int = Field(default=10, gt=0)


class Momentum(VectorStrategy):
    def __init__(self, params: MomentumParams) -> None:
        self.p = params
        self.history = params.lookback
        self.quantity = params.quantity

    def regime(self, paise: I64, n_prev: int) -> tuple[Regime, list[str]]:
        n = len(paise) - n_prev
        out = np.zeros(n, dtype=np.int8)
        lb = self.p.lookback
        start = max(n_prev, lb)  # first index with a full lookback
        if start >= len(paise):
            return out, [""] * n
        cur = paise[start:]
        past = paise[start - lb : len(paise) - lb]
        ret = (cur - past) / past
        reg = np.where(ret > self.p.threshold, 1, np.where(ret < -self.p.threshold, -1, 0))
        out[start - n_prev :] = reg
        reasons = [""] * n
        for i in np.flatnonzero(out).tolist():
            r = ret[i - (start - n_prev)]
            reasons[i] = f"momentum {r:+.4%} over {lb} ticks"
        return out, reasons
