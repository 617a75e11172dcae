"""Per-broker event-time order: merge the outputs of every instrument key into one stream.

Each instrument key reports a watermark with its output. Items are released, sorted by
(time, kind, instrument, id), once every instrument's watermark has passed them; so the
per-broker stages see the same sequence whatever the worker count or batch boundaries.
Clock items mark the first health-window and snapshot boundary crossed by the stream.
Tick counts are summed per health window over all instruments and released as one
TickCount (instrument 0) once the window is complete. Marks are released as MarkSet runs:
the marks between two released items (and within one health window), summarised per
instrument.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key
from schemas.ticks import (
    F64,
    I64,
    BrokerItem,
    Clock,
    ExecTick,
    MarkEntries,
    MarkSet,
    StrategyFailed,
    StrategyOutput,
    TickCount,
    to_us,
    universe_id,
)

SortKey = tuple[int, int, int, str]
Queued = tuple[SortKey, int, "BrokerItem"]
RunAt = tuple[int, MarkSet]  # a mark run and the index of the released item it precedes
_NEVER = -(2**62)
BLOCK_MARKS = 1 << 17  # marks run at once in a long release (EventTimeOrder._blocks)
BLOCK_WINDOWS = 16  # health windows: the least a part of a long release spans
COUNT_CHUNKS = 256  # pending tick-count chunks summed into one past this (a lagging instrument)


def _first(chunk: tuple[int, I64, F64]) -> int:
    """A pending mark chunk's first time."""
    return int(chunk[1][0])


def _summed(chunks: list[tuple[I64, I64, I64]]) -> tuple[I64, I64, I64]:
    """Tick-count chunks as one: each window once, ascending, its counts summed and its
    last tick time the latest."""
    win, count, last = (np.concatenate(cols) for cols in zip(*chunks, strict=True))
    wins, at = np.unique(win, return_inverse=True)
    sums = np.zeros(len(wins), dtype=np.int64)
    lasts = np.full(len(wins), np.iinfo(np.int64).min, dtype=np.int64)
    np.add.at(sums, at, count)
    np.maximum.at(lasts, at, last)
    return wins, sums, lasts


def sort_key(item: BrokerItem) -> SortKey:
    if isinstance(item, MarkSet):
        return (item.ts, 0, 0, "")
    if isinstance(item, Clock):
        return (item.ts, 1, 0, item.grid)
    if isinstance(item, TickCount):
        return (item.ts, 2, item.instrument_token, str(item.count))
    if isinstance(item, ExecTick):  # after the signals of the same instant (it may be theirs)
        return (item.ts, 4, item.instrument_token, "")
    if isinstance(item, StrategyFailed):
        return (item.ts, 5, item.instrument_token, item.strategy_id)
    return (to_us(item.timestamp), 3, item.instrument_token, f"{item.strategy_id}/{item.signal_id}")


@dataclass
class OrderState:
    watermarks: dict[int, int]
    pending: list[Queued] = field(default_factory=list)
    next_boundary: dict[str, int] = field(default_factory=dict)
    pushed: int = 0
    counts: list[tuple[I64, I64, I64]] = field(default_factory=list)  # (window, count, last)
    marks: list[tuple[int, I64, F64]] = field(default_factory=list)  # (token, ts, prices)
    heard: dict[int, float] = field(default_factory=dict)  # live: wall time a watermark moved


