"""Run the strategies of one (broker, instrument) key over tick batches, state carried.

Strategies state targets (signed positions). A strategy that raises or returns an invalid
signal is stopped on this instrument: its target goes flat at that tick, and the failure
becomes a dead letter (``STRATEGY_ERROR``); the other strategies go on.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key
from operators.market import stop_trigger
from operators.strategies.api import Regime, Signal, Tick, TickStrategy, VectorStrategy
from operators.strategies.execution import ExecFinder, ExecRules, ExecState
from operators.ticks import boundary_marks, dead_letter, window_counts
from schemas.enums import Broker, DeadLetterReason
from schemas.events import DeadLetter, TradingSignal
from schemas.ids import content_id, tick_id
from schemas.keys import broker_of, route_key
from schemas.ticks import (
    I64,
    US,
    ExecTick,
    Marks,
    StrategyFailed,
    StrategyOutput,
    TickBatch,
    WindowCounts,
    from_us,
)

STRATEGY_SOURCE = "strategy"
STRATEGY_PARTITION = "strategies"  # the dead-letter shard of strategy failures
_EMPTY = WindowCounts(*(np.zeros(0, dtype=np.int64),) * 3)


@dataclass
class KeyState:
    """Everything one key carries between batches (picklable, for recovery)."""

    seen: int = 0
    history: dict[str, I64] = field(default_factory=dict)
    regime: dict[str, int] = field(default_factory=dict)
    user_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # strategy → error
    last_ts: int | None = None
    last_price: float = 0.0
    execs: ExecState = field(default_factory=ExecState)  # ticks that execute its signals


class StrategyFailure(Exception):
    """A strategy failed at tick ``index`` of the batch; ``done`` holds its earlier signals."""

    def __init__(self, index: int, error: str, done: list[TradingSignal]) -> None:
        super().__init__(error)
        self.index, self.error, self.done = index, error, done


@dataclass(frozen=True)
class RunnerOptions:
    """How a key's signals are executed and its strategies' sessions kept.

    ``exec_latency_us``: find the ticks that execute the signals in a simulated venue (None:
    the venue fills itself); ``order_types`` by strategy (MARKET if absent; SL / SL-M
    trigger ``stop_offsets`` bps beyond the signal price on ``tick_size``), searched for
    ``limit_wait_us`` at most; MARKET orders within ``protection`` (a fraction of the
    signal price); each fill at most ``participation`` of the volume traded at a tick (None:
    no cap); ``session_reset`` strategies forget their state at each new
    trading day (``day_end``: µs → the end of that instant's local day)."""

    exec_latency_us: int | None = None
    order_types: Mapping[str, str] = field(default_factory=dict)
    stop_offsets: Mapping[str, float] = field(default_factory=dict)
    tick_size: Mapping[int, float | str] = field(default_factory=dict)
    lot_size: Mapping[int, int] = field(default_factory=dict)
    limit_wait_us: int = 86_400 * US
    protection: float = 0.0
    participation: float | None = None
    session_reset: frozenset[str] = frozenset()
    day_end: Callable[[int], int] | None = None


class StrategyRunner:
    """Pure logic: turns tick batches of one key into targets, marks and tick counts."""

    def __init__(
        self,
        broker: Broker,
        token: int,
        strategies: Sequence[tuple[str, VectorStrategy | TickStrategy]],
        mark_grid_us: int,
        window_us: int,
        state: KeyState | None = None,
        options: RunnerOptions = RunnerOptions(),
    ) -> None:
        self.broker = broker
        self.token = token
        self.strategies = strategies
        self.mark_grid_us = mark_grid_us
        self.window_us = window_us
        self.state = state if state is not None else KeyState()
        self.options = options
        self.finder = (
            ExecFinder(token, _rules(options, token), self.state.execs)
            if options.exec_latency_us is not None
            else None
        )
        self._fired: list[tuple[int, str, str, int]] = []  # (index, signal, strategy, target)

    def _signal(self, sid: str, target: int, i: int, b: TickBatch, why: str) -> TradingSignal:
        seq = self.state.seen + i
        ts = int(b.ts[i])
        sig = TradingSignal(
            signal_id=content_id("sig", sid, self.broker.value, self.token, ts, seq, target),
            correlation_id=tick_id(self.token, ts, seq),
            strategy_id=sid,
            broker=self.broker,
            instrument_token=self.token,
            target_quantity=target,
            price=float(b.price[i]),
            timestamp=from_us(ts),
            reason=why,
        ).received(int(b.recv[i]) if b.recv is not None else None)
        self._fired.append((i, sig.signal_id, sid, target))
        return sig

    def _execs(self, b: TickBatch) -> tuple[ExecTick, ...]:
        """Execution ticks for this batch's signals and those still waiting (see
        operators.strategies.execution)."""
        fired, self._fired = self._fired, []
        if self.finder is None:
            return ()
        opts = self.options
        for i, sig_id, sid, target in fired:
            kind = opts.order_types.get(sid, "MARKET")
            triggers = None
            if kind in ("SL", "SL-M"):
                off, tick = opts.stop_offsets[sid], opts.tick_size.get(self.token, 0.05)
                px = float(b.price[i])
                triggers = (stop_trigger(px, True, off, tick), stop_trigger(px, False, off, tick))
            self.finder.add(b, i, sig_id, sid, target, kind, triggers)
        return self.finder.found(b, self.state.seen)

    def _vector(
        self, sid: str, strat: VectorStrategy, b: TickBatch, paise: I64
    ) -> list[TradingSignal]:
        st = self.state
        hist = st.history.get(sid, np.zeros(0, dtype=np.int64))
        full = np.concatenate((hist, paise))
        try:
            reg, value = strat.regime(full, len(hist))
        except BaseException as e:  # user code: sys.exit() fails it like a raise
            raise StrategyFailure(0, _failure(e), []) from None
        fire, last = _entries(reg, st.regime.get(sid, 0))
        st.history[sid] = full[-strat.history :].copy()
        if last is not None:
            st.regime[sid] = last
        out = []
        for i in fire.tolist():
            side = int(reg[i])
            target = strat.quantity if side > 0 else -strat.quantity if strat.allow_short else 0
            out.append(self._signal(sid, target, i, b, strat.describe(float(value[i]), side)))
        return out

    def _per_tick(self, sid: str, strat: TickStrategy, b: TickBatch) -> list[TradingSignal]:
        state = self.state.user_state.setdefault(sid, {})
        out: list[TradingSignal] = []
        for i in range(len(b)):
            vol = int(b.volume[i])
            tick = Tick(
                self.token, from_us(int(b.ts[i])), float(b.price[i]), vol if vol >= 0 else None
            )
            try:
                sig = strat.on_tick(tick, state)
                if sig is None:
                    continue
                if not isinstance(sig, Signal):
                    raise TypeError(f"on_tick must return Signal or None, got {sig!r:.200}")
                target, why = sig.target(), _text(sig.reason or "on_tick", 200)
            except BaseException as e:  # user code: sys.exit() fails it like a raise
                raise StrategyFailure(i, _failure(e), out) from None
            out.append(self._signal(sid, target, i, b, why))
        return out

    def _fail(
        self, sid: str, f: StrategyFailure, b: TickBatch
    ) -> tuple[TradingSignal, StrategyFailed, DeadLetter]:
        """Stop ``sid`` here: a flat target, the failure for health, and its dead letter."""
        self.state.failed[sid] = f.error
        i, ts = f.index, int(b.ts[f.index])
        flat = self._signal(sid, 0, i, b, f"STRATEGY_ERROR: {f.error:.200}")
        vol = int(b.volume[i])
        raw = {
            "instrument_token": self.token,
            "timestamp": from_us(ts).isoformat(),
            "last_price": float(b.price[i]),
            "volume": vol if vol >= 0 else None,
        }
        detail = f"strategy {sid} on instrument {self.token}: {f.error:.500}"
        dead = dead_letter(
            f"{STRATEGY_SOURCE}:{sid}@{route_key(self.broker, self.token)}",
            STRATEGY_PARTITION,
            self.state.seen + i,
            DeadLetterReason.STRATEGY_ERROR,
            detail,
            json.dumps(raw, sort_keys=True),
            ts,
        )
        return flat, StrategyFailed(ts, self.token, sid, f.error), dead

    def on_item(self, b: TickBatch) -> list[StrategyOutput]:
        opts = self.options
        if not opts.session_reset or opts.day_end is None or not len(b):
            return [self.process(b)]
        out = []
        for piece in _by_day(b, opts.day_end):
            last = self.state.last_ts
            if last is not None and int(piece.ts[0]) >= opts.day_end(last):
                self._new_session()
            out.append(self.process(piece))
        return out

    def _new_session(self) -> None:
        """A new trading day: the session-reset strategies start afresh (and warm up)."""
        st = self.state
        for sid in self.options.session_reset:
            st.history.pop(sid, None)
            st.regime.pop(sid, None)
            st.user_state.pop(sid, None)

    def on_eof(self) -> list[StrategyOutput]:
        """Each instrument's last tick marks it at the end of the stream."""
        st = self.state
        if st.last_ts is None:
            return []
        end = st.last_ts + 1
        mark = Marks(np.array([end], dtype=np.int64), np.array([st.last_price]))
        return [StrategyOutput(self.token, (), mark, _EMPTY, end)]

    def on_stop(self) -> list[StrategyOutput]:
        """A stop: no end-of-stream mark (a resume goes on with this instrument's ticks)."""
        return []

    def _run_all(self, b: TickBatch) -> tuple[list[TradingSignal], list[Any]]:
        signals: list[TradingSignal] = []
        failures: list[Any] = []
        paise = np.rint(b.price * 100.0).astype(np.int64)
        for sid, strat in self.strategies:
            if sid in self.state.failed:
                continue
            try:
                if isinstance(strat, VectorStrategy):
                    signals.extend(self._vector(sid, strat, b, paise))
                else:
                    signals.extend(self._per_tick(sid, strat, b))
            except StrategyFailure as f:
                flat, failed, dead = self._fail(sid, f, b)
                signals.extend([*f.done, flat])
                failures.append((failed, dead))
        return signals, failures

    def process(self, b: TickBatch) -> StrategyOutput:
        signals, failures = self._run_all(b) if len(b) else ([], [])
        execs = self._execs(b)
        st = self.state
        if len(b):
            marks = boundary_marks(b.ts, b.price, st.last_ts, st.last_price, self.mark_grid_us)
            st.seen += len(b)
            st.last_ts = int(b.ts[-1])
            st.last_price = float(b.price[-1])
        elif st.last_ts is not None and b.watermark > st.last_ts:
            # Progress without ticks: the price held until the watermark.
            at = np.array([b.watermark], dtype=np.int64)
            held = np.array([st.last_price])
            marks = boundary_marks(at, held, st.last_ts, st.last_price, self.mark_grid_us)
            st.last_ts = b.watermark
        else:
            marks = Marks.none()
        signals.sort(key=lambda s: (s.timestamp, s.strategy_id, s.signal_id))
        return StrategyOutput(
            self.token,
            tuple(signals),
            marks,
            window_counts(b, self.window_us),
            b.watermark,
            tuple(f for f, _ in failures),
            tuple(d for _, d in failures),
            execs,
        )


def _entries(reg: Regime, last: int) -> tuple[I64, int | None]:
    """Where to fire: where the zone differs from the side of the last target (``last``),
    +q once on entering the buy zone, then nothing until the sell zone (and vice versa).
    Only the first tick of a run of one regime can: runs are compared, not zoned ticks.
    Returns those ticks and the side of the last zone (None: no tick in any)."""
    starts = np.flatnonzero(reg[1:] != reg[:-1]) + 1
    if len(reg):
        starts = np.concatenate(([0], starts))
    sides = reg[starts]
    zoned = sides != 0
    starts, sides = starts[zoned], sides[zoned]
    prev = np.concatenate(([last], sides[:-1]))
    return starts[sides != prev], int(sides[-1]) if len(sides) else None


def _rules(o: RunnerOptions, token: int) -> ExecRules:
    lot = o.lot_size.get(token, 1)
    return ExecRules(
        o.exec_latency_us or 0, o.limit_wait_us, o.protection, o.participation, o.day_end, lot
    )


def _by_day(b: TickBatch, day_end: Callable[[int], int]) -> list[TickBatch]:
    """``b`` cut at local midnights; every piece but the last progresses to the next one."""
    pieces, start, n = [], 0, len(b)
    while start < n:
        end = int(np.searchsorted(b.ts, day_end(int(b.ts[start])), "left"))
        end = max(end, start + 1)
        wm = b.watermark if end >= n else int(b.ts[end])
        recv = b.recv[start:end] if b.recv is not None else None
        depth = b.depth.take(slice(start, end)) if b.depth is not None else None
        pieces.append(TickBatch(b.instrument_token, b.ts[start:end], b.price[start:end],
                                b.volume[start:end], wm, recv, depth))  # fmt: skip
        start = end
    return pieces


def run_strategies(
    step_id: str,
    up: Stream[tuple[str, TickBatch]],
    factory: Callable[[str, KeyState | None], StrategyRunner],
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, StrategyOutput]]:
    """Per ``"{broker}:{token}"`` key, run its strategies; output re-keyed by broker."""
    out = stateful_by_key(f"{step_id}_run", up, factory, stopping=stopping)
    return op.map(f"{step_id}_by_broker", out, lambda kv: (broker_of(kv[0]), kv[1]))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: object, limit: int) -> str:
    """User text (a reason, an error) cut to ``limit`` characters, printable and valid
    UTF-8: a lone surrogate cannot be written to any sink, and a newline or escape code
    could forge a report or log line; each becomes '?'."""
    text = str(value)[:limit].encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("?", text)


def _failure(e: BaseException) -> str:
    """A user strategy's exception as text (its own ``__str__`` may fail too). A
    KeyboardInterrupt is the operator's Ctrl-C where SIGINT still raises one (no stop
    handler installed, e.g. a library call): that one ends the run."""
    if (
        isinstance(e, KeyboardInterrupt)
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        raise e
    try:
        detail = str(e)
    except BaseException:
        detail = "(its message could not be read)"
    return _text(f"{type(e).__name__}: {detail}", 300)
