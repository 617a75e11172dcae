"""The whole graph, with the real replay source, over small synthetic sessions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from data.generate import BAD_ROWS
from flows.config import parse_config
from flows.graph import build_flow
from flows.plan import prepare
from operators.report import RunReport
from schemas.config import AppConfig
from schemas.events import OrderFilled, PnlSnapshot, StageHealth, TradingSignal
from schemas.ledger import LEDGER_KINDS
from tests.support import INSTRUMENTS, TOKENS, config_dict, make_config, run_graph, small_ticks


@pytest.fixture(scope="module")
def result(
    config: AppConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, list[Any]], RunReport]:
    return run_graph(config, tmp_path_factory.mktemp("run"))


def _steps(step: Any) -> list[Any]:
    return [step, *(s for sub in getattr(step, "substeps", []) for s in _steps(sub))]


def test_the_graph_is_the_readme_spine_with_each_stage_nesting_its_steps(
    config: AppConfig, tmp_path: Path
) -> None:
    flow = build_flow(prepare(config, out_dir=tmp_path))
    spine = [s.step_id for s in flow.substeps]
    stages = ["ingest", "signals", "account", "health", "dead_letters", "sinks"]
    assert spine == [f"alpha_panda.{name}" for name in stages]
    for stage in flow.substeps:
        inner = [s.step_id for s in _steps(stage)[1:]]
        assert all(i.startswith(f"{stage.step_id}.") for i in inner), stage.step_id
    account = [s.step_id for s in _steps(flow.substeps[2])]
    assert "alpha_panda.account.logic_logic" in account  # one stateful step per broker
    assert not [i for i in account if "risk" in i or "portfolio" in i]  # no separate book


def test_every_emitted_event_validates_against_its_model(result: Any) -> None:
    by_kind, _ = result
    assert by_kind["signals"] and by_kind["fills"] and by_kind["pnl"] and by_kind["health"]
    for kind, items in by_kind.items():
        model = LEDGER_KINDS[kind]
        for item in items:
            assert type(item) is model
            assert model.model_validate(item.model_dump()) == item


def test_counts_in_equal_processed_plus_dead_letters(result: Any) -> None:
    by_kind, report = result
    assert report.rows_read == report.ticks_processed + report.dead_letters
    assert report.dead_letters == len(BAD_ROWS) == len(by_kind["dead_letters"])
    assert Counter(d.reason for d in by_kind["dead_letters"]) == Counter(
        ["MISSING_TOKEN", "INVALID_PRICE", "INVALID_PRICE", "INVALID_TIMESTAMP",
         "UNKNOWN_INSTRUMENT", "TIMESTAMP_OUT_OF_ORDER"]
    )  # fmt: skip
    assert all(d.raw and d.source_partition.startswith("replay-") for d in by_kind["dead_letters"])


def test_accounting_identity_at_every_snapshot(result: Any) -> None:
    by_kind, _ = result
    snaps: list[PnlSnapshot] = by_kind["pnl"]
    assert any(s.final for s in snaps) and any(s.positions for s in snaps)
    for s in snaps:
        held = sum(p.quantity * p.last_price for p in s.positions)
        assert s.cash + held == pytest.approx(s.equity, abs=1e-6)
        expect = s.starting_cash + s.realized_pnl + s.unrealized_pnl - s.fees
        assert s.equity == pytest.approx(expect, abs=1e-6)
        for rupees in (s.cash, s.fees, s.equity):  # sums of whole paise on the tick grid
            assert len(repr(rupees).partition(".")[2]) <= 2, rupees  # not 962884.2999999999


def test_chain_ids_run_from_signal_to_fill(result: Any) -> None:
    by_kind, _ = result
    signals = {s.signal_id: s for s in by_kind["signals"]}
    placed = {o.order_id: o for o in by_kind["orders"]}
    for f in by_kind["fills"]:
        assert isinstance(f, OrderFilled) and f.broker == "paper"
        sig: TradingSignal = signals[f.signal_id]
        assert f.correlation_id == sig.correlation_id == placed[f.order_id].correlation_id
        assert f.causation_id == placed[f.order_id].event_id
    # each signal is refused, ordered, or already met (its target held or on order)
    assert len(by_kind["orders"]) + len(by_kind["rejections"]) <= len(signals)
    ended = {f.order_id for f in by_kind["order_failures"]}
    assert {f.order_id for f in by_kind["fills"]} | ended == set(placed)


def test_signals_before_the_open_are_rejected_market_closed(result: Any) -> None:
    by_kind, _ = result
    early = [r for r in by_kind["rejections"] if r.timestamp.hour == 3 and r.timestamp.minute < 45]
    assert early, "the sample starts at 09:00 IST, before the 09:15 open"
    assert all("MARKET_CLOSED" in r.reasons for r in early)


def test_health_is_truthful(result: Any) -> None:
    by_kind, _ = result
    health: list[StageHealth] = by_kind["health"]
    by = Counter(tuple(map(str, (h.broker, h.stage, h.status, h.reason))) for h in health)
    # zerodha has no enabled strategy: its trading stages are idle, never critical
    zerodha = [h for h in health if h.broker == "zerodha" and h.stage != "market_data"]
    assert zerodha and all(h.status in ("idle", "startup") for h in zerodha)
    assert by[("zerodha", "risk_validation", "idle", "NO_ENABLED_STRATEGY")] > 100
    # before 09:15 IST the market is closed: idle; the first window is startup
    pre = [h for h in health if h.window_end.hour == 3 and h.window_end.minute <= 45]
    assert pre and {h.status for h in pre} <= {"idle", "startup"}
    md = [h for h in health if h.broker == "paper" and h.stage == "market_data"]
    assert md[0].status == "startup"
    assert Counter(h.status for h in md).most_common(1)[0][0] == "healthy"
    assert all(h.latency_p99_ms is None for h in health)  # replay has no latency


@pytest.mark.parametrize("rules", ["default", "circuits"])
def test_results_do_not_depend_on_batch_size_or_partitions(
    ticks_dir: Path, tmp_path: Path, rules: str
) -> None:
    """Also where closes are refused (price bands) and sent again at every mark: the MIS
    square-off of two days and the rounds after it, whatever the cuts of the mark runs."""
    over: dict[str, Any] = {}
    if rules == "circuits":
        ticks_dir = small_ticks(tmp_path / "ticks", days=2, bad_rows=False)
        inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts}
                | ({"circuit_pct": 3.0} if t == TOKENS[1] else {})
                for t, s, ts in INSTRUMENTS]  # fmt: skip
        paper = {"starting_cash": 1_000_000, "risk": {"circuit_pct": 0.5}}
        over = dict(instruments=inst, brokers={"paper": paper})

    def shards(batch: int, parts: int) -> dict[str, list[Any]]:
        src = {"path": str(ticks_dir), "batch_size": batch, "partitions": parts}
        out: dict[str, list[Any]] = {}
        run_graph(make_config(ticks_dir, source=src, **over), tmp_path / f"{batch}", out)
        return {k: v for k, v in out.items() if not k.startswith("dead_letters")}

    base = shards(700, 3)
    assert any(k.startswith("fills/") for k in base)
    if rules == "circuits":  # closes refused, then sent again
        assert any("AUTO_SQUARE_OFF" in s.reason for s in base["signals/paper"])
        assert any(f.status == "CANCELLED" for f in base["order_failures/paper"])
    for batch, parts in ((97, 1), (5000, 5), (13, 2)):
        assert shards(batch, parts) == base


def test_user_strategy_runs_in_the_flow(ticks_dir: Path, tmp_path: Path) -> None:
    raw = config_dict(ticks_dir)
    raw["strategies"] = [
        {"id": "breakout", "class": "operators.strategies.example_user:Breakout",
         "instruments": "all", "brokers": ["paper"], "params": {"window": 80, "quantity": 2}}
    ]  # fmt: skip
    by_kind, report = run_graph(parse_config(raw, tmp_path), tmp_path)
    assert by_kind["fills"] and {s.strategy_id for s in by_kind["signals"]} == {"breakout"}
    assert [s.name for s in report.brokers[0].strategies] == ["breakout"]
