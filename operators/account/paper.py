"""Paper venue: orders rest on the paper book until the tape executes them, never at the
tick that triggered them.

- A strategy's order fills at its ``ExecTick``: the instrument's first tick after the
  signal's own tick, at or after the signal time plus ``execution.latency_ms``.
- An order the account starts itself (a flatten) fills at the instrument's first mark after
  it (its last tick before the next mark boundary).
- Fill price: that tick's price moved against the order by ``slippage_bps``, rounded
  outward to the tick size.
- LIMIT (at the signal price): fills at that tick only if it is at or better than the limit
  (never beyond it); else it rests and fills at its limit at the first mark that reaches it,
  or is cancelled after ``execution.limit_timeout_s``.
- An order whose tick falls outside the session it was placed in is cancelled, and so is
  every order still resting at the end of the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from operators.account import orders
from operators.accounting import fees
from schemas.config import CostModel
from schemas.enums import OrderStatus, SignalType
from schemas.events import OrderEvent, ValidatedSignal
from schemas.ids import content_id
from schemas.kite import OrderUpdate
from schemas.ticks import ExecTick, MarkSet, OrderLatency, from_us, to_us


def slipped_price(price: float, side: SignalType | str, bps: float, tick: float) -> float:
    """Move ``price`` against the order by ``bps`` and round outward to a multiple of ``tick``."""
    buy = SignalType(side) is SignalType.BUY
    raw = price * (1 + bps / 1e4) if buy else price * (1 - bps / 1e4)
    steps = raw / tick
    n = math.ceil(steps - 1e-9) if buy else max(1, math.floor(steps + 1e-9))
    return round(n * tick, 2)


@dataclass
class Resting:
    """A paper order waiting for the tape."""

    v: ValidatedSignal
    order_type: str
    placed_us: int
    on_mark: bool  # fills at a mark: the account's own order, or a LIMIT left resting
    limit: float | None = None  # LIMIT orders: never filled beyond it
    since_us: int = -1  # marks count from here (its placing, or the tick it missed)


@dataclass
class PaperState:
    resting: dict[str, Resting] = field(default_factory=dict)  # by order id


class PaperVenue:
    """Pure logic: orders placed at once, filled by the tape (see module doc)."""

    def __init__(
        self,
        slippage_bps: float,
        costs: CostModel,
        tick_sizes: Mapping[int, float],
        session_end: Callable[[int], int] | None = None,
        state: PaperState | None = None,
        limit_timeout_us: int = 0,
    ) -> None:
        self.bps, self.costs, self.tick_sizes = slippage_bps, costs, tick_sizes
        self.limit_timeout_us = limit_timeout_us  # 0: a LIMIT rests until the session ends
        self.session_end = session_end  # µs → when that instant's session closes
        self.state = state or PaperState()

    def send(self, v: ValidatedSignal, order_type: str, on_mark: bool = False) -> list[OrderEvent]:
        ts = to_us(v.timestamp)
        limit = v.signal.price if order_type == "LIMIT" and not on_mark else None
        self.state.resting[v.order_id] = Resting(v, order_type, ts, on_mark, limit)
        return [orders.placed(v, None, order_type, v.signal.timestamp)]

    def _ends(self, r: Resting, ts: int) -> tuple[str, int] | None:
        """Why ``r`` can no longer fill at ``ts``, and since when, if so."""
        if self.session_end is not None and ts >= (close := self.session_end(r.placed_us)):
            return "CANCELLED: the session ended before a tick executed it", close
        expiry = r.placed_us + self.limit_timeout_us
        if r.limit is not None and self.limit_timeout_us and ts > expiry:
            return "CANCELLED: limit_timeout_s passed before the price reached the limit", expiry
        return None

    def _fill(self, r: Resting, price: float | None, ts: int) -> list[OrderEvent]:
        """Fill ``r`` in full at ``price`` seen at ``ts``, or cancel it (too late, or None)."""
        del self.state.resting[r.v.order_id]
        v = r.v
        ended = self._ends(r, ts)
        if ended is not None or price is None:
            why, at = ended or ("CANCELLED", ts)
            return [orders.failed(v, None, OrderStatus.CANCELLED, v.quantity, why, from_us(at))]
        fee = fees(self.costs, v.side, v.quantity, price)
        return [orders.filled(v, None, v.quantity, price, fee, v.quantity, from_us(ts))]

    def _price(self, r: Resting, tick_price: float) -> float | None:
        """What ``r`` fills at against a tick at ``tick_price`` (None: a LIMIT it misses)."""
        tick = self.tick_sizes.get(r.v.signal.instrument_token, 0.05)
        px = slipped_price(tick_price, r.v.side, self.bps, tick)
        if r.limit is None:
            return px
        buy = SignalType(r.v.side) is SignalType.BUY
        if (tick_price > r.limit) if buy else (tick_price < r.limit):
            return None
        return min(px, r.limit) if buy else max(px, r.limit)

    def on_exec(self, e: ExecTick) -> list[OrderEvent]:
        """The tick that executes the orders of ``e.signals`` (those the account placed); a
        LIMIT it does not reach goes on resting (filled by later marks)."""
        out: list[OrderEvent] = []
        for sid in e.signals:
            r = self.state.resting.get(content_id("ord", sid))
            if r is None or r.on_mark:
                continue
            price = self._price(r, e.price)
            if price is not None or self._ends(r, e.ts) is not None:
                out += self._fill(r, price, e.ts)
            else:
                r.on_mark, r.since_us = True, e.ts
        return out

    def on_marks(self, m: MarkSet) -> list[OrderEvent]:
        """Orders waiting for marks (the account's own, LIMITs left resting): each fills at
        its instrument's first mark after it that it reaches, or ends when that is too late."""
        out: list[OrderEvent] = []
        for r in sorted(self.state.resting.values(), key=lambda r: (r.placed_us, r.v.order_id)):
            if not r.on_mark:
                continue
            times, prices = m.of_token(r.v.signal.instrument_token)
            k = int(times.searchsorted(max(r.placed_us, r.since_us), "right"))
            for t, p in zip(times[k:].tolist(), prices[k:].tolist(), strict=True):
                price = self._price(r, p) if r.limit is None else self._limit_at(r, p)
                if price is not None or self._ends(r, t) is not None:
                    out += self._fill(r, price, t)
                    break
        return out

    def _limit_at(self, r: Resting, mark: float) -> float | None:
        """A resting LIMIT fills at its own price once the tape trades at or through it."""
        assert r.limit is not None
        buy = SignalType(r.v.side) is SignalType.BUY
        return r.limit if (mark <= r.limit if buy else mark >= r.limit) else None

    def expire(self, ts: int) -> list[OrderEvent]:
        """End of the stream: whatever still rests is cancelled."""
        out: list[OrderEvent] = []
        for oid in sorted(self.state.resting):
            v = self.state.resting.pop(oid).v
            why = "CANCELLED: no tick executed it before the end of the data"
            out.append(orders.failed(v, None, OrderStatus.CANCELLED, v.quantity, why, from_us(ts)))
        return out

    def knows(self, v: ValidatedSignal) -> bool:
        return False  # the paper book is recovered with the account: a signal is never seen twice

    def update(self, u: OrderUpdate) -> list[OrderEvent]:
        return []  # paper orders have no broker updates

    def venue_state(self) -> Any:
        return self.state

    def drain_latency(self) -> list[OrderLatency]:
        return []  # simulated: no wall-clock latency
