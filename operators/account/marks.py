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
from schemas.ticks import US, MarkSet

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
    return book.swing(slots, hit, m.high, m.low) >= room


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
    exits: Any
    _pruned: int

    def _net(self) -> float:
        raise NotImplementedError  # the Account's

    def _apply(self, events: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _verdict(self, v: Any, ts: int, why: str | None = None) -> list[Any]:
        raise NotImplementedError

    def _judge(self, ts: int) -> list[Any]:
        """The trading day and the loss limit at ``ts``, against the book as it is now."""
        return self._verdict(self.trading.on_time(ts, self._net()), ts)

    def _commands(self, ts: int, final: bool = False) -> list[Any]:
        raise NotImplementedError

    def reflatten(self, ts: int) -> list[Any]:
        raise NotImplementedError

    def square_off_due(self, ts: int) -> int | None:
        raise NotImplementedError

    def square_off(self, cut: int, at: int | None = None) -> list[Any]:
        raise NotImplementedError

    def exit_positions(self, at: int, found: list[Any]) -> list[Any]:
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
        out = self._judge(m.first)
        cut = self.setup.session.cutoff(m.first)
        if cut is not None and self.state.squared_off < cut < m.first:  # passed between runs
            out += self.square_off(cut)
        nxt = self._next_command()
        limit = self.trading.risk.max_daily_loss
        if (
            (nxt is not None and nxt <= m.until)
            or self.setup.session.day_end(m.first) <= m.until
            or (cut is not None and self.state.squared_off < cut and m.first <= cut <= m.until)
            or self._retry_due(m.first)
            or self.venue.waiting(m.until)
            or self.exits.may_trigger(m.tokens, m.high, m.low)
            or (
                not status.loss_breached
                and may_breach(book.total.book, m, self._net(), status.day_start_pnl, limit)
            )
        ):
            out += self._by_time(*m.entries.by_time())
        else:
            book.mark_many(m.tokens, m.last, m.slots, m.universe)
            self.exits.observe(m.tokens, m.high, m.low)
        self._after_marks(m)
        return out

    def _retry_due(self, t: int) -> bool:
        """A close to send again at mark time ``t``, as at every mark until none is left
        (never per run, whose cuts vary): a flatten in progress left a position (a close
        failed, or an open order filled since), or today's MIS square-off did; while the
        session is open."""
        st = self.state
        due = st.flattening is not None and t > st.flattened_at and st.book.close_plan()
        if not due and self.square_off_due(t) is None:
            return False
        return self.setup.session.is_open(t)

    def _retry(self, at: int) -> list[Any]:
        """The closes ``_retry_due`` found, unless the broker's order caps are reached (the
        next mark tries again). The flatten's round goes first every other round (its count
        says which), so a square-off's closes cannot take every place under the caps."""
        if self.risk.rates.breach(at) is not None:
            return []
        flatten_first = self.state.flattens % 2 == 1
        out = self.reflatten(at) if flatten_first else []
        again = self.square_off_due(at)
        out += self.square_off(again, at) if again is not None else []
        return out if flatten_first else out + self.reflatten(at)

    def _after_marks(self, m: MarkSet) -> None:
        last = m.until
        self.state.book.last_ts = max(self.state.book.last_ts or last, last)
        if last // PRUNE_US != self._pruned:  # order-rate windows: about once a minute
            self._pruned = last // PRUNE_US
            self.risk.rates.prune(last)

    def _by_time(self, times: I64, tokens: I64, prices: F64) -> list[Any]:
        """Every mark in time order, scanned exactly, cut wherever something happens at a
        time: the MIS cut-off (square-off), a waiting order's fill, an operator command, a
        new trading day. Marks at the cut-off or a fill's time come before it."""
        out: list[Any] = []
        while len(times):
            at, what, exiting = self._next_event(times, tokens, prices)
            right = what in ("mis", "fill", "exit", "retry")  # marks at that time come first
            k = int(np.searchsorted(times, at, "right" if right else "left"))
            done, took = self._scan(times[:k], tokens[:k], prices[:k])
            out += done
            if took < k:  # a breach: what follows is judged again (its flatten may fill)
                times, tokens, prices = times[took:], tokens[took:], prices[took:]
                continue
            if what == "mis":
                if k == len(times) and int(times[-1]) < at:
                    break  # the run ends before the cut-off
                out += self.square_off(at)  # sets squared_off: never again this day
                out += self.exit_positions(at, exiting)  # exits due at the same mark
            elif what == "fill":
                out += self._apply(self.venue.on_marks(times[:k], tokens[:k], prices[:k]))
                out += self._judge(at)  # its fees
                out += self.exit_positions(at, exiting)  # exits due at the same mark
            elif what == "exit":
                out += self.exit_positions(at, exiting)
            elif what == "retry":
                out += self._retry(at)
            else:
                if k == len(times):
                    break
                if what == "command":
                    out += self._commands(at)
                t = int(times[k])
                out += self._judge(t)  # a new day rolls
            times, tokens, prices = times[k:], tokens[k:], prices[k:]
        return out

    def _next_event(self, times: I64, tokens: I64, prices: F64) -> tuple[int, str, list[Any]]:
        """The first of: the MIS cut-off still to square off, a waiting order's fill, a
        strategy exit (with the exits it triggers), the next operator command, the end of the
        first mark's trading day (ties in that order)."""
        t0 = int(times[0])
        day = self.setup.session.day_end(t0)
        found = [(day, 5, "day")]
        mis = self.setup.session.cutoff(t0)
        if mis is not None and self.state.squared_off < mis < day:
            found.append((mis, 0, "mis"))
        fill = self.venue.next_fill(times, tokens, prices)
        if fill is not None:
            found.append((fill, 1, "fill"))
        exit_at, exiting = self.exits.triggers(times, tokens, prices)
        if exit_at >= 0:
            found.append((exit_at, 2, "exit"))
        nxt = self._next_command()
        if nxt is not None and nxt < day:
            found.append((nxt, 4, "command"))
        if self._retry_due(t0):
            found.append((t0, 3, "retry"))
        at, _, what = min(found)
        return at, what, exiting if exit_at == at else []

    def _scan(self, times: I64, tokens: I64, prices: F64) -> tuple[list[Any], int]:
        """Time-sorted marks, checked exactly at each boundary the vectorised pass flags;
        stops after a breach (its flatten may wait for the marks after it). Returns what it
        did and how many marks it took."""
        book, status = self.state.book, self.trading.status
        out: list[Any] = []
        limit, k = self.trading.risk.max_daily_loss, 0
        if status.loss_breached:
            book.mark_many(tokens, prices)
            self.exits.observe(tokens, prices, prices)
            return out, len(times)
        found = loss_candidates(
            book.total.book, times, tokens, prices, self._net(), status.day_start_pnl, limit
        )
        for end in found.tolist():
            book.mark_many(tokens[k:end], prices[k:end])
            k, at = end, int(times[end - 1])
            out += self._judge(at)
            if status.loss_breached:
                self.exits.observe(tokens[:k], prices[:k], prices[:k])
                return out, k
        book.mark_many(tokens[k:], prices[k:])
        self.exits.observe(tokens, prices, prices)
        return out, len(times)
