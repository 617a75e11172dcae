from __future__ import annotations

import io
import itertools
import math
import signal
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.strategies.api import Signal, Tick
from operators.strategies.mean_reversion import MeanReversion, MeanReversionParams
from operators.strategies.momentum import Momentum, MomentumParams
from operators.strategies.registry import build_strategy
from operators.strategies.runner import StrategyRunner, _entries
from operators.ticks import window_counts
from schemas.config import StrategyConfig
from schemas.enums import Broker
from schemas.events import TradingSignal
from schemas.ticks import US, StrategyOutput, TickBatch

T0 = 1_763_610_300 * US  # 2026-11-20 03:45 UTC, 09:15 IST


def _ticks(prices: list[float], step_us: int = 2 * US) -> TickBatch:
    ts = T0 + np.arange(len(prices), dtype=np.int64) * step_us
    p = np.array(prices, dtype=np.float64)
    return TickBatch(1, ts, p, np.full(len(p), -1, dtype=np.int64), int(ts[-1]))


def _cut(b: TickBatch, cuts: list[int]) -> list[TickBatch]:
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(b))), len(b)]
    return [
        TickBatch(b.instrument_token, b.ts[s:e], b.price[s:e], b.volume[s:e], int(b.ts[e - 1]))
        for s, e in itertools.pairwise(bounds)
    ]


def _runner() -> StrategyRunner:
    strategies = [
        ("mom", Momentum(MomentumParams(lookback=5, threshold=0.004, quantity=3))),
        ("mr", MeanReversion(MeanReversionParams(rsi_period=4, bollinger_lookback=6,
                                                 bollinger_width=1.0, oversold=35, overbought=65))),
        ("user", build_strategy(StrategyConfig.model_validate(
            {"id": "user", "class": "operators.strategies.example_user:Breakout",
             "instruments": [1], "brokers": ["paper"], "params": {"window": 7}}))),
    ]  # fmt: skip
    return StrategyRunner(Broker.PAPER, 1, strategies, mark_grid_us=60 * US, window_us=30 * US)


def _run(
    batches: list[TickBatch],
) -> tuple[list[TradingSignal], list[tuple[int, float]], dict[int, int]]:
    r = _runner()
    outs: list[StrategyOutput] = [r.process(b) for b in batches]
    signals = [s for o in outs for s in o.signals]
    marks = [
        (t, p)
        for o in outs
        for t, p in zip(o.marks.ts.tolist(), o.marks.price.tolist(), strict=True)
    ]
    counts: dict[int, int] = {}
    for o in outs:
        for w, n in zip(o.counts.window.tolist(), o.counts.count.tolist(), strict=True):
            counts[w] = counts.get(w, 0) + n
    return signals, marks, counts


def test_momentum_fires_once_per_crossing() -> None:
    prices = [100.0] * 6 + [101.0, 101.5, 102.0, 102.5, 103.0] + [103.0] * 6 + [99.0, 98.0]
    signals, _, _ = _run([_ticks(prices)])
    moms = [(s.target_quantity, s.price) for s in signals if s.strategy_id == "mom"]
    assert moms == [(3, 101.0), (-3, 99.0)]  # hold +3, then -3


def test_long_only_goes_flat_in_the_sell_zone() -> None:
    prices = [100.0] * 6 + [101.0, 101.5, 102.0, 102.5, 103.0] + [103.0] * 6 + [99.0, 98.0]
    params = MomentumParams(lookback=5, threshold=0.004, quantity=3, allow_short=False)
    r = StrategyRunner(Broker.PAPER, 1, [("m", Momentum(params))], 60 * US, 30 * US)
    assert [s.target_quantity for s in r.process(_ticks(prices)).signals] == [3, 0]


class _Bad:
    def __str__(self) -> str:
        raise RuntimeError("no text")


class _Raises:
    def __init__(self, at: int) -> None:
        self.at, self.n = at, 0

    def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
        self.n += 1
        if self.n == self.at:
            raise ValueError("bad feed")
        return Signal("BUY", 2) if self.n == 2 else None


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text either")


