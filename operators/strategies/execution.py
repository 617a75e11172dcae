"""The ticks that execute a key's signals in a simulated venue, found where the ticks are
(the strategy runner), never the tick that signalled:

- ``next``: the instrument's first tick after the signal's own, at or after the signal time
  plus the execution latency (a MARKET order fills there; a LIMIT if it is marketable);
- for a LIMIT strategy, also the first such tick at or below the signal price (``BUY``) and
  at or above it (``SELL``): where a resting buy or sell limit at that price fills. The
  runner does not know the account's side, so it looks for both; searches end when found,
  ``max_wait_us`` after the signal, or (the oldest first) beyond ``MAX_CROSSING`` per key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from schemas.ticks import ExecTick, TickBatch

MAX_CROSSING = 128  # LIMIT searches a key keeps at most (two per LIMIT signal)


@dataclass
class Search:
    due: int  # µs: not before
    signal_id: str
    after: int  # in the batch it was made in: the first index allowed (carried: 0)
    kind: str  # "next", "BUY", "SELL"
    limit: float = 0.0


@dataclass
class ExecState:
    searching: list[Search] = field(default_factory=list)


class ExecFinder:
    """Pure logic over ``ExecState`` for one (broker, instrument) key."""

    def __init__(self, token: int, latency_us: int, max_wait_us: int, state: ExecState) -> None:
        self.token, self.latency_us, self.max_wait_us = token, latency_us, max_wait_us
        self.state = state

    def add(self, b: TickBatch, i: int, signal_id: str, limit: bool) -> None:
        """Signal ``signal_id`` fired at tick ``i`` of ``b`` (``limit``: a LIMIT strategy)."""
        due, price = int(b.ts[i]) + self.latency_us, float(b.price[i])
        self.state.searching.append(Search(due, signal_id, i + 1, "next"))
        if limit:
            for side in ("BUY", "SELL"):
                self.state.searching.append(Search(due, signal_id, i + 1, side, price))

    def found(self, b: TickBatch) -> tuple[ExecTick, ...]:
        """ExecTicks in ``b`` for every search it satisfies; the others wait (or lapse)."""
        n, at = len(b), dict[tuple[int, str], list[str]]()
        left: list[Search] = []
        for s in self.state.searching:
            j = self._first(b, s) if n else None
            if j is not None:
                at.setdefault((j, s.kind), []).append(s.signal_id)
            elif s.kind == "next" or s.due + self.max_wait_us >= b.watermark:
                left.append(Search(s.due, s.signal_id, 0, s.kind, s.limit))
        crossing = [x for x in left if x.kind != "next"]
        if len(crossing) > MAX_CROSSING:  # the oldest lapse first (their orders end at the close)
            lapsed = {id(x) for x in crossing[: len(crossing) - MAX_CROSSING]}
            left = [x for x in left if id(x) not in lapsed]
        self.state.searching = left
        return tuple(
            ExecTick(
                int(b.ts[j]),
                self.token,
                float(b.price[j]),
                tuple(ids),
                None if kind == "next" else kind,
            )
            for (j, kind), ids in sorted(at.items(), key=_next_first)
        )

    def _first(self, b: TickBatch, s: Search) -> int | None:
        start = max(s.after, int(np.searchsorted(b.ts, s.due, "left")))
        if start >= len(b):
            return None
        if s.kind == "next":
            return start
        px = b.price[start:]
        hit = np.flatnonzero(px <= s.limit if s.kind == "BUY" else px >= s.limit)
        if not len(hit):
            return None
        j = start + int(hit[0])
        return j if int(b.ts[j]) <= s.due + self.max_wait_us else None


def _next_first(item: tuple[tuple[int, str], list[str]]) -> tuple[int, int, str]:
    """By tick, the ``next`` ExecTick of a tick before its crossings (it decides if a LIMIT
    rests at all)."""
    (j, kind), _ = item
    return (j, kind != "next", kind)
