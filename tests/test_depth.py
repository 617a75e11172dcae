"""Market depth: full-mode ticks carry the book, capture keeps it in the replay format, and
paper fills walk its levels (a fill per level, never past the order's limit)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.kite.ticks import Capture, book_depth
from connectors.replay_files import list_files
from flows.config import parse_config
from schemas.arrow import DEPTH_FIELDS, TICK_SCHEMA, depth_columns, read_depth
from schemas.config import ConfigError
from schemas.ticks import Depth, TickBatch
from tests.support import INSTRUMENTS, T, advance, config_dict, make_config, run_graph

RELIANCE = 738561
START = T + timedelta(minutes=90)  # 11:00 IST
NAN = float("nan")


def test_full_mode_depth_is_captured_in_the_replay_format(sim, ticker, tmp_path: Path) -> None:
    _, root = sim
    rec = ticker({"full": [RELIANCE]})
    advance(root, 3000)
    got = [t for t in rec.drain() if t["mode"] == "full"]
    assert len(got) > 5
    n = len(got)
    ts = np.array([int(t["exchange_timestamp"].timestamp()) * 1_000_000 for t in got])
    price = np.array([t["last_price"] for t in got])
    vol = np.array([t["volume_traded"] for t in got], dtype=np.int64)
    cap = Capture(tmp_path / "cap", rows=10**6, first_file=0)
    cap.add([TickBatch(RELIANCE, ts, price, vol, int(ts[-1]), depth=book_depth(got))])
    cap.flush()
    (path,) = list_files(tmp_path / "cap")
    depth = read_depth(pq.read_table(path))
    assert depth is not None and depth.ask_price.shape == (n, 5)
    for i, t in enumerate(got):  # row for row, level for level, as the client parsed them
        for k in range(5):
            bid, ask = t["depth"]["buy"][k], t["depth"]["sell"][k]
            assert (depth.bid_price[i, k], depth.bid_qty[i, k]) == (bid["price"], bid["quantity"])
            assert (depth.ask_price[i, k], depth.ask_qty[i, k]) == (ask["price"], ask["quantity"])


def test_unusable_levels_are_left_empty_not_fatal() -> None:
    ticks: list[dict[str, Any]] = [
        {"depth": {"buy": [{"price": 99.5, "quantity": 7}, {"price": "x", "quantity": 1},
                           {"price": 99.4, "quantity": True}, None, {"price": -1, "quantity": 5},
                           {"price": 99.0, "quantity": 3}],  # a sixth level: ignored
                   "sell": "not a list"}},
        {"last_price": 100.0},  # no depth at all
        {"depth": [1, 2]},
    ]  # fmt: skip
    d = book_depth(ticks)
    assert d is not None
    assert d.levels(0, asks=False) == ((99.5, 7),)
    assert d.levels(0, asks=True) == () and d.levels(1, asks=False) == ()
    assert d.levels(2, asks=True) == ()
    assert book_depth([{"last_price": 1.0}]) is None


def _tape(path: Path, prices: list[float], asks: list[list[tuple[float, int]]]) -> Path:
    """One instrument, a tick every 10 s; ``asks`` per tick (empty: no levels)."""
    n, tok = len(prices), INSTRUMENTS[0][0]
    d = Depth.empty(n)
    for i, levels in enumerate(asks):
        for k, (p, q) in enumerate(levels):
            d.ask_price[i, k], d.ask_qty[i, k] = p, q
            d.bid_price[i, k], d.bid_qty[i, k] = round(p - 0.5, 2), q
    arrays = [
        pa.array([tok] * n, pa.int64()),
        pa.array([START + timedelta(seconds=10 * i) for i in range(n)], pa.timestamp("us", "UTC")),
        pa.array(prices, pa.float64()),
        pa.array([1000 * (i + 1) for i in range(n)], pa.int64()),
        *depth_columns(d),
    ]
    path.mkdir()
    schema = pa.schema([*TICK_SCHEMA, *DEPTH_FIELDS])
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path / "ticks.parquet")
    return path


def _buyer(order_type: str) -> dict[str, Any]:
    return {"id": "c", "class": "tests.support:CountingStrategy",
            "instruments": [INSTRUMENTS[0][0]], "brokers": ["paper"],
            "params": {"at": 3, "quantity": 30}, "order_type": order_type}  # fmt: skip


BOOK = [(100.1, 10), (100.2, 10), (100.3, 5)]


def test_a_market_buy_walks_the_asks_and_pays_beyond_them(tmp_path: Path) -> None:
    ticks = _tape(tmp_path / "t", [100.0, 100.0, 100.0, 100.05, 100.1], [[]] * 3 + [BOOK, BOOK])
    cfg = make_config(ticks, strategies=[_buyer("MARKET")],
                      execution={"max_participation": None})  # fmt: skip
    rows, _ = run_graph(cfg, tmp_path / "out")
    fills = [(f.quantity, f.fill_price, f.timestamp) for f in rows["fills"]]
    at = START + timedelta(seconds=30)
    # each level in turn; the 5 shown nowhere: the worst level + 2 bps, up to the 0.05 tick
    assert fills == [(10, 100.1, at), (10, 100.2, at), (5, 100.3, at), (5, 100.35, at)]
    assert sum(f.fees for f in rows["fills"]) == pytest.approx(
        _intraday_fees(10 * 100.1 + 10 * 100.2 + 5 * 100.3 + 5 * 100.35), abs=0.02
    )


@pytest.mark.parametrize("side", ["BUY", "SELL"])
@pytest.mark.parametrize("worst_first", [False, True])
def test_levels_are_taken_best_first_whatever_their_order_in_the_record(
    tmp_path: Path, side: str, worst_first: bool
) -> None:
    # asks 100.1/100.2/100.3 and bids 99.6/99.7/99.8 (each ask − 0.5), recorded in either order
    book = BOOK[::-1] if worst_first else BOOK
    ticks = _tape(tmp_path / "t", [100.0, 100.0, 100.0, 100.05, 100.1], [[]] * 3 + [book, book])
    buyer = _buyer("MARKET") | {"params": {"at": 3, "quantity": 30, "side": side}}
    cfg = make_config(ticks, strategies=[buyer], execution={"max_participation": None})
    rows, _ = run_graph(cfg, tmp_path / "out")
    fills = [(f.quantity, f.fill_price) for f in rows["fills"]]
    if side == "BUY":  # cheapest ask first; the 5 shown nowhere: 100.3 + 2 bps, up a tick
        assert fills == [(10, 100.1), (10, 100.2), (5, 100.3), (5, 100.35)]
    else:  # dearest bid first; the rest at 99.6 − 2 bps, down to the 0.05 tick
        assert fills == [(5, 99.8), (10, 99.7), (10, 99.6), (5, 99.55)]


def _intraday_fees(turnover: float) -> float:
    """A buy's charges under the intraday schedule, computed here from the published rates."""
    brokerage = min(20.0, 0.0003 * turnover)
    exchange, sebi, stamp = 0.0000297 * turnover, turnover * 10 / 1e7, 0.00003 * turnover
    return brokerage + exchange + sebi + stamp + 0.18 * (brokerage + exchange + sebi)


