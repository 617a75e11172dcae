"""Per-broker order-rate caps that do not depend on the order in which orders arrive.

An order at event time ``t`` fits a cap of window ``W`` µs and limit ``L`` iff EVERY half-open
window ``[s, s + W)`` that contains ``t`` already holds at most ``L - 1`` recorded orders; a day cap
counts the recorded orders on ``day_of(t)``. Checking every window containing ``t`` (not just the
one ending at ``t``) means an early-timestamped order arriving late can never overfill a window
that already holds later orders. The state (``RateState``) is plain data, snapshotted for recovery
and passed back to ``OrderRates`` on resume.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo

US = 1_000_000
IST = timezone(timedelta(hours=5, minutes=30), "IST")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class RateCap:
    """At most ``limit`` orders per window of ``window_us`` µs (``None``: per trading day)."""

    window_us: int | None
    limit: int
    name: str

    def __post_init__(self) -> None:
        if self.window_us is not None and self.window_us <= 0:
            raise ValueError(f"rate cap {self.name}: window_us must be positive or None")
        if self.limit < 0:
            raise ValueError(f"rate cap {self.name}: limit must be >= 0")


@dataclass
class RateState:
    """Accepted order times (sorted, µs) and accepted orders per trading day."""

    times: list[int] = field(default_factory=list)
    per_day: dict[date, int] = field(default_factory=dict)


def kite_caps(per_second: int = 10, per_minute: int = 400, per_day: int = 5000) -> list[RateCap]:
    """Zerodha Kite's order-rate limits (defaults: 10/s, 400/min, 5000/day)."""
    return [
        RateCap(US, per_second, "per_second"),
        RateCap(60 * US, per_minute, "per_minute"),
        RateCap(None, per_day, "per_day"),
    ]


def _clock(ts_us: int, tz: tzinfo) -> str:
    """Wall-clock time of day, e.g. ``09:31:02.5``."""
    dt = (_EPOCH + timedelta(microseconds=ts_us)).astimezone(tz)
    frac = f"{dt.microsecond:06d}".rstrip("0")
    return f"{dt:%H:%M:%S}" + (f".{frac}" if frac else "")


def _starts(times: list[int], lo: int, mid: int, t: int) -> Iterator[int]:
    """Candidate window starts: each distinct recorded time in ``times[lo:mid]``, then ``t``."""
    prev: int | None = None
    for k in range(lo, mid):
        if times[k] != prev:
            prev = times[k]
            yield prev
    if prev != t:
        yield t


def busiest_window(times: list[int], t: int, w: int) -> tuple[int, int]:
    """Most entries of sorted ``times`` in any window ``[s, s + w)`` with ``s <= t < s + w``.

    Returns ``(count, s)``. Sliding ``s`` up by one while ``s`` is not an entry never lowers the
    count, so the maximum is reached at ``s = t`` or at an entry in ``[t - w + 1, t]``; two
    pointers sweep those candidates over the entries in ``[t - w + 1, t + w - 1]``.
    """
    lo = bisect.bisect_left(times, t - w + 1)
    mid = bisect.bisect_right(times, t, lo)
    hi = bisect.bisect_right(times, t + w - 1, mid)
    best, best_s = -1, t
    i = j = lo
    for s in _starts(times, lo, mid, t):
        while i < hi and times[i] < s:
            i += 1
        while j < hi and times[j] < s + w:
            j += 1
        if j - i > best:
            best, best_s = j - i, s
    return best, best_s


class OrderRates:
    """Accepted order times per broker, checked against every cap whatever the arrival order.

    ``day_of`` maps an event time (µs) to its trading day and must be non-decreasing in time.
    ``state`` (plain, picklable) is what to snapshot; pass it back to resume.
    """

    def __init__(
        self,
        caps: Sequence[RateCap],
        day_of: Callable[[int], date],
        state: RateState | None = None,
        tz: tzinfo = IST,
    ) -> None:
        self.caps = tuple(caps)
        self.day_of = day_of
        self.state = state if state is not None else RateState()
        self.tz = tz
        self._longest = max((c.window_us for c in self.caps if c.window_us is not None), default=0)

    def _breach_of(self, cap: RateCap, ts_us: int) -> str | None:
        if cap.window_us is None:
            day = self.day_of(ts_us)
            n = self.state.per_day.get(day, 0)
            if n + 1 <= cap.limit:
                return None
            return f"{cap.name}: {n} orders on {day} (limit {cap.limit}/day)"
        times, w = self.state.times, cap.window_us
        near = bisect.bisect_right(times, ts_us + w - 1) - bisect.bisect_left(times, ts_us - w + 1)
        if near + 1 <= cap.limit:  # not even every order near ts_us in one window would breach
            return None
        n, s = busiest_window(times, ts_us, w)
        if n + 1 <= cap.limit:
            return None
        span = f"{cap.window_us / US:g}s"
        return (
            f"{cap.name}: {n} orders in the {span} window "
            f"[{_clock(s, self.tz)}, {_clock(s + cap.window_us, self.tz)}) "
            f"holding {_clock(ts_us, self.tz)} (limit {cap.limit}/{span})"
        )

    def breach(self, ts_us: int) -> str | None:
        """None if one more order at ``ts_us`` fits every cap, else what it would break."""
        found: list[str] = []
        for cap in self.caps:
            hit = self._breach_of(cap, ts_us)
            if hit is not None:
                found.append(hit)
        return "; ".join(found) if found else None

    def record(self, ts_us: int) -> None:
        """Count an accepted order at ``ts_us``."""
        bisect.insort(self.state.times, ts_us)
        day = self.day_of(ts_us)
        self.state.per_day[day] = self.state.per_day.get(day, 0) + 1

    def prune(self, watermark_us: int) -> None:
        """Forget orders older than ``watermark_us`` minus the longest finite window AND on a
        trading day before ``day_of(watermark_us)``, and the day counts of earlier days.

        Call it with the latest event time seen; orders at or after it are still judged exactly.
        """
        today = self.day_of(watermark_us)
        times = self.state.times
        cut = bisect.bisect_left(times, watermark_us - self._longest)
        keep_from = bisect.bisect_left(times, today, 0, cut, key=self.day_of)
        del times[:keep_from]
        for day in [d for d in self.state.per_day if d < today]:
            del self.state.per_day[day]
