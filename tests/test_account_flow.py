"""The account in the whole graph: strategy failures isolated, operator commands from a
control file, and the daily-loss limit checked on the event-time mark cadence (against an
independent walk over the ticks and fills)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest

from schemas.ticks import US, to_us
from tests.support import TOKENS, config_dict, make_config, run_graph

BAD = [
    {"id": "raises", "class": "tests.support:FailingStrategy", "instruments": TOKENS[:2],
     "brokers": ["paper"], "params": {"fail_at": 300, "quantity": 5}},
    {"id": "zero", "class": "tests.support:ZeroQuantityStrategy", "instruments": [TOKENS[3]],
     "brokers": ["paper"], "params": {"at": 150}},
]  # fmt: skip


def test_failing_strategies_are_isolated_and_everything_else_goes_on(
    ticks_dir: Path, tmp_path: Path
) -> None:
    base = config_dict(ticks_dir)
    clean, _ = run_graph(make_config(ticks_dir), tmp_path / "clean")
    rows, report = run_graph(
        make_config(ticks_dir, strategies=[*base["strategies"], *BAD]), tmp_path / "bad"
    )

    def others(r: dict[str, list[Any]]) -> list[Any]:
        return [s for s in r["signals"] if s.strategy_id in ("mom", "mr")]

    assert others(rows) == others(clean) and others(clean)
    dead = [d for d in rows["dead_letters"] if d.reason == "STRATEGY_ERROR"]
    named = sorted(d.detail.split(":")[0] for d in dead)
    assert named == sorted(
        [f"strategy raises on instrument {t}" for t in TOKENS[:2]]
        + [f"strategy zero on instrument {TOKENS[3]}"]
    )
    assert all("RuntimeError: boom at tick 300" in d.detail for d in dead if "raises" in d.detail)
    assert any("quantity 0" in d.detail for d in dead)
    # each failed strategy's last target is flat, stated at the failing tick
    for sid, tok in [("raises", TOKENS[0]), ("raises", TOKENS[1]), ("zero", TOKENS[3])]:
        mine = [s for s in rows["signals"] if (s.strategy_id, s.instrument_token) == (sid, tok)]
        assert mine[-1].target_quantity == 0 and mine[-1].reason.startswith("STRATEGY_ERROR")
    final = next(p for p in rows["pnl"] if p.final and p.broker == "paper")
    assert final.positions  # the others traded on
    sg = [h for h in rows["health"] if h.stage == "signal_generation" and h.broker == "paper"]
    assert any(h.reason == "STRATEGY_ERROR" for h in sg)
    assert len(report.strategy_errors) == 3
    assert report.rows_read == report.ticks_processed + report.dead_letters
    assert "STRATEGY_ERROR" not in report.dead_letters_by_reason  # not input rows


def _iso(us: int) -> str:
    from schemas.ticks import from_us

    return from_us(us).isoformat()


def test_control_file_halts_resumes_and_flattens_at_event_time(
    ticks_dir: Path, tmp_path: Path
) -> None:
    clean, _ = run_graph(make_config(ticks_dir), tmp_path / "clean")
    times = sorted(to_us(f.timestamp) for f in clean["fills"])
    halt, resume, flatten = (times[len(times) * k // 8] for k in (2, 3, 5))
    ctl = tmp_path / "control.jsonl"
    lines = [{"ts": _iso(halt), "broker": "paper", "command": "halt"},
             {"ts": _iso(resume), "broker": "paper", "command": "resume"},
             {"ts": _iso(flatten + 1), "broker": "paper", "command": "flatten"}]  # fmt: skip
    ctl.write_text("# operator log\n" + "\n".join(json.dumps(x) for x in lines) + "\n")
    rows, report = run_graph(make_config(ticks_dir, control={"path": str(ctl)}), tmp_path / "c")
    states = [(s.state, s.reason, to_us(s.timestamp)) for s in rows["trading_states"]]
    assert states == [
        ("HALTED", "OPERATOR_HALT", halt),
        ("ACTIVE", "OPERATOR_RESUME", resume),
        ("HALTED", "OPERATOR_FLATTEN", flatten + 1),
    ]
    halted = [r for r in rows["rejections"] if halt <= to_us(r.timestamp) < resume]
    assert halted and all("TRADING_HALTED" in r.reasons for r in halted)
    assert [o for o in rows["orders"] if halt <= to_us(o.timestamp) < resume] == []
    after = [p for p in rows["pnl"] if to_us(p.timestamp) > flatten + 1]
    assert after and all(pos.quantity == 0 for p in after for pos in p.positions)
    late = [o for o in rows["orders"] if to_us(o.timestamp) > flatten + 1]
    assert late == []
    (b,) = [b for b in report.brokers if b.broker == "paper"]
    assert [c.state for c in b.trading_states] == ["HALTED", "ACTIVE", "HALTED"]


def _ticks(ticks_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = ds.dataset(ticks_dir).to_table()
    tok = np.array(t["instrument_token"].to_pylist(), dtype=object)
    ts = t["timestamp"].to_pylist()
    px = np.array(t["last_price"].to_pylist(), dtype=object)
    keep = [i for i in range(len(tok)) if tok[i] in TOKENS and ts[i] is not None
            and px[i] is not None and px[i] == px[i] and px[i] > 0]  # fmt: skip
    order = sorted(keep, key=lambda i: ts[i])
    return (np.array([tok[i] for i in order], dtype=np.int64),
            np.array([to_us(ts[i]) for i in order], dtype=np.int64),
            np.array([px[i] for i in order], dtype=np.float64))  # fmt: skip


@pytest.mark.parametrize("limit", [150.0, 400.0])
def test_a_loss_breach_is_caught_within_one_mark_interval(
    ticks_dir: Path, tmp_path: Path, limit: float
) -> None:
    raw_brokers = {"paper": {"starting_cash": 1_000_000, "risk": {"max_daily_loss": limit}}}
    rows, _ = run_graph(make_config(ticks_dir, brokers=raw_brokers), tmp_path / "loss")
    breach = [s for s in rows["trading_states"] if s.reason == "DAILY_LOSS_BREACHED"]
    assert breach, "the limit was never breached: pick a smaller one"
    caught = to_us(breach[0].timestamp)
    # Independent walk: positions and cash from the fills, marks from every tick and fill.
    tok, ts, px = _ticks(ticks_dir)
    fills = sorted(rows["fills"], key=lambda f: to_us(f.timestamp))
    pos: dict[int, int] = {}
    last: dict[int, float] = {}
    cash, i, first_tick, first_second = 1_000_000.0, 0, None, None
    loss_at = lambda: 1_000_000.0 - cash - sum(q * last[t] for t, q in pos.items())  # noqa: E731
    for k in range(len(ts)):
        while (
            i < len(fills)
            and to_us(fills[i].timestamp) <= ts[k]
            and to_us(fills[i].timestamp) < caught
        ):
            f = fills[i]
            q = f.quantity if f.side == "BUY" else -f.quantity
            pos[f.instrument_token] = pos.get(f.instrument_token, 0) + q
            cash -= q * f.fill_price + f.fees
            last[f.instrument_token] = f.fill_price
            i += 1
        if first_second is not None:
            break
        if k + 1 < len(ts) and ts[k + 1] // US == ts[k] // US:
            last[int(tok[k])] = float(px[k])
        else:  # the last tick before a second boundary: what the mark at that boundary sees
            last[int(tok[k])] = float(px[k])
            if loss_at() >= limit:
                first_second = (ts[k] // US + 1) * US
        if first_tick is None and loss_at() >= limit:
            first_tick = int(ts[k])
    assert first_tick is not None and first_second is not None
    # never before the book really lost that much; at the latest at the first mark after
    assert first_tick <= caught <= first_second


@pytest.mark.parametrize("rules", ["limit_timeouts", "circuit_rejections"])
def test_health_counts_every_order_outcome_a_replay_books(tmp_path: Path, rules: str) -> None:
    """LIMIT timeouts, square-offs and circuit refusals leave the account after later
    events of their stage: each still counts in one health window, as the ledger books it."""
    from tests.support import INSTRUMENTS, small_ticks

    ticks_dir = small_ticks(tmp_path / "ticks", days=2, bad_rows=False)

    if rules == "limit_timeouts":
        base = config_dict(ticks_dir)["strategies"]
        over: dict[str, Any] = dict(
            strategies=[dict(s, order_type="LIMIT") for s in base],
            execution={"limit_timeout_s": 5.0, "max_participation": None},
        )
    else:
        inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts}
                | ({"circuit_pct": 3.0} if t == TOKENS[1] else {})
                for t, s, ts in INSTRUMENTS]  # fmt: skip
        paper = {"starting_cash": 1_000_000, "risk": {"circuit_pct": 0.5}}
        over = dict(instruments=inst, brokers={"paper": paper})
    rows, _ = run_graph(make_config(ticks_dir, **over), tmp_path / "run")
    windows = [(h.broker, h.stage, h.window_start) for h in rows["health"]]
    assert len(set(windows)) == len(windows)  # each window judged once
    counted: dict[str, int] = {}
    for h in rows["health"]:
        if h.broker == "paper":
            counted[h.stage] = counted.get(h.stage, 0) + h.count
    ours = {k: [r for r in v if getattr(r, "broker", "paper") == "paper"] for k, v in rows.items()}
    orders, failures, refused = (len(ours[k]) for k in ("orders", "order_failures", "rejections"))
    assert failures and (refused or rules == "limit_timeouts")  # the rule's outcomes to count
    assert counted["order_execution"] == orders + failures
    assert counted["risk_validation"] == orders + refused  # each approval places one order
    assert counted["portfolio_updates"] == len(ours["fills"]) + len(ours["pnl"])
    strategies = [s for s in ours["signals"] if not s.reason.startswith("AUTO_SQUARE_OFF")]
    assert counted["signal_generation"] == len(strategies)  # square-offs are the account's