def _raise(e: BaseException) -> None:
    raise e


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (_Raises(4), "ValueError: bad feed"),
        (type("Zero", (), {"on_tick": lambda self, t, s: Signal("BUY", 0)})(), "quantity 0"),
        (type("Frac", (), {"on_tick": lambda self, t, s: Signal("SELL", 2.5)})(), "quantity 2.5"),  # type: ignore[arg-type]
        (type("Wrong", (), {"on_tick": lambda self, t, s: "BUY"})(), "must return Signal"),
        (type("Side", (), {"on_tick": lambda self, t, s: Signal("HOLD", 1)})(), "'HOLD'"),
        (type("Huge", (), {"on_tick": lambda self, t, s: Signal("BUY", 2**70)})(), "beyond"),
        (type("Why", (), {"on_tick": lambda self, t, s: Signal("BUY", 1, _Bad())})(), "no text"),  # type: ignore[arg-type]
        (type("Exit", (), {"on_tick": lambda self, t, s: sys.exit(3)})(), "SystemExit: 3"),
        (
            type("Mute", (), {"on_tick": lambda self, t, s: _raise(_Unprintable())})(),
            "_Unprintable: (its message could not be read)",
        ),
    ],
)
def test_a_failing_strategy_goes_flat_and_stops_while_the_others_go_on(
    bad: Any, error: str
) -> None:
    prices = [100.0] * 6 + [101.0, 101.5, 102.0, 102.5, 103.0] + [103.0] * 6 + [99.0, 98.0]
    mom = Momentum(MomentumParams(lookback=5, threshold=0.004, quantity=3))
    r = StrategyRunner(Broker.PAPER, 1, [("bad", bad), ("mom", mom)], 60 * US, 30 * US)
    batch = _ticks(prices)
    first, second = r.process(_cut(batch, [8])[0]), r.process(_cut(batch, [8])[1])
    bad_targets = [
        s.target_quantity for o in (first, second) for s in o.signals if s.strategy_id == "bad"
    ]
    assert bad_targets[-1] == 0 and len(first.failures) == 1 and not second.failures
    (dead,) = first.dead
    assert dead.reason == "STRATEGY_ERROR" and error in dead.detail
    assert "strategy bad on instrument 1" in dead.detail
    moms = [(s.target_quantity, s.price) for o in (first, second) for s in o.signals
            if s.strategy_id == "mom"]  # fmt: skip
    assert moms == [(3, 101.0), (-3, 99.0)]  # unaffected


def test_user_text_that_is_not_valid_utf8_reaches_the_ledger_as_utf8() -> None:
    class Surrogate:
        def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
            return Signal("BUY", 1, "bad \ud800 reason")  # a lone surrogate: no UTF-8 for it

    r = StrategyRunner(Broker.PAPER, 1, [("u", Surrogate())], 60 * US, 30 * US)
    sig = r.process(_ticks([100.0, 100.5])).signals[0]
    assert sig.reason == "bad ? reason"
    forged = type("F", (), {"on_tick": lambda self, t, s: Signal("BUY", 1, "x\nERROR\x1b[2J\x00")})
    r = StrategyRunner(Broker.PAPER, 1, [("f", forged())], 60 * US, 30 * US)
    assert r.process(_ticks([100.0])).signals[0].reason == "x?ERROR?[2J?"  # no forged lines
    pq.write_table(pa.Table.from_pylist([{"reason": sig.reason}]), io.BytesIO())  # writable


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(-40, 40), min_size=30, max_size=400),
    cuts=st.lists(st.integers(1, 399), max_size=25),
)
def test_results_do_not_depend_on_batch_boundaries(steps: list[int], cuts: list[int]) -> None:
    paise = 100_000 + np.cumsum(np.array(steps, dtype=np.int64) * 5)
    whole = _ticks((paise / 100).tolist(), step_us=7 * US)
    assert _run([whole]) == _run(_cut(whole, cuts))


def test_signal_ids_are_deterministic_and_unique() -> None:
    rng = np.random.default_rng(3)
    prices = (1000 * np.exp(np.cumsum(rng.normal(0, 0.004, 600)))).round(2).tolist()
    a, _, _ = _run([_ticks(prices)])
    b, _, _ = _run([_ticks(prices)])
    assert a and [s.signal_id for s in a] == [s.signal_id for s in b]
    assert len({s.signal_id for s in a}) == len(a)


def test_numpy_integer_quantities_are_targets_like_ints() -> None:
    sig = Signal("SELL", np.int64(7))  # type: ignore[arg-type]
    assert sig.target() == -7 and type(sig.target()) is int


