"""Health semantics: idle is not critical, startup grace, and a real stall turns warning then
critical only while ticks flow."""

from __future__ import annotations

from datetime import datetime, timezone

from operators.health import HealthJudge, WindowAcc, stage_events
from operators.session import MarketSession
from schemas.config import HealthConfig, SessionConfig
from schemas.enums import Broker, Stage
from schemas.ticks import US, Clock, TickCount, to_us

OPEN = to_us(datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc))  # Friday 10:30 IST
SATURDAY = to_us(datetime(2026, 11, 21, 5, 0, tzinfo=timezone.utc))
CFG = HealthConfig(
    window_s=60, startup_windows=1, stall_warning_windows=3, stall_critical_windows=5
)
W = CFG.window_s * US


def judge(stage: Stage, has_strategy: bool = True) -> HealthJudge:
    return HealthJudge(Broker.PAPER, stage, CFG, has_strategy, MarketSession(SessionConfig()))


def acc(
    count: int, ticks: int = 100, at: int = 0, latencies: list[float] | None = None
) -> WindowAcc:
    return WindowAcc(count, at if count else None, latencies or [], ticks)


def run(j: HealthJudge, windows: list[WindowAcc], start: int = OPEN) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, a in enumerate(windows):
        (h,) = j.on_item((start // W + k, a))
        out.append((str(h.status), str(h.reason)))  # stored as their values
    return out


def test_a_stage_that_stops_while_ticks_flow_turns_warning_then_critical() -> None:
    got = run(judge(Stage.SIGNAL_GENERATION), [acc(2), acc(3)] + [acc(0)] * 6)
    assert got == [
        ("startup", "STARTUP_GRACE"),
        ("healthy", "OK"),
        ("healthy", "NO_ACTIVITY"),
        ("healthy", "NO_ACTIVITY"),
        ("warning", "STAGE_STALLED"),  # third silent window with ticks flowing
        ("warning", "STAGE_STALLED"),
        ("critical", "STAGE_STALLED"),  # fifth
        ("critical", "STAGE_STALLED"),
    ]


def test_windows_without_ticks_do_not_count_as_a_stall() -> None:
    quiet = [acc(0, ticks=0)] * 8  # the feed is down: market data says so, not every stage
    got = run(judge(Stage.ORDER_EXECUTION), [acc(2), acc(3), *quiet, acc(0)])
    assert set(got[1:]) == {("healthy", "OK"), ("healthy", "NO_ACTIVITY")}
    md = run(judge(Stage.MARKET_DATA), [acc(5), acc(5), acc(0), acc(0), acc(0)])
    assert md[2:] == [("warning", "NO_TICKS"), ("warning", "NO_TICKS"), ("critical", "NO_TICKS")]


def test_a_stage_that_never_had_events_is_not_stalled() -> None:
    got = run(judge(Stage.RISK_VALIDATION), [acc(0)] * 8)
    assert got[1:] == [("healthy", "NO_ACTIVITY")] * 7


def test_no_enabled_strategy_is_idle_never_critical() -> None:
    for stage in (Stage.SIGNAL_GENERATION, Stage.RISK_VALIDATION, Stage.ORDER_EXECUTION):
        got = run(judge(stage, has_strategy=False), [acc(0)] * 10)
        assert got[1:] == [("idle", "NO_ENABLED_STRATEGY")] * 9


def test_outside_market_hours_is_idle() -> None:
    got = run(judge(Stage.MARKET_DATA), [acc(0, ticks=0)] * 4, start=SATURDAY)
    assert got == [("startup", "STARTUP_GRACE")] + [("idle", "MARKET_CLOSED")] * 3


def test_latency_thresholds_say_why() -> None:
    slow = [
        acc(3, latencies=[100.0, 6000.0]),
        acc(3, latencies=[20_000.0]),
        acc(3, latencies=[50.0]),
    ]
    got = run(judge(Stage.ORDER_EXECUTION), [acc(1), *slow])
    assert got[1:] == [("warning", "LATENCY_HIGH"), ("critical", "LATENCY_HIGH"), ("healthy", "OK")]


def test_last_event_time_carries_across_silent_windows() -> None:
    j = judge(Stage.SIGNAL_GENERATION)
    first = OPEN + 10 * US
    (h1,) = j.on_item((OPEN // W, acc(1, at=first)))
    (h2,) = j.on_item((OPEN // W + 1, acc(0)))
    assert to_us(h1.last_event_time) == to_us(h2.last_event_time) == first  # type: ignore[arg-type]
    assert h2.count == 0


def test_tick_counts_reach_every_stage_of_their_stream() -> None:
    extract = stage_events((Stage.MARKET_DATA, Stage.SIGNAL_GENERATION))
    out = dict(extract(("paper", [TickCount(OPEN, 0, 42), Clock(OPEN, "snapshot")])))
    assert out["paper:market_data"].count == 42 and out["paper:market_data"].ticks == 0
    assert out["paper:signal_generation"].count == 0
    assert out["paper:signal_generation"].ticks == 42
