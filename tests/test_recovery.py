"""Recovery stores through the real entry point: a store remembers the config and code it was
made with; a resume with anything else is refused naming what changed; a finished replay is
not run again; a stopped run resumes into its own folder and says so."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import yaml
from bytewax.recovery import init_db_dir
from bytewax.testing import run_main

from connectors import recovery_meta
from connectors.recovery_meta import changes, code_digest, describe, recorded_output
from flows.config import load_config
from flows.graph import build_flow
from flows.plan import prepare
from tests.support import (
    SAMPLE_ROWS,
    bytewax_run,
    config_dict,
    ledger_bytes,
    long_replay,
    make_config,
    read_ledger,
    signal_once_writing,
)

RECOVERY = ["-s", "1", "-b", "0"]


def new_store(tmp: Path) -> Path:
    store = tmp / "recovery"
    store.mkdir()
    init_db_dir(store, 1)
    return store


def run(config: Path, store: Path, cwd: Path) -> subprocess.Popen[str]:
    cwd.mkdir(exist_ok=True)
    return bytewax_run(["-r", str(store), *RECOVERY], config, cwd)


@pytest.fixture(scope="module")
def finished(ticks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, store) of a replay that ran to its end on a recovery store."""
    tmp = tmp_path_factory.mktemp("finished")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(config_dict(ticks_dir)))
    store = new_store(tmp)
    p = run(config, store, tmp / "a")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    assert "resumed from" not in out
    return config, store