def test_session_reset_strategies_start_afresh_each_trading_day() -> None:
    from datetime import datetime, timezone

    from operators.session import MarketSession
    from operators.strategies.runner import RunnerOptions
    from schemas.config import SessionConfig
    from schemas.ticks import TickBatch, to_us
    from tests.support import CountingStrategy

    fri = to_us(datetime(2026, 11, 20, 9, 55, tzinfo=timezone.utc))  # 15:25 IST
    mon = to_us(datetime(2026, 11, 23, 3, 50, tzinfo=timezone.utc))  # 09:20 IST
    ts = np.array([fri + k * US for k in range(4)] + [mon + k * US for k in range(4)])
    batch = TickBatch(1, ts.astype(np.int64), np.full(8, 100.0), np.zeros(8, dtype=np.int64),
                      int(ts[-1]))  # fmt: skip
    day_end = MarketSession(SessionConfig()).day_end
    fired = {}
    for resets in (frozenset(), frozenset({"c"})):
        opts = RunnerOptions(session_reset=resets, day_end=day_end)
        r = StrategyRunner(Broker.PAPER, 1, [("c", CountingStrategy(at=3))], 60 * US, 30 * US,
                           None, opts)  # fmt: skip
        outs = r.on_item(batch)  # one batch across the weekend: cut at midnight
        fired[bool(resets)] = [to_us(s.timestamp) for o in outs for s in o.signals]
        assert outs[-1].watermark == batch.watermark
    assert fired[False] == [fri + 2 * US]  # counts on from Friday
    assert fired[True] == [fri + 2 * US, mon + 2 * US]  # warms up again on Monday


@pytest.mark.parametrize("wait_s", [5, 20])
def test_a_search_finds_no_tick_beyond_its_wait(wait_s: int) -> None:
    """A resting buy limit at 100 is reached only at 10 s: found with a 20 s wait, not with
    a 5 s one (then it lapses); the sell side and the next tick are found either way."""
    from operators.strategies.execution import ExecFinder, ExecRules, ExecState
    from schemas.ticks import TickBatch

    ts = np.array([0, 1, 2, 10, 30], dtype=np.int64) * US + 7 * US
    px = np.array([100.0, 101.0, 101.0, 99.0, 98.0])
    tape = TickBatch(1, ts, px, np.full(5, -1, dtype=np.int64), int(ts[-1]))
    finder = ExecFinder(1, ExecRules(0, wait_s * US), ExecState())
    finder.add(tape, 0, "s0", "s", 10, "LIMIT")
    found = {(e.cross, e.ts) for e in finder.found(tape)}
    buy = {("BUY", int(ts[3]))} if wait_s == 20 else set()
    assert found == {(None, int(ts[1])), ("SELL", int(ts[1]))} | buy
    assert not finder.state.searching  # done, or lapsed at the end of its wait


def test_limit_searches_per_key_stay_bounded() -> None:
    from operators.strategies.execution import MAX_CROSSING, ExecFinder, ExecRules, ExecState
    from schemas.ticks import TickBatch

    finder = ExecFinder(1, ExecRules(0, 10**15), ExecState())
    ts = np.arange(1, 501, dtype=np.int64) * US
    px = np.linspace(100.0, 104.99, 500, dtype=np.float64)
    rising = TickBatch(1, ts, px, np.zeros(500, dtype=np.int64), int(ts[-1]))
    for i in range(400):  # LIMIT signals on a rising tape: their buy-side searches never fill
        finder.add(rising, i, f"s{i}", "s", 10, "LIMIT")
    finder.found(rising)
    kept = [x for x in finder.state.searching if x.kind != "next"]
    assert len(kept) == MAX_CROSSING and kept[-1].signal_id == "s399"  # the newest kept


