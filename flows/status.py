"""``python -m flows.status [--json]``: the live state the flow wrote to Redis, per broker.

Reads only keys built by ``schemas.redis_keys``, in one MULTI/EXEC so that the view is one
consistent state. Exit code (a liveness probe): 0 healthy / idle / startup, 1 warning,
2 critical, 3 no data, a writer gone silent, Redis unreachable, or a bad config.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any, Literal

import redis
from pydantic import AwareDatetime, Field

from connectors.redis_state import connect, redact
from flows.config import load_config
from schemas.config import ConfigError, RedisConfig
from schemas.enums import Broker, HealthReason, HealthStatus, Stage
from schemas.events import Model, PnlSnapshot, Position, StageHealth
from schemas.redis_keys import (
    BrokerCounters,
    KeyKind,
    LiveKeys,
    RunCounters,
    RunMeta,
    WriterBeat,
    decode,
)

SEVERITY = [HealthStatus.HEALTHY, HealthStatus.IDLE, HealthStatus.STARTUP]
SEVERITY += [HealthStatus.WARNING, HealthStatus.CRITICAL]
EXIT_OF = {HealthStatus.WARNING: 1, HealthStatus.CRITICAL: 2}
NO_DATA = 3

FlowState = Literal["running", "finished", "stale", "no data", "unreachable"]


class StageView(Model):
    stage: Stage
    status: HealthStatus
    reason: HealthReason
    window_end: AwareDatetime | None
    count: int
    rate_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    last_event_time: AwareDatetime | None
    last_event_age_s: float | None  # event time: window end minus the stage's last event


class BrokerView(Model):
    broker: Broker
    status: HealthStatus
    reason: HealthReason
    worst_stage: Stage
    stages: list[StageView]
    counters: BrokerCounters | None
    pnl: PnlSnapshot | None
    positions: list[Position]
    history: list[StageHealth]


class WriterView(Model):
    worker: int
    state: Literal["running", "finished", "missing"]
    age_s: float | None  # wall clock since the writer last wrote
    flow_age_s: float | None  # wall clock since the flow last handed the writer a value


class StatusView(Model):
    redis: str
    prefix: str
    flow: FlowState
    detail: str
    exit_code: int
    source: str | None = None
    writers: list[WriterView] = Field(default_factory=list)
    run: RunCounters | None = None
    brokers: list[BrokerView] = Field(default_factory=list)


def _stage_view(stage: Stage, h: StageHealth | None) -> StageView:
    if h is None:
        return StageView(
            stage=stage, status=HealthStatus.STARTUP, reason=HealthReason.NO_WINDOW_YET,
            window_end=None, count=0, rate_per_s=0.0, latency_p50_ms=None, latency_p99_ms=None,
            last_event_time=None, last_event_age_s=None,
        )  # fmt: skip
    last = h.last_event_time
    return StageView(
        stage=stage, status=h.status, reason=h.reason, window_end=h.window_end, count=h.count,
        rate_per_s=h.rate_per_s, latency_p50_ms=h.latency_p50_ms, latency_p99_ms=h.latency_p99_ms,
        last_event_time=last,
        last_event_age_s=(h.window_end - last).total_seconds() if last else None,
    )  # fmt: skip


def _worst(stages: list[StageView]) -> StageView:
    return max(stages, key=lambda s: SEVERITY.index(HealthStatus(s.status)))


def read_status(
    client: redis.Redis, keys: LiveKeys, where: str, stale_after_s: float, history: int = 0
) -> StatusView:
    """The status view of one deployment (``keys``) from Redis."""
    base = dict(redis=where, prefix=keys.prefix)
    raw_meta = client.get(keys.meta())
    if raw_meta is None:
        detail = f"no live state under prefix {keys.prefix!r} (is sinks: [redis] set?)"
        return StatusView(**base, flow="no data", detail=detail, exit_code=NO_DATA)
    meta = decode(KeyKind.META, raw_meta)
    values, hist_raw = _fetch(client, keys, meta, history)
    writers = _writers(values, keys, meta.workers, datetime.now(timezone.utc))
    flow, detail = _flow_state(writers, stale_after_s)
    brokers = [
        _broker_view(b, keys, values, hist) for b, hist in zip(meta.brokers, hist_raw, strict=True)
    ]
    code = NO_DATA if flow == "stale" else 0
    if flow != "stale" and brokers:
        code = max(EXIT_OF.get(HealthStatus(v.status), 0) for v in brokers)
    return StatusView(
        **base, flow=flow, detail=detail, exit_code=code, source=meta.source, writers=writers,
        run=values.get(keys.run_counters()), brokers=brokers,
    )  # fmt: skip


def _fetch(
    client: redis.Redis, keys: LiveKeys, meta: RunMeta, history: int
) -> tuple[dict[str, Any], list[list[bytes]]]:
    """Every key of the deployment, decoded, read in one transaction; and each broker's
    last ``history`` health entries (raw)."""
    wanted = [keys.writer(i) for i in range(meta.workers)] + [keys.run_counters()]
    for b in meta.brokers:
        wanted += [keys.pnl(b), keys.positions(b), keys.counters(b)]
        wanted += [keys.health(b, s) for s in Stage]
    pipe = client.pipeline(transaction=True)
    for key in wanted:
        pipe.get(key)
    for b in meta.brokers if history else []:
        for s in Stage:
            pipe.zrevrange(keys.health_history(b, s), 0, history - 1)
    got = pipe.execute()
    values = {}
    for key, raw in zip(wanted, got, strict=False):
        if raw is not None:
            parsed = keys.parse(key)
            assert parsed is not None
            values[key] = decode(parsed.kind, raw)
    n, k0 = len(Stage), len(wanted)
    hist_raw = [
        [m for ms in got[k0 + k * n : k0 + (k + 1) * n] for m in ms]
        for k in range(len(meta.brokers))
    ]
    return values, hist_raw


def _writers(
    values: dict[str, Any], keys: LiveKeys, workers: int, now: datetime
) -> list[WriterView]:
    out = []
    for i in range(workers):
        beat: WriterBeat | None = values.get(keys.writer(i))
        age = (now - beat.updated_at).total_seconds() if beat else None
        flow_age = (now - beat.flow_at).total_seconds() if beat and beat.flow_at else None
        state = beat.state if beat else "missing"
        out.append(WriterView(worker=i, state=state, age_s=age, flow_age_s=flow_age))
    return out


def _flow_state(writers: list[WriterView], stale_after_s: float) -> tuple[FlowState, str]:
    stale = [
        w
        for w in writers
        if w.state == "missing" or (w.state == "running" and (w.age_s or 0) > stale_after_s)
    ]
    if stale:
        return "stale", (
            f"writer {stale[0].worker} silent for more than {stale_after_s:g} s: the flow stopped"
        )
    if all(w.state == "finished" for w in writers):
        return "finished", "the run finished; this is its final state"
    return "running", "state written by the running flow"


def _broker_view(b: str, keys: LiveKeys, values: dict[str, Any], hist: list[bytes]) -> BrokerView:
    stages = [_stage_view(s, values.get(keys.health(b, s))) for s in Stage]
    worst = _worst(stages)
    return BrokerView(
        broker=b, status=worst.status, reason=worst.reason, worst_stage=worst.stage,
        stages=stages, counters=values.get(keys.counters(b)), pnl=values.get(keys.pnl(b)),
        positions=values.get(keys.positions(b), []),
        history=sorted(
            (decode(KeyKind.HEALTH_HISTORY, m) for m in hist),
            key=lambda h: (h.window_start, h.stage),
        ),
    )  # fmt: skip


def _age(s: float | None) -> str:
    return "-" if s is None else f"{s:,.1f}s"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def render(v: StatusView) -> str:
    """Human-readable status."""
    lines = [f"Alpha Panda status: {v.redis} prefix {v.prefix!r}: {v.flow.upper()} ({v.detail})"]
    if v.writers:
        lines += [
            f"writer #{w.worker}: {w.state}, wrote {_age(w.age_s)} ago, "
            f"last value from the flow {_age(w.flow_age_s)} ago"
            for w in v.writers
        ]
    if v.run:
        r = v.run
        lines.append(
            f"ticks: {r.rows_read:,} read = {r.ticks_processed:,} processed + "
            f"{r.dead_letters:,} dead letters"
            + (f" {r.dead_letters_by_reason}" if r.dead_letters else "")
        )
    for b in v.brokers:
        lines += ["", f"broker {b.broker}: {b.status.upper()} ({b.worst_stage}: {b.reason})"]
        lines.append(
            f"  {'stage':<18} {'status':<9} {'reason':<20} {'count':>7} {'rate/s':>8} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'last event':>11}  window end"
        )
        for s in b.stages:
            end = s.window_end.isoformat(timespec="seconds") if s.window_end else "-"
            lines.append(
                f"  {s.stage:<18} {s.status:<9} {s.reason:<20} {s.count:>7,} {s.rate_per_s:>8.2f} "
                f"{_ms(s.latency_p50_ms):>7} {_ms(s.latency_p99_ms):>7} "
                f"{_age(s.last_event_age_s):>11}  {end}"
            )
        if c := b.counters:
            lines.append(
                f"  signals {c.signals:,}, validated {c.validated:,}, rejected {c.rejected:,}"
                + (f" {c.rejections_by_reason}" if c.rejected else "")
                + f", orders {c.orders_placed:,}, failed {c.orders_failed:,}, fills {c.fills:,}"
            )
        if p := b.pnl:
            lines.append(
                f"  pnl at {p.timestamp.isoformat(timespec='seconds')}: equity {p.equity:,.2f}, "
                f"cash {p.cash:,.2f}, realized {p.realized_pnl:,.2f}, "
                f"unrealized {p.unrealized_pnl:,.2f}, fees {p.fees:,.2f}"
            )
        for pos in b.positions:
            lines.append(
                f"    {pos.instrument_token:>9} qty {pos.quantity:>6} "
                f"avg {pos.average_price:>10,.2f} last {pos.last_price:>10,.2f} "
                f"unrealized {pos.unrealized_pnl:>10,.2f}"
            )
        for h in b.history:
            lines.append(
                f"    {h.window_start.isoformat(timespec='seconds')} "
                f"{h.stage:<18} {h.status:<9} {h.reason}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.status", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--config", help="config file (default: $ALPHA_PANDA_CONFIG or the bundled one)"
    )
    ap.add_argument("--url", help="Redis URL (default: redis.url, $REDIS_URL, local Redis)")
    ap.add_argument("--prefix", help="key prefix (default: redis.key_prefix)")
    ap.add_argument(
        "--history", type=int, default=0, metavar="N", help="also list the last N windows"
    )
    ap.add_argument("--json", action="store_true", help="one JSON object, for machines")
    args = ap.parse_args(argv)
    try:
        rc = load_config(args.config).redis
    except ConfigError as exc:
        sys.stderr.write(f"alpha-panda status: configuration error: {exc}\n")
        return NO_DATA
    rc = rc.model_copy(
        update={k: v for k, v in (("url", args.url), ("key_prefix", args.prefix)) if v}
    )
    view = status_of(rc, args.history)
    sys.stdout.write(view.model_dump_json(indent=2) + "\n" if args.json else render(view))
    return view.exit_code


def status_of(cfg: RedisConfig, history: int = 0) -> StatusView:
    where = redact(cfg.resolved_url())
    client = connect(cfg)
    try:
        return read_status(client, LiveKeys(cfg.key_prefix), where, cfg.stale_after_s, history)
    except (redis.RedisError, OSError) as exc:
        detail = f"redis.url: cannot reach {where} ({type(exc).__name__}: {exc})"
        return StatusView(
            redis=where, prefix=cfg.key_prefix, flow="unreachable", detail=detail, exit_code=NO_DATA
        )
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