def test_a_finished_replay_is_not_run_again(finished: tuple[Path, Path], tmp_path: Path) -> None:
    config, store = finished
    folder = recorded_output(store)
    assert folder is not None and (folder / "report.json").exists()
    before = ledger_bytes(folder)
    p = run(config, store, tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    assert "already finished" in err and str(folder / "report.json") in err
    assert "run report" not in out  # nothing emitted again
    assert ledger_bytes(folder) == before  # no duplicate final snapshots
    assert len([r for r in read_ledger(folder, "pnl") if r["final"]]) == 2
    assert not (tmp_path / "runs").exists()


def test_a_resume_with_another_config_is_refused_naming_what_changed(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    config, store = finished
    raw = yaml.safe_load(config.read_text())
    raw["brokers"]["paper"]["slippage_bps"] = 7
    raw["health"]["startup_windows"] = 3
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(raw))
    p = run(changed, store, tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert "config fields changed: brokers, health" in err and str(store) in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_a_resume_over_changed_replay_files_is_refused(ticks_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "ticks"
    shutil.copytree(ticks_dir, data)
    config = tmp_path / "copy.yaml"
    config.write_text(yaml.safe_dump(config_dict(data)))
    store = new_store(tmp_path)
    recovery_meta.write(store, describe(load_config(config), tmp_path / "out"))  # as a run would
    first = sorted(data.rglob("*.parquet"))[0]
    first.write_bytes(first.read_bytes() + b"\0")  # a file changed since
    p = run(config, store, tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert "replay files changed" in err and "config fields changed" not in err


def test_a_resume_over_an_edited_control_file_is_refused(ticks_dir: Path, tmp_path: Path) -> None:
    ctl = tmp_path / "ops.jsonl"
    ctl.write_text('{"ts": "2026-11-20T09:20:00+05:30", "broker": "paper", "command": "halt"}\n')
    config = tmp_path / "copy.yaml"
    config.write_text(yaml.safe_dump(config_dict(ticks_dir, control={"path": str(ctl)})))
    store = new_store(tmp_path)
    recovery_meta.write(store, describe(load_config(config), tmp_path / "out"))  # as a run would
    ctl.write_text('{"ts": "2026-11-20T09:46:00+05:30", "broker": "paper", "command": "flatten"}\n')
    p = run(config, store, tmp_path)  # its saved state counts commands of the old file
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2
    assert "control file changed" in err and "config fields changed" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_stopped_run_resumes_into_its_own_folder_and_says_so(tmp_path: Path) -> None:
    config = long_replay(tmp_path, tmp_path / "unused")
    raw = yaml.safe_load(config.read_text())
    del raw["output"]["dir"]  # run folders: runs/<name> under the working directory
    config.write_text(yaml.safe_dump(raw))
    store = new_store(tmp_path)
    p = run(config, store, tmp_path / "a")
    _, err = signal_once_writing(p, tmp_path / "a" / "runs", signal.SIGTERM)
    assert p.returncode == 143, err[-3000:]
    folder = recorded_output(store)
    assert folder is not None and folder.parent == (tmp_path / "a" / "runs").resolve()
    stopped = json.loads((folder / "report.json").read_text())
    assert stopped["rows_read"] < SAMPLE_ROWS and stopped["stopped_by"] == "SIGTERM"

    p = run(config, store, tmp_path / "b")  # another working dir: the store decides the folder
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert f"resumed from {store} (run started " in out
    assert not (tmp_path / "b" / "runs").exists()
    report = json.loads((folder / "report.json").read_text())
    assert report["rows_read"] == SAMPLE_ROWS == report["ticks_processed"] + report["dead_letters"]
    assert report["resumed_from"].startswith(str(store)) and report["stopped_by"] is None

    whole = tmp_path / "whole"  # uninterrupted, in process (batches of any size: same ledger)
    cfg = load_config(config)
    fast = cfg.model_copy(update={"source": cfg.source.model_copy(update={"batch_size": 20_000})})
    run_main(build_flow(prepare(fast, out_dir=whole)))
    for kind in ("signals", "orders", "fills", "dead_letters"):
        assert read_ledger(folder, kind) == read_ledger(whole, kind), kind
    assert ds.dataset(folder / "fills").count_rows() > 0


def test_the_record_names_a_code_change_and_a_new_store_has_no_folder(tmp_path: Path) -> None:
    root = tmp_path / "code"
    for d in recovery_meta.CODE_DIRS:
        shutil.copytree(recovery_meta.ROOT / d, root / d)
    same = code_digest(root)
    assert code_digest(root) == same
    (root / "operators" / "report.py").write_text("# edited\n", "utf-8")
    assert code_digest(root) != same
    cfg = make_config(tmp_path)
    old = describe(cfg, tmp_path / "out")
    assert changes(old, describe(cfg, tmp_path / "out")) == []
    new = describe(cfg, tmp_path / "out")
    new.code_sha256 = code_digest(root)
    old.code_sha256 = same
    assert changes(old, new) == [
        f"code changed (sources {same[:12]} -> {new.code_sha256[:12]}, "
        f"same version {new.package_version})"
    ]
    assert recorded_output(new_store(tmp_path)) is None


def test_a_folder_that_is_not_a_recovery_store_is_refused_in_one_line(
    ticks_dir: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hi")
    config = tmp_path / "bt.yaml"
    config.write_text(yaml.safe_dump(config_dict(ticks_dir, output={"dir": str(tmp_path / "o")})))
    p = bytewax_run(["-r", str(junk), "-s", "1", "-b", "1"], config, tmp_path)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and len(err.strip().splitlines()) == 1, err[-2000:]
    assert "not a recovery store" in err and "panicked" not in err
    assert not (tmp_path / "o").exists()


def test_a_stop_mid_replay_with_a_control_file_resumes_to_the_uninterrupted_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole-day batches: at a stop, the instruments already read are a day ahead of the
    others. The stop used to end the stream as the data's end does (every queued item
    released, end-of-stream marks, due commands applied, orders expired) and the store kept
    that: the resumed run started halted by a command hours ahead of its ticks."""

    ctl = tmp_path / "ops.jsonl"
    ctl.write_text("\n".join(json.dumps({"ts": ts, "broker": "paper", "command": c}) for ts, c in
                   [("2026-11-20T05:00:00Z", "halt"), ("2026-11-20T07:00:00Z", "resume"),
                    ("2026-11-20T08:30:00Z", "flatten")]))  # fmt: skip
    cfg = load_config(long_replay(tmp_path, tmp_path / "unused"))
    cfg = cfg.model_copy(update={
        "source": cfg.source.model_copy(update={"batch_size": 20_000}),
        "control": cfg.control.model_copy(update={"path": str(ctl)}),
    })  # fmt: skip
    run_main(build_flow(prepare(cfg, out_dir=tmp_path / "whole")))
    # at the 12th batch: a few instruments' whole day read, most not yet
    out, resume = _stopped_at(cfg, tmp_path, monkeypatch, 12)
    assert (
        ds.dataset(out / "fills").count_rows()
        < ds.dataset(tmp_path / "whole" / "fills").count_rows()
    )
    resume()
    for kind in ("signals", "orders", "fills", "trading_states"):
        assert read_ledger(out, kind) == read_ledger(tmp_path / "whole", kind), kind


def test_a_stop_and_resume_write_each_health_window_once_as_the_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop used to close every open health window as the data's end does: the part
    before the stop was judged (a busy window read as NO_TICKS) and the resume wrote the
    window again under the same id. Now each window is written once, as without the stop
    (portfolio_updates also counts the pnl snapshot each broker writes at the stop)."""

    cfg = load_config(long_replay(tmp_path, tmp_path / "unused"))
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"batch_size": 2_000})})
    run_main(build_flow(prepare(cfg, out_dir=tmp_path / "whole")))
    out, resume = _stopped_at(cfg, tmp_path, monkeypatch, 30)  # mid-session: windows open
    stopped = read_ledger(out, "health")
    whole = read_ledger(tmp_path / "whole", "health")
    assert 0 < len(stopped) < len(whole) and all(r in whole for r in stopped)
    resume()
    resumed = read_ledger(out, "health")
    assert Counter(r["event_id"] for r in resumed).most_common(1)[0][1] == 1
    pu = "portfolio_updates"  # counts the stop's own pnl snapshot (for the stopped run's report)
    assert sorted((r for r in resumed if r["stage"] != pu), key=str) == sorted(
        (r for r in whole if r["stage"] != pu), key=str
    )
    at_stop = len(read_ledger(out, "pnl")) - len(read_ledger(tmp_path / "whole", "pnl"))
    counts = [sum(r["count"] for r in rows if r["stage"] == pu) for rows in (resumed, whole)]
    assert at_stop > 0 and counts[0] - counts[1] == at_stop


def _stopped_at(
    cfg: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> tuple[Path, Callable[[], None]]:
    """Run ``cfg`` on a new store, asking a stop at the ``batch``-th replay batch: the run
    folder, and what resumes it (on the same store, into the same folder)."""
    from bytewax.recovery import RecoveryConfig

    from connectors import stop
    from connectors.replay import _ReplayPartition

    calls, read = [0], _ReplayPartition.next_batch

    def stop_at(self: _ReplayPartition) -> Any:
        calls[0] += 1
        if calls[0] == batch:
            stop.request()
        return read(self)

    store, out = new_store(tmp_path), tmp_path / "resumed"

    def run() -> None:
        run_main(build_flow(prepare(cfg, out_dir=out)), epoch_interval=timedelta(seconds=0),
                 recovery_config=RecoveryConfig(str(store)))  # fmt: skip

    monkeypatch.setattr(_ReplayPartition, "next_batch", stop_at)
    try:
        run()
    finally:
        stop.reset()
    monkeypatch.setattr(_ReplayPartition, "next_batch", read)
    return out, run
