"""Run report sink: prints the report and writes ``report.json`` beside the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from operators.report import RunReport, render


class _ReportPartition(StatelessSinkPartition[RunReport]):
    def __init__(self, root: Path, echo: bool) -> None:
        self.root, self.echo = root, echo

    def write_batch(self, items: list[RunReport]) -> None:
        for r in items:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "report.json").write_text(r.model_dump_json(indent=2))
            if self.echo:
                sys.stdout.write(render(r))
                sys.stdout.flush()


class ReportSink(DynamicSink[RunReport]):
    def __init__(self, root: Path, echo: bool = True) -> None:
        self.root, self.echo = root, echo

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReportPartition:
        return _ReportPartition(self.root, self.echo)
