"""Per-strategy exits the account runs on every mark: stop loss, take profit and a trailing
stop, in % of the position's average price (the trailing stop: of its best mark since it
opened, from its first mark on, never its fill price, whose slippage is no move). A
triggered exit closes the strategy's position at the next mark and latches: the strategy's
target is not ordered again until it changes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from schemas.ticks import F64, I64

Key = tuple[str, int]  # (strategy, instrument)


@dataclass(frozen=True)
class ExitRule:
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    trailing_stop_pct: float | None = None

    def any(self) -> bool:
        return any(x is not None for x in (self.stop_loss_pct, self.take_profit_pct,
                                            self.trailing_stop_pct))  # fmt: skip


@dataclass
class Held:
    qty: int
    avg: float
    best: float  # the best mark since it opened: highest (long) or lowest (short); NaN
    # until its first mark (the fill price is no mark: its slippage is no move)
    exiting: bool = False  # its exit order is out: not judged again unless that fails


@dataclass
class ExitState:
    held: dict[Key, Held] = field(default_factory=dict)
    latched: dict[Key, int] = field(default_factory=dict)  # exited: the target then


class Exits:
    """Pure logic over ``ExitState``; the account feeds it fills and marks."""

    def __init__(self, rules: dict[str, ExitRule], state: ExitState | None = None) -> None:
        self.rules = {sid: r for sid, r in rules.items() if r.any()}
        self.state = state or ExitState()
        st = self.state  # a resume under a config without some rule: forget its positions
        st.held = {k: h for k, h in st.held.items() if k[0] in self.rules}
        st.latched = {k: t for k, t in st.latched.items() if k[0] in self.rules}

    def on_fill(self, sid: str, token: int, qty: int, avg: float, price: float) -> None:
        """The strategy's position after a fill (``qty`` signed, ``avg`` its average; the
        fill ``price`` is not a mark, so the trailing stop does not start from it)."""
        if sid not in self.rules:
            return
        key, held = (sid, token), self.state.held
        before = held.get(key)
        if qty == 0:
            held.pop(key, None)
        elif before is None or (before.qty > 0) != (qty > 0):
            held[key] = Held(qty, avg, math.nan)  # opened (or flipped): from its next mark
        else:
            before.qty, before.avg = qty, avg

    def rearm(self, key: Key) -> None:
        """Its exit order ended unfilled: the position is judged again from the next mark."""
        h = self.state.held.get(key)
        if h is not None:
            h.exiting = False

    def triggers(self, times: I64, tokens: I64, prices: F64) -> tuple[int, list[tuple[Key, str]]]:
        """The first mark time (time-sorted marks) at which some exit triggers, and the exits
        that trigger then; (-1, []) if none does."""
        first, found = -1, list[tuple[Key, str]]()
        for key, h in sorted(self.state.held.items()):
            if h.exiting:
                continue
            mine = np.flatnonzero(tokens == key[1])
            if not len(mine):
                continue
            hit = self._hit(self.rules[key[0]], h, prices[mine])
            if hit is None:
                continue
            at, why = int(times[mine[hit[0]]]), hit[1]
            if first < 0 or at < first:
                first, found = at, [(key, why)]
            elif at == first:
                found.append((key, why))
        return first, found

    @staticmethod
    def _hit(rule: ExitRule, h: Held, px: F64) -> tuple[int, str] | None:
        """Index of the first mark that triggers ``rule`` on ``h``, and which exit."""
        long = h.qty > 0
        move = (px - h.avg) / h.avg * (1 if long else -1)  # the position's gain, in %/100
        best = (  # fmax / fmin: a NaN best (no mark yet) starts at the first mark
            np.fmax.accumulate(np.fmax(px, h.best))
            if long
            else np.fmin.accumulate(np.fmin(px, h.best))
        )
        checks: list[tuple[np.ndarray, str]] = []
        if rule.stop_loss_pct is not None:
            checks.append((move <= -rule.stop_loss_pct / 100, "STOP_LOSS"))
        if rule.take_profit_pct is not None:
            checks.append((move >= rule.take_profit_pct / 100, "TAKE_PROFIT"))
        if rule.trailing_stop_pct is not None:
            off = (best - px) / best if long else (px - best) / best
            checks.append((off >= rule.trailing_stop_pct / 100, "TRAILING_STOP"))
        hits = [(int(np.argmax(c)), why) for c, why in checks if c.any()]
        return min(hits) if hits else None

    def observe(self, tokens: I64, high: F64, low: F64) -> None:
        """Marks applied (each instrument's highest and lowest): the best marks move on."""
        for (_, token), h in self.state.held.items():
            k = np.flatnonzero(tokens == token)
            if len(k):
                h.best = (
                    float(np.fmax(h.best, high[k].max()))
                    if h.qty > 0
                    else float(np.fmin(h.best, low[k].min()))
                )

    def may_trigger(self, tokens: I64, high: F64, low: F64) -> bool:
        """Could a run with these per-instrument highs and lows trigger an exit?"""
        for (sid, token), h in self.state.held.items():
            k = np.flatnonzero(tokens == token)
            if h.exiting or not len(k):
                continue
            # the worst order for the position: its best first, then its worst
            px = np.array([high[k[0]], low[k[0]]] if h.qty > 0 else [low[k[0]], high[k[0]]])
            if self._hit(self.rules[sid], h, px) is not None:
                return True
        return False

    def exited(self, key: Key, target: int) -> None:
        """Its exit order is out: the target latches, the position waits for the fill."""
        self.state.latched[key] = target
        h = self.state.held.get(key)
        if h is not None:
            h.exiting = True

    def holds_back(self, key: Key, target: int) -> bool:
        """A target the strategy already stated before its exit: not ordered again."""
        latched = self.state.latched.get(key)
        if latched is None:
            return False
        if latched == target:
            return True
        del self.state.latched[key]  # a new target: the strategy trades again
        return False
