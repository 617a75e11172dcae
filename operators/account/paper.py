"""Paper venue: orders rest on the paper book until the tape executes them, never at the
tick that triggered them.

- A strategy's order fills at its ``ExecTick``: the instrument's first tick after the
  signal's own tick, at or after the signal time plus ``execution.latency_ms``.
- An order the account starts itself (a flatten) fills at the instrument's first mark after
  it (its last tick before the next mark boundary).
- Fill price: that tick's price moved against the order by ``slippage_bps``, rounded
  outward to the tick size.
- LIMIT (at the signal price): fills at that tick only if it is at or better than the limit
  (never beyond it); else it rests and fills at its limit at the first later tick that
  reaches it from its side (an ExecTick with ``cross``), or is cancelled after
  ``execution.limit_timeout_s`` (judged at marks).
- An order whose tick falls outside the session it was placed in is cancelled, and so is
  every order still resting at the end of the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from operators.account import orders
from operators.account.costs import CncDays
from operators.accounting import Charges, charges
from operators.market import nse_tick_size
from schemas.config import CostModel
from schemas.enums import OrderStatus, Product, SignalType
from schemas.events import OrderEvent, ValidatedSignal
from schemas.ids import content_id
from schemas.kite import OrderUpdate
from schemas.ticks import F64, I64, US, ExecTick, OrderLatency, from_us, to_us


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
    placed_us: int
    on_mark: bool  # waits for marks: the account's own (fills there), a LIMIT left resting
    # (ends there: it fills at the ExecTick that crosses its price)
    limit: float | None = None  # LIMIT orders: never filled beyond it
    square_off: bool = False  # the broker's MIS square-off: its charge applies
    since_us: int = -1  # marks count from here (its placing, or the tick it missed)


@dataclass
class PaperState:
    resting: dict[str, Resting] = field(default_factory=dict)  # by order id
    cnc: CncDays = field(default_factory=CncDays)  # the day's CNC legs (same-day: intraday)


class PaperVenue:
    """Pure logic: orders placed at once, filled by the tape (see module doc)."""

    def __init__(
        self,
        slippage_bps: float,
        costs: CostModel,
        tick_sizes: Mapping[int, float | str],
        session_end: Callable[[int], int] | None = None,
        state: PaperState | None = None,
        limit_timeout_us: int = 0,
    ) -> None:
        self.bps, self.costs, self.tick_sizes = slippage_bps, costs, tick_sizes
        self.limit_timeout_us = limit_timeout_us  # 0: a LIMIT rests until the session ends
        self.session_end = session_end  # µs → when that instant's session closes
        self.state = state or PaperState()
        self.bands: Callable[[int], tuple[float, float] | None] = lambda _token: None

    def use_bands(self, bands: Callable[[int], tuple[float, float] | None]) -> None:
        """Circuit bands by instrument: no fill is ever outside them."""
        self.bands = bands

    def send(
        self, v: ValidatedSignal, order_type: str, on_mark: bool = False, square_off: bool = False
    ) -> list[OrderEvent]:
        ts = to_us(v.timestamp)
        limit = v.signal.price if order_type == "LIMIT" and not on_mark else None
        self.state.resting[v.order_id] = Resting(v, ts, on_mark, limit, square_off)
        return [orders.placed(v, None, order_type, v.signal.timestamp)]

    def _ends(self, r: Resting, ts: int) -> tuple[str, int] | None:
        """Why ``r`` can no longer fill at ``ts``, and since when, if so."""
        close = self._close_after(r)
        if close is not None and ts >= close:
            return "CANCELLED: the session ended before a tick executed it", close
        expiry = self._expiry(r)
        if expiry is not None and ts >= expiry:
            return (
                "CANCELLED: limit_timeout_s passed before the price reached the limit",
                expiry - 1,
            )
        return None

    def _fill(self, r: Resting, price: float | None, ts: int) -> list[OrderEvent]:
        """Fill ``r`` in full at ``price`` seen at ``ts``, or cancel it (too late, or None)."""
        del self.state.resting[r.v.order_id]
        v = r.v
        ended = self._ends(r, ts)
        if ended is not None or price is None:
            return [_cancelled(v, *(ended or ("CANCELLED", ts)))]
        charged = self._charges(v, price, ts, r.square_off)
        when, qty = from_us(ts), v.quantity
        return [orders.filled(v, None, qty, price, charged, qty, when, r.square_off)]

    def _charges(self, v: ValidatedSignal, price: float, ts: int, square_off: bool) -> Charges:
        """MIS at intraday rates; CNC across its day (operators.account.costs)."""
        if Product(v.product) is not Product.CNC:
            return charges(self.costs, v.side, v.quantity, price, Product.MIS, False, square_off)
        session = self.session_end(ts) if self.session_end is not None else ts // (86_400 * US)
        key = (session, v.signal.instrument_token)
        return self.state.cnc.charge(self.costs, key, v.side, v.quantity, price)

    def _price(self, r: Resting, tick_price: float) -> float | None:
        """What ``r`` fills at against a tick at ``tick_price`` (None: a LIMIT it misses)."""
        size = self.tick_sizes.get(r.v.signal.instrument_token, 0.05)
        bps = self.bps / 1e4 if SignalType(r.v.side) is SignalType.BUY else -self.bps / 1e4
        tick = nse_tick_size(tick_price * (1 + bps)) if size == "auto" else float(size)
        px = slipped_price(tick_price, r.v.side, self.bps, tick)
        band = self.bands(r.v.signal.instrument_token)
        if band is not None:  # inside the band, on the tick grid
            lo, hi = (
                math.ceil(band[0] / tick - 1e-9) * tick,
                math.floor(band[1] / tick + 1e-9) * tick,
            )
            px = round(min(max(px, lo), hi), 2)
        if r.limit is None:
            return px
        buy = SignalType(r.v.side) is SignalType.BUY
        if (tick_price > r.limit) if buy else (tick_price < r.limit):
            return None
        return min(px, r.limit) if buy else max(px, r.limit)

    def on_exec(self, e: ExecTick) -> list[OrderEvent]:
        """A tick that executes the orders of ``e.signals`` (those the account placed): the
        next tick (a LIMIT it does not reach goes on resting), or one that crosses a
        resting LIMIT from its side (it fills at its limit)."""
        out: list[OrderEvent] = []
        for sid in e.signals:
            r = self.state.resting.get(content_id("ord", sid))
            if r is None or (r.limit is None and r.on_mark):
                continue  # ended, or the account's own (filled at marks)
            if e.cross is not None:
                if r.on_mark and e.cross == SignalType(r.v.side).value and e.ts > r.since_us:
                    out += self._fill(r, r.limit, e.ts)
                continue
            if r.on_mark:
                continue  # already missed its next tick
            price = self._price(r, e.price)
            if price is not None or self._ends(r, e.ts) is not None:
                out += self._fill(r, price, e.ts)
            else:
                r.on_mark, r.since_us = True, e.ts
        return out

    def waiting(self) -> bool:
        """Some order waits for marks (the account's own, or a LIMIT left resting)."""
        return bool(self.state.resting) and any(r.on_mark for r in self.state.resting.values())

    def _first(self, r: Resting, times: I64, tokens: I64, prices: F64) -> int | None:
        """Index of the first mark (time-sorted) that fills or ends waiting order ``r``."""
        mine = (tokens == r.v.signal.instrument_token) & (times > max(r.placed_us, r.since_us))
        hit = mine if r.limit is None else np.zeros(len(times), dtype=bool)  # LIMIT: ends only
        ends = [t for t in (self._close_after(r), self._expiry(r)) if t is not None]
        if ends:
            hit = hit | (mine & (times >= min(ends)))
        found = np.flatnonzero(hit)
        return int(found[0]) if len(found) else None

    def _close_after(self, r: Resting) -> int | None:
        close = self.session_end(r.placed_us) if self.session_end is not None else None
        return close if close is not None and r.placed_us < close else None

    def _expiry(self, r: Resting) -> int | None:
        if r.limit is None or not self.limit_timeout_us:
            return None
        return r.placed_us + self.limit_timeout_us + 1

    def next_fill(self, times: I64, tokens: I64, prices: F64) -> int | None:
        """The earliest mark time at which a waiting order fills or ends (None: none)."""
        got = [self._first(r, times, tokens, prices) for r in self._waiting()]
        found = [int(times[i]) for i in got if i is not None]
        return min(found) if found else None

    def on_marks(self, times: I64, tokens: I64, prices: F64) -> list[OrderEvent]:
        """Waiting orders the marks (time-sorted) fill (the account's own, at their first
        mark) or end (session close, LIMIT timeout)."""
        out: list[OrderEvent] = []
        for r in self._waiting():
            i = self._first(r, times, tokens, prices)
            if i is None:
                continue
            p = float(prices[i])
            out += self._fill(r, self._price(r, p) if r.limit is None else None, int(times[i]))
        return out

    def _waiting(self) -> list[Resting]:
        return sorted(
            (r for r in self.state.resting.values() if r.on_mark),
            key=lambda r: (r.placed_us, r.v.order_id),
        )

    def cancel(self, order_id: str, ts: int, why: str) -> list[OrderEvent]:
        """Cancel a resting order (nothing if it already ended)."""
        r = self.state.resting.pop(order_id, None)
        return [] if r is None else [_cancelled(r.v, why, ts)]

    def expire(self, ts: int) -> list[OrderEvent]:
        """End of the stream: whatever still rests is cancelled."""
        why = "CANCELLED: no tick executed it before the end of the data"
        return [
            _cancelled(self.state.resting.pop(oid).v, why, ts) for oid in sorted(self.state.resting)
        ]

    def knows(self, v: ValidatedSignal) -> bool:
        return False  # the paper book is recovered with the account: a signal is never seen twice

    def update(self, u: OrderUpdate) -> list[OrderEvent]:
        return []  # paper orders have no broker updates

    def venue_state(self) -> Any:
        return self.state

    def drain_latency(self) -> list[OrderLatency]:
        return []  # simulated: no wall-clock latency


def _cancelled(v: ValidatedSignal, why: str, ts: int) -> OrderEvent:
    """The order ended unfilled at ``ts`` (its whole quantity released)."""
    return orders.failed(v, None, OrderStatus.CANCELLED, v.quantity, why, from_us(ts))
