"""Run folders: readable names, never overwritten, the resolved config inside (no secrets),
relative outputs against the config file; progress on stderr that leaves the ledger alone;
a run that fails before its first tick leaves the previous run as it was."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
import yaml

from connectors.progress import PROGRESS_ENV, Progress, ProgressSpec, progress_spec
from flows.config import load_config
from flows.plan import CONFIG_FILE, RUNS, RunFlags, prepare, run_flags, run_folder, write_config
from schemas.config import ConfigError
from schemas.events import StageHealth
from tests.support import (
    ROOT,
    config_dict,
    flow_env,
    free_ports,
    ledger_bytes,
    make_config,
    small_ticks,
)

NOW = datetime(2026, 12, 2, 10, 43)
STAMP = re.compile(r"^bt-ticks-\d{8}-\d{4}(-\d+)?$")


def _config_file(folder: Path, ticks: Path, **over: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bt.yaml"
    path.write_text(yaml.safe_dump(config_dict(ticks, **over)))
    return path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flows.cli", "run", *args]
    return subprocess.run(cmd, cwd=cwd, env=flow_env(None), capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_names_say_config_data_and_time_or_what_the_user_gave(
    ticks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = make_config(ticks_dir)
    conf = tmp_path / "conf" / "bt.yaml"
    assert run_folder(cfg, conf, now=NOW) == RUNS / "bt-ticks-20261202-1043"
    assert run_folder(cfg, conf, "trial 7", now=NOW) == RUNS / "trial_7"
    # several processes must agree on the folder: no wall clock in it
    assert run_folder(cfg, conf, flags=RunFlags(0, 2)) == RUNS / "bt-ticks"
    given = make_config(ticks_dir, output={"dir": str(tmp_path / "out" / "mine")})
    assert run_folder(given, conf, now=NOW) == tmp_path / "out" / "mine"
    assert run_folder(given, conf, "other", now=NOW) == tmp_path / "out" / "other"
    with pytest.raises(ConfigError, match="run name"):
        run_folder(cfg, conf, "/..", now=NOW)


def test_a_folder_holding_a_run_is_never_reused(ticks_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(ticks_dir, output={"dir": str(tmp_path / "r")})
    conf = tmp_path / "bt.yaml"
    assert run_folder(cfg, conf) == tmp_path / "r"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / CONFIG_FILE).write_text("{}")  # a run that failed before its first tick
    assert run_folder(cfg, conf) == tmp_path / "r"
    (tmp_path / "r" / "fills").mkdir()
    assert run_folder(cfg, conf) == tmp_path / "r"  # empty folders hold nothing
    (tmp_path / "r" / "fills" / "paper-00000.parquet").write_bytes(b"x")
    assert run_folder(cfg, conf) == tmp_path / "r-2"
    (tmp_path / "r-2").mkdir()
    (tmp_path / "r-2" / "report.json").write_text("{}")
    assert run_folder(cfg, conf) == tmp_path / "r-3"


def test_runs_started_together_never_share_a_folder(ticks_dir: Path, tmp_path: Path) -> None:
    """Eight runs of one config in the same minute (a parameter sweep) each claim their own
    folder, atomically; an output.dir that is a file is refused; a long name is cut short."""
    cfg = make_config(ticks_dir, output={"dir": str(tmp_path / "sweep")})
    conf = tmp_path / "bt.yaml"
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: run_folder(cfg, conf, now=NOW, claim=True), range(8)))
    assert sorted(p.name for p in got) == sorted(["sweep", *(f"sweep-{k}" for k in range(2, 9))])
    assert all(p.is_dir() for p in got)
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(ConfigError, match=r"output\.dir: .* is not a folder"):
        run_folder(make_config(ticks_dir, output={"dir": str(tmp_path / "plain")}), conf)
    assert len(run_folder(cfg, conf, "a" * 300, claim=True).name) == 200


def test_bytewax_flags_are_read_from_its_command_line_or_environment() -> None:
    argv = ["flows.main", "-w", "2", "-i", "1", "-a", "h:1;h:2", "-r", "rec", "-s", "5"]
    assert run_flags(argv, {}) == RunFlags(1, 2, Path("rec"))
    env = {"BYTEWAX_PROCESS_ID": "0", "BYTEWAX_ADDRESSES": "a:1;b:2;c:3"}
    assert run_flags(["flows.main"], env) == RunFlags(0, 3, None)
    assert run_flags() == RunFlags()  # not python -m bytewax.run (pytest here)


def test_a_cluster_pod_is_one_of_the_processes_its_host_file_names(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("bw-0.bw:9999\n\nbw-1.bw:9999\nbw-2.bw:9999\n")
    env = {"BYTEWAX_POD_NAME": "bw-2", "BYTEWAX_STATEFULSET_NAME": "bw",
           "BYTEWAX_HOSTFILE_PATH": str(hosts)}  # fmt: skip
    assert run_flags(["flows.main"], env) == RunFlags(2, 3, None)  # as Bytewax reads them
    assert run_flags(["flows.main", "-i", "1"], env) == RunFlags(1, 3, None)
    lone = {"BYTEWAX_POD_NAME": "bw-x", "BYTEWAX_STATEFULSET_NAME": "bw"}
    assert run_flags(["flows.main"], lone) == RunFlags()


def test_only_a_fresh_run_of_one_process_reads_its_first_file_ahead(
    ticks_dir: Path, tmp_path: Path
) -> None:
    for flags, reads in [
        (RunFlags(0, 2, None), False),  # a cluster: this process may replay nothing
        (RunFlags(None, 1, tmp_path / "store"), False),  # a resume may start further on
        (RunFlags(), True),
    ]:
        plan = prepare(make_config(ticks_dir), out_dir=tmp_path / "out")
        assert plan.read_ahead(flags) is reads
        held = plan.source.reader.held()  # type: ignore[attr-defined]
        assert held == ([0] if reads else [])


def test_relative_outputs_resolve_against_the_config_file(
    ticks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = _config_file(tmp_path / "conf", ticks_dir, output={"dir": "../out/r"})
    cfg = load_config(path)
    assert cfg.output.dir == str(tmp_path / "out" / "r")
    plan = prepare(cfg, config=path, flags=RunFlags())
    assert plan.out == tmp_path / "out" / "r"
    assert load_config(plan.out / CONFIG_FILE) == cfg  # the folder's config runs it again
    follower = prepare(cfg, config=path, flags=RunFlags(1, 2), name="p2")
    assert not (follower.out / CONFIG_FILE).exists()  # written once, by the first process


def test_the_saved_config_holds_no_secret(ticks_dir: Path, tmp_path: Path) -> None:
    cfg = make_config(
        ticks_dir,
        redis={"url": "redis://trader:hunter2@10.0.0.5:6379/0"},
        kafka={"client": {"sasl.password": "hunter3", "ssl.key.password": "hunter4",
                          "security.protocol": "SASL_SSL"}},
    )  # fmt: skip
    text = write_config(cfg, tmp_path).read_text()
    assert not re.search("hunter[234]", text)
    saved = yaml.safe_load(text)
    assert saved["redis"]["url"] == "redis://trader:***@10.0.0.5:6379/0"
    assert saved["kafka"]["client"]["security.protocol"] == "SASL_SSL"
    again = load_config(tmp_path / CONFIG_FILE)  # and it is a config that runs the same
    assert again.strategies == cfg.strategies and again.instruments == cfg.instruments
    assert again.source == cfg.source and again.brokers == cfg.brokers
    # Malformed addresses hide nothing either: a '#' in the password, no scheme at all.
    odd = make_config(ticks_dir, redis={"url": "redis://:p#hunter5@10.0.0.5:6379/0"},
                      kafka={"brokers": ["u:hunter6@10.0.0.6:9092"]})  # fmt: skip
    text = write_config(odd, tmp_path / "odd").read_text()
    assert not re.search("hunter[56]", text) and "u:***@10.0.0.6:9092" in text


def test_progress_is_paced_by_the_kind_of_run(
    ticks_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    pipe = io.StringIO()  # not a terminal
    replay = prepare(make_config(ticks_dir), out_dir=tmp_path, flags=RunFlags())
    rows = ds.dataset(ticks_dir).count_rows()
    assert progress_spec(replay.cfg, replay.source, 1, pipe) == ProgressSpec(rows, False, 10, False)
    assert progress_spec(replay.cfg, replay.source, 2, pipe) == ProgressSpec(None, False, 10, False)
    tail = make_config(ticks_dir, source={"kind": "kafka", "topic": "t"})
    assert progress_spec(tail, None, 1, pipe) == ProgressSpec(None, True, 60, False)
    monkeypatch.setenv(PROGRESS_ENV, "2.5")
    assert progress_spec(tail, None, 1, pipe) == ProgressSpec(None, True, 2.5, False)
    monkeypatch.setenv(PROGRESS_ENV, "off")
    assert progress_spec(replay.cfg, replay.source, 1, pipe) is None


def test_progress_lines_count_rows_orders_and_health() -> None:
    clock = iter([0.0, 4.0]).__next__
    replay = Progress(ProgressSpec(1000, False, 10.0, False), clock)
    replay.add([("rows", 250), ("ticks", 240), ("orders", 3)])
    assert replay.line() == "replay 0:00:04: 250/1,000 rows (25%), 62 rows/s, 0:00:12 left"
    live = Progress(ProgressSpec(None, True, 60.0, False), iter([0.0, 75.0]).__next__)
    health = {
        "event_id": "h", "broker": "zerodha", "window_start": NOW.astimezone(),
        "window_end": NOW.astimezone(), "count": 1, "rate_per_s": 0.1,
        "last_event_time": None, "latency_p50_ms": None, "latency_p99_ms": None,
    }  # fmt: skip
    live.add([
        ("ticks", 1200), ("orders", 2), ("fills", 1),
        StageHealth(**health, stage="market_data", status="healthy", reason="OK"),
        StageHealth(**health, stage="order_execution", status="warning", reason="LATENCY_HIGH"),
        StageHealth(**{**health, "broker": "paper"}, stage="market_data", status="idle",
                    reason="MARKET_CLOSED"),
    ])  # fmt: skip
    assert live.line() == (
        "live 0:01:15: 1,200 ticks, 2 orders, 1 fills; "
        "health: paper ok, zerodha warning (order_execution LATENCY_HIGH)"
    )


def test_reruns_get_fresh_folders_and_progress_leaves_the_ledger_alone(
    ticks_dir: Path, tmp_path: Path
) -> None:
    conf = _config_file(tmp_path / "conf", ticks_dir)
    quiet = _run(tmp_path, "--config", str(conf), "--progress", "off")
    first = _ok(quiet)
    (one,) = (tmp_path / "runs").iterdir()
    before = {p: p.read_bytes() for p in one.rglob("*") if p.is_file()}
    second = _run(tmp_path, "--config", str(conf), "--progress", "0.001")
    _ok(second)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(STAMP.match(r.name) for r in runs), runs
    two = next(r for r in runs if r != one)
    assert f"output: runs/{one.name}" in first and f"output: runs/{two.name}" in second.stdout
    assert {p: p.read_bytes() for p in one.rglob("*") if p.is_file()} == before
    for run in runs:
        assert {"config.yaml", "report.json", "fills", "pnl"} <= {p.name for p in run.iterdir()}
    assert ledger_bytes(one) == ledger_bytes(two) and ledger_bytes(one)
    rows = yaml.safe_load((one / "report.json").read_text())["rows_read"]
    assert re.search(rf"^replay \d:\d\d:\d\d: {rows:,}/{rows:,} rows \(100%\)", second.stderr, re.M)
    assert not re.search(r"^replay ", quiet.stderr, re.M)


def test_processes_share_one_folder_and_workers_keep_the_ledger(
    ticks_dir: Path, tmp_path: Path
) -> None:
    conf = _config_file(tmp_path / "conf", ticks_dir)
    _ok(_run(tmp_path, "-c", str(conf), "--name", "one"))
    _ok(_run(tmp_path, "-c", str(conf), "--name", "two", "-w", "2"))
    addrs = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    cmd = [sys.executable, "-m", "flows.cli", "run", "-c", str(conf), "-a", addrs, "-i"]
    procs = [
        subprocess.Popen([*cmd, str(i)], cwd=tmp_path, env=flow_env(None), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    names = sorted(r.name for r in (tmp_path / "runs").iterdir())
    assert names == ["bt-ticks", "one", "two"]
    base = ledger_bytes(tmp_path / "runs" / "one")
    assert ledger_bytes(tmp_path / "runs" / "two") == base
    assert ledger_bytes(tmp_path / "runs" / "bt-ticks") == base


def test_a_run_that_cannot_start_leaves_the_last_run_alone(ticks_dir: Path, tmp_path: Path) -> None:
    port = free_ports(1)[0]  # nothing listens there: the Kite simulator is down
    raw = config_dict(ticks_dir, source={"kind": "kite"}, brokers={"paper": {}})
    raw["kite"] = {"api_root": f"http://127.0.0.1:{port}", "ws_root": f"ws://127.0.0.1:{port}"}
    raw["strategies"] = [{**s, "brokers": ["paper"]} for s in raw["strategies"]]
    (tmp_path / "kite.yaml").write_text(yaml.safe_dump(raw))
    earlier = tmp_path / "runs" / "day1"
    (earlier / "fills").mkdir(parents=True)
    (earlier / "fills" / "paper-00000.parquet").write_bytes(b"the run before")
    env = {"KITE_API_KEY": "k", "KITE_API_SECRET": "s", "KITE_ACCESS_TOKEN": "t"}
    cmd = [sys.executable, "-m", "flows.cli", "run", "-c", "kite.yaml", "--name", "day1"]
    done = subprocess.run(cmd, cwd=tmp_path, env={**flow_env(None), **env}, text=True,
                          capture_output=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], done.stderr[-2000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["day1"]
    assert [p.name for p in earlier.rglob("*")] == ["fills", "paper-00000.parquet"]
    assert (earlier / "fills" / "paper-00000.parquet").read_bytes() == b"the run before"


def test_a_long_check_of_the_replay_files_says_how_far_it_has_got(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first file is slow: the count goes on with those that finished after it; a bad
    file is still refused in file order, whichever finished first."""
    import time

    import connectors.replay_files as rf

    days = sorted(small_ticks(tmp_path, days=3, bad_rows=False).glob("*.parquet"))
    check = rf.check_file

    def slow_first(path: Path, *args: Any) -> Any:
        if path == days[0]:
            time.sleep(1.0)
        return check(path, *args)

    monkeypatch.setattr(rf, "check_file", slow_first)
    monkeypatch.setattr(rf, "CHECK_PROGRESS_S", 0.1)
    with caplog.at_level("INFO", logger="alpha_panda.replay"):
        assert len(rf.list_files(days[0].parent)) == 3
    said = [r.getMessage() for r in caplog.records]
    assert "checking replay files: 2 of 3" in said  # the two quick ones, the slow one left
    assert said[-1].startswith("checked 3 replay files in ")
    caplog.clear()
    monkeypatch.setattr(rf, "CHECK_PROGRESS_S", 3600.0)  # a quick check says nothing
    with caplog.at_level("INFO", logger="alpha_panda.replay"):
        rf.list_files(days[0].parent)
    assert not caplog.records
    days[1].write_bytes(b"not parquet")  # the second file (in order) and the third are bad
    days[2].write_bytes(b"")
    with pytest.raises(rf.ReplayFileError, match=days[1].name):
        rf.list_files(days[0].parent)


def test_a_replay_collects_garbage_less_often_than_a_live_run(
    ticks_dir: Path, tmp_path: Path
) -> None:
    import gc

    from flows.plan import LIVE_GC, REPLAY_GC, tune_gc

    before = gc.get_threshold()
    try:
        prepare(make_config(ticks_dir), out_dir=tmp_path / "out")
        assert gc.get_threshold() == REPLAY_GC
        tune_gc(live=True)
        assert gc.get_threshold() == LIVE_GC and LIVE_GC[0] < REPLAY_GC[0]
    finally:
        gc.set_threshold(*before)
