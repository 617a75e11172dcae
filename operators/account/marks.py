"""Marks in runs: where, within a run of mark boundaries, the day's loss may reach the limit.

A run holds many boundaries (entries sorted by time). Marking them one by one would cost a
Python step per boundary and instrument; instead the net PnL after each boundary is
approximated in one vectorised pass (a running sum of quantity x price change), and only the
boundaries whose approximate loss comes within ``EPS`` of the limit are checked exactly by the
account, in order. The exact check decides, so the outcome never depends on how boundaries
were grouped into runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from operators.accounting import F64, I64, Book
from schemas.ticks import US, MarkSet, to_us

PRUNE_US = 60 * US

EPS = 1e-3  # rupees: far above float drift, far below any limit


def group_ends(times: I64) -> I64:
    """Exclusive end index of each boundary's group of entries."""
    return np.concatenate((np.flatnonzero(np.diff(times)) + 1, [len(times)])).astype(np.int64)


def may_breach(
    book: Book,
    m: MarkSet,
    net_now: float,
    day_start: float,
    limit: float,
) -> bool:
    """Cheap bound on a run's summary: an instrument's mark stays within its high and low
    in the run, so from its current mark it moves by at most the larger distance to
    either, and the book cannot lose more than Σ |quantity| x that move over the run."""
    room = limit - EPS - (day_start - net_now)
    if room <= 0:
        return True
    slots, hit = book.slots_for(m.tokens, m.slots, m.universe)
    qty, start = book.quantities(slots), book.marks(slots)
    if hit is not None:
        qty = np.where(hit, qty, 0.0)
    move = np.maximum(m.high - start, start - m.low)
    return float(np.dot(np.abs(qty), move)) >= room


def loss_candidates(
    book: Book, times: I64, tokens: I64, prices: F64, net_now: float, day_start: float, limit: float
) -> I64:
    """Group ends (exclusive) after which the day's loss may be >= ``limit``; entries sorted
    by time."""
    none = np.zeros(0, dtype=np.int64)
    slots, hit = book.slots_of(tokens)
    qty = np.where(hit, book.quantities(slots), 0.0)
    held = np.flatnonzero(qty != 0)
    if not len(held):
        return none
    s, p = slots[held], prices[held]
    order = np.argsort(s, kind="stable")
    ss, ps = s[order], p[order]
    first = np.concatenate(([True], ss[1:] != ss[:-1]))
    prev = np.concatenate(([0.0], ps[:-1]))
    prev[first] = book.marks(ss[first])
    delta = np.zeros(len(times))
    delta[held[order]] = book.quantities(ss) * (ps - prev)
    ends = group_ends(times)
    loss = day_start - (net_now + np.cumsum(delta)[ends - 1])
    return ends[loss >= limit - EPS]


class MarkRuns:
    """The account's handling of mark runs (a mixin of operators.account.account.Account,
    whose state, trading control, risk, inbox and verdicts it uses)."""

    state: Any
    trading: Any
    risk: Any
    inbox: Any
    setup: Any
    venue: Any
    _pruned: int

    def _net(self) -> float:
        raise NotImplementedError  # the Account's

    def _apply(self, events: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _verdict(self, v: Any, ts: int, why: str | None = None) -> list[Any]:
        raise NotImplementedError

    def _commands(self, ts: int, final: bool = False) -> list[Any]:
        raise NotImplementedError

    def reflatten(self, ts: int) -> list[Any]:
        raise NotImplementedError

    def _next_command(self) -> int | None:
        """Event time of the next file command, if the inbox can tell (live ones cannot)."""
        peek = getattr(self.inbox, "peek", None)
        return peek(self.state.control_cursor) if peek is not None else None

    def _marks(self, m: MarkSet) -> list[Any]:
        """A run of mark boundaries. The day rolls at its first boundary; the loss limit
        holds after every boundary: a cheap bound on the run's summary, and an exact scan
        only where the bound could be reached, a command or a new day falls inside."""
        book, status = self.state.book, self.trading.status
        out = self._verdict(self.trading.on_time(m.first, self._net()), m.first)
        nxt = self._next_command()
        limit = self.trading.risk.max_daily_loss
        if (
            (nxt is not None and nxt <= m.until)
            or self.setup.session.day_end(m.first) <= m.until
            or (
                not status.loss_breached
                and may_breach(book.total.book, m, self._net(), status.day_start_pnl, limit)
            )
        ):
            out += self._by_time(*m.entries.by_time())
        else:
            book.mark_many(m.tokens, m.last, m.slots, m.universe)
        out += self._executed(m)
        self._after_marks(m)
        return out + self.reflatten(m.until)

    def _executed(self, m: MarkSet) -> list[Any]:
        """The account's own orders that the run executes; an instrument marked again after
        its fill keeps that later mark."""
        done = self._apply(self.venue.on_marks(m))
        for e in done:
            times, prices = m.of_token(e.instrument_token)
            if len(times) and hasattr(e, "fill_price") and int(times[-1]) > to_us(e.timestamp):
                self.state.book.mark(e.instrument_token, float(prices[-1]))
        return done

    def _after_marks(self, m: MarkSet) -> None:
        last = m.until
        self.state.book.last_ts = max(self.state.book.last_ts or last, last)
        if last // PRUNE_US != self._pruned:  # order-rate windows: about once a minute
            self._pruned = last // PRUNE_US
            self.risk.rates.prune(last)

    def _by_time(self, times: I64, tokens: I64, prices: F64) -> list[Any]:
        """Every mark in time order, cut at operator commands and trading days, scanned
        exactly."""
        out: list[Any] = []
        while len(times):
            nxt = self._next_command()
            cut = self.setup.session.day_end(int(times[0]))
            cut = cut if nxt is None else min(cut, nxt)
            k = int(np.searchsorted(times, cut, "left"))
            out += self._scan(times[:k], tokens[:k], prices[:k])
            if k == len(times):
                break
            if nxt is not None and cut == nxt:
                out += self._commands(nxt)
            at = int(times[k])
            out += self._verdict(self.trading.on_time(at, self._net()), at)  # a new day rolls
            times, tokens, prices = times[k:], tokens[k:], prices[k:]
        return out

    def _scan(self, times: I64, tokens: I64, prices: F64) -> list[Any]:
        """Time-sorted marks, checked exactly at each boundary the vectorised pass flags."""
        book, status = self.state.book, self.trading.status
        out: list[Any] = []
        limit, k = self.trading.risk.max_daily_loss, 0
        if status.loss_breached:
            book.mark_many(tokens, prices)
            return out
        found = loss_candidates(
            book.total.book, times, tokens, prices, self._net(), status.day_start_pnl, limit
        )
        for end in found.tolist():
            book.mark_many(tokens[k:end], prices[k:end])
            k, at = end, int(times[end - 1])
            out += self._verdict(self.trading.on_time(at, self._net()), at)
            if status.loss_breached:
                break
        book.mark_many(tokens[k:], prices[k:])
        return out
