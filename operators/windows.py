"""Tumbling event-time windows over a stream in event-time order per key, in integer µs.

What Bytewax's ``fold_window`` gives with a tumbling windower aligned to the epoch and a
clock whose watermark is the latest time seen, without a datetime per item: an item older
than one already seen of its key is late and left out (as Bytewax's late stream, which the
flow does not read); a window closes, oldest first, once an item at or after its end
arrives; the end of the stream closes every window and starts the key afresh. A stop of the
run (which a resume continues) closes nothing: its open windows go on after the resume.

With ``keep_late``, a late item is folded into the window open at the watermark instead
(its own has closed): counted when it came, never dropped, and kept in the state a resume
starts from, so an interrupted run counts it where an uninterrupted one does.

Items a ``passive`` test picks (those that reach the key ahead of the event-time ordered
stream, such as a live feed's latency samples) are folded into their window while it is
open, and late once it closed. They move the watermark only to ``ahead`` windows behind
them: the ordered items of earlier windows that come after them still count (a live feed
catching up on a backlog runs far ahead of the ordered stream), and the windows of a stream
that stopped (a live instrument holding the ordering back) are bounded in number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bytewax.dataflow import Stream

from operators.keyed import stateful_by_key

V = TypeVar("V")
A = TypeVar("A")

_NEVER = -(2**63)


@dataclass
class WindowState(Generic[A]):
    watermark: int = _NEVER  # latest item time seen (µs)
    open: dict[int, A] = field(default_factory=dict)  # window index → accumulator, oldest first


class TumblingFold(Generic[V, A]):
    """Pure logic of one key's windows: ``fold(acc, item)`` into the window of
    ``ts_of(item) // length_us``; emits ``(window index, acc)`` as windows close."""

    def __init__(
        self,
        length_us: int,
        new: Callable[[], A],
        fold: Callable[[A, V], A],
        ts_of: Callable[[V], int],
        state: WindowState[A] | None = None,
        passive: Callable[[V], bool] | None = None,
        ahead: int = 1,
        keep_late: bool = False,
    ) -> None:
        self.length, self.new, self.fold, self.ts_of = length_us, new, fold, ts_of
        self.state: WindowState[A] = state or WindowState()
        self.passive, self.ahead, self.keep_late = passive, ahead, keep_late

    def on_item(self, item: V) -> list[tuple[int, A]]:
        st, ts = self.state, self.ts_of(item)
        idx = ts // self.length
        if self.passive is not None and self.passive(item):
            if (idx + 1) * self.length > st.watermark:  # its window is still open
                self._fold_into(idx, item)
            behind = ts - self.ahead * self.length  # ordered items older than this: late
            if behind <= st.watermark:
                return []
            st.watermark = behind
            return self._close(behind)
        if ts < st.watermark:  # late
            if self.keep_late:  # into the window open at the watermark (see the module)
                self._fold_into(st.watermark // self.length, item)
            return []
        st.watermark = ts
        self._fold_into(idx, item)
        first = next(iter(st.open))
        if (first + 1) * self.length > ts:
            return []
        return self._close(ts)

    def _fold_into(self, idx: int, item: V) -> None:
        """Fold ``item`` into window ``idx``, the open windows kept oldest first (a passive
        item may have opened a later one)."""
        opened = self.state.open
        acc = opened.get(idx)
        before = acc is None and bool(opened) and idx < next(reversed(opened))
        opened[idx] = self.fold(self.new() if acc is None else acc, item)
        if before:  # opened behind a later window
            self.state.open = dict(sorted(opened.items()))

    def _close(self, watermark: int | None) -> list[tuple[int, A]]:
        """Windows ending at or before ``watermark`` (all if None), oldest first."""
        out: list[tuple[int, A]] = []
        opened = self.state.open
        for idx in list(opened):
            if watermark is not None and (idx + 1) * self.length > watermark:
                break
            out.append((idx, opened.pop(idx)))
        return out

    def on_eof(self) -> list[tuple[int, A]]:
        out = self._close(None)
        self.state = WindowState()  # as a Bytewax window step left empty: dropped
        return out

    def on_stop(self) -> list[tuple[int, A]]:
        """A stop, not the data's end: the open windows stay in the state a resume starts
        from (closing them would write part-filled windows the resume writes again)."""
        return []


def tumbling_fold(
    step_id: str,
    up: Stream[tuple[str, V]],
    make: Callable[[WindowState[A] | None], TumblingFold[V, A]],
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, Any]]:
    """Keyed: ``(window index, accumulator)`` of each closed window of the ``TumblingFold``
    that ``make(resume state)`` builds per key (see the module); ``stopping()``: the input
    ended because the run was asked to stop."""
    return stateful_by_key(step_id, up, lambda _key, resume: make(resume), stopping=stopping)
