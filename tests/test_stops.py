"""SL and SL-M orders in paper: inactive until the tape reaches the trigger
(``stop_offset_bps`` beyond the signal price), then a protected market order (SL-M) or a
limit at the trigger (SL), filled from the tick after the one that triggered them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config import ConfigError, parse_config
from tests.support import INSTRUMENTS, T, config_dict, make_config, run_graph

START = T + timedelta(minutes=90)  # 11:00 IST


def _tape(path: Path, prices: list[float], seconds: list[int] | None = None) -> Path:
    """One instrument, a tick every 10 s (or at these ``seconds``), ample volume."""
    n, tok = len(prices), INSTRUMENTS[0][0]
    at = seconds or [10 * i for i in range(n)]
    table = pa.table({
        "instrument_token": pa.array([tok] * n, pa.int64()),
        "timestamp": pa.array([START + timedelta(seconds=s) for s in at],
                              pa.timestamp("us", "UTC")),
        "last_price": pa.array(prices, pa.float64()),
        "volume": pa.array([1000 * (i + 1) for i in range(n)], pa.int64()),
    })  # fmt: skip
    path.mkdir()
    pq.write_table(table, path / "ticks.parquet")
    return path


def _buyer(order_type: str, **extra: Any) -> dict[str, Any]:
    return {"id": "c", "class": "tests.support:CountingStrategy",
            "instruments": [INSTRUMENTS[0][0]], "brokers": ["paper"],
            "params": {"at": 3, "quantity": 5}, "order_type": order_type, **extra}  # fmt: skip


def _run(
    tmp_path: Path, prices: list[float], order_type: str, seconds: list[int] | None = None
) -> dict[str, list[Any]]:
    ticks = _tape(tmp_path / "t", prices, seconds)
    cfg = make_config(ticks, strategies=[_buyer(order_type, stop_offset_bps=100)])
    rows, _ = run_graph(cfg, tmp_path / "out")
    return rows


def test_an_sl_m_buy_waits_for_its_trigger_then_fills_at_the_next_tick(tmp_path: Path) -> None:
    # signal at 100.00; trigger 1% above: 101.00; 100.5 does not reach it, 101.2 does
    rows = _run(tmp_path, [100.0, 100.0, 100.0, 100.5, 101.2, 101.4, 101.3], "SL-M")
    (placed,) = rows["orders"]
    assert placed.order_type == "SL-M"
    (fill,) = rows["fills"]
    assert fill.timestamp == START + timedelta(seconds=50)  # the tick after the trigger
    assert fill.fill_price == 101.45  # 101.4 + 2 bps, up to the 0.05 tick


def test_an_sl_buy_becomes_a_limit_at_its_trigger(tmp_path: Path) -> None:
    # triggered at 101.2; 101.4 is above its 101.00 limit: it rests; 100.9 fills it at 101
    rows = _run(tmp_path, [100.0, 100.0, 100.0, 100.5, 101.2, 101.4, 101.1, 100.9], "SL")
    (fill,) = rows["fills"]
    assert fill.timestamp == START + timedelta(seconds=70)
    assert fill.fill_price == 101.0


def test_a_stop_the_tape_never_reaches_is_cancelled_not_filled(tmp_path: Path) -> None:
    rows = _run(tmp_path, [100.0, 100.0, 100.0, 100.5, 100.9, 99.0], "SL-M")
    assert rows["fills"] == []
    (ended,) = rows["order_failures"]
    assert ended.status == "CANCELLED" and ended.quantity == 5


def test_a_stop_order_without_its_offset_is_refused_naming_the_field(tmp_path: Path) -> None:
    raw = config_dict(tmp_path, strategies=[_buyer("SL-M")])
    with pytest.raises(ConfigError, match="stop_offset_bps"):
        parse_config(raw, Path("."))


def test_ticks_sharing_a_second_trigger_and_fill_in_tape_order(tmp_path: Path) -> None:
    # Kite's times are whole seconds: the trigger tick and the next one share a second
    prices = [100.0, 100.0, 100.0, 100.5, 101.2, 101.4, 101.3]
    rows = _run(tmp_path, prices, "SL-M", seconds=[0, 10, 20, 30, 40, 40, 50])
    (fill,) = rows["fills"]
    assert fill.timestamp == START + timedelta(seconds=40) and fill.fill_price == 101.45


def test_a_resting_sl_fills_at_a_tick_in_the_second_it_missed_one(tmp_path: Path) -> None:
    # triggered at 101.2 (40 s); 101.4 misses its 101.00 limit and 100.9 reaches it, both at 50 s
    prices = [100.0, 100.0, 100.0, 100.5, 101.2, 101.4, 100.9]
    rows = _run(tmp_path, prices, "SL", seconds=[0, 10, 20, 30, 40, 50, 50])
    (fill,) = rows["fills"]
    assert (fill.fill_price, fill.timestamp) == (101.0, START + timedelta(seconds=50))


@pytest.mark.parametrize(
    ("price", "buy", "want"),
    [
        (250.10, False, 249.90),  # 7 bps under is 249.925, in the 0.01 band; the instrument
        (249.90, True, 250.08),  # trades in 0.05 at 250.10, in 0.01 at 249.90 (250.0749)
        (1000.5, False, 999.70),  # 999.79965 down to 0.10 (999.75 on the 0.05 grid)
    ],
)
def test_an_auto_tick_trigger_sits_on_the_grid_of_the_signal_price(
    price: float, buy: bool, want: float
) -> None:
    from operators.market import stop_trigger

    assert stop_trigger(price, buy, 7.0, "auto") == want
