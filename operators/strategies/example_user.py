"""A complete per-tick user strategy (the README's example): breakout of the recent range.

Config:  class: operators.strategies.example_user:Breakout
         params: {window: 50, quantity: 5}
"""

from __future__ import annotations

from collections import deque
from typing import Any

from operators.strategies.api import Signal, Tick


class Breakout:
    """BUY when price breaks above the high of the last ``window`` ticks, SELL below the low."""

    def __init__(self, window: int = 50, quantity: int = 5) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self.window = window
        self.quantity = quantity

    def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
        recent: deque[float] = state.setdefault("recent", deque(maxlen=self.window))
        signal = None
        if len(recent) == self.window:
            side = state.get("side")
            if tick.last_price > max(recent) and side != "BUY":
                signal = Signal("BUY", self.quantity, f"broke above {max(recent):.2f}")
            elif tick.last_price < min(recent) and side != "SELL":
                signal = Signal("SELL", self.quantity, f"broke below {min(recent):.2f}")
            if signal is not None:
                state["side"] = signal.signal_type
        recent.append(tick.last_price)
        return signal
