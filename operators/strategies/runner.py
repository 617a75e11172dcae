"""Run the strategies of one (broker, instrument) key over tick batches, state carried."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key
from operators.strategies.api import Signal, Tick, TickStrategy, VectorStrategy
from operators.ticks import boundary_marks, window_counts
from schemas.enums import Broker, SignalType
from schemas.events import TradingSignal
from schemas.ids import content_id, tick_id
from schemas.ticks import I64, StrategyOutput, TickBatch, from_us


@dataclass
class KeyState:
    """Everything one key carries between batches (picklable, for recovery)."""

    seen: int = 0
    history: dict[str, I64] = field(default_factory=dict)
    regime: dict[str, int] = field(default_factory=dict)
    user_state: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_ts: int | None = None
    last_price: float = 0.0


class StrategyRunner:
    """Pure logic: turns tick batches of one key into signals, marks and tick counts."""

    def __init__(
        self,
        broker: Broker,
        token: int,
        strategies: Sequence[tuple[str, VectorStrategy | TickStrategy]],
        mark_grid_us: int,
        window_us: int,
        state: KeyState | None = None,
    ) -> None:
        self.broker = broker
        self.token = token
        self.strategies = strategies
        self.mark_grid_us = mark_grid_us
        self.window_us = window_us
        self.state = state if state is not None else KeyState()

    def _signal(
        self, sid: str, side: SignalType, qty: int, i: int, b: TickBatch, why: str
    ) -> TradingSignal:
        seq = self.state.seen + i
        ts = int(b.ts[i])
        return TradingSignal(
            signal_id=content_id("sig", sid, self.broker.value, self.token, ts, seq, side.value),
            correlation_id=tick_id(self.token, ts, seq),
            strategy_id=sid,
            broker=self.broker,
            instrument_token=self.token,
            signal_type=side,
            quantity=qty,
            price=float(b.price[i]),
            timestamp=from_us(ts),
            reason=why,
        )

    def _vector(
        self, sid: str, strat: VectorStrategy, b: TickBatch, paise: I64
    ) -> list[TradingSignal]:
        st = self.state
        hist = st.history.get(sid, np.zeros(0, dtype=np.int64))
        full = np.concatenate((hist, paise))
        reg, value = strat.regime(full, len(hist))
        # Fire where the zone differs from the side of the last signal: BUY once on entering
        # the buy zone, then nothing until a SELL (and vice versa).
        zoned = np.flatnonzero(reg)
        sides = reg[zoned]
        prev = np.concatenate(([st.regime.get(sid, 0)], sides[:-1]))
        fire = zoned[sides != prev]
        st.history[sid] = full[-strat.history :].copy()
        if len(sides):
            st.regime[sid] = int(sides[-1])
        out = []
        for i in fire.tolist():
            side = int(reg[i])
            why = strat.describe(float(value[i]), side)
            kind = SignalType.BUY if side > 0 else SignalType.SELL
            out.append(self._signal(sid, kind, strat.quantity, i, b, why))
        return out

    def _per_tick(self, sid: str, strat: TickStrategy, b: TickBatch) -> list[TradingSignal]:
        state = self.state.user_state.setdefault(sid, {})
        out = []
        for i in range(len(b)):
            vol = int(b.volume[i])
            tick = Tick(
                self.token, from_us(int(b.ts[i])), float(b.price[i]), vol if vol >= 0 else None
            )
            sig = strat.on_tick(tick, state)
            if sig is None:
                continue
            if not isinstance(sig, Signal):
                raise TypeError(f"strategy {sid}: on_tick must return Signal or None, got {sig!r}")
            side = SignalType(sig.signal_type)
            out.append(self._signal(sid, side, sig.quantity, i, b, sig.reason or "on_tick"))
        return out

    def on_item(self, b: TickBatch) -> list[StrategyOutput]:
        return [self.process(b)]

    def on_eof(self) -> list[StrategyOutput]:
        return []

    def process(self, b: TickBatch) -> StrategyOutput:
        signals: list[TradingSignal] = []
        if len(b):
            paise = np.rint(b.price * 100.0).astype(np.int64)
            for sid, strat in self.strategies:
                if isinstance(strat, VectorStrategy):
                    signals.extend(self._vector(sid, strat, b, paise))
                else:
                    signals.extend(self._per_tick(sid, strat, b))
        st = self.state
        if len(b):
            marks = boundary_marks(
                self.token, b.ts, b.price, st.last_ts, st.last_price, self.mark_grid_us
            )
            st.seen += len(b)
            st.last_ts = int(b.ts[-1])
            st.last_price = float(b.price[-1])
        elif st.last_ts is not None and b.watermark > st.last_ts:
            # Progress without ticks: the price held until the watermark.
            at = np.array([b.watermark], dtype=np.int64)
            held = np.array([st.last_price])
            marks = boundary_marks(
                self.token, at, held, st.last_ts, st.last_price, self.mark_grid_us
            )
            st.last_ts = b.watermark
        else:
            marks = ()
        signals.sort(key=lambda s: (s.timestamp, s.strategy_id, s.signal_id))
        return StrategyOutput(
            self.token, tuple(signals), marks, window_counts(b, self.window_us), b.watermark
        )


def run_strategies(
    step_id: str,
    up: Stream[tuple[str, TickBatch]],
    factory: Callable[[str, KeyState | None], StrategyRunner],
) -> Stream[tuple[str, StrategyOutput]]:
    """Per ``"{broker}:{token}"`` key, run its strategies; output re-keyed by broker."""
    out = stateful_by_key(f"{step_id}_run", up, factory)
    return op.map(f"{step_id}_by_broker", out, lambda kv: (kv[0].split(":", 1)[0], kv[1]))
