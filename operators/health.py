"""Stage health computed inside the flow: windowed counts per (broker, stage), then a status
with a reason. Event-time windows over the ordered per-broker stream in replay."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key
from operators.session import MarketSession
from operators.windows import TumblingFold, WindowState, tumbling_fold
from schemas.config import HealthConfig
from schemas.enums import Broker, HealthReason, HealthStatus, Stage
from schemas.events import (
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    PnlSnapshot,
    RejectedSignal,
    StageHealth,
    TradingSignal,
    TradingStateChanged,
    ValidatedSignal,
)
from schemas.ids import content_id
from schemas.keys import stage_key
from schemas.ticks import (
    US,
    FeedStale,
    MarkSet,
    OrderLatency,
    StrategyFailed,
    TickBatch,
    TickCount,
    from_us,
    to_us,
)
from schemas.ticks import Clock as FlowClock


@dataclass(frozen=True)
class StageEvent:
    """``count`` events of a stage at event time ``ts`` (0 = heartbeat); ``ticks`` tells a
    trading stage that market data flowed, so that its silence can mean a stall."""

    ts: int
    count: int
    latencies: tuple[float, ...] = ()  # ms: feed (receipt - exchange time) or signal → order
    ticks: int = 0
    stale: int = 0  # market_data: the live feed went silent with its socket open
    lost: int = 0  # market_data: the Kafka tick topic vanished or was recreated
    errors: int = 0  # signal_generation: a strategy failed and stopped on an instrument
    trading: str | None = None  # risk_validation: the account's trading state changed to this
    feed: bool = False  # from the feed itself, ahead of the event-time ordered stream (latency
    # samples, feed notes): folded into its window while open; windows close only
    # FEED_AHEAD_WINDOWS behind it (operators.windows, ``passive``)


_STAGE_OF: dict[type, Stage] = {
    TradingSignal: Stage.SIGNAL_GENERATION,
    ValidatedSignal: Stage.RISK_VALIDATION,
    RejectedSignal: Stage.RISK_VALIDATION,
    OrderPlaced: Stage.ORDER_EXECUTION,
    OrderFailed: Stage.ORDER_EXECUTION,
}


def stage_events(
    stages: tuple[Stage, ...],
) -> Callable[[tuple[str, list[Any]]], list[tuple[str, StageEvent]]]:
    """Extractor for one stream: counts its events for ``stages``, turns health clocks into
    heartbeats (so that silent windows exist too) and tick counts (which every stage passes
    on) into tick flow for the trading stages."""

    keys: dict[tuple[str, Stage], str] = {}

    def key_of(broker: str, stage: Stage) -> str:
        got = keys.get((broker, stage))
        if got is None:
            got = keys[(broker, stage)] = stage_key(broker, stage)
        return got

    kinds: dict[type, Stage | bool] = {}  # an item type's count stage; True: ``one``; False: none

    def extract(kv: tuple[str, list[Any]]) -> list[tuple[str, StageEvent]]:
        broker, items = kv
        out: list[tuple[str, StageEvent]] = []
        for item in items:
            kind = kinds.get(type(item))
            if kind is None:
                kind = kinds[type(item)] = _kind(type(item), stages)
            if kind is True:
                out.extend(one(broker, item))
            elif kind is not False:  # one event of its stage, as ``one`` gives
                out.append((key_of(broker, kind), StageEvent(to_us(item.timestamp), 1)))
        return out

    def one(broker: str, item: Any) -> list[tuple[str, StageEvent]]:
        if isinstance(item, FlowClock):
            if item.grid == "health":
                return [(key_of(broker, s), StageEvent(item.ts, 0)) for s in stages]
            return []
        if isinstance(item, TickCount):
            return [
                (
                    key_of(broker, s),
                    StageEvent(item.ts, item.count)
                    if s is Stage.MARKET_DATA
                    else StageEvent(item.ts, 0, ticks=item.count),
                )
                for s in stages
            ]
        if isinstance(item, OrderLatency) and Stage.ORDER_EXECUTION in stages:
            key = key_of(broker, Stage.ORDER_EXECUTION)
            return [(key, StageEvent(item.ts, 0, latencies=(item.ms,)))]
        if isinstance(item, StrategyFailed) and Stage.SIGNAL_GENERATION in stages:
            key = key_of(broker, Stage.SIGNAL_GENERATION)
            return [(key, StageEvent(item.ts, 0, errors=1))]
        if isinstance(item, TradingStateChanged) and Stage.RISK_VALIDATION in stages:
            key = key_of(broker, Stage.RISK_VALIDATION)
            return [(key, StageEvent(to_us(item.timestamp), 0, trading=str(item.state)))]
        stage = _STAGE_OF.get(type(item))
        if isinstance(item, (OrderFilled, PnlSnapshot)):
            stage = (
                Stage.PORTFOLIO_UPDATES
                if Stage.PORTFOLIO_UPDATES in stages
                else Stage.ORDER_EXECUTION
            )
        if stage is None or stage not in stages:
            return []
        return [(key_of(broker, stage), StageEvent(to_us(item.timestamp), 1))]

    return extract


def _kind(t: type, stages: tuple[Stage, ...]) -> Stage | bool:
    """What ``stage_events`` makes of an item of type ``t``: the stage of its one count
    event, True when ``one`` decides per item, False when it gives none (mark runs, the
    most frequent items, among them)."""
    if issubclass(t, MarkSet):
        return False
    if issubclass(t, (FlowClock, TickCount, OrderLatency, StrategyFailed, TradingStateChanged)):
        return True
    stage = _STAGE_OF.get(t)
    if issubclass(t, (OrderFilled, PnlSnapshot)):
        both = Stage.PORTFOLIO_UPDATES in stages
        stage = Stage.PORTFOLIO_UPDATES if both else Stage.ORDER_EXECUTION
    return stage if stage is not None and stage in stages else False


@dataclass
class WindowAcc:
    count: int = 0
    last_ts: int | None = None
    latencies: list[float] = field(default_factory=list)
    ticks: int = 0
    stale: int = 0
    lost: int = 0
    errors: int = 0
    trading: str | None = None
    samples: int = 0  # latencies seen (a uniform sample of MAX_WINDOW_SAMPLES at most kept)
    rng: np.random.Generator | None = None  # for that sample, from its first overflow


def _fold(acc: WindowAcc, e: StageEvent) -> WindowAcc:
    acc.ticks += e.ticks
    acc.stale += e.stale
    acc.lost += e.lost
    acc.errors += e.errors
    if e.trading is not None:  # the account's changes arrive in the order it made them
        acc.trading = e.trading  # (a late one's time may be older: its order counts)
    if e.count:
        acc.count += e.count
        acc.last_ts = e.ts if acc.last_ts is None else max(acc.last_ts, e.ts)
    if e.latencies:
        _sample(acc, e.latencies)
    return acc


def _sample(acc: WindowAcc, lat: tuple[float, ...]) -> None:
    """Keep a uniform random sample of at most MAX_WINDOW_SAMPLES of the window's latencies
    (reservoir sampling, Algorithm R), from a generator seeded alike for every window."""
    room = max(0, MAX_WINDOW_SAMPLES - len(acc.latencies))
    acc.latencies.extend(lat[:room])
    rest = lat[room:]
    if rest:
        if acc.rng is None:
            acc.rng = np.random.default_rng(SAMPLE_SEED)
        seen = acc.samples + room + np.arange(len(rest))  # each one's number in the window
        slot = acc.rng.integers(0, seen + 1)  # it replaces that slot if it is a kept one
        for j in np.flatnonzero(slot < MAX_WINDOW_SAMPLES).tolist():
            acc.latencies[int(slot[j])] = rest[j]
    acc.samples += len(lat)


@dataclass
class JudgeState:
    windows: int = 0
    silent: int = 0
    active_before: bool = False
    last_ts: int | None = None
    failed: int = 0  # strategies stopped by errors so far
    trading: str = "ACTIVE"


class HealthJudge:
    """Status of one (broker, stage) from its window results, in window order."""

    def __init__(
        self,
        broker: Broker,
        stage: Stage,
        cfg: HealthConfig,
        has_strategy: bool,
        session: MarketSession,
        state: JudgeState | None = None,
    ) -> None:
        self.broker, self.stage, self.cfg = broker, stage, cfg
        self.has_strategy = has_strategy
        self.session = session
        self.state = state or JudgeState()

    def judge(self, start_us: int, acc: WindowAcc) -> tuple[HealthStatus, HealthReason]:
        st, cfg = self.state, self.cfg
        st.windows += 1
        if acc.last_ts is not None:  # a late event keeps its own time: never backwards
            st.last_ts = acc.last_ts if st.last_ts is None else max(st.last_ts, acc.last_ts)
        st.failed += acc.errors
        st.trading = acc.trading or st.trading
        end_us = start_us + cfg.window_s * US
        if self.stage is Stage.MARKET_DATA and acc.lost:  # lost ticks: never hidden
            return HealthStatus.CRITICAL, HealthReason.TOPIC_LOST
        if st.windows <= cfg.startup_windows:
            return HealthStatus.STARTUP, HealthReason.STARTUP_GRACE
        if not (self.session.is_open(start_us) or self.session.is_open(end_us - 1)):
            return HealthStatus.IDLE, HealthReason.MARKET_CLOSED
        if self.stage is not Stage.MARKET_DATA and not self.has_strategy:
            return HealthStatus.IDLE, HealthReason.NO_ENABLED_STRATEGY
        if st.trading == "HALTED":
            return HealthStatus.CRITICAL, HealthReason.TRADING_HALTED
        if st.trading == "REDUCING":
            return HealthStatus.WARNING, HealthReason.TRADING_REDUCING
        if st.failed:
            return HealthStatus.WARNING, HealthReason.STRATEGY_ERROR
        if acc.count:
            st.silent, st.active_before = 0, True
        elif self.stage is Stage.MARKET_DATA or acc.ticks:
            st.silent += 1  # a trading stage is silent only while ticks flow
        if self.stage is Stage.MARKET_DATA and acc.stale:
            return HealthStatus.WARNING, HealthReason.FEED_STALE  # the window's own event
        if acc.latencies:
            p99 = float(np.percentile(acc.latencies, 99))
            if p99 > cfg.latency_critical_s * 1000:
                return HealthStatus.CRITICAL, HealthReason.LATENCY_HIGH
            if p99 > cfg.latency_warning_s * 1000:
                return HealthStatus.WARNING, HealthReason.LATENCY_HIGH
        if self.stage is Stage.MARKET_DATA:
            if st.silent >= cfg.market_data_silence_critical_windows:
                return HealthStatus.CRITICAL, HealthReason.NO_TICKS
            if st.silent >= cfg.market_data_silence_warning_windows:
                return HealthStatus.WARNING, HealthReason.NO_TICKS
            return HealthStatus.HEALTHY, HealthReason.OK
        if st.active_before and st.silent >= cfg.stall_critical_windows:
            return HealthStatus.CRITICAL, HealthReason.STAGE_STALLED
        if st.active_before and st.silent >= cfg.stall_warning_windows:
            return HealthStatus.WARNING, HealthReason.STAGE_STALLED
        return HealthStatus.HEALTHY, HealthReason.OK if acc.count else HealthReason.NO_ACTIVITY

    def on_item(self, item: tuple[int, WindowAcc]) -> list[StageHealth]:
        window_id, acc = item
        length = self.cfg.window_s * US
        start = window_id * length
        status, reason = self.judge(start, acc)
        lat = acc.latencies
        return [
            StageHealth(
                event_id=content_id("health", self.broker.value, self.stage.value, start),
                broker=self.broker,
                stage=self.stage,
                status=status,
                reason=reason,
                window_start=from_us(start),
                window_end=from_us(start + length),
                count=acc.count,
                rate_per_s=acc.count / self.cfg.window_s,
                last_event_time=from_us(last) if (last := self.state.last_ts) is not None else None,
                latency_p50_ms=float(np.percentile(lat, 50)) if lat else None,
                latency_p99_ms=float(np.percentile(lat, 99)) if lat else None,
            )
        ]

    def on_eof(self) -> list[StageHealth]:
        return []


def stage_health(
    step_id: str,
    events: Stream[tuple[str, StageEvent]],
    cfg: HealthConfig,
    make_judge: Callable[[str, JudgeState | None], HealthJudge],
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, StageHealth]]:
    """Keyed ``"{broker}:{stage}"``: tumbling event-time windows, then a judged status;
    ``stopping()``: the input ended at a stop (open windows wait for the resume)."""
    length = cfg.window_s * US
    windows = tumbling_fold(
        f"{step_id}_window", events, lambda resume: health_windows(length, resume), stopping
    )
    return stateful_by_key(f"{step_id}_judge", windows, make_judge)


def health_windows(
    length_us: int, state: WindowState[WindowAcc] | None = None
) -> TumblingFold[StageEvent, WindowAcc]:
    """One stage key's windows: the feed's events passive, up to FEED_AHEAD_WINDOWS ahead;
    an event stamped before one already counted counts in the window open when it came
    (see operators.windows): an outcome the account decides after later events (a LIMIT
    timeout, a square-off), Kite's answer after later heartbeats, the ticks of an
    instrument released as quiet after their window went out."""
    return TumblingFold(
        length_us, WindowAcc, _fold, _event_ts, state, _from_feed, FEED_AHEAD_WINDOWS, True
    )


def _event_ts(e: StageEvent) -> int:
    return e.ts


def _from_feed(e: StageEvent) -> bool:
    return e.feed


def health_events(
    step_id: str, up: Stream[tuple[str, list[Any]]], stages: tuple[Stage, ...]
) -> Stream[tuple[str, StageEvent]]:
    return op.flat_map(step_id, up, stage_events(stages))


MAX_LATENCY_SAMPLES = 256  # per batch and window: percentiles from an even sample
MAX_WINDOW_SAMPLES = 8192  # per window: a uniform sample of its latencies past this
SAMPLE_SEED = 20261203  # the window samples' generator: the same sample for the same feed
FEED_AHEAD_WINDOWS = 1440  # feed events keep windows open this far behind them (see windows)


def feed_notes(brokers: Sequence[Broker]) -> Callable[[FeedStale], list[tuple[str, StageEvent]]]:
    """market_data events of a live feed's note: silent with its socket open (stale), or
    its Kafka topic lost; feed events, as the latency samples (see StageEvent.feed)."""

    def events(f: FeedStale) -> list[tuple[str, StageEvent]]:
        e = StageEvent(f.ts, 0, stale=int(not f.lost), lost=int(f.lost), feed=True)
        return [(stage_key(b, Stage.MARKET_DATA), e) for b in brokers]

    return events


def feed_latency(
    brokers: Sequence[Broker], window_us: int
) -> Callable[[TickBatch], list[tuple[str, StageEvent]]]:
    """market_data latency of live ticks: receipt time - exchange time, per health window.
    Ticks without an exchange time (stamped with their receipt time) are left out."""

    def events(b: TickBatch) -> list[tuple[str, StageEvent]]:
        if b.recv is None or not len(b):
            return []
        keep = b.recv != b.ts
        ts, lat = b.ts[keep], (b.recv[keep] - b.ts[keep]) / 1000.0
        if not len(ts):
            return []
        win = ts // window_us
        ends = np.concatenate((np.flatnonzero(np.diff(win)) + 1, [len(win)]))
        out: list[tuple[str, StageEvent]] = []
        start = 0
        for end in ends.tolist():
            part = lat[start:end]
            if len(part) > MAX_LATENCY_SAMPLES:
                part = part[np.linspace(0, len(part) - 1, MAX_LATENCY_SAMPLES).astype(np.int64)]
            e = StageEvent(int(ts[end - 1]), 0, latencies=tuple(part.tolist()), feed=True)
            out.extend((stage_key(br, Stage.MARKET_DATA), e) for br in brokers)
            start = end
        return out

    return events