class EventTimeOrder:
    """Pure logic of the ordering stage for one broker."""

    def __init__(
        self,
        tokens: Iterable[int],
        grids_us: dict[str, int],
        state: OrderState | None = None,
        max_delay_us: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.grids = grids_us
        self.universe = np.array(sorted(set(tokens)), dtype=np.int64)  # the books' slots
        self.universe_id = universe_id(self.universe)
        self.max_delay_s = max_delay_us / 1e6 if max_delay_us is not None else None
        self.clock = clock
        self.state = state or OrderState(watermarks={t: _NEVER for t in self.universe.tolist()})
        self.state.marks.sort(key=_first)  # kept in order of first mark (see _due_marks)
        self.started = clock()
        self._soonest = _NEVER  # the earliest next boundary (known once every grid has one)
        self._counts_low = min((int(c[0].min()) for c in self.state.counts), default=2**62)
        self.state.heard.clear()  # a resume starts every instrument's silence afresh

    def _enqueue(self, item: BrokerItem) -> None:
        st = self.state
        heapq.heappush(st.pending, (sort_key(item), st.pushed, item))
        st.pushed += 1

    def push(self, out: StrategyOutput) -> None:
        st = self.state
        for item in out.signals:
            self._enqueue(item)
        for failure in out.failures:
            self._enqueue(failure)
        for ex in out.execs:
            self._enqueue(ex)
        if len(out.marks):
            m = out.marks
            bisect.insort(st.marks, (out.instrument_token, m.ts, m.price), key=_first)
        if len(out.counts.window):
            st.counts.append((out.counts.window, out.counts.count, out.counts.last_ts))
            self._counts_low = min(self._counts_low, int(out.counts.window.min()))
            if len(st.counts) > COUNT_CHUNKS:
                st.counts = [_summed(st.counts)]
        tok = out.instrument_token
        if out.watermark > st.watermarks.get(tok, _NEVER):
            st.watermarks[tok] = out.watermark
            if self.max_delay_s is not None:
                st.heard[tok] = self.clock()

    def _clocks_before(self, key: SortKey) -> list[Clock]:
        if key[0] < self._soonest:  # no boundary crossed yet (the common case)
            return []
        out = []
        for grid, length in self.grids.items():
            nxt = self.state.next_boundary.get(grid)
            if nxt is None:
                self.state.next_boundary[grid] = (key[0] // length + 1) * length
            elif key > (nxt, 1, 0, grid):
                out.append(Clock(nxt, grid))
                self.state.next_boundary[grid] = max(nxt, key[0] // length * length) + length
        out.sort(key=sort_key)
        ahead = self.state.next_boundary
        self._soonest = min(ahead.values()) if len(ahead) == len(self.grids) else _NEVER
        return out

    def on_item(self, out: StrategyOutput) -> list[list[BrokerItem]]:
        self.push(out)
        released = self.release()
        return [released] if released else []

    def on_eof(self) -> list[list[BrokerItem]]:
        released = self.release(final=True)
        return [released] if released else []

    def _limit(self) -> int:
        """Release up to the least watermark; live, instruments silent for ``max_delay_s`` of
        wall time do not count (their late ticks are then released slightly out of order)."""
        wms = self.state.watermarks
        if self.max_delay_s is None:
            return min(wms.values(), default=_NEVER)
        quiet_before = self.clock() - self.max_delay_s
        heard = self.state.heard
        active = [wm for t, wm in wms.items() if heard.get(t, self.started) > quiet_before]
        return min(active) if active else max(wms.values(), default=_NEVER) + 1

    def next_wake(self) -> datetime | None:
        """Live: when the next instrument turns quiet, if anything is held back."""
        st = self.state
        if self.max_delay_s is None or not (st.pending or st.marks or st.counts):
            return None
        now, heard = self.clock(), st.heard
        times = [heard.get(t, self.started) + self.max_delay_s for t in st.watermarks]
        due = min((x for x in times if x > now), default=None)
        if due is None:  # every instrument is quiet already: only new items release more
            return None
        return datetime.fromtimestamp(due, tz=timezone.utc)

    def on_stop(self) -> list[list[BrokerItem]]:
        """A stop: release only what every instrument has passed; the rest stays queued
        in the state a resume starts from, as if the run had not stopped."""
        return self.on_wake()

    def on_wake(self) -> list[list[BrokerItem]]:
        released = self.release()
        return [released] if released else []

    def _due_chunks(self, limit: int | None) -> int:
        """How many pending mark chunks start below ``limit`` (all if None): they come
        first, the chunks being kept in order of their first mark."""
        marks = self.state.marks
        return len(marks) if limit is None else bisect.bisect_left(marks, limit, key=_first)

    def _due_marks(self, limit: int | None) -> tuple[I64, I64, F64]:
        """Pending marks below ``limit`` (all if None): grouped by instrument (tokens
        ascending), each instrument's in time order. No global sort (see _mark_runs).
        Pending chunks are kept in order of their first mark, so only those that start
        below ``limit`` are touched (a release in many blocks stays linear)."""
        st = self.state
        empty = np.zeros(0, dtype=np.int64)
        k = self._due_chunks(limit)
        if not k:
            return empty, empty, np.zeros(0)  # nothing due: nothing touched
        taken, st.marks = st.marks[:k], st.marks[k:]
        due: list[tuple[int, I64, F64]] = []
        for tok, ts, px in taken:
            n = len(ts) if limit is None or ts[-1] < limit else int(np.searchsorted(ts, limit))
            due.append((tok, ts[:n], px[:n]))
            if n < len(ts):
                bisect.insort(st.marks, (tok, ts[n:], px[n:]), key=_first)
        due.sort(key=lambda c: (c[0], int(c[1][0])))
        sizes = np.fromiter((len(c[1]) for c in due), dtype=np.int64, count=len(due))
        tokens = np.repeat(np.array([c[0] for c in due], dtype=np.int64), sizes)
        return np.concatenate([c[1] for c in due]), tokens, np.concatenate([c[2] for c in due])

    def _mark_runs(self, times: I64, tok: I64, px: F64, items: list[Queued]) -> list[RunAt]:
        """The due marks (grouped by instrument, each in time order) as MarkSet runs, each
        with the index of the released item it precedes: marks at or before an item's time
        come first, and runs are cut at every health window (the finest clock grid) so
        that no Clock falls inside one. Each (run, instrument) stretch is contiguous, so a
        run is summarised without any sort."""
        if not len(times):
            return []
        item_ts = np.array([key[0] for key, _, _ in items], dtype=np.int64)
        newtok = tok[1:] != tok[:-1]
        firsts_of = np.concatenate(([0], np.flatnonzero(newtok) + 1))  # each token's first mark
        seg = np.searchsorted(item_ts, times, side="left").astype(np.int64, copy=False)
        epoch = (times - 1) // self.grids["health"]  # a mark on a boundary precedes its Clock
        epoch -= epoch.min()  # counted from the release's first: below 2**40 whatever the grid
        run = (seg << 40) + epoch
        cut = np.flatnonzero(newtok | (run[1:] != run[:-1])) + 1
        starts = np.concatenate((np.zeros(1, dtype=np.int64), cut))
        ends = np.concatenate((cut, np.full(1, len(times), dtype=np.int64)))
        high, low = np.maximum.reduceat(px, starts), np.minimum.reduceat(px, starts)
        group = np.concatenate(([0], np.cumsum(newtok[cut - 1])))  # each stretch's token
        slots = np.searchsorted(self.universe, tok[firsts_of])[group]  # its book slot
        order = np.argsort(run[starts], kind="stable")  # stretches by run, tokens ascending
        starts, ends, high, low = starts[order], ends[order], high[order], low[order]
        runs, slots = run[starts], slots[order]
        last, first_t, last_t = px[ends - 1], times[starts], times[ends - 1]
        heads = np.concatenate((np.zeros(1, dtype=np.int64), np.flatnonzero(np.diff(runs)) + 1))
        firsts = np.minimum.reduceat(first_t, heads).tolist()
        untils = np.maximum.reduceat(last_t, heads).tolist()
        bounds = [*heads.tolist(), len(runs)]
        toks, uid = tok[starts], self.universe_id
        out: list[RunAt] = []
        for r, s in enumerate((runs[heads] >> 40).tolist()):
            a, b = bounds[r], bounds[r + 1]
            entries = MarkEntries(times, tok, px, (starts[a:b], ends[a:b]))
            summary = (toks[a:b], last[a:b], high[a:b], low[a:b])
            out.append((s, MarkSet(firsts[r], untils[r], *summary, entries, slots[a:b], uid)))
        return out

    def release(self, final: bool = False) -> list[BrokerItem]:
        """Items every instrument has passed (all of them if ``final``), in order, with the
        clocks they cross and the mark runs before them."""
        st = self.state
        limit = None if final else self._limit()
        for last, count in self._window_counts(limit):
            self._enqueue(TickCount(last, 0, count))
        out: list[BrokerItem] = []
        for until in self._blocks(limit):
            times, tok, px = self._due_marks(until)
            items: list[Queued] = []
            while st.pending and (until is None or st.pending[0][0][0] < until):
                items.append(heapq.heappop(st.pending))
            self._emit(out, items, self._mark_runs(times, tok, px, items))
        return out

    def _window_counts(self, limit: int | None) -> list[tuple[int, int]]:
        """(last tick time, count) of each health window every instrument has passed (all
        if None), windows ascending, summed over the pending chunks; the rest stay pending."""
        chunks = self.state.counts
        end = None if limit is None else limit // self.grids["health"]  # windows below: done
        if not chunks or (end is not None and self._counts_low >= end):
            return []
        win, count, last = _summed(chunks)
        k = len(win) if end is None else int(np.searchsorted(win, end))
        self.state.counts = [(win[k:], count[k:], last[k:])] if k < len(win) else []
        self._counts_low = int(win[k]) if k < len(win) else 2**62
        return list(zip(last[:k].tolist(), count[:k].tolist(), strict=True))

    def _blocks(self, limit: int | None) -> Iterable[int | None]:
        """Release limits up to ``limit``, so that the marks of a long stretch are run in
        parts of about BLOCK_MARKS marks that stay in cache (at least BLOCK_WINDOWS health
        windows long: a part has fixed costs). Each lies just after a health boundary: no
        mark run spans two (runs are cut there), so the output is the same as at once."""
        st, width = self.state, self.grids["health"]
        due = st.marks[: self._due_chunks(limit)]  # those a long release would run
        marks = sum(len(c[1]) for c in due)
        if marks <= BLOCK_MARKS:
            yield limit
            return
        start = _first(due[0])
        end = max(int(c[1][-1]) for c in due) if limit is None else limit
        windows = (end - start) // width + 1
        size = width * max(BLOCK_WINDOWS, -(-windows * BLOCK_MARKS // marks))
        while True:
            first = min(_first(st.marks[0]) if st.marks else 2**62,
                        st.pending[0][0][0] if st.pending else 2**62)  # fmt: skip
            if first >= 2**62:
                break
            until = (first - 1) // size * size + size + 1  # after the block's last boundary
            if limit is not None and until >= limit:
                break
            yield until
        yield limit

    def _emit(self, out: list[BrokerItem], items: list[Queued], runs: list[RunAt]) -> None:
        r = 0
        for s in range(len(items) + 1):
            while r < len(runs) and runs[r][0] == s:
                out.extend(self._clocks_before((runs[r][1].first, 0, 0, "")))
                out.append(runs[r][1])
                r += 1
            if s < len(items):
                key, _, item = items[s]
                out.extend(self._clocks_before(key))
                out.append(item)


def order_by_event_time(
    step_id: str,
    up: Stream[tuple[str, StrategyOutput]],
    tokens: Iterable[int],
    grids_us: dict[str, int],
    max_delay_us: int | None = None,
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, list[BrokerItem]]]:
    """Keyed by broker: release strategy outputs in event-time order (see module doc), as
    lists of items. ``max_delay_us`` (live sources): an instrument silent that long in WALL
    time stops holding the others back; its late ticks are released at once, slightly out of
    order. Replay (None) keeps exact event-time order."""
    toks = tuple(tokens)
    return stateful_by_key(
        step_id,
        up,
        lambda _key, resume: EventTimeOrder(toks, grids_us, resume, max_delay_us),
        stopping=stopping,
    )
