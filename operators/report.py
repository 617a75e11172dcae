"""Run report: one key gathers tick counts, dead letters and each broker's summary, and
renders the report at end of stream."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from schemas.enums import DeadLetterReason
from schemas.events import DeadLetter, Model
from schemas.report import BrokerSummary, PnlStats

REPORT_KEY = "run"


class RunReport(Model):
    output_dir: str
    rows_read: int
    ticks_processed: int
    dead_letters: int
    dead_letters_by_reason: dict[str, int]
    strategy_errors: list[str]  # one line per strategy stopped on an instrument
    elapsed_s: float
    ticks_per_s: float  # ticks processed by this session (not those before a resume) per s
    brokers: list[BrokerSummary]
    resumed_from: str | None = None  # the recovery store a resumed run continued
    stopped_by: str | None = None  # SIGINT / SIGTERM: the sources ended before their data


@dataclass(frozen=True)
class Tally:
    rows_read: int = 0
    ticks: int = 0


@dataclass
class ReportState:
    rows_read: int = 0
    ticks: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    strategy_errors: list[str] = field(default_factory=list)
    brokers: dict[str, BrokerSummary] = field(default_factory=dict)


class ReportBuilder:
    """Pure logic: accumulate, then emit one RunReport at end of stream."""

    def __init__(self, output_dir: str, started: float, state: ReportState | None = None):
        self.output_dir = output_dir
        self.started = started
        self.resumed = state is not None
        self.state = state or ReportState()
        self.ticks_before = self.state.ticks  # a resume: counted by the session(s) before

    def on_item(self, item: Any) -> list[RunReport]:
        st = self.state
        if isinstance(item, Tally):
            st.rows_read += item.rows_read
            st.ticks += item.ticks
        elif isinstance(item, DeadLetter) and item.reason == DeadLetterReason.STRATEGY_ERROR:
            st.strategy_errors.append(item.detail)
        elif isinstance(item, DeadLetter):
            st.dead[str(item.reason)] += 1
        elif isinstance(item, BrokerSummary):
            st.brokers[str(item.broker)] = item
        return []

    def on_eof(self) -> list[RunReport]:
        st = self.state
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return [
            RunReport(
                output_dir=self.output_dir,
                rows_read=st.rows_read,
                ticks_processed=st.ticks,
                dead_letters=sum(st.dead.values()),
                dead_letters_by_reason=dict(sorted(st.dead.items())),
                strategy_errors=sorted(st.strategy_errors),
                elapsed_s=round(elapsed, 3),
                ticks_per_s=round((st.ticks - self.ticks_before) / elapsed, 1),
                brokers=[st.brokers[b] for b in sorted(st.brokers)],
                resumed_from="a snapshot" if self.resumed else None,
            )
        ]


def _row(s: PnlStats) -> str:
    wr = f"{s.win_rate:6.1%}" if s.win_rate is not None else "     -"
    return (
        f"  {s.name:<22} {s.fills:>6} {s.round_trips:>6} {wr} {s.realized_pnl:>12,.2f} "
        f"{s.unrealized_pnl:>12,.2f} {s.fees:>10,.2f} {s.net_pnl:>12,.2f} {s.max_drawdown:>10,.2f}"
    )


def render(r: RunReport) -> str:
    """Human-readable run report."""
    lines = ["", "=== Alpha Panda run report ==="]
    lines.append(f"output: {r.output_dir}")
    if r.resumed_from:
        lines.append(f"resumed from {r.resumed_from}")
    if r.stopped_by:
        lines.append(f"stopped by {r.stopped_by}: the sources ended early, outputs flushed")
    lines.append(
        f"ticks: {r.rows_read:,} read = {r.ticks_processed:,} processed + "
        f"{r.dead_letters:,} dead letters"
        + (f" {r.dead_letters_by_reason}" if r.dead_letters else "")
    )
    lines.append(f"time: {r.elapsed_s:.2f} s, {r.ticks_per_s:,.0f} ticks/s")
    head = (
        f"  {'strategy':<22} {'fills':>6} {'trips':>6} {'win%':>6} {'realized':>12} "
        f"{'unrealized':>12} {'fees':>10} {'net':>12} {'max dd':>10}"
    )
    for e in r.strategy_errors:
        lines.append(f"STRATEGY_ERROR: {e}")
    for b in r.brokers:
        if not (b.strategies or b.total.fills or b.rejections_by_reason or b.trading_states):
            continue  # configured, but nothing trades on it
        lines.append("")
        lines.append(
            f"broker {b.broker}: starting cash {b.starting_cash:,.2f}, equity {b.equity:,.2f}"
        )
        lines.append(head)
        lines.extend(_row(s) for s in b.strategies)
        lines.append(_row(b.total))
        if b.fees_noted is not None and b.fees_noted != b.fees_model:
            lines.append(
                f"  fees per Kite's contract notes {b.fees_noted:,.2f}, per the cost model "
                f"{b.fees_model:,.2f} (the same orders; the account books Kite's)"
            )
        if b.rejections_by_reason:
            why = ", ".join(f"{k} {v}" for k, v in b.rejections_by_reason.items())
            lines.append(f"  rejections: {why}")
        for c in b.trading_states:
            at = f"{c.timestamp:%Y-%m-%d %H:%M:%S}"
            lines.append(f"  {at} {c.previous} → {c.state} ({c.reason}: {c.detail})")
    if r.rows_read != r.ticks_processed + r.dead_letters:
        lines.append("WARNING: rows read != processed + dead letters")
    return "\n".join(lines) + "\n"
