"""Run report sink: prints the report and writes ``report.json`` beside the ledger. On a
recovery store it names the store a resumed run continued, and marks a replay that reached
the end of its data as finished (connectors.recovery_meta)."""

from __future__ import annotations

import sys
from pathlib import Path

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import recovery_meta, stop
from operators.report import REPORT_KEY, RunReport, Tally, render


class _ReportPartition(StatelessSinkPartition[RunReport]):
    def __init__(self, root: Path, echo: bool) -> None:
        self.root, self.echo = root, echo

    def write_batch(self, items: list[RunReport]) -> None:
        for r in items:
            note = recovery_meta.resumed_note()
            if r.resumed_from and note:
                r = r.model_copy(update={"resumed_from": note})
            if stop.requested():
                r = r.model_copy(update={"stopped_by": stop.signal_name()})
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "report.json").write_text(r.model_dump_json(indent=2))
            if self.echo:
                sys.stdout.write(render(r))
                sys.stdout.flush()
            recovery_meta.mark_finished(stopped=stop.requested())


class ReportSink(DynamicSink[RunReport]):
    def __init__(self, root: Path, echo: bool = True) -> None:
        self.root, self.echo = root, echo

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ReportPartition:
        return _ReportPartition(self.root, self.echo)


class _OpenPartition(StatefulSourcePartition[tuple[str, Tally], bool]):
    def __init__(self, done: bool) -> None:
        self.done = done

    def next_batch(self) -> list[tuple[str, Tally]]:
        if self.done:
            raise StopIteration()
        self.done = True
        return [(REPORT_KEY, Tally())]

    def snapshot(self) -> bool:
        return self.done


class ReportOpen(FixedPartitionedSource[tuple[str, Tally], bool]):
    """One empty tally for the report key at the start of a run, so that a run stopped
    before its first tick still writes its report."""

    def list_parts(self) -> list[str]:
        return ["report-open"]

    def build_part(self, step_id: str, for_part: str, resume_state: bool | None) -> _OpenPartition:
        return _OpenPartition(bool(resume_state))
