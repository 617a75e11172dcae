"""Paper venue: orders rest on the paper book until the tape executes them, never at the
tick that triggered them.

- A strategy's order fills at its ``ExecTick``: the instrument's first tick after the
  signal's own tick, at or after the signal time plus ``execution.latency_ms``.
- An order the account starts itself (a flatten, a square-off, an exit) fills in full at
  the instrument's first mark after it in a session's hours (its last tick before the next
  mark boundary); a square-off with no such mark before the close fills at the close at
  the instrument's last price.
- Fill price: that tick's price moved against the order by ``slippage_bps``, rounded
  outward to the tick size, never beyond the order's limit.
- Limits: a LIMIT order's price; a MARKET order's market protection (the signal price
  moved ``execution.market_protection`` % against it, as Kite turns it into a limit).
  A tick beyond the limit leaves the order resting: it fills at its limit at a later
  tick that reaches it from its side (an ExecTick with ``cross``). A LIMIT is cancelled
  after ``execution.limit_timeout_s`` (judged at marks).
- Volume: each fill takes at most ``execution.max_participation`` of the volume traded at
  its tick (the ExecTick's ``volume``), in whole lots; the rest fills at later ticks
  (partial fills).
  Brokerage is capped per order across its fills.
- An order whose tick falls outside the session it was placed in is cancelled (what is
  left of it), and so is every order still resting at the end of the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from operators.account import orders
from operators.account.costs import CncDays
from operators.account.prices import Pricer
from operators.accounting import buys, is_cnc
from operators.charges import NO_CHARGES, Charges, charges
from schemas.config import CostModel
from schemas.enums import OrderStatus, Product, SignalType, StateReason
from schemas.events import OrderEvent, ValidatedSignal
from schemas.kite import OrderUpdate
from schemas.ticks import F64, I64, US, ExecTick, OrderLatency, from_us, to_us


@dataclass
class Resting:
    """A paper order waiting for the tape."""

    v: ValidatedSignal
    placed_us: int
    on_mark: bool  # the account's own order: fills in full at its first mark
    limit: float | None = None  # never filled beyond it (LIMIT: its price; MARKET: protection)
    square_off: bool = False  # the broker's MIS square-off: its charge applies
    since_us: int = -1  # it rests from here (the tick it missed), for the marks
    since_seq: int = -1  # that tick's place in the instrument's stream, for the ExecTicks
    is_limit: bool = False  # a LIMIT or stop order: ``limit_timeout_s`` applies
    trigger: float | None = None  # SL / SL-M: inactive until the tape reaches it
    stop_market: bool = False  # SL-M: a protected market order once triggered
    triggered: bool = False
    seen: bool = False  # its first tick came: the marks end it (close, timeout)
    rested: bool = False  # it missed a tick: it fills only where the tape reaches its limit
    filled: int = 0
    turnover: float = 0.0
    charged: Charges = NO_CHARGES  # the whole order's so far (MIS)


@dataclass
class PaperState:
    resting: dict[str, Resting] = field(default_factory=dict)  # by order id
    cnc: CncDays = field(default_factory=CncDays)  # the day's CNC legs (same-day: intraday)
    room: tuple[int, int, int] | None = None  # (token, tick seq, shares its volume has left)


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
        protection: float = 0.0,
        in_session: Callable[[I64], np.ndarray] | None = None,
        lot_sizes: Mapping[int, int] | None = None,
    ) -> None:
        self.costs, self.px = costs, Pricer(slippage_bps, tick_sizes, protection)
        self.lot_sizes = lot_sizes or {}  # by instrument (default 1): volume fills whole lots
        self.in_session = in_session  # µs → in a session's hours (the account's own orders)
        self.limit_timeout_us = limit_timeout_us  # 0: a LIMIT rests until the session ends
        self.session_end = session_end  # µs → when that instant's session closes
        self.state = state or PaperState()

    def use_bands(self, bands: Callable[[int], tuple[float, float] | None]) -> None:
        """Circuit bands by instrument: no fill is ever outside them."""
        self.px.bands = bands

    def send(
        self, v: ValidatedSignal, order_type: str, on_mark: bool = False, square_off: bool = False
    ) -> list[OrderEvent]:
        ts, is_limit = to_us(v.timestamp), order_type == "LIMIT" and not on_mark
        stop = order_type in ("SL", "SL-M") and not on_mark and v.trigger_price is not None
        if stop:  # SL: a limit at its trigger; SL-M: protected from the triggering price
            limit = v.trigger_price if order_type == "SL" else None
        else:
            limit = None if on_mark else v.signal.price if is_limit else self._protected(v)
        r = Resting(v, ts, on_mark, limit, square_off, is_limit=is_limit or stop)
        if stop:
            r.trigger, r.stop_market, r.seen = v.trigger_price, order_type == "SL-M", True
        self.state.resting[v.order_id] = r
        return [orders.placed(v, None, order_type, v.signal.timestamp)]

    def _protected(self, v: ValidatedSignal, price: float | None = None) -> float | None:
        """A MARKET order's protection bound from ``price`` (default: its signal's)."""
        buy = buys(v.side)
        token = v.signal.instrument_token
        return self.px.protected(token, buy, v.signal.price if price is None else price)

    def _price(self, r: Resting, tick_price: float) -> float | None:
        """What ``r`` fills at against a tick at ``tick_price`` (None: it misses)."""
        return self.px.price(*_side(r), tick_price)

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

    def _fill(self, r: Resting, price: float, ts: int, qty: int) -> list[OrderEvent]:
        """``qty`` more of ``r`` filled at ``price`` seen at ``ts``."""
        v = r.v
        r.filled, r.turnover = r.filled + qty, r.turnover + qty * price
        if r.filled >= v.quantity:
            del self.state.resting[v.order_id]
        charged, fee = self._charges(r, qty, price, ts)
        when, sq = from_us(ts), r.square_off
        return [orders.filled(v, None, qty, price, charged, r.filled, when, sq, fee)]

    def _end(self, r: Resting, why: str, ts: int) -> list[OrderEvent]:
        """``r`` ends unfilled (what is left of it)."""
        del self.state.resting[r.v.order_id]
        return [_cancelled(r.v, why, ts, r.v.quantity - r.filled)]

    def _take(self, r: Resting, price: float | None, e: ExecTick) -> list[OrderEvent]:
        """At ``e``: fill what the tick's volume allows at ``price``, or end ``r`` if its
        time is up (or rest it: a price it misses)."""
        ended = self._ends(r, e.ts)
        if ended is not None:
            return self._end(r, *ended)
        if price is None:
            r.rested, r.since_us, r.since_seq = True, e.ts, e.seq
            return []
        qty = self._share(r, e)
        return self._fill(r, price, e.ts, qty) if qty > 0 else []

    def _share(self, r: Resting, e: ExecTick, qty: int | None = None) -> int:
        """What ``r`` may take of ``e`` (at most ``qty``): its orders share the tick's
        volume in the order they were placed; taken from it at once, in whole lots of the
        instrument (less than a lot left: nothing at this tick), so that every fill and
        every position stays a lot multiple."""
        want = r.v.quantity - r.filled if qty is None else qty
        if e.volume < 0:
            return want
        key = (e.instrument_token, e.seq)
        room = self.state.room
        left = room[2] if room is not None and room[:2] == key else e.volume
        take = min(want, left)
        take -= take % self.lot_sizes.get(e.instrument_token, 1)
        self.state.room = (*key, left - take)
        return take

    def _walk(
        self, r: Resting, e: ExecTick, book: tuple[tuple[float, int], ...]
    ) -> list[OrderEvent]:
        """Take the book's levels within the order's limit, best first, a fill per level;
        beyond what they show, the worst of them moved by slippage (never past the limit).
        No level within the limit: the order rests."""
        ended = self._ends(r, e.ts)
        if ended is not None:
            return self._end(r, *ended)
        inside = self.px.usable(*_side(r), e, book)
        if inside is None:
            return self._take(r, self._price(r, e.price), e)
        if not inside:
            r.rested, r.since_us, r.since_seq = True, e.ts, e.seq
            return []
        want, out = self._share(r, e), list[OrderEvent]()
        for price, qty in inside:
            take = min(want, qty)
            if take <= 0:
                break
            out += self._fill(r, price, e.ts, take)
            want -= take
        worse = self._price(r, inside[-1][0])
        if want > 0 and worse is not None:
            out += self._fill(r, worse, e.ts, want)
        return out

    def _charges(self, r: Resting, qty: int, price: float, ts: int) -> tuple[Charges, float]:
        """This fill's charges and fee. MIS: the whole order's so far less what its earlier
        fills paid (brokerage is capped per order); CNC: across its day (costs.CncDays)."""
        v = r.v
        if not is_cnc(v.product):
            whole = charges(self.costs, v.side, 1, r.turnover, Product.MIS, False, r.square_off)
            part, fee = whole.minus(r.charged), round(whole.total - r.charged.total, 2)
            r.charged = whole
            return part, fee
        session = self.session_end(ts) if self.session_end is not None else ts // (86_400 * US)
        key = (session, v.signal.instrument_token)
        part = self.state.cnc.charge(self.costs, key, v.side, qty, price, v.order_id)
        return part, part.total

    def on_exec(self, e: ExecTick) -> list[OrderEvent]:
        """A tick that executes the orders of ``e.signals`` (those the account placed): the
        next tick (and, under a volume cap, the ticks after it) fills what is inside the
        order's limit, else the order rests; a tick that reaches a resting order's limit
        from its side (``cross``) fills it there."""
        out: list[OrderEvent] = []
        for sid in e.signals:
            r = self.state.resting.get(orders.order_id(sid))
            if r is None or r.on_mark:
                continue  # ended, or the account's own (filled at marks)
            if r.trigger is not None and not r.triggered:
                self._trigger(r, e)
                continue
            if e.cross is not None:
                side = SignalType(r.v.side).value
                if r.rested and e.cross == side and e.seq > r.since_seq:
                    out += self._take(r, self.px.at_limit(*_side(r), e.price), e)
            elif not r.rested:
                r.seen = True
                book = e.asks if buys(r.v.side) else e.bids
                out += self._walk(r, e, book) if book else self._take(r, self._price(r, e.price), e)
        return out

    def _trigger(self, r: Resting, e: ExecTick) -> None:
        """A stop order's trigger tick: it becomes active from the next tick (an SL-M a
        market order protected from this price)."""
        if e.cross == f"STOP_{SignalType(r.v.side).value}":
            r.triggered = True
            if r.stop_market:
                r.limit = self._protected(r.v, e.price)

    def waiting(self, until: int) -> bool:
        """Some order may take a mark at or before ``until``: the account's own fill at
        their first; others only end, at the session's close or their timeout."""
        for r in self.state.resting.values():
            if r.on_mark:
                return True
            end = self._ended_by_marks(r) if r.seen else None
            if end is not None and end <= until:
                return True
        return False

    def _first(self, r: Resting, times: I64, tokens: I64, prices: F64) -> int | None:
        """Index of the first mark (time-sorted) that fills or ends waiting order ``r``."""
        mine = (tokens == r.v.signal.instrument_token) & (times > max(r.placed_us, r.since_us))
        hit = np.zeros(len(times), dtype=bool)  # others: end only
        if r.on_mark:  # the account's own fill at marks in a session's hours only
            hit = mine.copy()
            if self.in_session is not None and hit.any():
                hit[hit] = self.in_session(times[hit])
        end = self._ended_by_marks(r)
        if end is not None:
            hit = hit | (mine & (times >= end))
        found = np.flatnonzero(hit)
        return int(found[0]) if len(found) else None

    def _ended_by_marks(self, r: Resting) -> int | None:
        """From when marks end waiting order ``r``: the session's close or its timeout."""
        ends = [t for t in (self._close_after(r), self._expiry(r)) if t is not None]
        return min(ends) if ends else None

    def _close_after(self, r: Resting) -> int | None:
        close = self.session_end(r.placed_us) if self.session_end is not None else None
        return close if close is not None and r.placed_us < close else None

    def _expiry(self, r: Resting) -> int | None:
        if not r.is_limit or not self.limit_timeout_us:
            return None
        return r.placed_us + self.limit_timeout_us + 1

    def next_fill(self, times: I64, tokens: I64, prices: F64) -> int | None:
        """The earliest mark time at which a waiting order fills or ends (None: none)."""
        got = [self._first(r, times, tokens, prices) for r in self._waiting()]
        found = [int(times[i]) for i in got if i is not None]
        return min(found) if found else None

    def on_marks(self, times: I64, tokens: I64, prices: F64) -> list[OrderEvent]:
        """Waiting orders the marks (time-sorted) fill (the account's own, in full at their
        first mark) or end (session close, LIMIT timeout)."""
        out: list[OrderEvent] = []
        for r in self._waiting():
            i = self._first(r, times, tokens, prices)
            if i is None:
                continue
            ts, ended = int(times[i]), self._ends(r, int(times[i]))
            if ended is not None and r.square_off:
                out += self._square_off_unticked(r, ended[1])
                continue
            price = self._price(r, float(prices[i])) if r.on_mark else None
            if ended is not None or price is None:
                out += self._end(r, *(ended or ("CANCELLED", ts)))
            else:
                out += self._fill(r, price, ts, r.v.quantity)
        return out

    def _square_off_unticked(self, r: Resting, at: int) -> list[OrderEvent]:
        """The broker's square-off of an instrument with no tick in the session after the
        cut-off: filled at ``at`` (the close, or the end of the data) at the last price it
        had at the cut-off (its signal's), slipped; nothing if that is outside the band."""
        price = self._price(r, r.v.signal.price)
        if price is None:
            return self._end(r, "CANCELLED: the square-off price is outside the circuit", at)
        return self._fill(r, price, max(at, r.placed_us), r.v.quantity - r.filled)

    def _waiting(self) -> list[Resting]:
        return sorted(
            (r for r in self.state.resting.values() if r.on_mark or r.seen),
            key=lambda r: (r.placed_us, r.v.order_id),
        )

    def cancel(self, order_id: str, ts: int, why: str) -> list[OrderEvent]:
        """Cancel a resting order (nothing if it already ended)."""
        r = self.state.resting.get(order_id)
        return [] if r is None else self._end(r, why, ts)

    simulated = True

    def settle(self, close: int) -> list[OrderEvent]:
        """Square-offs resting from a session that closed at ``close``: filled at it."""
        out: list[OrderEvent] = []
        for oid in sorted(self.state.resting):
            r = self.state.resting[oid]
            if r.square_off and self._close_after(r) == close:
                out += self._square_off_unticked(r, close)
        return out

    def expire(self, ts: int) -> list[OrderEvent]:
        """End of the stream: whatever still rests is cancelled."""
        why = "CANCELLED: no tick executed it before the end of the data"
        out: list[OrderEvent] = []
        for oid in sorted(self.state.resting):
            r = self.state.resting[oid]
            if r.square_off:  # the broker squares off whatever the data holds
                close = self._close_after(r)
                out += self._square_off_unticked(r, ts if close is None else min(ts, close))
            else:
                out += self._end(r, why, ts)
        return out

    def knows(self, v: ValidatedSignal) -> bool:
        return False  # the paper book is recovered with the account: a signal is never seen twice

    def update(self, u: OrderUpdate) -> list[OrderEvent]:
        return []  # paper orders have no broker updates

    def venue_state(self) -> Any:
        return self.state

    def drain_latency(self) -> list[OrderLatency]:
        return []  # simulated: no wall-clock latency

    def drain_alerts(self) -> list[tuple[StateReason, str]]:
        return []  # the paper venue never refuses a session

    def collect(self, final: bool = False) -> list[OrderEvent]:
        return []  # placed at once

    def reconciled(self) -> list[OrderEvent]:
        return []  # nothing to reconcile with


def _cancelled(v: ValidatedSignal, why: str, ts: int, unfilled: int) -> OrderEvent:
    """The order ended at ``ts`` with ``unfilled`` left (released)."""
    return orders.failed(v, None, OrderStatus.CANCELLED, unfilled, why, from_us(ts))


def _side(r: Resting) -> tuple[int, bool, float | None]:
    """``r``'s instrument, whether it buys, and its limit (the Pricer's arguments)."""
    return r.v.signal.instrument_token, buys(r.v.side), r.limit
