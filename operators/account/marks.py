"""Marks in runs: where, within a run of mark boundaries, the day's loss may reach the limit.

A run holds many boundaries (entries sorted by time). Marking them one by one would cost a
Python step per boundary and instrument; instead the net PnL after each boundary is
approximated in one vectorised pass (a running sum of quantity x price change), and only the
boundaries whose approximate loss comes within ``EPS`` of the limit are checked exactly by the
account, in order. The exact check decides, so the outcome never depends on how boundaries
were grouped into runs.
"""

from __future__ import annotations

import numpy as np

from operators.accounting import F64, I64, Book

EPS = 1e-3  # rupees: far above float drift, far below any limit


def group_ends(times: I64) -> I64:
    """Exclusive end index of each boundary's group of entries."""
    return np.concatenate((np.flatnonzero(np.diff(times)) + 1, [len(times)])).astype(np.int64)


def may_breach(
    book: Book,
    tokens: I64,
    high: F64,
    low: F64,
    net_now: float,
    day_start: float,
    limit: float,
) -> bool:
    """Cheap bound on a run's summary: no instrument's mark strays further from its current
    mark than ``move`` (its high and low in the run), so the book cannot lose more than
    gross value x move over the run."""
    if day_start - net_now >= limit - EPS:
        return True
    slots, hit = book.slots_of(tokens)
    held = np.flatnonzero(hit & (book.quantities(slots) != 0))
    if not len(held):
        return False
    start = book.marks(slots[held])
    away = np.maximum(np.abs(high[held] - start), np.abs(low[held] - start))
    move = float(np.max(away / np.maximum(start, 1e-9)))
    return day_start - net_now + book.gross_value() * move >= limit - EPS


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
