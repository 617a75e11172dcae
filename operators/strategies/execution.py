"""The ticks that execute a key's signals in a simulated venue, found where the ticks are
(the strategy runner), never the tick that signalled:

- ``next``: the instrument's first tick after the signal's own, at or after the signal time
  plus the execution latency (a MARKET order fills there if the price is inside its market
  protection; a LIMIT if it is marketable);
- for a LIMIT strategy, also the ticks at or below the signal price (``BUY``) and at or
  above it (``SELL``): where a resting buy or sell limit at that price fills. The runner
  does not know the account's side, so it looks for both. A MARKET order whose ``next``
  tick is beyond its protection rests at the protected price: that price is searched then.

With ``participation`` set, an order fills at most that share of the volume traded at each
tick, so a search goes on past its first tick until the ticks found could fill its largest
possible order (the strategy's new target plus its previous one). Searches end when done,
``max_wait_us`` after the signal, or (the oldest first) beyond ``MAX_CROSSING`` per key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from schemas.ticks import F64, I64, ExecTick, TickBatch

MAX_CROSSING = 128  # crossing searches a key keeps at most (two per LIMIT signal)


@dataclass
class Search:
    due: int  # µs: not before
    signal_id: str
    after: int  # in the batch it was made in: the first index allowed (carried: 0)
    kind: str  # "next", "BUY", "SELL", "STOP_BUY", "STOP_SELL"
    limit: float = 0.0
    need: float = 0.0  # shares of volume still to find (participation); 0: one tick
    cap: float = 0.0  # "next" of a MARKET order: its protection as a fraction (0: none);
    # a stop: that of the market order it becomes (SL-M), -1 for a limit (SL)
    started: bool = False  # "next": its first tick was found (later ones continue it)
    protected: bool = False  # "next" of a MARKET order: a tick beyond its protection seen
    budget: float = 0.0  # its ``need`` when made (what a later resting search starts from)


@dataclass
class ExecState:
    searching: list[Search] = field(default_factory=list)
    volume: tuple[int, int] = (-1, -1)  # the last two cumulative counts known (-1: none)
    last_ts: int | None = None  # the key's last tick (a new trading day restarts volume)
    targets: dict[str, int] = field(default_factory=dict)  # each strategy's last target


@dataclass(frozen=True)
class ExecRules:
    """How a venue executes: latency, how long a search lasts, market protection (a
    fraction of the signal price) and the share of traded volume an order may take."""

    latency_us: int
    max_wait_us: int
    protection: float = 0.0
    participation: float | None = None
    day_end: Callable[[int], int] | None = None  # µs → the end of that instant's trading day
    lot: int = 1  # the instrument's lot size: an order takes whole lots of a tick


class ExecFinder:
    """Pure logic over ``ExecState`` for one (broker, instrument) key."""

    def __init__(self, token: int, rules: ExecRules, state: ExecState) -> None:
        self.token, self.rules, self.state = token, rules, state
        self._found: dict[tuple[int, str], list[str]] = {}
        self._day_end = DayEnd(rules.day_end) if rules.day_end is not None else None

    def add(
        self,
        b: TickBatch,
        i: int,
        signal_id: str,
        strategy: str,
        target: int,
        order_type: str = "MARKET",
        triggers: tuple[float, float] | None = None,
    ) -> None:
        """Signal ``signal_id`` of ``strategy`` (to ``target``) fired at tick ``i`` of
        ``b``; an SL / SL-M order waits for its trigger (``triggers``: a buy's, a sell's)."""
        r = self.rules
        due, price = int(b.ts[i]) + r.latency_us, float(b.price[i])
        need = 0.0
        if r.participation is not None:
            need = float(abs(target) + abs(self.state.targets.get(strategy, 0)))
        self.state.targets[strategy] = target
        add = self.state.searching.append
        if triggers is not None:  # "STOP_BUY" / "STOP_SELL": then a market or a limit order
            cap = r.protection if order_type == "SL-M" else -1.0
            add(Search(due, signal_id, i + 1, "STOP_BUY", triggers[0], need, cap))
            add(Search(due, signal_id, i + 1, "STOP_SELL", triggers[1], need, cap))
            return
        limit = order_type == "LIMIT"
        cap = 0.0 if limit else r.protection
        add(Search(due, signal_id, i + 1, "next", price, need, cap, budget=need))
        if limit:
            for side in ("BUY", "SELL"):
                add(Search(due, signal_id, i + 1, side, price, need))

    def found(self, b: TickBatch, seen: int = 0) -> tuple[ExecTick, ...]:
        """ExecTicks in ``b`` (whose first tick is the key's ``seen``-th) for every search
        it satisfies; the others wait (or lapse)."""
        allowed = self._allowed(b)
        self._seen = seen
        self._found = {}
        left: list[Search] = []
        pending = list(self.state.searching)
        while pending:
            s = pending.pop(0)
            done, more = self._search(b, s, allowed)
            pending += more
            s.after = 0  # carried to the next batch: from its start
            wait = s.due + self.rules.max_wait_us >= b.watermark
            if not done and (wait or (s.kind == "next" and not s.started)):
                left.append(s)
        crossing = [x for x in left if x.kind != "next"]
        if len(crossing) > MAX_CROSSING:  # the oldest lapse first (their orders end at the close)
            lapsed = {id(x) for x in crossing[: len(crossing) - MAX_CROSSING]}
            left = [x for x in left if id(x) not in lapsed]
        self.state.searching = left
        return tuple(
            self._exec(b, j, kind, ids, allowed)
            for (j, kind), ids in sorted(self._found.items(), key=_next_first)
        )

    def _exec(
        self, b: TickBatch, j: int, kind: str, ids: list[str], allowed: F64 | None
    ) -> ExecTick:
        share = math.inf if allowed is None else float(allowed[j])
        vol = int(share) if math.isfinite(share) else -1
        cross = None if kind == "next" else kind
        tick = ExecTick(int(b.ts[j]), self.token, float(b.price[j]), tuple(ids), cross, vol,
                        seq=self._seen + j)  # fmt: skip
        if b.depth is None or kind != "next":
            return tick  # a resting order fills at its own price: the book does not matter
        return replace(tick, asks=b.depth.levels(j, True), bids=b.depth.levels(j, False))

    def _search(self, b: TickBatch, s: Search, allowed: F64 | None) -> tuple[bool, list[Search]]:
        """Record the ticks of ``b`` that ``s`` finds: whether it is done, and the searches
        its first tick starts (a MARKET order resting at its protected price)."""
        if s.kind == "next" and (j := self._one_tick(b, s, allowed)) is not None:
            s.started = True
            if allowed is not None and s.need > 0:
                s.need -= float(allowed[j])
            self._found.setdefault((j, s.kind), []).append(s.signal_id)
            return True, self._protect(b, s, [j]) if s.cap > 0 else []
        hits = self._hits(b, s)
        if not len(hits):
            return False, []
        if s.kind.startswith("STOP_"):
            j = int(hits[0])
            self._found.setdefault((j, s.kind), []).append(s.signal_id)
            return True, _triggered(b, s, j)
        first = s.kind == "next" and not s.started
        s.started = True
        if allowed is None or s.need <= 0:
            hits, done = hits[:1], True
        else:
            hits, got, k = enough(hits, allowed, s.need)
            done = k < len(hits)
            s.need -= float(got[min(k, len(hits) - 1)])
            hits = hits[: k + 1]
            keep = allowed[hits] > 0
            keep[0] |= first  # a first tick decides whether the order rests
            hits = hits[keep]
        for j in hits.tolist():
            self._found.setdefault((j, s.kind), []).append(s.signal_id)
        return done, self._protect(b, s, hits) if s.kind == "next" and s.cap > 0 else []

    def _one_tick(self, b: TickBatch, s: Search, allowed: F64 | None) -> int | None:
        """The tick of ``b`` that alone completes the ``next`` search ``s`` (its first tick,
        when that may take the whole order: most orders), else None. The same tick as
        ``_hits`` and ``enough`` find, without building their arrays."""
        start = self._start(b, s)
        if start >= len(b) or (s.started and start >= self._end(b, s)):
            return None
        if allowed is None or s.need <= 0 or float(allowed[start]) >= s.need:
            return start
        return None

    def _protect(self, b: TickBatch, s: Search, hits: I64 | list[int]) -> list[Search]:
        """A MARKET order that meets a tick beyond its protection rests (what is left of it)
        at the protected price: where the tape comes back to it."""
        out: list[Search] = []
        if s.protected:
            return out
        for side, bound in (("BUY", s.limit * (1 + s.cap)), ("SELL", s.limit * (1 - s.cap))):
            j = _first_beyond(b.price, hits, bound, side == "BUY")
            if j is not None:
                out.append(Search(int(b.ts[j]), s.signal_id, j + 1, side, bound, s.budget))
        s.protected = bool(out)
        return out

    def _start(self, b: TickBatch, s: Search) -> int:
        """The first index of ``b`` the search may take."""
        return max(s.after, int(b.ts.searchsorted(s.due, "left")))

    def _end(self, b: TickBatch, s: Search) -> int:
        """The end of the search's wait in ``b`` (an index)."""
        return int(b.ts.searchsorted(s.due + self.rules.max_wait_us, "right"))

    def _hits(self, b: TickBatch, s: Search) -> npt.NDArray[np.int64]:
        """Indexes of ``b`` the search may take (its first tick regardless of the wait)."""
        # A batch's ticks are in time order: those within the wait are a run from ``start``.
        start, end = self._start(b, s), self._end(b, s)
        if start >= len(b):
            return np.zeros(0, dtype=np.int64)
        if s.kind == "next":
            if not s.started and s.need <= 0:
                return np.arange(start, start + 1)
            return np.arange(start, end if s.started else max(end, start + 1))
        px = b.price[start:end]
        up = s.kind in ("SELL", "STOP_BUY")  # a resting sell, a buy stop: reached from below
        return start + np.flatnonzero(px >= s.limit if up else px <= s.limit)

    def _allowed(self, b: TickBatch) -> F64 | None:
        """Shares an order may take at each tick (inf: the tape has no volumes); None: no
        cap. Keeps the day's volume baseline whether or not any order is waiting."""
        if not len(b):
            return None
        st, part = self.state, self.rules.participation
        new_day = _new_days(b.ts, st.last_ts, self._day_end)
        traded, st.volume = traded_volume(b.volume, st.volume, new_day)
        st.last_ts = int(b.ts[-1])
        if part is None or not st.searching:
            return None
        lot = self.rules.lot
        share = part * traded + 1e-9
        np.floor(share, out=share)
        if lot != 1:  # whole lots
            np.floor(share / lot, out=share)
            share *= lot
        np.copyto(share, math.inf, where=~np.isfinite(traded))
        return share


class DayEnd:
    """``day_end`` remembered from the last instant asked: every instant from it to that end
    is in the same trading day, so has the same end (the session is asked once a day)."""

    def __init__(self, day_end: Callable[[int], int]) -> None:
        self.day_end, self.asked, self.end = day_end, 0, 0  # [asked, end): known

    def __call__(self, ts: int) -> int:
        if not self.asked <= ts < self.end:
            self.asked, self.end = ts, self.day_end(ts)
        return self.end


def enough(hits: I64, allowed: F64, need: float) -> tuple[I64, F64, int]:
    """The first of ``hits`` whose running total of ``allowed`` reaches ``need`` (index
    ``k``; ``len`` if none), summed over a window that grows until it does: a search
    costs what it takes, not the rest of the day. Returns the window, its running total
    and ``k`` (the same as over all of ``hits``: a running total's prefix is its own)."""
    n = 64
    while True:
        part = hits[:n]
        got = np.cumsum(allowed[part])
        k = int(np.searchsorted(got, need, "left"))
        if k < len(part) or len(part) == len(hits):
            return part, got, k
        n *= 8


def traded_volume(
    vol: I64, base: tuple[int, int], new_day: npt.NDArray[np.bool_]
) -> tuple[F64, tuple[int, int]]:
    """Shares traded at each tick from the cumulative day volume: the rise over the higher
    of the last two counts known before it. A count that falls trades nothing; a dip (a
    stray low or zero row) is measured past, and a spike holds the counts back for at most
    two ticks. A count of 0 or less, or none, is no count (trades nothing, skipped); a new
    trading day starts from zero; the first count ever known trades nothing. A tape without
    any volume: inf (no cap). ``base``: the last two counts known (last, the one before;
    -1: none). Returns the shares and the new ``base``."""
    out = np.zeros(len(vol))
    cuts = [0, *np.flatnonzero(new_day).tolist(), len(vol)]
    for a, z in itertools.pairwise(cuts):
        if a == z:
            continue
        seg = vol[a:z]
        last, before = (0, -1) if new_day[a] else base
        known = seg > 0
        if known.all():  # the usual tape: every tick has a count
            out[a:z], base = _all_known(seg, last, before)
            continue
        counts = np.concatenate(([before, last], seg[known]))  # known counts, oldest first
        seen = np.concatenate(([0], np.cumsum(known)[:-1]))  # known in seg before each tick
        k1, k2 = counts[seen + 1], counts[seen]  # the last two known before each tick
        t = np.where(known & (k1 >= 0), np.maximum(seg - np.maximum(k1, k2), 0), 0)
        out[a:z] = np.where(~known & (k1 < 0), math.inf, t.astype(float))  # never any
        base = (int(counts[-1]), int(counts[-2]))
    return out, base


def _all_known(seg: I64, last: int, before: int) -> tuple[I64, tuple[int, int]]:
    """``traded_volume`` of a run of ticks that all have a count: the last two counts known
    before each tick are then those of the two ticks before it."""
    counts = np.concatenate(([before, last], seg))
    t = np.maximum(seg - np.maximum(counts[1:-1], counts[:-2]), 0)
    if last < 0:
        t[0] = 0  # the first count ever known trades nothing
    return t, (int(counts[-1]), int(counts[-2]))


def _first_beyond(px: F64, hits: I64 | list[int], bound: float, above: bool) -> int | None:
    """The first of ``hits`` whose price is above ``bound`` (``above``) or below it."""
    if len(hits) == 1:  # most searches: one tick, compared without building arrays
        j = int(hits[0])
        p = float(px[j])
        return j if (p > bound if above else p < bound) else None
    at = np.flatnonzero(px[hits] > bound if above else px[hits] < bound)
    return int(hits[int(at[0])]) if len(at) else None


def _new_days(
    ts: I64, last: int | None, day_end: Callable[[int], int] | None
) -> npt.NDArray[np.bool_]:
    """Ticks that open a new trading day (after ``last``, the key's previous tick)."""
    out = np.zeros(len(ts), dtype=bool)
    if day_end is None or not len(ts):
        return out
    end = day_end(last if last is not None else int(ts[0]))
    k = int(np.searchsorted(ts, end, "left"))
    while k < len(ts):
        out[k] = True
        end = max(day_end(int(ts[k])), int(ts[k]) + 1)
        k = int(np.searchsorted(ts, end, "left"))
    return out


def _triggered(b: TickBatch, s: Search, j: int) -> list[Search]:
    """A stop triggered at tick ``j``: from the next tick it is a market order protected
    from the triggering price (SL-M) or a limit at its trigger (SL)."""
    at, side = int(b.ts[j]), s.kind.removeprefix("STOP_")
    if s.cap >= 0:
        px = float(b.price[j])
        return [Search(at, s.signal_id, j + 1, "next", px, s.need, s.cap, budget=s.need)]
    return [
        Search(at, s.signal_id, j + 1, "next", s.limit, s.need),
        Search(at, s.signal_id, j + 1, side, s.limit, s.need),
    ]


def _next_first(item: tuple[tuple[int, str], list[str]]) -> tuple[int, int, str]:
    """By tick, the ``next`` ExecTick of a tick before its crossings (it decides if a LIMIT
    rests at all)."""
    (j, kind), _ = item
    return (j, kind != "next", kind)
