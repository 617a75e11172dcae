"""Columnar tick batches (the hot path) and the small point events of the per-broker stream."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt

from schemas.events import DeadLetter, TradingSignal

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

US = 1_000_000
"""Microseconds per second: every internal timestamp is int µs since the Unix epoch, UTC."""


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


NO_VOLUME = -1  # the volume column's value for "not given" (absent, or null)
BAD_VOLUME = -2  # a volume the column held but a share count cannot be (2.5, NaN, 2**64-1)

PLAUSIBLE_FROM = to_us(datetime(1990, 1, 1, tzinfo=timezone.utc))
"""No tick or command is dated earlier (before electronic trading on Indian exchanges)."""
PLAUSIBLE_UNTIL = to_us(datetime(2100, 1, 1, tzinfo=timezone.utc))
"""No tick or command is dated at or after this (keeps every later time computation in range)."""


def universe_id(sorted_tokens: I64) -> int:
    """A stable fingerprint of an instrument universe (the same in every process)."""
    digest = hashlib.blake2b(np.ascontiguousarray(sorted_tokens, dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest()[:8], "big") or 1


DEPTH_LEVELS = 5  # Kite ``full`` mode: five levels a side


@dataclass(frozen=True)
class Depth:
    """The order book's best levels at each tick, best first, shape (ticks, DEPTH_LEVELS):
    prices (NaN where absent) and quantities (0 where absent)."""

    bid_price: F64
    bid_qty: I64
    ask_price: F64
    ask_qty: I64

    def take(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | slice) -> Depth:
        """The rows ``rows`` (a mask, indexes or a slice)."""
        return Depth(self.bid_price[rows], self.bid_qty[rows], self.ask_price[rows],
                     self.ask_qty[rows])  # fmt: skip

    def levels(self, row: int, asks: bool) -> tuple[tuple[float, int], ...]:
        """One side of one tick: (price, quantity) of each level with both, best first."""
        price, qty = (self.ask_price, self.ask_qty) if asks else (self.bid_price, self.bid_qty)
        return tuple(
            (float(p), int(q))
            for p, q in zip(price[row].tolist(), qty[row].tolist(), strict=True)
            if q > 0 and math.isfinite(p) and p > 0
        )

    @classmethod
    def empty(cls, n: int) -> Depth:
        price, qty = np.full((n, DEPTH_LEVELS), np.nan), np.zeros((n, DEPTH_LEVELS), np.int64)
        return cls(price, qty, price.copy(), qty.copy())


@dataclass(frozen=True)
class TickBatch:
    """Valid ticks of one instrument, in time order.

    ``watermark``: no later batch of this instrument holds a tick with ``ts < watermark``.
    """

    instrument_token: int
    ts: I64
    price: F64
    volume: I64
    watermark: int
    recv: I64 | None = None  # live sources: wall-clock receipt time (µs) of each tick
    depth: Depth | None = None  # the book at each tick, when the source carries it

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class Marks:
    """One instrument's last traded price just before each boundary in ``ts`` (arrays)."""

    ts: I64
    price: F64

    @classmethod
    def none(cls) -> Marks:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0))

    def __len__(self) -> int:
        return len(self.ts)


class MarkEntries:
    """Every mark of a run as (time, token, price). Held as ranges of the ordering stage's
    arrays, gathered only when asked for (the exact loss scan) or pickled (to another
    worker), so that building a run costs no copy."""

    def __init__(
        self, times: I64, tokens: I64, prices: F64, ranges: tuple[I64, I64] | None = None
    ) -> None:
        self.src, self.ranges = (times, tokens, prices), ranges

    def gathered(self) -> tuple[I64, I64, F64]:
        times, tokens, prices = self.src
        if self.ranges is None:
            return times, tokens, prices
        starts, ends = self.ranges
        lens = ends - starts
        idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
        return times[idx], tokens[idx], prices[idx]

    def by_time(self) -> tuple[I64, I64, F64]:
        """The entries sorted by time (tokens ascending within a time)."""
        times, tokens, prices = self.gathered()
        order = np.lexsort((tokens, times))
        return times[order], tokens[order], prices[order]

    def __reduce__(self) -> tuple[type[MarkEntries], tuple[I64, I64, F64]]:
        return (MarkEntries, self.gathered())


