"""Paper fills bounded by the tape: an order takes at most ``max_participation`` of the
volume traded at each tick (partial fills, the rest later or cancelled), and a MARKET order
never fills beyond its market protection (it rests at the protected price)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from schemas.ids import tick_id
from schemas.ticks import to_us
from tests.support import INSTRUMENTS, T, make_config, run_graph, small_ticks

PART = 0.05


def _tape(ticks: Path) -> dict[int, list[tuple[int, float, int]]]:
    """Each instrument's ticks in order: (time, price, volume traded at that tick)."""
    rows = sorted(
        ds.dataset(ticks).to_table().to_pylist(),
        key=lambda r: (r["instrument_token"], r["timestamp"]),
    )
    tape: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    last: dict[int, int] = {}
    for r in rows:
        tok, vol = r["instrument_token"], r["volume"]
        before = last.get(tok)
        traded = vol if before is None or vol < before else vol - before
        last[tok] = vol
        tape[tok].append((to_us(r["timestamp"]), r["last_price"], traded))
    return tape


def _expected(qty: int, signal: Any, ticks: list[tuple[int, float, int]]) -> list[tuple[int, int]]:
    """(time, quantity) of each fill of a MARKET order of ``qty`` for ``signal``: from the
    tick after the signal's, min(left, floor(PART × traded)) at each tick, until done."""
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
    placed = {o.order_id: o for o in rows["orders"]}
    fills: dict[str, list[Any]] = defaultdict(list)
    for f in rows["fills"]:
        fills[f.order_id].append(f)
    ended = {f.order_id: f for f in rows["order_failures"]}
    parts = 0
    for oid, o in placed.items():
        s = signals[o.signal_id]
        if s.reason.startswith(("AUTO_SQUARE_OFF", "FLATTEN")):
            continue  # the account's own: filled in full at a mark
        got = [(to_us(f.timestamp), f.quantity) for f in fills[oid]]
        want = _expected(o.quantity, s, tape[s.instrument_token])
        done = sum(q for _, q in got)
        assert got == want[: len(got)], oid
        if done < o.quantity:  # the session ended first: the rest is cancelled, released
            assert ended[oid].quantity == o.quantity - done
        parts += len(got) > 1
        brokerage = sum(f.brokerage for f in fills[oid])
        turnover = sum(f.quantity * f.fill_price for f in fills[oid])
        # brokerage is per order (0.03% capped at ₹20), however many fills it takes
        assert brokerage == pytest.approx(min(20.0, 0.0003 * turnover), abs=0.001 * len(got))
    assert parts > 10


def _jump_tape(path: Path, prices: list[float]) -> Path:
    """One instrument, a tick every 10 s from 10:30 IST, large volumes."""
    tok = INSTRUMENTS[0][0]
    n = len(prices)
    table = pa.table({
        "instrument_token": pa.array([tok] * n, pa.int64()),
        "timestamp": pa.array(
            [T + timedelta(minutes=90, seconds=10 * i) for i in range(n)], pa.timestamp("us", "UTC")
        ),
        "last_price": pa.array(prices, pa.float64()),
        "volume": pa.array([1000 * (i + 1) for i in range(n)], pa.int64()),
    })  # fmt: skip
    path.mkdir()
    pq.write_table(table, path / "ticks.parquet")
    return path


def _one_buyer(ticks: Path, **over: Any) -> Any:
    tok = INSTRUMENTS[0][0]
    strategy = {"id": "c", "class": "tests.support:CountingStrategy", "instruments": [tok],
                "brokers": ["paper"], "params": {"at": 3, "quantity": 5}}  # fmt: skip
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