def test_a_limit_takes_no_level_beyond_its_price(tmp_path: Path) -> None:
    # LIMIT at the signal price 100.00: no ask at or under it, so it rests; 99.9 trades
    # through it and it fills at its limit
    ticks = _tape(tmp_path / "t", [100.0, 100.0, 100.0, 100.05, 99.9], [[]] * 3 + [BOOK, []])
    cfg = make_config(ticks, strategies=[_buyer("LIMIT")], execution={"max_participation": None})
    rows, _ = run_graph(cfg, tmp_path / "out")
    (fill,) = rows["fills"]
    assert (fill.quantity, fill.fill_price) == (30, 100.0)
    assert fill.timestamp == START + timedelta(seconds=40)


def test_a_file_with_part_of_the_depth_columns_is_refused_by_name(tmp_path: Path) -> None:
    table = pa.table({
        "instrument_token": [1],
        "timestamp": pa.array([START], TICK_SCHEMA.field("timestamp").type),
        "last_price": [1.0],
        "ask_price": pa.array([[NAN] * 5], DEPTH_FIELDS.field("ask_price").type),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet.*bid_price"):
        list_files(tmp_path / "bad.parquet")


def test_depth_levels_far_from_the_tape_are_never_prices(tmp_path: Path) -> None:
    # a buy at a 0.05 ask and a sell at a 1e6 bid are bad records: the tick's price rules
    bogus = [(0.05, 10), (1e6, 10)]
    ticks = _tape(tmp_path / "t", [100.0, 100.0, 100.0, 100.05, 100.1], [[]] * 3 + [bogus] * 2)
    cfg = make_config(ticks, strategies=[_buyer("MARKET")], execution={"max_participation": None})
    rows, _ = run_graph(cfg, tmp_path / "out")
    (fill,) = rows["fills"]
    assert (fill.quantity, fill.fill_price) == (30, 100.1)  # 100.05 + 2 bps, up to the tick


def test_a_bad_depth_row_loses_its_depth_not_the_run(tmp_path: Path) -> None:
    path = _tape(tmp_path / "t", [100.0, 100.0, 100.0, 100.05, 100.1], [[]] * 3 + [BOOK, BOOK])
    table = pq.read_table(path / "ticks.parquet")
    asks = table["ask_price"].to_pylist()
    asks[3] = [100.1, 100.2, 100.3, 100.4, 100.5, 100.6]  # six levels: not the format
    table = table.set_column(
        table.schema.get_field_index("ask_price"),
        "ask_price",
        pa.array(asks, pa.list_(pa.float64())),
    )
    pq.write_table(table, path / "ticks.parquet")
    cfg = make_config(path, strategies=[_buyer("MARKET")], execution={"max_participation": None})
    rows, _ = run_graph(cfg, tmp_path / "out")
    (fill,) = rows["fills"]
    assert (fill.quantity, fill.fill_price) == (30, 100.1)  # that tick's price, no book


def test_depth_columns_of_the_wrong_type_are_refused_by_file_and_column(tmp_path: Path) -> None:
    table = pa.table({
        "instrument_token": [1],
        "timestamp": pa.array([START], TICK_SCHEMA.field("timestamp").type),
        "last_price": [1.0],
        **{name: pa.array(["x"]) for name in DEPTH_FIELDS.names},
    })  # fmt: skip
    pq.write_table(table, tmp_path / "strings.parquet")
    with pytest.raises(ConfigError, match=r"strings\.parquet column bid_price is string"):
        list_files(tmp_path / "strings.parquet")


def test_float32_prices_and_depth_are_read_as_the_decimals_they_were(tmp_path: Path) -> None:
    # float32 can't hold 100.05 (it stores 100.05000305): read as float64 that would round
    # a buy up a whole tick, and a depth level would fill off the grid
    path = _tape(tmp_path / "t", [100.05] * 5, [[]] * 3 + [[(100.15, 10)], [(100.15, 10)]])
    table = pq.read_table(path / "ticks.parquet")
    f32 = pa.list_(pa.float32(), 5)
    for name, typ in (("last_price", pa.float32()), ("ask_price", f32), ("bid_price", f32)):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table[name].cast(typ))
    pq.write_table(table, path / "ticks.parquet")
    raw = config_dict(path, strategies=[_buyer("MARKET")], execution={"max_participation": None})
    raw["brokers"]["paper"]["slippage_bps"] = 0
    rows, _ = run_graph(parse_config(raw, Path(".")), tmp_path / "out")
    assert [(f.quantity, f.fill_price) for f in rows["fills"]] == [(10, 100.15), (20, 100.15)]