@dataclass(frozen=True, eq=False)
class MarkSet:
    """Marks of a run of consecutive boundaries (no Clock or other item between them),
    summarised per instrument: ``tokens`` ascending, each one's price at the last boundary
    of the run it crossed (``last``) and the highest and lowest of its marks in the run.
    ``first`` and ``until`` are its earliest and latest boundary; ``entries`` holds every
    mark."""

    first: int
    until: int
    tokens: I64
    last: F64
    high: F64
    low: F64
    entries: MarkEntries
    slots: I64 | None = None  # each token's index in the sorted instrument universe
    universe: int = 0  # universe_id of that universe (books trust ``slots`` only if it is theirs)

    @classmethod
    def of(cls, ts: int, pairs: Iterable[tuple[int, float]]) -> MarkSet:
        """One boundary's marks."""
        ordered = sorted(pairs)
        tokens = np.array([t for t, _ in ordered], dtype=np.int64)
        prices = np.array([p for _, p in ordered], dtype=np.float64)
        times = np.full(len(tokens), ts, dtype=np.int64)
        return cls(ts, ts, tokens, prices, prices, prices, MarkEntries(times, tokens, prices))

    @property
    def ts(self) -> int:
        """Its place in the event-time order: the earliest boundary."""
        return self.first

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MarkSet) or (self.first, self.until) != (other.first, other.until):
            return False
        mine, theirs = self.entries.by_time(), other.entries.by_time()
        return all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))

    def __hash__(self) -> int:
        return hash((self.first, self.tokens.tobytes(), self.last.tobytes()))


@dataclass(frozen=True)
class TickCount:
    """``count`` ticks of one instrument in one health window; ``ts`` is the last one's time."""

    ts: int
    instrument_token: int
    count: int


@dataclass(frozen=True)
class Clock:
    """Event time has reached boundary ``ts`` of the ``grid`` ("health" or "snapshot")."""

    ts: int
    grid: str


@dataclass(frozen=True)
class FeedStale:
    """A live feed was silent ``silent_s`` with its socket open (and was reconnected), or,
    ``lost``, its Kafka topic vanished or was recreated (the offsets kept are void); ``ts``:
    the last tick's time, so the warning lands in a window still open."""

    ts: int
    silent_s: float
    lost: bool = False


@dataclass(frozen=True)
class WindowCounts:
    """Ticks per health window of one batch: window index, count, last tick time (arrays)."""

    window: I64
    count: I64
    last_ts: I64


@dataclass(frozen=True)
class StrategyFailed:
    """Strategy ``strategy_id`` raised or returned an invalid signal at ``ts`` and stopped on
    this instrument (its target went flat); the dead letter carries the details."""

    ts: int
    instrument_token: int
    strategy_id: str
    error: str


@dataclass(frozen=True)
class OrderLatency:
    """Wall-clock ms from a signal's tick (exchange time) to the broker accepting its order
    (live venues only; monitoring, never trading logic)."""

    ts: int
    ms: float


@dataclass(frozen=True)
class ExecTick:
    """The tick that executes paper orders of ``signals`` (signal ids): the instrument's
    first tick after each signal's own tick, at or after the signal time plus the execution
    latency. Never the tick that triggered them."""

    ts: int
    instrument_token: int
    price: float
    signals: tuple[str, ...]
    cross: str | None = None  # "BUY" / "SELL": at or through their resting price;
    # "STOP_BUY" / "STOP_SELL": at or through their trigger
    volume: int = -1  # shares the orders here may take together (participation); -1: no cap
    asks: tuple[tuple[float, int], ...] = ()  # the book at this tick (price, quantity), best
    bids: tuple[tuple[float, int], ...] = ()  # first; empty: the source carries no depth
    seq: int = -1  # the tick's place in its instrument's stream (orders the key's ticks)


@dataclass(frozen=True)
class StrategyOutput:
    """What one (broker, instrument) key produced from one tick batch."""

    instrument_token: int
    signals: tuple[TradingSignal, ...]
    marks: Marks
    counts: WindowCounts
    watermark: int
    failures: tuple[StrategyFailed, ...] = ()
    dead: tuple[DeadLetter, ...] = ()
    execs: tuple[ExecTick, ...] = ()


BrokerItem = MarkSet | TickCount | Clock | ExecTick | TradingSignal | StrategyFailed
