"""``stateful_by_key``: a stateful operator whose logic knows its key.

Bytewax's ``stateful_batch`` builders receive only the resume state; the per-broker and
per-instrument stages need their key (broker name, instrument token) to build their logic.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

V = TypeVar("V")
W = TypeVar("W")
V_contra = TypeVar("V_contra", contravariant=True)
W_co = TypeVar("W_co", covariant=True)


class KeyedLogic(Protocol[V_contra, W_co]):
    """Logic of one key: ``state`` is what gets snapshotted (must be picklable). A logic may
    also define ``next_wake() -> datetime | None`` and ``on_wake() -> Iterable[W]`` to be
    called at a wall-clock time (live stages only)."""

    state: Any

    def on_item(self, item: V_contra) -> Iterable[W_co]: ...

    def on_eof(self) -> Iterable[W_co]: ...


Factory = Callable[[str, Any], KeyedLogic[V, W]]


class _Shim(StatefulBatchLogic[tuple[str, Any], Any, tuple[str, Any]], Generic[V, W]):
    def __init__(
        self,
        factory: Factory[V, W],
        resume: tuple[str, Any] | None,
        batched: bool,
        stopping: Callable[[], bool] | None = None,
    ) -> None:
        self.factory = factory
        self.batched = batched
        self.stopping = stopping
        self.logic: KeyedLogic[V, W] | None = None
        self.key: str | None = None
        if resume is not None:
            self.key = resume[0]
            self.logic = factory(resume[0], resume[1])

    def on_batch(self, values: list[tuple[str, Any]]) -> tuple[list[Any], bool]:
        out: list[Any] = []
        for key, value in values:
            if self.logic is None:
                self.key, self.logic = key, self.factory(key, None)
            if not self.batched:
                out.extend(self.logic.on_item(value))
                continue
            chunk: list[W] = []
            for v in value:
                chunk.extend(self.logic.on_item(v))
            if chunk:
                out.append(chunk)
        return out, False

    def notify_at(self) -> datetime | None:
        wake = getattr(self.logic, "next_wake", None)
        return wake() if wake is not None else None

    def on_notify(self) -> tuple[list[Any], bool]:
        woken = getattr(self.logic, "on_wake", None)
        if woken is None:
            return [], False
        out = list(woken())
        if self.batched:
            return ([out] if out else []), False
        return out, False

    def on_eof(self) -> tuple[list[Any], bool]:
        if self.logic is None:
            return [], False
        on_stop = getattr(self.logic, "on_stop", None)
        if on_stop is not None and self.stopping is not None and self.stopping():
            tail = list(on_stop())  # a stop, not the end of the data: nothing final
        else:
            tail = list(self.logic.on_eof())
        if self.batched:
            return ([tail] if tail else []), False
        return tail, False

    def snapshot(self) -> tuple[str, Any]:
        assert self.logic is not None and self.key is not None
        return (self.key, copy.deepcopy(self.logic.state))


def stateful_by_key(
    step_id: str,
    up: Stream[tuple[str, Any]],
    factory: Factory[V, W],
    batched: bool = False,
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, Any]]:
    """Run ``factory(key, resume_state)``'s logic per key; items come out in logic order.

    With ``batched``, each upstream value is a list of items and each list of outputs
    travels as one value: the per-broker stages move few, large items. When the input ends
    because ``stopping()`` (a stop asked of the run, which a resume continues), a logic
    with ``on_stop`` has that called instead of ``on_eof``: the state snapshotted then must
    be the one an uninterrupted run would have, with nothing done as if the data ended.
    """
    tagged = op.map(f"{step_id}_tag", up, lambda kv: (kv[0], (kv[0], kv[1])))
    return op.stateful_batch(
        f"{step_id}_logic",
        tagged,
        lambda resume: _Shim(factory, resume, batched, stopping),
    )
