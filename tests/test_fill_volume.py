"""Paper fills bounded by the tape: an order takes at most ``max_participation`` of the
volume traded at each tick (partial fills, the rest later or cancelled), and a MARKET order
never fills beyond its market protection (it rests at the protected price)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.strategies.execution import enough
from schemas.ids import tick_id
from schemas.ticks import to_us
from tests.support import INSTRUMENTS, TOKENS, T, make_config, run_graph, small_ticks

PART = 0.05


def _tape(ticks: Path) -> dict[int, list[tuple[int, float, int]]]:
    """Each instrument's ticks in order: (time, price, shares traded at that tick), worked
    out here from the cumulative day volume: the rise over the higher of the two counts
    before it (a fall trades nothing; the very first count trades nothing)."""
    rows = sorted(
        ds.dataset(ticks).to_table().to_pylist(),
        key=lambda r: (r["instrument_token"], r["timestamp"]),
    )
    tape: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    prev: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        tok, vol = r["instrument_token"], r["volume"]
        traded = max(vol - max(prev[tok][-2:]), 0) if prev[tok] else 0
        prev[tok].append(vol)
        tape[tok].append((to_us(r["timestamp"]), r["last_price"], traded))
    return tape


def _greedy(qty: int, signal: Any, ticks: list[tuple[int, float, int]]) -> list[tuple[int, int]]:
    """(time, quantity) of each fill of an order of ``qty`` for ``signal`` that has its
    instrument's volume to itself: from the tick after the signal's, min(left,
    floor(PART × traded)) at each tick, until done."""
    seq = next(
        i
        for i, (t, _, _) in enumerate(ticks)
        if tick_id(signal.instrument_token, t, i) == signal.correlation_id
    )
    out, left = [], qty
    for t, price, traded in ticks[seq + 1 :]:
        assert abs(price / signal.price - 1) < 0.02  # inside the protection on this tape
        take = min(left, math.floor(PART * traded + 1e-9))
        if take > 0:
            out.append((t, take))
            left -= take
        if not left:
            break
    return out


def test_each_fill_takes_at_most_its_share_of_the_volume_traded_at_its_tick(
    tmp_path: Path,
) -> None:
    ticks = small_ticks(tmp_path, bad_rows=False)
    strategies = make_config(ticks).model_dump(by_alias=True)["strategies"]
    for s in strategies:
        s["params"]["quantity"] = 40  # larger than a tick's share: fills come in parts
    cfg = make_config(ticks, strategies=strategies, execution={"max_participation": PART})
    rows, _ = run_graph(cfg, tmp_path / "out")
    tape = _tape(ticks)
    signals = {s.signal_id: s for s in rows["signals"]}
    fills: dict[str, list[Any]] = defaultdict(list)
    at_tick: dict[tuple[int, int], int] = defaultdict(int)
    own = {s.signal_id for s in rows["signals"] if s.reason.startswith(("AUTO", "FLATTEN"))}
    for f in rows["fills"]:
        fills[f.order_id].append(f)
        if f.signal_id not in own:  # the account's own fill at marks, not at ticks
            at_tick[(f.instrument_token, to_us(f.timestamp))] += f.quantity
    # every tick: all orders together take at most PART of what it traded
    for tok, ticks_ in tape.items():
        for t, _, traded in ticks_:
            assert at_tick.pop((tok, t), 0) <= math.floor(PART * traded + 1e-9)
    assert not {k for k, q in at_tick.items() if q}  # no fill off the tape
    shared = {i for i in TOKENS if sum(i in s["instruments"] for s in strategies) > 1}
    ended = {f.order_id: f for f in rows["order_failures"]}
    parts = alone = 0
    for o in rows["orders"]:
        s = signals[o.signal_id]
        if s.reason.startswith(("AUTO_SQUARE_OFF", "FLATTEN")):
            continue  # the account's own: filled in full at a mark
        got = [(to_us(f.timestamp), f.quantity) for f in fills[o.order_id]]
        done = sum(q for _, q in got)
        if s.instrument_token not in shared:  # its instrument's volume to itself
            want = _greedy(o.quantity, s, tape[s.instrument_token])
            assert got == want if done == o.quantity else got == want[: len(got)]
            alone += 1
        if done < o.quantity:  # the session ended first: the rest is cancelled, released
            assert ended[o.order_id].quantity == o.quantity - done
        parts += len(got) > 1
        brokerage = sum(f.brokerage for f in fills[o.order_id])
        turnover = sum(f.quantity * f.fill_price for f in fills[o.order_id])
        # brokerage is per order (0.03% capped at ₹20), however many fills it takes
        assert brokerage == pytest.approx(min(20.0, 0.0003 * turnover), abs=0.001 * len(got))
    assert parts > 10 and alone > 10 and shared


def test_a_volume_glitch_never_lifts_the_cap(tmp_path: Path) -> None:
    # 5% of 100 shares a tick: 5 a tick, whatever the count does in between
    vols: list[int | None] = [100 * (i + 1) for i in range(12)]
    vols[5], vols[7], vols[9] = 499, None, -5  # falls by one, missing, negative
    ticks = _jump_tape(tmp_path / "t", [100.0] * 12, volumes=vols)
    cfg = _one_buyer(ticks, execution={"max_participation": PART}, quantity=200)
    rows, _ = run_graph(cfg, tmp_path / "out")
    got = [f.quantity for f in rows["fills"]]
    want, last = [], 100  # the first count; from the tick after the signal (the 3rd):
    for v in vols[1:]:  # the rise over the last known count; a fall or none trades nothing
        if v is None or v < 0:
            want.append(0)
            continue
        want.append(math.floor(PART * max(v - last, 0)))
        last = v
    # 5, 5, (499: 0), 10 (700 - 499), (none: 0), 10, (-5: 0), 10, 5: never uncapped
    assert got == [q for q in want[2:] if q] == [5, 5, 10, 10, 10, 5]


def test_a_volume_outlier_leaves_a_later_order_filling_on_the_normal_increments(
    tmp_path: Path,
) -> None:
    # +5 shares a tick, but the 2nd row says 10**12 (a bad row); the order comes after it
    vols = [5 * (i + 1) for i in range(10)]
    vols[1] = 10**12
    ticks = _jump_tape(tmp_path / "t", [100.0] * 10, volumes=[*vols])
    cfg = _one_buyer(ticks, execution={"max_participation": 1.0}, quantity=12)
    rows, _ = run_graph(cfg, tmp_path / "out")
    got = [(f.timestamp, f.quantity) for f in rows["fills"]]
    # by hand, from the tick after the signal (the 3rd): each the rise over the higher of
    # the two counts before it
    want, left = [], 12
    for i in range(3, len(vols)):
        take = min(left, max(vols[i] - max(vols[i - 2 : i]), 0))
        if take:
            want.append((T + timedelta(minutes=90, seconds=10 * i), take))
            left -= take
    assert want == [(T + timedelta(minutes=90, seconds=10 * i), q) for i, q in
                    ((4, 5), (5, 5), (6, 2))]  # fmt: skip
    assert got == want  # the outlier held back two ticks, not the day: 5, 5 then the last 2


def test_a_zero_or_low_volume_row_lends_the_next_tick_no_volume(tmp_path: Path) -> None:
    # +100 shares a tick, one row says 0 and another 40: each the next tick trades only 100
    vols = [1000 + 100 * i for i in range(12)]
    vols[4], vols[8] = 0, 40
    ticks = _jump_tape(tmp_path / "t", [100.0] * 12, volumes=[*vols])
    cfg = _one_buyer(ticks, execution={"max_participation": 0.1}, quantity=1000)
    rows, _ = run_graph(cfg, tmp_path / "out")
    known = [v for v in vols[:3] if v > 0]
    want = []
    for i in range(3, 12):  # 10% of each rise over the higher of the two known before it
        take = max(vols[i] - max(known[-2:]), 0) // 10 if vols[i] > 0 else 0
        known += [vols[i]] if vols[i] > 0 else []
        if take:
            want.append((T + timedelta(minutes=90, seconds=10 * i), take))
    # a skipped row's 100 shares show at the next count (20), the low 40 lends nothing: the
    # old rule gave the tick after the 0 the whole day's 1,500 and after the 40 its 1,860
    assert [q for _, q in want] == [10, 20, 10, 10, 20, 10, 10]
    assert [(f.timestamp, f.quantity) for f in rows["fills"]] == want


def test_volume_fills_whole_lots_so_an_exit_sells_a_lot_multiple(tmp_path: Path) -> None:
    # lot 5; shares traded a tick that would split a lot (7, 3, 6, 1, 2); BUY 20 at the 3rd
    # tick, 100.0, then 101.0 from the 8th: the 0.5% take profit sells what was filled (by
    # volume alone 19 shares, SELL 19; in whole lots 5 + 5, SELL 10)
    lot, tok, qty = 5, INSTRUMENTS[0][0], 20
    traded = [0, 3, 4, 7, 3, 6, 1, 2] + [2] * 12
    volumes: list[int | None] = [100 + sum(traded[: i + 1]) for i in range(len(traded))]
    ticks = _jump_tape(tmp_path / "t", [100.0] * 7 + [101.0] * 13, volumes=volumes)
    inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts, "lot_size": lot}
            for t, s, ts in INSTRUMENTS]  # fmt: skip
    strategy = {"id": "c", "class": "tests.support:CountingStrategy", "instruments": [tok],
                "brokers": ["paper"], "params": {"at": 3, "quantity": qty},
                "take_profit_pct": 0.5}  # fmt: skip
    cfg = make_config(ticks, instruments=inst, strategies=[strategy])
    rows, _ = run_graph(cfg, tmp_path / "out")
    (out,) = [s for s in rows["signals"] if s.reason.startswith("TAKE_PROFIT")]
    want, left, split = [], qty, 0  # from the tick after the signal's, until the exit
    for i in range(3, len(traded)):
        t = T + timedelta(minutes=90, seconds=10 * i)
        if t >= out.timestamp:
            break
        take = min(left, traded[i]) // lot * lot  # whole lots of what the tick traded
        split += min(left, traded[i]) % lot != 0
        if take:
            want.append((t, take))
            left -= take
    entry = [(f.timestamp, f.quantity) for f in rows["fills"] if f.side == "BUY"]
    assert entry == want and split == 5 and [q for _, q in want] == [5, 5]
    (ended,) = rows["order_failures"]  # the rest of the entry, cancelled by the exit
    assert ended.quantity == left == 10 and ended.timestamp == out.timestamp
    (sell,) = [o for o in rows["orders"] if o.side == "SELL"]
    (sold,) = [f for f in rows["fills"] if f.side == "SELL"]
    assert sell.quantity == sold.quantity == qty - left  # the position it closes: 2 lots
    position = 0
    for f in rows["fills"]:  # every fill and every position a whole number of lots
        position += f.quantity if f.side == "BUY" else -f.quantity
        assert f.quantity % lot == 0 and position % lot == 0
    assert position == 0


def test_an_order_split_into_lots_keeps_its_ticks_until_it_is_filled(tmp_path: Path) -> None:
    # lot 5; traded 7, 3, 6, 1, 2 then 5 a tick: whole lots 5, 0, 5, 0, 0, 5, 5 fill all 20
    # (by raw volume the 20 were covered after the 6th tick: the rest was left to lapse)
    lot, tok, qty = 5, INSTRUMENTS[0][0], 20
    traded = [0, 3, 4, 7, 3, 6, 1, 2] + [5] * 6
    volumes: list[int | None] = [100 + sum(traded[: i + 1]) for i in range(len(traded))]
    ticks = _jump_tape(tmp_path / "t", [100.0] * len(traded), volumes=volumes)
    inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts, "lot_size": lot}
            for t, s, ts in INSTRUMENTS]  # fmt: skip
    strategy = {"id": "c", "class": "tests.support:CountingStrategy", "instruments": [tok],
                "brokers": ["paper"], "params": {"at": 3, "quantity": qty}}  # fmt: skip
    rows, _ = run_graph(make_config(ticks, instruments=inst, strategies=[strategy]), tmp_path / "o")
    want, left = [], qty
    for i in range(3, len(traded)):
        take = min(left, traded[i]) // lot * lot
        if take:
            want.append((T + timedelta(minutes=90, seconds=10 * i), take))
            left -= take
    assert left == 0 and [q for _, q in want] == [5, 5, 5, 5]
    assert [(f.timestamp, f.quantity) for f in rows["fills"]] == want
    assert not rows["order_failures"]


def _jump_tape(
    path: Path, prices: list[float], volumes: list[int | None] | None = None, step: int = 1000
) -> Path:
    """One instrument, a tick every 10 s from 10:30 IST, ``step`` shares a tick (or the
    given cumulative ``volumes``)."""
    tok = INSTRUMENTS[0][0]
    n = len(prices)
    volumes = volumes or [step * (i + 1) for i in range(n)]
    table = pa.table({
        "instrument_token": pa.array([tok] * n, pa.int64()),
        "timestamp": pa.array(
            [T + timedelta(minutes=90, seconds=10 * i) for i in range(n)], pa.timestamp("us", "UTC")
        ),
        "last_price": pa.array(prices, pa.float64()),
        "volume": pa.array(volumes, pa.int64()),
    })  # fmt: skip
    path.mkdir()
    pq.write_table(table, path / "ticks.parquet")
    return path


def _one_buyer(ticks: Path, quantity: int = 5, **over: Any) -> Any:
    tok = INSTRUMENTS[0][0]
    strategy = {"id": "c", "class": "tests.support:CountingStrategy", "instruments": [tok],
                "brokers": ["paper"], "params": {"at": 3, "quantity": quantity}}  # fmt: skip
    return make_config(ticks, strategies=[strategy], **over)


def test_a_market_order_beyond_its_protection_rests_at_the_protected_price(
    tmp_path: Path,
) -> None:
    # signal at 100.00 (3rd tick); 2% protection: it may buy up to 102.00
    ticks = _jump_tape(tmp_path / "t", [100.0, 100.0, 100.0, 103.5, 102.6, 101.2, 101.0])
    rows, _ = run_graph(_one_buyer(ticks), tmp_path / "out")
    (fill,) = rows["fills"]
    assert fill.fill_price == 102.0 and fill.quantity == 5  # at its protected price
    assert fill.timestamp == T + timedelta(minutes=90, seconds=50)  # the tick back under it


def test_a_market_order_inside_its_protection_fills_at_the_next_tick(tmp_path: Path) -> None:
    ticks = _jump_tape(tmp_path / "t", [100.0, 100.0, 100.0, 101.5, 103.0])
    rows, _ = run_graph(_one_buyer(ticks), tmp_path / "out")
    (fill,) = rows["fills"]
    assert fill.fill_price == 101.55  # 101.5 + 2 bps, up to the 0.05 tick
    assert fill.timestamp == T + timedelta(minutes=90, seconds=30)


def test_without_protection_a_market_order_fills_wherever_the_next_tick_is(
    tmp_path: Path,
) -> None:
    ticks = _jump_tape(tmp_path / "t", [100.0, 100.0, 100.0, 103.5, 102.6])
    cfg = _one_buyer(ticks, execution={"market_protection": 0})
    rows, _ = run_graph(cfg, tmp_path / "out")
    (fill,) = rows["fills"]
    assert fill.fill_price == 103.55


def test_a_market_order_part_filled_then_passed_by_the_tape_rests_at_its_protection(
    tmp_path: Path,
) -> None:
    # 5 a tick (5% of 100); 2% protection from the 100.00 signal: up to 102.00
    prices = [100.0, 100.0, 100.0, 100.5, 100.6, 103.0, 102.5, 101.5, 101.0, 101.2]
    ticks = _jump_tape(tmp_path / "t", prices, step=100)
    cfg = _one_buyer(ticks, execution={"max_participation": PART}, quantity=20)
    rows, _ = run_graph(cfg, tmp_path / "out")
    got = [(f.quantity, f.fill_price) for f in rows["fills"]]
    # two parts at the tape (+2 bps, up to the tick), none at 103 or 102.5, then at 102.00
    assert got == [(5, 100.55), (5, 100.65), (5, 102.0), (5, 102.0)]


def test_paper_protection_follows_the_kite_orders_unless_set(tmp_path: Path) -> None:
    ticks = _jump_tape(tmp_path / "t", [100.0, 100.0, 100.0, 103.5, 102.6])
    rows, _ = run_graph(_one_buyer(ticks, kite={"market_protection": 5}), tmp_path / "a")
    assert [f.fill_price for f in rows["fills"]] == [103.55]  # within 5%: the next tick
    cfg = _one_buyer(ticks, kite={"market_protection": 5}, execution={"market_protection": 2})
    rows, _ = run_graph(cfg, tmp_path / "b")
    assert [f.fill_price for f in rows["fills"]] == []  # 2%: rests at 102.00, never reached


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 1.0, 5.0, 10.0, 100.0, math.inf]), min_size=1, max_size=900),
    st.floats(min_value=0.5, max_value=20_000),
)
def test_a_search_sums_only_the_ticks_it_needs_with_the_same_answer(
    shares: list[float], need: float
) -> None:
    """The growing window finds the same tick, and the same running total up to it, as a
    running total over every tick the search may take."""
    allowed = np.array(shares)
    hits = np.arange(len(shares))[:: 1 + len(shares) % 3]
    part, got, k = enough(hits, allowed, need)
    whole = np.cumsum(allowed[hits])
    assert k == int(np.searchsorted(whole, need, "left"))
    assert np.array_equal(got, whole[: len(part)]) and np.array_equal(part, hits[: len(part)])
    assert k < len(part) or len(part) == len(hits)
