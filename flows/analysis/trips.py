"""Round trips: fills matched FIFO per (broker, strategy, instrument) into trades that run
from flat back to flat.

A fill that flips the position closes the trip with the quantity that was held and opens
the next trip with the rest; its fee is split by quantity (the opening share is the fee less
the closing share, so the shares add up to the fee exactly). Because a trip ends flat, its
PnL is the same under FIFO and average cost: gross = Σ sell value − Σ buy value. A trip
still open at the end is valued at the instrument's last mark (open PnL).

MAE and MFE are the worst and best running PnL of the trip before fees: between two of its
fills the position is constant, so the running PnL is ``K + position · price`` and its
extremes are at the lowest and highest mark of that stretch (marks: see ``load.Marks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

import numpy as np

from flows.analysis.load import Fill, Marks

ZERO = Decimal(0)


@dataclass(frozen=True)
class Leg:
    t: int
    qty: int  # signed
    price: Decimal
    fee: Decimal


@dataclass
class Trip:
    broker: str
    strategy: str
    token: int
    direction: int  # +1 long, -1 short
    legs: list[Leg] = field(default_factory=list)
    end_t: int | None = None  # exit time; None while open
    mark: float | None = None  # open trips: the last mark
    mae: float = 0.0
    mfe: float = 0.0

    @property
    def is_open(self) -> bool:
        return self.end_t is None

    @property
    def position(self) -> int:
        return sum(leg.qty for leg in self.legs)

    @cached_property
    def fees(self) -> Decimal:
        return sum((leg.fee for leg in self.legs), ZERO)

    @cached_property
    def gross(self) -> Decimal:
        """Sell value − buy value, plus the open position at its last mark (open trips)."""
        flows = sum((-leg.qty * leg.price for leg in self.legs), ZERO)
        if self.position and self.mark is not None:
            flows += self.position * Decimal(repr(self.mark))
        return flows

    @cached_property
    def net(self) -> Decimal:
        return self.gross - self.fees

    @property
    def quantity(self) -> int:
        """The largest position held during the trip."""
        pos, most = 0, 0
        for leg in self.legs:
            pos += leg.qty
            most = max(most, abs(pos))
        return most

    def _vwap(self, opening: bool) -> float | None:
        legs = [g for g in self.legs if (g.qty * self.direction > 0) == opening]
        qty = sum(abs(g.qty) for g in legs)
        return float(sum(abs(g.qty) * g.price for g in legs) / qty) if qty else None

    @property
    def entry_price(self) -> float:
        return self._vwap(True) or 0.0

    @property
    def exit_price(self) -> float | None:
        return self.mark if self.is_open else self._vwap(False)

    @property
    def start_t(self) -> int:
        return self.legs[0].t


def _split(fill: Fill, close: int) -> tuple[Leg, Leg]:
    """A flipping fill as its closing leg (``close`` units) and its opening leg."""
    sign = 1 if fill.qty > 0 else -1
    fee_close = fill.fee * close / abs(fill.qty)
    return (
        Leg(fill.t, sign * close, fill.price, fee_close),
        Leg(fill.t, fill.qty - sign * close, fill.price, fill.fee - fee_close),
    )


def match(fills: Iterable[Fill]) -> list[Trip]:
    """Round trips of fills given in booking order (any mix of brokers and strategies)."""
    open_: dict[tuple[str, str, int], Trip] = {}
    done: list[Trip] = []
    for f in fills:
        key = (f.broker, f.strategy, f.token)
        trip = open_.get(key)
        if trip is None:
            trip = open_[key] = Trip(f.broker, f.strategy, f.token, 1 if f.qty > 0 else -1)
        pos = trip.position
        if pos == 0 or (pos > 0) == (f.qty > 0) or abs(f.qty) <= abs(pos):
            trip.legs.append(Leg(f.t, f.qty, f.price, f.fee))
        else:
            close, rest = _split(f, abs(pos))
            trip.legs.append(close)
            trip.end_t = f.t
            done.append(trip)
            nxt = Trip(f.broker, f.strategy, f.token, 1 if rest.qty > 0 else -1, [rest])
            open_[key] = nxt
            continue
        if trip.position == 0:
            trip.end_t = f.t
            done.append(trip)
            del open_[key]
    return sorted([*done, *open_.values()], key=lambda t: (t.start_t, t.broker, t.token))


def excursions(trip: Trip, marks: Marks, end_t: int) -> tuple[float, float]:
    """(MAE ≤ 0, MFE ≥ 0) of the trip's running PnL before fees; ``end_t`` ends open trips."""
    times, prices = marks.series.get(trip.token, (np.zeros(0, np.int64), np.zeros(0)))
    k, pos, worst, best = 0.0, 0, 0.0, 0.0
    legs = trip.legs
    for i, leg in enumerate(legs):
        k -= leg.qty * float(leg.price)
        pos += leg.qty
        if pos == 0:
            break
        stop = legs[i + 1].t if i + 1 < len(legs) else (trip.end_t or end_t)
        lo, hi = np.searchsorted(times, leg.t, "left"), np.searchsorted(times, stop, "right")
        seg = prices[lo:hi]
        p_lo = min(float(seg.min()), float(leg.price)) if len(seg) else float(leg.price)
        p_hi = max(float(seg.max()), float(leg.price)) if len(seg) else float(leg.price)
        run = (k + pos * p_lo, k + pos * p_hi)
        worst, best = min(worst, *run), max(best, *run)
    return worst, best


def close_out(trips: list[Trip], marks: Marks, end_t: int) -> None:
    """Value open trips at their last mark and fill in every trip's MAE and MFE (a trip's
    gross, fees and net are read after this, once: they are cached)."""
    for trip in trips:
        if trip.is_open:
            last = marks.at(trip.token, np.array([end_t], dtype=np.int64))[0]
            trip.mark = None if np.isnan(last) else float(last)
        trip.mae, trip.mfe = excursions(trip, marks, end_t)
