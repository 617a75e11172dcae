"""Live state in Redis: the one place that spells every key and its encoding.

The flow's Redis sink, the status command and the tests build keys only through ``LiveKeys``;
``LiveKeys.parse`` recognises exactly the keys it produces. Every value is the JSON of a model
named here and is written whole (never as a delta), inside one MULTI/EXEC per flush.

    {prefix}meta                              RunMeta        the deployment: brokers, workers
    {prefix}writer:{worker}                   WriterBeat     each writer's last write (wall clock)
    {prefix}counters                          RunCounters    ticks read/processed, dead letters
    {prefix}broker:{broker}:pnl               PnlSnapshot    latest snapshot
    {prefix}broker:{broker}:positions         [Position]     open positions of that snapshot
    {prefix}broker:{broker}:counters          BrokerCounters signals, rejections, orders, fills
    {prefix}broker:{broker}:health:{stage}    StageHealth    latest window of the stage
    {prefix}broker:{broker}:history:{stage}   sorted set of StageHealth, score = window start
                                              (epoch seconds): the last ``history_windows``
    {prefix}broker:{broker}:trading_state     TradingStateChanged  the account's latest state
    {prefix}broker:{broker}:control           stream of operator commands (``flows.control``),
                                              fields broker, command; not a run key: a new
                                              run never clears it
    {prefix}intent:{tag}                      OrderIntent    a Kite order we mean to place (SET
                                              NX with a TTL, before placing): never cleared
                                              with a run's keys, so no restart places it twice
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from schemas.enums import Broker, Stage
from schemas.events import (
    Model,
    PnlSnapshot,
    Position,
    StageHealth,
    TradingStateChanged,
    ValidatedSignal,
)

DEFAULT_PREFIX = "alpha_panda:"


class RunMeta(Model):
    """What a reader needs to find the rest: written by worker 0 at start."""

    source: str
    brokers: list[Broker]
    workers: int = Field(gt=0)
    window_s: int = Field(gt=0)
    history_windows: int = Field(gt=0)


class WriterBeat(Model):
    """One sink worker's heartbeat: monitoring time (wall clock), never trading time.
    ``updated_at``: the writer's last write; ``flow_at``: the flow last handed it a value."""

    worker: int = Field(ge=0)
    state: Literal["running", "finished"]
    updated_at: AwareDatetime
    flow_at: AwareDatetime | None


class RunCounters(Model):
    rows_read: int
    ticks_processed: int
    dead_letters: int
    dead_letters_by_reason: dict[str, int]


class BrokerCounters(Model):
    broker: Broker
    signals: int
    validated: int
    rejected: int
    rejections_by_reason: dict[str, int]
    orders_placed: int
    orders_failed: int
    fills: int
    as_of: AwareDatetime | None


class OrderIntent(Model):
    """What the zerodha execution stage is about to send to Kite under ``tag``."""

    tag: str
    validated: ValidatedSignal
    claimed_us: int | None = None  # wall clock when it was recorded (µs since the epoch)
    sent: bool = False  # on its way to Kite: its fate may be unknown, never placed again


class KeyKind(str, Enum):
    META = "meta"
    WRITER = "writer"
    RUN_COUNTERS = "counters"
    PNL = "pnl"
    POSITIONS = "positions"
    COUNTERS = "broker_counters"
    HEALTH = "health"
    HEALTH_HISTORY = "health_history"
    INTENT = "intent"
    TRADING_STATE = "trading_state"
    CONTROL = "control"


@dataclass(frozen=True)
class LiveKey:
    """A parsed key: its kind and the broker / stage / worker it belongs to."""

    kind: KeyKind
    broker: Broker | None = None
    stage: Stage | None = None
    worker: int | None = None


POSITIONS = TypeAdapter(list[Position])

_VALUE: dict[KeyKind, Any] = {
    KeyKind.META: RunMeta,
    KeyKind.WRITER: WriterBeat,
    KeyKind.RUN_COUNTERS: RunCounters,
    KeyKind.PNL: PnlSnapshot,
    KeyKind.COUNTERS: BrokerCounters,
    KeyKind.HEALTH: StageHealth,
    KeyKind.HEALTH_HISTORY: StageHealth,
    KeyKind.INTENT: OrderIntent,
    KeyKind.TRADING_STATE: TradingStateChanged,
}


def encode(value: Model | list[Position]) -> bytes:
    """The bytes stored for a value (a history member is an encoded StageHealth)."""
    if isinstance(value, list):
        return POSITIONS.dump_json(value)
    return value.model_dump_json().encode()


def decode(kind: KeyKind, raw: bytes | str) -> Any:
    """The model (or list of positions) stored under a key of ``kind``."""
    if kind is KeyKind.POSITIONS:
        return POSITIONS.validate_json(raw)
    if kind not in _VALUE:
        raise TypeError(f"{kind.value} keys hold no single value")
    model: type[Model] = _VALUE[kind]
    return model.model_validate_json(raw)


