"""Strategy interfaces: the per-tick user API and the vectorised engine API."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from schemas.enums import SignalType
from schemas.ticks import F64, I64


@dataclass(frozen=True)
class Tick:
    """One tick as a per-tick strategy sees it."""

    instrument_token: int
    timestamp: datetime
    last_price: float
    volume: int | None


FLAT = "FLAT"
MAX_TARGET = 10**9  # shares: a larger target is a strategy bug, not an order


@dataclass(frozen=True)
class Signal:
    """A per-tick strategy's target position: ``Signal("BUY", 10)`` means "hold +10",
    ``Signal("SELL", 10)`` "hold -10", ``Signal("FLAT")`` "hold nothing". The account orders
    the difference from what the strategy holds; the engine adds ids, broker and time."""

    signal_type: SignalType | str
    quantity: int = 0
    reason: str = ""

    def target(self) -> int:
        """The signed target; ValueError (naming the field) if the signal is invalid."""
        kind = str(getattr(self.signal_type, "value", self.signal_type))
        q = self.quantity
        if kind not in (SignalType.BUY.value, SignalType.SELL.value, FLAT):
            raise ValueError(f"signal_type {kind!r}: expected BUY, SELL or FLAT")
        if isinstance(q, bool) or not isinstance(q, numbers.Integral):
            raise ValueError(f"quantity {q!r:.40}: must be an int")
        q = int(q)
        if abs(q) > MAX_TARGET:
            raise ValueError(f"quantity {q:.3g}: beyond {MAX_TARGET:,}")
        if kind == FLAT:
            if q:
                raise ValueError(f"quantity {q}: FLAT takes no quantity")
            return 0
        if q <= 0:
            raise ValueError(f"quantity {q}: {kind} needs a quantity > 0")
        return q if kind == SignalType.BUY.value else -q


class TickStrategy(Protocol):
    """User strategy: ``on_tick`` is called for every tick of each instrument, in order.

    ``state`` is a dict private to one (broker, instrument): keep what you need across ticks
    in it (it is snapshotted for recovery, so keep it picklable).
    """

    def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None: ...


Regime = npt.NDArray[np.int8]


class VectorStrategy(ABC):
    """Built-in strategy, vectorised over a batch.

    ``regime`` maps prices (integer paise) to +1 (buy zone), -1 (sell zone) or 0 for each
    tick of the batch. A target fires when the regime enters a side other than the side of
    the last target: +quantity on entering the buy zone, then nothing until the sell zone,
    which targets -quantity (or flat when ``allow_short`` is false). The result for a
    tick depends only on that tick and the ``history`` ticks before it, never on where a
    batch starts, because every indicator is computed exactly from integer paise.
    """

    history: int
    quantity: int
    allow_short: bool = True

    @abstractmethod
    def regime(self, paise: I64, n_prev: int) -> tuple[Regime, F64]:
        """Regimes for ``paise[n_prev:]`` (``paise[:n_prev]`` is carried history), and the
        indicator value behind each, for ``describe``."""

    @abstractmethod
    def describe(self, value: float, side: int) -> str:
        """Short reason text for a signal fired at indicator ``value``."""


def rolling_sum(x: I64, width: int) -> I64:
    """r[i] = x[i-width+1] + ... + x[i] for i >= width-1 (exact in int64); others are junk."""
    cs = np.zeros(len(x) + 1, dtype=np.int64)
    np.cumsum(x, dtype=np.int64, out=cs[1:])
    out = np.zeros(len(x), dtype=np.int64)
    if len(x) >= width:
        np.subtract(cs[width:], cs[: len(cs) - width], out=out[width - 1 :])
    return out
