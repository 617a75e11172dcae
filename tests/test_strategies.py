from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.strategies.mean_reversion import MeanReversion, MeanReversionParams
from operators.strategies.momentum import Momentum, MomentumParams
from operators.strategies.registry import build_strategy
from operators.strategies.runner import StrategyRunner
from schemas.config import StrategyConfig
from schemas.enums import Broker
from schemas.events import TradingSignal
from schemas.ticks import US, Mark, StrategyOutput, TickBatch

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


def _run(batches: list[TickBatch]) -> tuple[list[TradingSignal], list[Mark], dict[int, int]]:
    r = _runner()
    outs: list[StrategyOutput] = [r.process(b) for b in batches]
    signals = [s for o in outs for s in o.signals]
    marks = [m for o in outs for m in o.marks]
    counts: dict[int, int] = {}
    for o in outs:
        for w, n in zip(o.counts.window.tolist(), o.counts.count.tolist(), strict=True):
            counts[w] = counts.get(w, 0) + n
    return signals, marks, counts


def test_momentum_fires_once_per_crossing() -> None:
    prices = [100.0] * 6 + [101.0, 101.5, 102.0, 102.5, 103.0] + [103.0] * 6 + [99.0, 98.0]
    signals, _, _ = _run([_ticks(prices)])
    moms = [(s.signal_type, s.price) for s in signals if s.strategy_id == "mom"]
    assert moms == [("BUY", 101.0), ("SELL", 99.0)]


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