def history_score(h: StageHealth) -> float:
    """Score of a history member: its window start in epoch seconds."""
    return h.window_start.timestamp()


class LiveKeys:
    """Every key under one deployment's prefix (``redis.key_prefix``)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        brokers = "|".join(re.escape(b.value) for b in Broker)
        stages = "|".join(re.escape(s.value) for s in Stage)
        p = re.escape(prefix)
        self._patterns: list[tuple[re.Pattern[str], KeyKind]] = [
            (re.compile(rf"{p}meta"), KeyKind.META),
            (re.compile(rf"{p}writer:(?P<worker>0|[1-9][0-9]*)"), KeyKind.WRITER),
            (re.compile(rf"{p}counters"), KeyKind.RUN_COUNTERS),
            (re.compile(rf"{p}broker:(?P<broker>{brokers}):pnl"), KeyKind.PNL),
            (re.compile(rf"{p}broker:(?P<broker>{brokers}):positions"), KeyKind.POSITIONS),
            (re.compile(rf"{p}broker:(?P<broker>{brokers}):counters"), KeyKind.COUNTERS),
            (
                re.compile(rf"{p}broker:(?P<broker>{brokers}):health:(?P<stage>{stages})"),
                KeyKind.HEALTH,
            ),
            (
                re.compile(rf"{p}broker:(?P<broker>{brokers}):history:(?P<stage>{stages})"),
                KeyKind.HEALTH_HISTORY,
            ),
            (
                re.compile(rf"{p}broker:(?P<broker>{brokers}):trading_state"),
                KeyKind.TRADING_STATE,
            ),
            (re.compile(rf"{p}broker:(?P<broker>{brokers}):control"), KeyKind.CONTROL),
            (re.compile(rf"{p}intent:(?P<tag>[A-Za-z0-9]{{1,20}})"), KeyKind.INTENT),
        ]

    def meta(self) -> str:
        return f"{self.prefix}meta"

    def writer(self, worker: int) -> str:
        return f"{self.prefix}writer:{worker}"

    def run_counters(self) -> str:
        return f"{self.prefix}counters"

    def _broker(self, broker: Broker | str) -> str:
        return f"{self.prefix}broker:{Broker(broker).value}"

    def pnl(self, broker: Broker | str) -> str:
        return f"{self._broker(broker)}:pnl"

    def positions(self, broker: Broker | str) -> str:
        return f"{self._broker(broker)}:positions"

    def counters(self, broker: Broker | str) -> str:
        return f"{self._broker(broker)}:counters"

    def health(self, broker: Broker | str, stage: Stage | str) -> str:
        return f"{self._broker(broker)}:health:{Stage(stage).value}"

    def health_history(self, broker: Broker | str, stage: Stage | str) -> str:
        return f"{self._broker(broker)}:history:{Stage(stage).value}"

    def trading_state(self, broker: Broker | str) -> str:
        return f"{self._broker(broker)}:trading_state"

    def control(self, broker: Broker | str) -> str:
        """The stream of operator commands to ``broker`` (not a run key)."""
        return f"{self._broker(broker)}:control"

    def intent(self, tag: str) -> str:
        return f"{self.prefix}intent:{tag}"

    def run_keys(self, meta: RunMeta) -> list[str]:
        """The data keys of a run described by ``meta`` (not its meta and heartbeats)."""
        out = [self.run_counters()]
        for b in meta.brokers:
            out += [self.pnl(b), self.positions(b), self.counters(b), self.trading_state(b)]
            out += [self.health(b, s) for s in Stage] + [self.health_history(b, s) for s in Stage]
        return out

    def parse(self, key: str) -> LiveKey | None:
        """The key's kind and parts, or None if ``LiveKeys`` never produces ``key``."""
        for pattern, kind in self._patterns:
            m = pattern.fullmatch(key)
            if m:
                g = m.groupdict()
                return LiveKey(
                    kind,
                    Broker(g["broker"]) if "broker" in g else None,
                    Stage(g["stage"]) if "stage" in g else None,
                    int(g["worker"]) if "worker" in g else None,
                )
        return None

    def values_of(self, item: Model) -> list[tuple[str, bytes]]:
        """Whole values an event sets (the history member of a StageHealth aside)."""
        if isinstance(item, PnlSnapshot):
            open_ = [p for p in item.positions if p.quantity]
            return [
                (self.pnl(item.broker), encode(item)),
                (self.positions(item.broker), encode(open_)),
            ]
        if isinstance(item, StageHealth):
            return [(self.health(item.broker, item.stage), encode(item))]
        if isinstance(item, TradingStateChanged):
            return [(self.trading_state(item.broker), encode(item))]
        if isinstance(item, BrokerCounters):
            return [(self.counters(item.broker), encode(item))]
        if isinstance(item, RunCounters):
            return [(self.run_counters(), encode(item))]
        if isinstance(item, RunMeta):
            return [(self.meta(), encode(item))]
        if isinstance(item, WriterBeat):
            return [(self.writer(item.worker), encode(item))]
        raise TypeError(f"no Redis key for {type(item).__name__}")