def _plain_mean_reversion(paise: list[int], p: MeanReversionParams) -> list[tuple[int, float]]:
    """Regime and RSI at each tick from the textbook sums over its own windows."""
    history = max(p.rsi_period + 1, p.bollinger_lookback)
    out = []
    for i, px in enumerate(paise):
        rsi, side = 50.0, 0
        if i >= p.rsi_period:
            moves = [paise[k] - paise[k - 1] for k in range(i - p.rsi_period + 1, i + 1)]
            up, down = sum(m for m in moves if m > 0), -sum(m for m in moves if m < 0)
            rsi = 100.0 * up / (up + down) if up + down else 50.0
        if i >= history - 1:
            window = paise[i - p.bollinger_lookback + 1 : i + 1]
            mean = sum(window) / p.bollinger_lookback
            var = sum(x * x for x in window) / p.bollinger_lookback - mean * mean
            band = p.bollinger_width * math.sqrt(max(var, 0.0))
            side = int(rsi < p.oversold and px < mean - band)
            side -= int(rsi > p.overbought and px > mean + band)
        out.append((side, rsi))
    return out


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.integers(-40, 40), min_size=1, max_size=200),
    period=st.integers(2, 20),
    lookback=st.integers(2, 40),
    width=st.sampled_from([0.5, 1.0, 2.0]),
    prev=st.integers(0, 200),
)
def test_mean_reversion_is_the_textbook_rsi_and_bands(
    steps: list[int], period: int, lookback: int, width: float, prev: int
) -> None:
    """Exactly (RSI and regime) what the sums over each tick's own windows give."""
    p = MeanReversionParams(rsi_period=period, bollinger_lookback=lookback,
                            bollinger_width=width, oversold=35, overbought=65)  # fmt: skip
    paise = 100_000 + np.cumsum(np.array(steps, dtype=np.int64) * 5)
    prev = min(prev, len(paise))
    reg, rsi = MeanReversion(p).regime(paise, prev)
    plain = _plain_mean_reversion(paise.tolist(), p)
    if len(paise) < max(period + 1, lookback):  # too short to judge: nothing
        plain = [(0, 0.0)] * len(paise)
    assert list(zip(reg.tolist(), rsi.tolist(), strict=True)) == plain[prev:]


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.sampled_from([0, 1, 3, 59, 60, 61, 500, 10**6]), min_size=1, max_size=80),
    start=st.integers(0, 10**12),
)
def test_window_counts_are_the_tick_by_tick_count(gaps: list[int], start: int) -> None:
    """Ticks per 60 µs window, and each window's last tick, as counted tick by tick (also
    with more windows than ticks between the first and the last)."""
    ts = start + np.cumsum(np.array(gaps, dtype=np.int64))
    plain: list[list[int]] = []
    for t in ts.tolist():
        if plain and plain[-1][0] == t // 60:
            plain[-1][1:] = [plain[-1][1] + 1, t]
        else:
            plain.append([t // 60, 1, t])
    b = TickBatch(1, ts, np.ones(len(ts)), np.ones(len(ts), dtype=np.int64), int(ts[-1]))
    got = window_counts(b, 60)
    assert got.window.dtype == got.count.dtype == got.last_ts.dtype == np.int64
    rows = zip(got.window.tolist(), got.count.tolist(), got.last_ts.tolist(), strict=True)
    assert [list(r) for r in rows] == plain


@settings(max_examples=300, deadline=None)
@given(
    regimes=st.lists(st.sampled_from([-1, 0, 0, 1]), max_size=60),
    repeat=st.integers(1, 4),
    last=st.sampled_from([-1, 0, 1]),
)
def test_targets_fire_where_a_tick_by_tick_walk_would(
    regimes: list[int], repeat: int, last: int
) -> None:
    """A target fires at a zoned tick whose side differs from the last zone's."""
    reg = np.repeat(np.array(regimes, dtype=np.int8), repeat)
    fired, side = [], last
    for i, r in enumerate(reg.tolist()):
        if r and r != side:
            fired.append(i)
        side = r or side
    got, after = _entries(reg, last)
    assert got.tolist() == fired
    assert after == (side if reg.any() else None)


def test_a_keyboard_interrupt_from_a_strategy_is_isolated_unless_it_is_a_real_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Interrupts:
        def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
            raise KeyboardInterrupt

    def runner() -> StrategyRunner:
        return StrategyRunner(Broker.PAPER, 1, [("k", Interrupts())], 60 * US, 30 * US)

    with pytest.raises(KeyboardInterrupt):  # SIGINT raises here: it may be the operator's
        runner().process(_ticks([100.0]))
    monkeypatch.setattr(signal, "getsignal", lambda _s: lambda *_a: None)  # the flow's handler
    out = runner().process(_ticks([100.0]))
    assert [d.reason for d in out.dead] == ["STRATEGY_ERROR"] and "KeyboardInterrupt" in out.dead[
        0
    ].detail
