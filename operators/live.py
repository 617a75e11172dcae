"""Live counters for the Redis state: running totals per broker and for the run, emitted
whole after every batch that changes them (a reader never needs to add deltas)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key
from operators.report import REPORT_KEY, Tally
from schemas.enums import Broker
from schemas.events import (
    DeadLetter,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    RejectedSignal,
    TradingSignal,
    ValidatedSignal,
)
from schemas.redis_keys import BrokerCounters, RunCounters
from schemas.ticks import Clock

COUNTED = (TradingSignal, ValidatedSignal, RejectedSignal, OrderPlaced, OrderFailed, OrderFilled)


@dataclass
class CountState:
    n: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    last: Any = None


class LiveCounters:
    """Totals of one key: a broker's trading events, or the run's ticks and dead letters."""

    def __init__(self, key: str, state: CountState | None = None) -> None:
        self.key = key
        self.state = state or CountState()

    def count(self, item: Any) -> None:
        st = self.state
        if isinstance(item, Tally):
            st.n["rows_read"] += item.rows_read
            st.n["ticks"] += item.ticks
        elif isinstance(item, DeadLetter):
            st.n["dead"] += 1
            st.reasons[str(item.reason)] += 1
        elif isinstance(item, COUNTED):
            st.n[type(item).__name__] += 1
            st.last = item.timestamp
            if isinstance(item, RejectedSignal):
                st.reasons.update(str(r) for r in item.reasons)

    def on_item(self, items: list[Any]) -> list[BrokerCounters | RunCounters]:
        for item in items:
            self.count(item)
        return [self.value()]

    def value(self) -> BrokerCounters | RunCounters:
        n, reasons = self.state.n, dict(sorted(self.state.reasons.items()))
        if self.key == REPORT_KEY:
            return RunCounters(
                rows_read=n["rows_read"],
                ticks_processed=n["ticks"],
                dead_letters=n["dead"],
                dead_letters_by_reason=reasons,
            )
        return BrokerCounters(
            broker=Broker(self.key),
            signals=n["TradingSignal"],
            validated=n["ValidatedSignal"],
            rejected=n["RejectedSignal"],
            rejections_by_reason=reasons,
            orders_placed=n["OrderPlaced"],
            orders_failed=n["OrderFailed"],
            fills=n["OrderFilled"],
            as_of=self.state.last,
        )

    def on_eof(self) -> list[BrokerCounters | RunCounters]:
        return []


def _picker(clocks: bool) -> Callable[[tuple[str, list[Any]]], list[tuple[str, list[Any]]]]:
    """Counted events of a batch; with ``clocks`` a health clock alone also passes, so that
    every broker's counters are written each window even when nothing happens."""

    def pick(kv: tuple[str, list[Any]]) -> list[tuple[str, list[Any]]]:
        mine = [i for i in kv[1] if isinstance(i, COUNTED)]
        beat = clocks and any(isinstance(i, Clock) and i.grid == "health" for i in kv[1])
        return [(kv[0], mine)] if mine or beat else []

    return pick


def live_counters(
    step_id: str,
    per_broker: list[Stream[tuple[str, list[Any]]]],
    run: Stream[tuple[str, Any]],
) -> Stream[BrokerCounters | RunCounters]:
    """Whole counters: per broker from its event streams (the first one's health clocks pace
    the idle brokers), and the run's from ``run`` (the report's input stream)."""
    picked = [
        op.flat_map(f"{step_id}_pick_{k}", s, _picker(k == 0)) for k, s in enumerate(per_broker)
    ]
    run_items = op.flat_map(
        f"{step_id}_run",
        run,
        lambda kv: [(kv[0], [kv[1]])] if isinstance(kv[1], (Tally, DeadLetter)) else [],
    )
    make: Callable[[str, Any], LiveCounters] = LiveCounters
    counted = stateful_by_key(step_id, op.merge(f"{step_id}_in", *picked, run_items), make)
    return op.key_rm(f"{step_id}_unkey", counted)
