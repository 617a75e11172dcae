"""Entry point: ``python -m bytewax.run flows.main``.

With no configuration it replays the bundled sample ticks through the paper broker, writes
the ledger under ``runs/`` and prints a run report. ``ALPHA_PANDA_CONFIG`` picks a config file.
SIGINT / SIGTERM end the run cleanly (report written) with exit 130 / 143 (connectors.stop).
With ``-r DIR`` the recovery store must match the config and code it was made with
(connectors.recovery_meta).
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import time
from pathlib import Path

from bytewax.dataflow import Dataflow

from connectors import recovery_meta, stop
from flows.config import load_config
from flows.graph import build_flow
from flows.plan import prepare, run_flags
from schemas.config import ConfigError, SourceUnavailable

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
stop.install()  # before Bytewax runs: SIGINT/SIGTERM end the sources, then exit 130/143
stop.set_cluster(sys.argv[1:])


def _flow() -> Dataflow:
    cfg = load_config()
    if "kafka" in cfg.sinks:  # the sink fails fast like the source, before any output
        from connectors.kafka import metadata

        metadata(cfg.kafka)
    flags = run_flags()  # -r and -i as Bytewax reads them (its own parser has no -i)
    store, process = flags.recovery_dir, flags.process_id or 0
    resumed_out = recovery_meta.open_store(store, cfg) if store else None
    plan = prepare(cfg, out_dir=resumed_out)
    if store:
        recovery_meta.begin(store, cfg, plan.out, writer=process == 0)
    if process == 0:  # runs before stop's exit hook (atexit: last in, first out)
        atexit.register(_after, plan.out, time.time(), cfg.output.analysis)
    plan.read_ahead(flags)
    return build_flow(plan)


def _after(out: Path, started: float, analyse: bool) -> None:
    """After a run that wrote its report: a run that read rows and processed none failed
    (exit 1, said); the analysis report (text, JSON, HTML) beside the run report."""
    written = out / "report.json"
    if hasattr(sys, "last_value") or not written.exists() or written.stat().st_mtime < started:
        return  # the run failed, or ended before its report
    try:
        run = json.loads(written.read_text())
        read, done = int(run["rows_read"]), int(run["ticks_processed"])
    except (OSError, ValueError, KeyError, TypeError):
        read = done = 0
    if read and not done:
        why = ", ".join(f"{k} {v:,}" for k, v in run.get("dead_letters_by_reason", {}).items())
        stop.fail(f"none of the {read:,} rows read could be used ({why}): see dead_letters/")
    if analyse:
        _analyse(out)


def _analyse(out: Path) -> None:
    """The analysis report; a failure here costs the extra report only, in one line."""
    try:
        from flows.analysis import render_text, report, write_reports

        analysed = report(out)
        paths = write_reports(out, analysed=analysed)
    except Exception as exc:
        sys.stderr.write(f"alpha-panda: analysis report not written: {type(exc).__name__}: {exc}\n")
        return
    text = render_text(analysed).split("\n\n")
    heads = [block for block in text if block.startswith("broker ")]  # each broker's headline
    sys.stdout.write("\n" + "\n\n".join(heads) + "\n")
    sys.stdout.write(f"\nreport: {paths['html']} (and report.txt, analysis.json)\n")
    sys.stdout.flush()


try:
    flow = _flow()
except (ConfigError, FileNotFoundError) as exc:
    sys.stderr.write(f"alpha-panda: configuration error: {exc}\n")
    raise SystemExit(2) from None
except SourceUnavailable as exc:
    sys.stderr.write(f"alpha-panda: {exc}\n")
    raise SystemExit(2) from None
except recovery_meta.RunFinished as exc:
    sys.stderr.write(f"alpha-panda: {exc}\n")
    raise SystemExit(0) from None
