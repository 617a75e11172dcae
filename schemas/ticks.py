"""Columnar tick batches (the hot path) and the small point events of the per-broker stream."""

from __future__ import annotations

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


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


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


@dataclass(frozen=True, eq=False)
class MarkSet:
    """Marks at one or more consecutive boundaries: entry ``i`` marks ``tokens[i]`` at
    ``prices[i]`` as of boundary ``times[i]`` (non-decreasing; tokens sorted within one
    boundary). Arrays, so that the account marks and checks a whole run in one pass."""

    times: I64
    tokens: I64
    prices: F64

    @classmethod
    def of(cls, ts: int, pairs: Iterable[tuple[int, float]]) -> MarkSet:
        """One boundary's marks."""
        ordered = sorted(pairs)
        tokens = np.array([t for t, _ in ordered], dtype=np.int64)
        prices = np.array([p for _, p in ordered], dtype=np.float64)
        return cls(np.full(len(tokens), ts, dtype=np.int64), tokens, prices)

    @property
    def ts(self) -> int:
        """The first boundary (its place in the event-time order)."""
        return int(self.times[0])

    def __len__(self) -> int:
        return len(self.times)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MarkSet) and all(
            np.array_equal(a, b)
            for a, b in zip((self.times, self.tokens, self.prices),
                            (other.times, other.tokens, other.prices), strict=True)
        )  # fmt: skip

    def __hash__(self) -> int:
        return hash((self.times.tobytes(), self.tokens.tobytes(), self.prices.tobytes()))


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
    """A live feed was silent ``silent_s`` with its socket open (and was reconnected);
    ``ts``: the last tick's time, so the warning lands in a window still open."""

    ts: int
    silent_s: float


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
class StrategyOutput:
    """What one (broker, instrument) key produced from one tick batch."""

    instrument_token: int
    signals: tuple[TradingSignal, ...]
    marks: Marks
    counts: WindowCounts
    watermark: int
    failures: tuple[StrategyFailed, ...] = ()
    dead: tuple[DeadLetter, ...] = ()


BrokerItem = MarkSet | TickCount | Clock | TradingSignal | StrategyFailed
