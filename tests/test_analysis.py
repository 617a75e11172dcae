"""The run analysis (flows.analysis) against numbers worked out by hand from a tiny ledger,
and against the flow's own ledger and run report on a real run of the bundled sample."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from flows.analysis import compare, report, write_reports
from flows.analysis.load import read_run_report
from flows.analysis.stats import drawdown, profit_factor, sharpe, sortino
from schemas.arrow import model_schema
from schemas.events import Model, OrderFilled, OrderPlaced, PnlSnapshot, Position
from tests.support import bytewax_run, finish

CAP = 100_000.0
D1, D2, D3 = (datetime(2026, 11, d, tzinfo=timezone.utc) for d in (16, 17, 18))


def at(day: datetime, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm, second=ss)


END = (9, 59, 59)  # each day's last snapshot, 15:29:59 IST
# (time, strategy, token, side, qty, price, fee); hand-worked trips below
FILLS = [
    (at(D1, 4), "s1", 1, "BUY", 10, 100.0, 1.00),  # A long 10: +100 gross, fees 2.20
    (at(D1, 5), "s1", 1, "SELL", 10, 110.0, 1.20),
    (at(D2, 4), "s1", 1, "SELL", 5, 120.0, 0.50),  # B short 5: −25 gross, fees 1.10
    (at(D2, 4, 30), "s2", 2, "BUY", 4, 50.0, 0.20),  # C long 4, open at the end
    (at(D2, 5), "s1", 1, "BUY", 5, 125.0, 0.60),
    (at(D3, 4), "s1", 1, "BUY", 10, 100.0, 1.00),  # D long 10: +40, fees 1.00 + 1.00
    (at(D3, 5), "s1", 1, "SELL", 15, 104.0, 1.50),  # flip: E short 5, opening fee 0.50
    (at(D3, 6), "s1", 1, "BUY", 5, 103.0, 0.50),  # E: +5 gross, fees 1.00
]
# snapshot (time, {token: mark}, final); the figures below are the hand-worked PnL
SNAPS = [
    (at(D1, 3, 45), {}, False),
    (at(D1, *END), {1: 110.0}, False),
    (at(D2, 3, 45), {1: 110.0}, False),
    (at(D2, *END), {1: 125.0, 2: 45.0}, False),
    (at(D3, 3, 45), {1: 125.0, 2: 45.0}, False),
    (at(D3, 5, 30), {1: 104.0, 2: 55.0}, False),
    (at(D3, *END), {1: 103.0, 2: 52.0}, True),
]
NETS = {"A": 97.80, "B": -26.10, "D": 38.00, "E": 4.00}
OPEN_C = 4 * (52.0 - 50.0) - 0.20
DAY_PNL = [97.80, -46.30, 70.00]  # day 2: B −26.10, C at 45: −20.20; day 3: D + E + C 45→52


def _write(root: Path, kind: str, shard: str, model: type[Model], rows: Sequence[Model]) -> None:
    (root / kind).mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([r.model_dump() for r in rows], schema=model_schema(model))
    pq.write_table(table, root / kind / f"{shard}-00000.parquet")


def _fill(i: int, row: tuple[Any, ...]) -> OrderFilled:
    t, strategy, token, side, qty, price, fee = row
    return OrderFilled(
        event_id=f"f{i}", order_id=f"o{i}", correlation_id="c", causation_id="p",
        broker="paper", broker_order_id=None, status="FILLED", signal_id=f"s{i}",
        strategy_id=strategy, instrument_token=token, side=side, timestamp=t, quantity=qty,
        fill_price=price, fees=fee, brokerage=fee / 2, gst=fee / 2,
    )  # fmt: skip


def _order(i: int, row: tuple[Any, ...]) -> OrderPlaced:
    t, strategy, token, side, qty, price, _ = row
    asked = 99.9 if i == 0 else price  # the first fill slipped 0.10 a share
    return OrderPlaced(
        event_id=f"p{i}", order_id=f"o{i}", correlation_id="c", causation_id="v",
        broker="paper", broker_order_id=None, status="PLACED", signal_id=f"s{i}",
        strategy_id=strategy, instrument_token=token, side=side, timestamp=t, quantity=qty,
        order_type="MARKET", price=asked,
    )  # fmt: skip


def _snap(broker: str, i: int, t: datetime, marks: dict[int, float], final: bool) -> PnlSnapshot:
    positions = [
        Position(instrument_token=k, quantity=0, average_price=0.0, last_price=p,
                 realized_pnl=0.0, unrealized_pnl=0.0)
        for k, p in marks.items()
    ]  # fmt: skip
    realized, unrealized, fees = (120.0, 8.0, 6.5) if final else (0.0, 0.0, 0.0)
    return PnlSnapshot(
        event_id=f"{broker}{i}", broker=broker, timestamp=t, starting_cash=CAP, cash=CAP,
        realized_pnl=realized, unrealized_pnl=unrealized, fees=fees,
        equity=CAP + realized + unrealized - fees, positions=positions, final=final,
    )  # fmt: skip


def hand_ledger(root: Path, config: dict[str, Any] | None = None) -> Path:
    _write(root, "fills", "paper", OrderFilled, [_fill(i, r) for i, r in enumerate(FILLS)])
    _write(root, "orders", "paper", OrderPlaced, [_order(i, r) for i, r in enumerate(FILLS)])
    snaps = {b: [_snap(b, i, *s) for i, s in enumerate(SNAPS)] for b in ("paper", "zerodha")}
    for broker, rows in snaps.items():  # zerodha: snapshots only, no strategy, no trade
        _write(root, "pnl", broker, PnlSnapshot, rows)
    if config is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_statistics_match_textbook_formulas_on_a_short_series() -> None:
    r = [0.01, -0.02, 0.015, 0.005, -0.004]
    mean, sd = statistics.mean(r), statistics.stdev(r)
    assert sharpe(_arr(r)) == pytest.approx(mean / sd * math.sqrt(252))
    assert sharpe(_arr(r), 0.0504) == pytest.approx((mean - 0.0002) / sd * math.sqrt(252))
    downside = math.sqrt((0.02**2 + 0.004**2) / 5)
    assert sortino(_arr(r)) == pytest.approx(mean / downside * math.sqrt(252))
    assert sharpe(_arr([0.01])) is None and sortino(_arr([0.01, 0.02])) is None
    assert profit_factor([30.0, -10.0, 20.0, -15.0]) == pytest.approx(50 / 25)
    times = _arr([0, 10, 20, 30, 40, 50], int)
    equity = _arr([100.0, 110.0, 99.0, 104.0, 112.0, 108.0])
    dd = drawdown(times, equity, 100.0)
    assert dd.amount == pytest.approx(11.0) and dd.fraction == pytest.approx(11 / 110)
    assert (dd.duration_us, dd.recovered, dd.peak_t, dd.trough_t) == (30, True, 10, 20)


def _arr(values: list[Any], kind: type = float) -> Any:
    import numpy as np

    return np.array(values, dtype=np.int64 if kind is int else np.float64)


def test_hand_ledger_round_trips_pnl_and_trade_statistics(tmp_path: Path) -> None:
    r = report(hand_ledger(tmp_path))
    assert [b.broker for b in r.brokers] == ["paper"]  # zerodha: no strategy, no activity
    b = r.brokers[0]
    closed = [t for t in b.trades if t.exit_time is not None]
    assert [round(t.net_pnl, 6) for t in closed] == list(NETS.values())
    assert [t.fees for t in closed] == pytest.approx([2.20, 1.10, 2.00, 1.00])
    assert [t.direction for t in closed] == ["LONG", "SHORT", "LONG", "SHORT"]
    (still,) = [t for t in b.trades if t.exit_time is None]
    assert (still.symbol or still.instrument_token, still.net_pnl) == (2, pytest.approx(OPEN_C))
    m = b.total
    assert m.net_pnl == pytest.approx(sum(NETS.values()) + OPEN_C) == b.ledger_net_pnl
    assert m.fees == pytest.approx(6.5) and m.costs["total"] == pytest.approx(6.5)
    assert m.profit_factor == pytest.approx((97.8 + 38 + 4) / 26.1)
    assert m.expectancy == pytest.approx(sum(NETS.values()) / 4)
    assert m.win_rate == 0.75 and m.long.trips == 2 and m.short.win_rate == 0.5
    assert m.short.net_pnl == pytest.approx(-22.1) and m.best_trade == pytest.approx(97.8)
    assert m.turnover == pytest.approx(6600.0) and m.slippage == pytest.approx(1.0)
    assert closed[0].holding_s == 3600.0 and (closed[0].mae, closed[0].mfe) == (0.0, 100.0)


def test_hand_ledger_daily_returns_drawdown_exposure_benchmark(tmp_path: Path) -> None:
    m = report(hand_ledger(tmp_path)).brokers[0].total
    assert [d.net_pnl for d in m.days] == pytest.approx(DAY_PNL)
    closes = [CAP + sum(DAY_PNL[: i + 1]) for i in range(3)]
    r = [(e - p) / p for p, e in zip([CAP, *closes], closes, strict=False)]
    assert m.sharpe == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(252))
    assert m.volatility == pytest.approx(statistics.stdev(r) * math.sqrt(252))
    growth = (closes[-1] / CAP) ** (252 / 3) - 1
    assert m.cagr == pytest.approx(growth)
    # intraday: the peak 97.80 (day 1 05:00, last seen day 2 03:45) falls to 50.50 (day 3
    # 04:00: B's loss and C at 45 booked, D's entry fee paid), back above at day 3 05:30
    # (C marked at 55); it is timed from the last point at the peak
    assert m.max_drawdown == pytest.approx(47.3)
    assert m.max_drawdown_pct == pytest.approx(47.3 / (CAP + 97.8))
    assert m.max_drawdown_duration_s == timedelta(days=1, hours=1, minutes=45).total_seconds()
    assert m.drawdown_recovered and m.calmar == pytest.approx(growth / m.max_drawdown_pct)
    day = 6 * 3600 + 14 * 60 + 59  # 03:45:00 → 09:59:59
    held = 3600 + (day - 15 * 60) + day
    assert m.time_in_market == pytest.approx(held / (3 * day))
    assert m.benchmark.total_return == pytest.approx((103 / 100 + 52 / 50) / 2 - 1)
    s1, s2 = sorted(report(tmp_path).brokers[0].strategies, key=lambda s: s.name)
    assert (s1.net_pnl, s2.net_pnl) == (pytest.approx(113.7), pytest.approx(OPEN_C))


def test_mae_and_mfe_from_the_replay_ticks_of_the_saved_config(tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.parquet"
    times = [at(D1, 4, 10), at(D1, 4, 20), at(D1, 4, 40), at(D1, 5, 30)]
    pq.write_table(
        pa.table(
            {
                "instrument_token": [1, 1, 1, 1],
                "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
                "last_price": [98.0, 112.0, 105.0, 90.0],  # the last is after the exit
            }
        ),
        ticks,
    )
    run = hand_ledger(tmp_path / "run", {"source": {"kind": "replay", "path": str(ticks)}})
    r = report(run)
    assert "ticks" in r.conventions.marks
    first = r.brokers[0].trades[0]
    assert (first.mae, first.mfe) == (10 * (98 - 100), 10 * (112 - 100))


def test_write_reports_and_compare(tmp_path: Path) -> None:
    a = hand_ledger(tmp_path / "a", {"brokers": {"paper": {"slippage_bps": 2}}, "x": 1})
    b = hand_ledger(tmp_path / "b", {"brokers": {"paper": {"slippage_bps": 5}}, "x": 1})
    c = hand_ledger(tmp_path / "c")
    written = write_reports(a)
    assert {p.name for p in written.values()} == {"report.txt", "analysis.json", "report.html"}
    assert json.loads((a / "analysis.json").read_text())["brokers"][0]["broker"] == "paper"
    text = compare([a, b, c])
    assert "brokers.paper.slippage_bps" in text and "\n  x " not in text
    assert "no config.yaml in c" in text and text.count("121.50") == 3
    with pytest.raises(ValueError):
        compare([a])


def test_real_sample_run_identities(tmp_path: Path) -> None:
    finish(bytewax_run([], None, tmp_path))
    (run,) = {p.parent for p in tmp_path.glob("runs/**/fills")}
    flow_report = read_run_report(run)  # the flow's own, also if already analysed
    assert flow_report is not None
    pnl = ds.dataset(run / "pnl").to_table().to_pylist()
    final = [s for s in pnl if s["final"] and s["broker"] == "paper"][-1]
    ledger_net = final["realized_pnl"] + final["unrealized_pnl"] - final["fees"]
    fills = ds.dataset(run / "fills").to_table().to_pylist()

    r = report(run)
    assert set(write_reports(run, analysed=r)) == {"txt", "json", "html"}
    assert [b.broker for b in r.brokers] == ["paper"]  # zerodha has no strategy
    (b,) = r.brokers
    closed = [t for t in b.trades if t.exit_time is not None]
    still = [t for t in b.trades if t.exit_time is None]
    assert sum(t.net_pnl for t in closed) + sum(t.net_pnl for t in still) == pytest.approx(
        ledger_net, abs=0.005
    )
    assert b.total.net_pnl == pytest.approx(ledger_net, abs=0.005)
    assert b.total.fees == pytest.approx(sum(f["fees"] for f in fills), abs=1e-6)
    flow_total = flow_report["brokers"][0]["total"]  # the flow's own round-trip count
    assert b.total.trips == flow_total["round_trips"] == len(closed)
    assert b.total.win_rate == flow_total["wins"] / flow_total["round_trips"]
    assert b.total.win_rate == sum(t.net_pnl > 0 for t in closed) / len(closed)
    assert all(t.mae <= 0 <= t.mfe for t in b.trades)
    page = (run / "report.html").read_text()
    assert all(f"{title} — broker paper" in page for title in ("Equity curve", "Drawdown"))
    assert "Daily PnL — broker paper" in page
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined
    assert json.loads((run / "analysis.json").read_text())["run"]["rows_read"] > 0
