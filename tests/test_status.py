"""The key module and the status command: keys parse back, and the exit code follows the
worst stage, a silent writer, missing data and an unreachable Redis (real Redis)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import redis

from connectors.redis_state import StateWriter
from flows.status import StatusView, status_of
from schemas.config import RedisConfig
from schemas.enums import Broker, HealthReason, HealthStatus, Stage
from schemas.events import PnlSnapshot, Position, StageHealth
from schemas.redis_keys import (
    BrokerCounters,
    KeyKind,
    LiveKey,
    LiveKeys,
    RunMeta,
    WriterBeat,
    decode,
    encode,
)
from tests.redis_server import shared_url
from tests.support import EXAMPLES, ROOT

T = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def test_every_key_parses_back_to_what_built_it() -> None:
    keys = LiveKeys("desk-1:")
    expect = {
        keys.meta(): LiveKey(KeyKind.META),
        keys.writer(12): LiveKey(KeyKind.WRITER, worker=12),
        keys.run_counters(): LiveKey(KeyKind.RUN_COUNTERS),
        keys.intent("ap0123456789abcdef"): LiveKey(KeyKind.INTENT),
    }
    for b in Broker:
        expect[keys.pnl(b)] = LiveKey(KeyKind.PNL, b)
        expect[keys.positions(b)] = LiveKey(KeyKind.POSITIONS, b)
        expect[keys.counters(b)] = LiveKey(KeyKind.COUNTERS, b)
        expect[keys.trading_state(b)] = LiveKey(KeyKind.TRADING_STATE, b)
        expect[keys.control(b)] = LiveKey(KeyKind.CONTROL, b)
        for s in Stage:
            expect[keys.health(b, s)] = LiveKey(KeyKind.HEALTH, b, s)
            expect[keys.health_history(b, s)] = LiveKey(KeyKind.HEALTH_HISTORY, b, s)
    assert len(expect) == 4 + len(Broker) * (5 + 2 * len(Stage))
    assert {k: keys.parse(k) for k in expect} == expect
    assert {v.kind for v in expect.values()} == set(KeyKind)


@pytest.mark.parametrize(
    "key",
    [
        "desk-2:meta",  # another deployment
        "desk-1:meta:x",
        "desk-1:writer:01",
        "desk-1:writer:-1",
        "desk-1:broker:kite:pnl",  # no such broker
        "desk-1:broker:paper:health:signals",  # no such stage
        "desk-1:broker:paper:health_history",
        "desk-1:pipeline:paper:market_data",
    ],
)
def test_keys_the_module_never_builds_do_not_parse(key: str) -> None:
    assert LiveKeys("desk-1:").parse(key) is None


def test_values_round_trip_through_their_encoding() -> None:
    pos = [Position(instrument_token=1, quantity=-3, average_price=10.5, last_price=10.0,
                    realized_pnl=0.0, unrealized_pnl=1.5)]  # fmt: skip
    assert decode(KeyKind.POSITIONS, encode(pos)) == pos
    h = health(Stage.MARKET_DATA, HealthStatus.WARNING, HealthReason.NO_TICKS)
    assert decode(KeyKind.HEALTH, encode(h)) == h
    with pytest.raises(TypeError, match="no Redis key for Position"):
        LiveKeys().values_of(pos[0])


def health(stage: Stage, status: HealthStatus, reason: HealthReason, k: int = 0) -> StageHealth:
    start = T + timedelta(minutes=k)
    return StageHealth(**{
        **EXAMPLES[StageHealth], "event_id": f"h{k}{stage.value}", "broker": "paper",
        "stage": stage, "status": status, "reason": reason, "window_start": start,
        "window_end": start + timedelta(minutes=1), "count": 3, "last_event_time": start,
    })  # fmt: skip


def pnl() -> PnlSnapshot:
    return PnlSnapshot(**{**EXAMPLES[PnlSnapshot], "broker": "paper"})


@pytest.fixture
def cfg() -> Iterator[RedisConfig]:
    url = shared_url()
    c = RedisConfig(url=url, key_prefix=f"status-{uuid.uuid4().hex[:8]}:", stale_after_s=5)
    yield c
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{c.key_prefix}*"):
        client.delete(key)


def write(cfg: RedisConfig, statuses: dict[Stage, tuple[HealthStatus, HealthReason]]) -> None:
    meta = RunMeta(source="t", brokers=[Broker.PAPER], workers=1, window_s=60, history_windows=5)
    w = StateWriter(cfg, 0, meta)
    counters = BrokerCounters(
        broker=Broker.PAPER, signals=4, validated=3, rejected=1,
        rejections_by_reason={"MARKET_CLOSED": 1}, orders_placed=3, orders_failed=0, fills=3,
        as_of=T,
    )  # fmt: skip
    w.put([health(s, *v) for s, v in statuses.items()] + [pnl(), counters])
    assert w.flush()


H, IDLE, S = HealthStatus.HEALTHY, HealthStatus.IDLE, HealthStatus.STARTUP
WARN, CRIT = HealthStatus.WARNING, HealthStatus.CRITICAL
OK, STALL = HealthReason.OK, HealthReason.STAGE_STALLED
NO_STRATEGY, CLOSED = HealthReason.NO_ENABLED_STRATEGY, HealthReason.MARKET_CLOSED


@pytest.mark.parametrize(
    ("statuses", "code", "worst"),
    [
        ({s: (H, OK) for s in Stage}, 0, (H, OK)),
        ({Stage.MARKET_DATA: (H, OK), Stage.RISK_VALIDATION: (IDLE, NO_STRATEGY)},
         0, (S, HealthReason.NO_WINDOW_YET)),  # stages without a window yet: startup
        ({s: (IDLE, CLOSED) for s in Stage}, 0, (IDLE, CLOSED)),
        ({s: (H, OK) for s in Stage} | {Stage.ORDER_EXECUTION: (WARN, STALL)}, 1, (WARN, STALL)),
        ({s: (WARN, HealthReason.LATENCY_HIGH) for s in Stage}
         | {Stage.MARKET_DATA: (CRIT, HealthReason.NO_TICKS)}, 2, (CRIT, HealthReason.NO_TICKS)),
    ],
)  # fmt: skip
def test_exit_code_follows_the_worst_stage(
    cfg: RedisConfig,
    statuses: dict[Stage, tuple[HealthStatus, HealthReason]],
    code: int,
    worst: tuple[HealthStatus, HealthReason],
) -> None:
    write(cfg, statuses)
    view = status_of(cfg)
    assert view.flow == "running" and view.exit_code == code
    (paper,) = view.brokers
    assert (paper.status, paper.reason) == worst
    assert paper.counters is not None and paper.counters.rejections_by_reason == {
        "MARKET_CLOSED": 1
    }
    assert paper.pnl == pnl()


def test_cli_prints_json_and_exits_with_the_status_code(cfg: RedisConfig) -> None:
    write(cfg, {s: (H, OK) for s in Stage} | {Stage.RISK_VALIDATION: (WARN, STALL)})
    args = ["--url", str(cfg.url), "--prefix", cfg.key_prefix]
    done = subprocess.run(
        [sys.executable, "-m", "flows.status", "--json", *args], cwd=ROOT, capture_output=True
    )
    view = StatusView.model_validate_json(done.stdout)
    assert done.returncode == view.exit_code == 1
    text = subprocess.run(
        [sys.executable, "-m", "flows.status", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert text.returncode == 1
    assert "broker paper: WARNING (risk_validation: STAGE_STALLED)" in text.stdout


def test_a_silent_writer_means_the_flow_stopped(cfg: RedisConfig) -> None:
    write(cfg, {s: (H, OK) for s in Stage})
    assert status_of(cfg).exit_code == 0
    client = redis.Redis.from_url(str(cfg.url))
    keys = LiveKeys(cfg.key_prefix)
    ago = datetime.now(timezone.utc) - timedelta(seconds=60)
    old = WriterBeat(worker=0, state="running", updated_at=ago, flow_at=ago)
    client.set(keys.writer(0), encode(old))
    view = status_of(cfg)
    assert (view.flow, view.exit_code) == ("stale", 3)
    done = old.model_copy(update={"state": "finished"})
    client.set(keys.writer(0), encode(done))
    view = status_of(cfg)
    assert (view.flow, view.exit_code) == ("finished", 0)  # a finished run is not stale


def test_no_data_and_unreachable_exit_3(cfg: RedisConfig) -> None:
    view = status_of(cfg)
    assert (view.flow, view.exit_code) == ("no data", 3)
    gone = RedisConfig(url="redis://127.0.0.1:1/0", timeout_s=0.5)
    view = status_of(gone)
    assert (view.flow, view.exit_code) == ("unreachable", 3)
    assert "redis.url: cannot reach redis://127.0.0.1:1/0" in view.detail


def test_heartbeat_says_when_the_flow_last_handed_over_a_value(cfg: RedisConfig) -> None:
    meta = RunMeta(source="t", brokers=[Broker.PAPER], workers=1, window_s=60, history_windows=5)
    w = StateWriter(cfg, 0, meta)
    assert w.flush()
    (writer,) = status_of(cfg).writers
    assert writer.state == "running" and writer.flow_age_s is None  # meta is not flow output
    w.put([pnl()])
    assert w.flush()
    (writer,) = status_of(cfg).writers
    assert writer.flow_age_s is not None and 0 <= writer.flow_age_s < 5
