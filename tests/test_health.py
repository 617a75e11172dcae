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


def test_live_feed_latency_is_receipt_minus_exchange_time_and_fires_latency_high() -> None:
    import numpy as np

    from operators.health import _fold, feed_latency
    from schemas.ticks import TickBatch

    n = 400
    ts = OPEN + W + np.arange(n, dtype=np.int64) * 100_000  # 40 s of ticks, one window
    delay_ms = np.where(np.arange(n) % 2 == 0, 20_000.0, 1_000.0)  # half are 20 s late
    recv = ts + (delay_ms * 1000).astype(np.int64)
    recv[:10] = ts[:10]  # no exchange time (stamped on receipt): left out
    batch = TickBatch(1, ts, np.full(n, 100.0), np.full(n, -1, dtype=np.int64), int(ts[-1]), recv)
    events = feed_latency([Broker.PAPER, Broker.ZERODHA], W)(batch)
    assert {k for k, _ in events} == {"paper:market_data", "zerodha:market_data"}
    assert all(e.feed for _, e in events)  # ahead of the ordered stream: closes no window
    paper = WindowAcc()
    for k, e in events:
        if k == "paper:market_data":
            _fold(paper, e)
    sample = np.array(paper.latencies)
    assert 0 < len(sample) <= 256 and set(np.unique(sample)) == {1_000.0, 20_000.0}
    j = judge(Stage.MARKET_DATA)
    j.on_item((OPEN // W, acc(5)))  # the startup window
    paper.count = n
    (h,) = j.on_item((OPEN // W + 1, paper))
    assert (h.status, h.reason) == ("critical", "LATENCY_HIGH")  # p99 20 s > 15 s
    assert h.latency_p99_ms == 20_000.0 and h.latency_p50_ms is not None
    replayed = TickBatch(1, ts, np.full(n, 100.0), np.full(n, -1, dtype=np.int64), int(ts[-1]))
    assert feed_latency([Broker.PAPER], W)(replayed) == []  # replay: no receipt time


def test_feed_notes_are_feed_events_and_a_windows_samples_stay_bounded() -> None:
    from collections.abc import Sequence
    from types import SimpleNamespace

    import numpy as np

    from connectors.kafka.source import _TickPartition
    from operators.health import MAX_WINDOW_SAMPLES, StageEvent, _fold, feed_notes
    from operators.ticks import MISSING_TS
    from schemas.ticks import FeedStale

    notes = feed_notes([Broker.PAPER, Broker.ZERODHA])
    silent, lost = notes(FeedStale(OPEN, 12.5)), notes(FeedStale(OPEN, 0.0, lost=True))
    assert [(k, e.stale, e.lost, e.feed) for k, e in silent + lost] == [
        ("paper:market_data", 1, 0, True), ("zerodha:market_data", 1, 0, True),
        ("paper:market_data", 0, 1, True), ("zerodha:market_data", 0, 1, True),
    ]  # fmt: skip

    def window(events: Sequence[tuple[float, ...]]) -> WindowAcc:
        w = WindowAcc()
        for lat in events:
            _fold(w, StageEvent(OPEN, 0, latencies=lat, feed=True))
        return w

    polls = [(500.0,) + (5.0,) * 7] * 3000  # one slow instrument in every poll of eight
    w = window(polls)
    assert w.samples == 24_000 and len(w.latencies) == MAX_WINDOW_SAMPLES
    slow = w.latencies.count(500.0) / len(w.latencies)
    assert 0.10 < slow < 0.15 and np.percentile(w.latencies, 50) == 5.0  # a fair sample
    assert window(polls).latencies == w.latencies  # the same sample for the same feed
    ramp = window([tuple(range(i, i + 256)) for i in range(0, 40_000, 256)])
    assert abs(np.percentile(ramp.latencies, 50) - 20_000) < 1_000  # not the first of each
    # a lost Kafka topic before any usable tick time: no note yet (it would have no time),
    # kept to send once there is one
    none = SimpleNamespace(last_ts={1: MISSING_TS})
    assert _TickPartition._lost_note(none) == []  # type: ignore[arg-type]
    watch = SimpleNamespace(look=lambda: (True, False))  # the topic was lost: said once
    idle = SimpleNamespace(last_ts={1: MISSING_TS}, lost=(watch, None), resumed_lost=False)
    idle._lost_note = lambda: _TickPartition._lost_note(idle)  # type: ignore[arg-type]
    assert _TickPartition._look(idle) == [] and idle.resumed_lost  # type: ignore[arg-type]
    some = SimpleNamespace(last_ts={1: MISSING_TS, 2: OPEN})
    assert _TickPartition._lost_note(some) == [FeedStale(OPEN, 0.0, lost=True)]  # type: ignore[arg-type]


def test_every_kind_of_item_gives_its_stage_events_on_each_of_its_arrivals() -> None:
    from schemas import events as ev
    from schemas.ticks import OrderLatency, StrategyFailed
    from tests.support import EXAMPLES, T

    at = to_us(T)
    kinds = ["TradingSignal", "ValidatedSignal", "RejectedSignal", "OrderPlaced", "OrderFailed",
             "OrderFilled", "PnlSnapshot", "TradingStateChanged", "StageHealth"]  # fmt: skip
    models = [getattr(ev, k).model_validate(EXAMPLES[getattr(ev, k)]) for k in kinds]
    items = [*models, Clock(at, "health"), Clock(at, "snapshot"), OrderLatency(at, 12.5),
             StrategyFailed(at, 1, "mom", "boom")]  # fmt: skip
    rv, oe, pu = "paper:risk_validation", "paper:order_execution", "paper:portfolio_updates"
    account = (Stage.RISK_VALIDATION, Stage.ORDER_EXECUTION, Stage.PORTFOLIO_UPDATES)
    want = [(rv, 1), (rv, 1), (oe, 1), (oe, 1), (pu, 1), (pu, 1), (rv, "REDUCING"),
            (rv, 0), (oe, 0), (pu, 0), (oe, (12.5,))]  # fmt: skip
    extract = stage_events(account)
    for _ in range(2):  # the first arrival of each kind, then the kinds already seen
        events = extract(("paper", items))
        assert [(k, e.trading or e.latencies or e.count) for k, e in events] == want
        assert all((e.ts, e.ticks, e.stale, e.errors) == (at, 0, 0, 0) for _, e in events)
    signals = stage_events((Stage.MARKET_DATA, Stage.SIGNAL_GENERATION))
    sg, md = "paper:signal_generation", "paper:market_data"
    for _ in range(2):
        counted = [(k, e.count, e.errors) for k, e in signals(("paper", items))]
        assert counted == [(sg, 1, 0), (md, 0, 0), (sg, 0, 0), (sg, 0, 1)]
    fills_only = stage_events((Stage.ORDER_EXECUTION,))
    assert [k for k, _ in fills_only(("paper", items[5:7]))] == [oe, oe]  # no portfolio stage


def test_an_account_event_stamped_before_later_heartbeats_counts_in_the_open_window() -> None:
    """Kite's answer to an order comes off the dataflow thread, after heartbeats of later
    windows passed: its count and latency go into the window open then, never dropped; it
    keeps its own time, so the stage's last event time never goes back; trading states
    count in the order the account made them, whatever their times."""
    from datetime import timedelta

    from operators.health import health_windows
    from schemas import events as ev
    from schemas.ticks import OrderLatency
    from tests.support import EXAMPLES, T

    at, minute = to_us(T), timedelta(minutes=1)
    placed = ev.OrderPlaced.model_validate(EXAMPLES[ev.OrderPlaced])
    fill = ev.OrderFilled.model_validate(EXAMPLES[ev.OrderFilled])
    later = fill.model_copy(update={"timestamp": T + 3 * minute})
    change = ev.TradingStateChanged.model_validate(EXAMPLES[ev.TradingStateChanged])
    halted = change.model_copy(update={"state": "HALTED", "timestamp": T + 2.5 * minute})
    active = change.model_copy(update={"state": "ACTIVE", "timestamp": T})  # as validated
    beat = [Clock(at + k * W, "health") for k in range(5)]
    stream = [beat[2], halted, placed, OrderLatency(at, 40.0), later, fill, active, beat[3],
              beat[4], fill]  # fmt: skip
    rv, oe, pu = "paper:risk_validation", "paper:order_execution", "paper:portfolio_updates"
    stages = (Stage.RISK_VALIDATION, Stage.ORDER_EXECUTION, Stage.PORTFOLIO_UPDATES)
    events = stage_events(stages)(("paper", stream))
    assert [e.ts for k, e in events if k == oe] == [at + 2 * W, at, at, at + 3 * W, at + 4 * W]
    windows = {k: health_windows(W) for k in (rv, oe, pu)}
    closed: dict[str, list[tuple[int, WindowAcc]]] = {k: [] for k in windows}
    for k, e in events:
        closed[k] += windows[k].on_item(e)
    for k, w in windows.items():
        closed[k] += w.on_eof()
    got = {k: [(i - at // W, a.count, len(a.latencies)) for i, a in c] for k, c in closed.items()}
    assert got[oe] == [(2, 1, 1), (3, 0, 0), (4, 0, 0)]  # order and latency: window 2, open then
    assert got[pu] == [(2, 0, 0), (3, 2, 0), (4, 1, 0)]  # each fill once, in the window open
    session = MarketSession(SessionConfig())
    portfolio = HealthJudge(Broker.PAPER, Stage.PORTFOLIO_UPDATES, CFG, True, session)
    rows = [h for closing in closed[pu] for h in portfolio.on_item(closing)]
    assert [h.last_event_time for h in rows] == [None, later.timestamp, later.timestamp]
    risk = HealthJudge(Broker.PAPER, Stage.RISK_VALIDATION, CFG, True, session)
    for closing in closed[rv]:
        risk.on_item(closing)
    assert [a.trading for _, a in closed[rv]] == ["ACTIVE", None, None]  # in one window
    assert risk.state.trading == "ACTIVE"  # made after the halt, though stamped before it
