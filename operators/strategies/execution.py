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

import math
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from schemas.ticks import F64, ExecTick, TickBatch

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


@dataclass
class ExecState:
    searching: list[Search] = field(default_factory=list)
    volume: int = -1  # the cumulative volume of the key's last tick (-1: none yet)
    targets: dict[str, int] = field(default_factory=dict)  # each strategy's last target


@dataclass(frozen=True)
class ExecRules:
    """How a venue executes: latency, how long a search lasts, market protection (a
    fraction of the signal price) and the share of traded volume an order may take."""

    latency_us: int
    max_wait_us: int
    protection: float = 0.0
    participation: float | None = None


class ExecFinder:
    """Pure logic over ``ExecState`` for one (broker, instrument) key."""

    def __init__(self, token: int, rules: ExecRules, state: ExecState) -> None:
        self.token, self.rules, self.state = token, rules, state
        self._found: dict[tuple[int, str], list[str]] = {}

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
        add(Search(due, signal_id, i + 1, "next", price, need, 0.0 if limit else r.protection))
        if limit:
            for side in ("BUY", "SELL"):
                add(Search(due, signal_id, i + 1, side, price, need))

    def found(self, b: TickBatch) -> tuple[ExecTick, ...]:
        """ExecTicks in ``b`` for every search it satisfies; the others wait (or lapse)."""
        allowed = self._allowed(b)
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
        if len(b):
            self.state.volume = int(b.volume[-1])
        return tuple(
            self._exec(b, j, kind, ids, allowed)
            for (j, kind), ids in sorted(self._found.items(), key=_next_first)
        )

    def _exec(
        self, b: TickBatch, j: int, kind: str, ids: list[str], allowed: F64 | None
    ) -> ExecTick:
        vol = -1 if allowed is None or not np.isfinite(allowed[j]) else int(allowed[j])
        cross = None if kind == "next" else kind
        tick = ExecTick(int(b.ts[j]), self.token, float(b.price[j]), tuple(ids), cross, vol)
        if b.depth is None or kind != "next":
            return tick  # a resting order fills at its own price: the book does not matter
        return replace(tick, asks=b.depth.levels(j, True), bids=b.depth.levels(j, False))

    def _search(self, b: TickBatch, s: Search, allowed: F64 | None) -> tuple[bool, list[Search]]:
        """Record the ticks of ``b`` that ``s`` finds: whether it is done, and the searches
        its first tick starts (a MARKET order resting at its protected price)."""
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
            got = np.cumsum(allowed[hits])
            k = int(np.searchsorted(got, s.need, "left"))
            done = k < len(hits)
            s.need -= float(got[min(k, len(hits) - 1)])
            hits = hits[: k + 1]
            keep = allowed[hits] > 0
            keep[0] |= first  # a first tick decides whether the order rests
            hits = hits[keep]
        for j in hits.tolist():
            self._found.setdefault((j, s.kind), []).append(s.signal_id)
        return done, self._protect(b, s, int(hits[0])) if first and s.cap > 0 else []

    def _protect(self, b: TickBatch, s: Search, j: int) -> list[Search]:
        """A MARKET order whose first tick is beyond its protection rests at the protected
        price: where the tape comes back to it."""
        px, out = float(b.price[j]), []
        for side, bound in (("BUY", s.limit * (1 + s.cap)), ("SELL", s.limit * (1 - s.cap))):
            if (px > bound) if side == "BUY" else (px < bound):
                out.append(Search(int(b.ts[j]) + 1, s.signal_id, j + 1, side, bound, s.need))
        return out

    def _hits(self, b: TickBatch, s: Search) -> npt.NDArray[np.int64]:
        """Indexes of ``b`` the search may take (its first tick regardless of the wait)."""
        start = max(s.after, int(np.searchsorted(b.ts, s.due, "left")))
        if start >= len(b):
            return np.zeros(0, dtype=np.int64)
        until = s.due + self.rules.max_wait_us
        if s.kind == "next":
            if not s.started and s.need <= 0:
                return np.arange(start, start + 1)
            idx = np.arange(start, len(b))
            first = idx == start if not s.started else np.zeros(len(idx), dtype=bool)
            return idx[first | (b.ts[idx] <= until)]
        px = b.price[start:]
        up = s.kind in ("SELL", "STOP_BUY")  # a resting sell, a buy stop: reached from below
        idx = start + np.flatnonzero(px >= s.limit if up else px <= s.limit)
        return idx[b.ts[idx] <= until]

    def _allowed(self, b: TickBatch) -> F64 | None:
        """Shares an order may take at each tick (inf: volume unknown); None: no cap."""
        part = self.rules.participation
        if part is None or not len(b) or not self.state.searching:
            return None
        vol = b.volume.astype(np.float64)
        before = np.concatenate(([float(self.state.volume)], vol[:-1]))
        traded = np.where(vol < before, vol, vol - before)  # a drop: a new day's count
        traded = np.where(before < 0, vol, traded)
        return np.where(vol < 0, math.inf, np.floor(part * traded + 1e-9))


def _triggered(b: TickBatch, s: Search, j: int) -> list[Search]:
    """A stop triggered at tick ``j``: from the next tick it is a market order protected
    from the triggering price (SL-M) or a limit at its trigger (SL)."""
    at, side = int(b.ts[j]), s.kind.removeprefix("STOP_")
    if s.cap >= 0:
        return [Search(at, s.signal_id, j + 1, "next", float(b.price[j]), s.need, s.cap)]
    return [
        Search(at, s.signal_id, j + 1, "next", s.limit, s.need),
        Search(at, s.signal_id, j + 1, side, s.limit, s.need),
    ]


def _next_first(item: tuple[tuple[int, str], list[str]]) -> tuple[int, int, str]:
    """By tick, the ``next`` ExecTick of a tick before its crossings (it decides if a LIMIT
    rests at all)."""
    (j, kind), _ = item
    return (j, kind != "next", kind)
