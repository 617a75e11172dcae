"""Progress on stderr while the flow runs: a side-effect sink, so it never touches the ledger.

Replay: rows read, rate and time left, redrawn in place on a terminal (every 0.5 s) or one
line every 10 s of wall time when stderr is not a terminal. Live (Kafka tail, Kite): ticks,
orders, fills and each broker's worst stage health, one line a minute. A last line at the
end. ``$ALPHA_PANDA_PROGRESS``: ``off`` (or ``0``) for none, a number for the interval in
seconds. Counts are this process's (with ``-i/-a``, each process shows its own).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import bytewax.operators as op
import pyarrow.parquet as pq
from bytewax.dataflow import Stream, operator
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.replay import ReplaySource
from operators.report import Tally
from schemas.config import AppConfig, KafkaSourceConfig, KiteSourceConfig
from schemas.enums import HealthStatus
from schemas.events import OrderFilled, OrderPlaced, StageHealth

PROGRESS_ENV = "ALPHA_PANDA_PROGRESS"
SEVERITY = {HealthStatus.CRITICAL.value: 3, HealthStatus.WARNING.value: 2}

log = logging.getLogger("alpha_panda.progress")

Note = tuple[str, int] | StageHealth  # ("rows" | "ticks" | "orders" | "fills", n)


@dataclass(frozen=True)
class ProgressSpec:
    total_rows: int | None  # replay rows in the data (None: unknown, e.g. several processes)
    live: bool
    interval_s: float
    tty: bool


def progress_spec(
    cfg: AppConfig, source: Any, processes: int = 1, stream: TextIO | None = None
) -> ProgressSpec | None:
    """How this run shows progress (None: not at all)."""
    wanted = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if wanted in ("off", "0", "no", "false"):
        return None
    tty = (stream or sys.stderr).isatty()
    src = cfg.source
    live = isinstance(src, KiteSourceConfig) or (isinstance(src, KafkaSourceConfig) and src.tail)
    total = None
    if isinstance(source, ReplaySource) and processes == 1:
        total = sum(pq.read_metadata(f).num_rows for f in source.files)
    interval = 60.0 if live else 0.5 if tty else 10.0
    if wanted:
        try:
            interval = float(wanted)
        except ValueError:
            pass
    return ProgressSpec(total, live, max(interval, 0.001), tty and not live)


def _v(x: Any) -> str:
    """An enum field's value (events keep enums as their values)."""
    return str(getattr(x, "value", x))


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counts seen by this process's workers (thread-safe), rendered as one line."""

    def __init__(self, spec: ProgressSpec, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.clock, self.started = spec, clock, clock()
        self.counts = {"rows": 0, "ticks": 0, "orders": 0, "fills": 0}
        self.health: dict[str, dict[str, StageHealth]] = {}
        self.lock = threading.Lock()

    def add(self, notes: list[Note]) -> None:
        with self.lock:
            for n in notes:
                if isinstance(n, StageHealth):
                    self.health.setdefault(_v(n.broker), {})[_v(n.stage)] = n
                else:
                    self.counts[n[0]] += n[1]

    def _health(self) -> str:
        parts = []
        for broker in sorted(self.health):
            worst = max(self.health[broker].values(), key=lambda h: SEVERITY.get(_v(h.status), 0))
            status = _v(worst.status)
            why = f" ({_v(worst.stage)} {_v(worst.reason)})" if status in SEVERITY else ""
            parts.append(f"{broker} {status if why else 'ok'}{why}")
        return ", ".join(parts) or "-"

    def line(self) -> str:
        with self.lock:
            c, elapsed = dict(self.counts), max(self.clock() - self.started, 1e-9)
            health = self._health()
        if self.spec.live:
            return (
                f"live {_hms(elapsed)}: {c['ticks']:,} ticks, {c['orders']:,} orders, "
                f"{c['fills']:,} fills; health: {health}"
            )
        rate = c["rows"] / elapsed
        done = f"{c['rows']:,} rows"
        left = ""
        total = self.spec.total_rows
        if total:
            done = f"{c['rows']:,}/{total:,} rows ({min(c['rows'] / total, 1):.0%})"
            if 0 < c["rows"] < total:
                left = f", {_hms((total - c['rows']) / rate)} left"
        return f"replay {_hms(elapsed)}: {done}, {rate:,.0f} rows/s{left}"


class _ClearLine(logging.Filter):
    """Before a log record reaches the terminal, wipe the progress line it would run into."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def filter(self, record: logging.LogRecord) -> bool:
        self.out.write("\r\x1b[K")
        return True


class Printer:
    """Writes ``progress.line()`` every ``interval_s`` on a thread, until ``stop``."""

    def __init__(self, progress: Progress, out: TextIO | None = None) -> None:
        self.progress, self.out = progress, out or sys.stderr
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.clear = _ClearLine(self.out)
        self.handlers = [
            h
            for h in logging.getLogger().handlers
            if progress.spec.tty and getattr(h, "stream", None) is self.out
        ]

    def start(self) -> None:
        for h in self.handlers:
            h.addFilter(self.clear)
        self.thread.start()

    def write(self) -> None:
        line = self.progress.line()
        if self.progress.spec.tty:  # redrawn in place
            self.out.write(f"\r{line}\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def _loop(self) -> None:
        while not self.done.wait(self.progress.spec.interval_s):
            self.write()

    def stop(self) -> None:
        """Stop the thread and write the final counts (on a terminal: end the line)."""
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
        for h in self.handlers:
            h.removeFilter(self.clear)
        self.write()
        if self.progress.spec.tty:
            self.out.write("\n")
            self.out.flush()


class _Partition(StatelessSinkPartition[Note]):
    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink

    def write_batch(self, items: list[Note]) -> None:
        if self.sink.failed:
            return
        try:
            self.sink.progress.add(items)
        except Exception:  # progress is a courtesy: it never stops a run
            log.exception("progress: stopped showing progress")
            self.sink.failed = True

    def close(self) -> None:
        self.sink.closed()


class ProgressSink(DynamicSink[Note]):
    """One Progress and one printer per process, shared by its workers' partitions."""

    def __init__(self, spec: ProgressSpec) -> None:
        self.spec, self.open, self.failed = spec, 0, False
        self.progress = Progress(spec)
        self.printer: Printer | None = None
        self.lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        with self.lock:
            if self.printer is None:
                self.progress = Progress(self.spec)
                self.printer = Printer(self.progress)
                self.printer.start()
            self.open += 1
        return _Partition(self)

    def closed(self) -> None:
        with self.lock:
            self.open -= 1
            if self.open == 0 and self.printer is not None:
                self.printer.stop()
                self.printer = None


def _tally(kv: tuple[str, Any]) -> list[Note]:
    x = kv[1]
    return [("rows", x.rows_read), ("ticks", x.ticks)] if isinstance(x, Tally) else []


def _orders(kv: tuple[str, list[Any]]) -> list[Note]:
    placed = sum(isinstance(i, OrderPlaced) for i in kv[1])
    filled = sum(isinstance(i, OrderFilled) for i in kv[1])
    return [n for n in (("orders", placed), ("fills", filled)) if n[1]]


@operator
def progress(
    step_id: str,
    counts: Stream[tuple[str, Any]],
    booked: Stream[tuple[str, list[Any]]],
    judged: Stream[tuple[str, StageHealth]],
    spec: ProgressSpec,
) -> None:
    """Report tallies, account events and stage health into a ProgressSink."""
    notes = op.merge(
        "notes",
        op.flat_map("tallies", counts, _tally),
        op.flat_map("orders", booked, _orders),
        op.map("health", judged, lambda kv: kv[1]),
    )
    op.output("out", notes, ProgressSink(spec))
