"""End-to-end runs through the CLI: embedded default, workers, processes, recovery."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import yaml
from bytewax.inputs import AbortExecution
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.replay import ReplaySource, ReplayState, _ReplayPartition
from flows.graph import build_flow
from flows.plan import prepare
from schemas.config import ReplaySourceConfig
from schemas.ledger import LEDGER_KINDS
from tests.support import (
    bytewax_run,
    config_dict,
    finish,
    free_ports,
    ledger_bytes,
    make_config,
    read_ledger,
)


def _write_config(tmp: Path, ticks: Path, name: str) -> tuple[Path, Path]:
    out = tmp / name
    raw = config_dict(ticks, output={"dir": str(out), "rows_per_file": 150})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, out


def test_embedded_default_runs_and_writes_a_readable_ledger(tmp_path: Path) -> None:
    out = finish(bytewax_run([], None, tmp_path))
    assert "=== Alpha Panda run report ===" in out and "broker paper" in out
    assert "broker zerodha" not in out  # configured, but no strategy trades on it
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    # The analysis report follows the run: its headline printed, three forms in the folder.
    assert "profit factor" in out and f"report: {runs[0].relative_to(tmp_path)}/report.html" in out
    html = (runs[0] / "report.html").read_text()
    assert "<script src=" not in html and html.count("plotly") > 10
    analysis = json.loads((runs[0] / "analysis.json").read_text())
    assert analysis["run"] == json.loads((runs[0] / "report.json").read_text())  # the flow's
    for kind in LEDGER_KINDS:
        table = ds.dataset(runs[0] / kind).to_table()
        assert table.schema.names, kind
    assert ds.dataset(runs[0] / "dead_letters").count_rows() == 6
    assert ds.dataset(runs[0] / "fills").count_rows() > 0
    assert (
        str(ds.dataset(runs[0] / "fills").schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    )


def test_bad_config_fails_before_the_flow_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    raw = config_dict(tmp_path)
    raw["strategies"][0]["type"] = "nope"
    bad.write_text(yaml.safe_dump(raw))
    p = bytewax_run([], bad, tmp_path)
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0
    assert "strategies[mom].type: unknown strategy 'nope'" in err


def test_two_workers_and_two_processes_write_the_same_ledger(
    ticks_dir: Path, tmp_path: Path
) -> None:
    one, out1 = _write_config(tmp_path, ticks_dir, "w1")
    two, out2 = _write_config(tmp_path, ticks_dir, "w2")
    procs, out3 = _write_config(tmp_path, ticks_dir, "p2")
    finish(bytewax_run([], one, tmp_path))
    finish(bytewax_run(["-w", "2"], two, tmp_path))
    addrs = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    ps = [bytewax_run(["-i", str(i), "-a", addrs], procs, tmp_path) for i in range(2)]
    printed = "".join(finish(p) for p in ps)
    assert printed.count("=== Alpha Panda run report ===") == 1
    base = ledger_bytes(out1)
    assert any(k.startswith("fills/paper-0000") for k in base)
    assert sum(k.startswith("health/") for k in base) > 10  # several files per shard
    assert ledger_bytes(out2) == base
    assert ledger_bytes(out3) == base


class _AbortingPartition(_ReplayPartition):
    budget = 0

    def next_batch(self) -> list[Any]:
        if _AbortingPartition.budget == 0:
            _AbortingPartition.budget = -1
            raise AbortExecution()
        if _AbortingPartition.budget > 0:
            _AbortingPartition.budget -= 1
        return super().next_batch()


class _AbortingReplay(ReplaySource):
    def build_part(self, step_id: str, for_part: str, resume_state: ReplayState | None) -> Any:
        k = int(for_part.rsplit("-", 1)[1])
        return _AbortingPartition(
            for_part, self.reader, k, self.partitions, self.known, self.batch_size, resume_state
        )


def test_interrupted_replay_resumes_to_the_same_result(ticks_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(ticks_dir, output={"rows_per_file": 150})
    run_main(build_flow(prepare(cfg, out_dir=tmp_path / "whole")))
    tokens = [i.instrument_token for i in cfg.instruments]

    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    rc = RecoveryConfig(str(recovery))
    out = tmp_path / "resumed"
    assert isinstance(cfg.source, ReplaySourceConfig)
    src = _AbortingReplay(cfg.source.path, tokens, cfg.source.batch_size, cfg.source.partitions)
    flow = build_flow(prepare(cfg, source=src, source_parts=src.part_names(), out_dir=out))
    _AbortingPartition.budget = 12
    try:
        run_main(flow, epoch_interval=timedelta(0), recovery_config=rc)
    except Exception as exc:  # the abort surfaces as an error of the run
        assert "Abort" in repr(exc) or "abort" in str(exc).lower()
    assert _AbortingPartition.budget == -1, "the run was not interrupted"
    partial = read_ledger(out, "signals")
    run_main(flow, epoch_interval=timedelta(0), recovery_config=rc)

    final = [r for r in read_ledger(out, "pnl") if r["final"]]
    expect = [r for r in read_ledger(tmp_path / "whole", "pnl") if r["final"]]
    assert final == expect and final
    assert len(partial) < len(read_ledger(out, "signals"))
    assert ledger_bytes(out) == ledger_bytes(tmp_path / "whole")


def test_a_run_that_could_use_none_of_its_rows_exits_1_and_says_why(
    ticks_dir: Path, tmp_path: Path
) -> None:
    """Every row dead-lettered (here: an instrument list that matches none of the data) is
    not a success: the run ends with its report and dead letters, exit 1, one line why."""
    raw = config_dict(ticks_dir, output={"dir": str(tmp_path / "out")})
    raw["instruments"] = [{"instrument_token": 4242, "tradingsymbol": "NONE", "tick_size": 0.05}]
    for s in raw["strategies"]:
        s["instruments"] = [4242]
    config = tmp_path / "none.yaml"
    config.write_text(yaml.safe_dump(raw))
    p = bytewax_run([], config, tmp_path)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("alpha-panda: none of the") and "UNKNOWN_INSTRUMENT" in last
    assert "=== Alpha Panda run report ===" in out
    dead = ds.dataset(tmp_path / "out" / "dead_letters").count_rows()
    assert dead == json.loads((tmp_path / "out" / "report.json").read_text())["rows_read"] > 0
