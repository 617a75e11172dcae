"""The ``alpha-panda`` command: every subcommand listed and helped, arguments handed to the
module that does the work, Bytewax's own flags passed to the flow, report and compare on
real run folders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic

from flows.cli import main
from tests.support import ROOT, config_dict, flow_env, free_ports, ledger_bytes

COMMANDS = ["run", "status", "control", "report", "compare", "sim", "login", "topics", "load",
            "kafka", "instruments", "generate", "bench"]  # fmt: skip
OWN = {"run", "report", "compare", "generate"}  # the others are argparse mains of their modules


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flows.cli", "run", *args]
    done = subprocess.run(cmd, cwd=cwd, env=flow_env(None), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture
def conf(ticks_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "bt.yaml"
    path.write_text(yaml.safe_dump(config_dict(ticks_dir)))
    return path


def test_the_console_script_lists_every_command() -> None:
    script = shutil.which("alpha-panda")
    assert script, "pip install -e . installs the alpha-panda command"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("Commands:")[1]
    assert sorted(line.split()[0] for line in listed.strip().splitlines()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_help(command: str) -> None:
    done = CliRunner().invoke(main, [command, "--help"], prog_name="alpha-panda")
    assert done.exit_code == 0, done.output
    usage = "Usage:" if command in OWN else "usage:"
    assert done.output.startswith(f"{usage} alpha-panda {command}"), done.output[:200]


def test_arguments_reach_the_module_that_does_the_work(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    status = CliRunner().invoke(main, ["status", "--url", f"redis://127.0.0.1:{port}/0", "--json"])
    assert status.exit_code == 3, status.output  # flows.status: no data
    assert json.loads(status.output)["flow"] == "unreachable"
    out = tmp_path / "gen"
    made = CliRunner().invoke(main, ["generate", "--instruments", "2", "--out", str(out)])
    assert made.exit_code == 0, made.output
    (ticks,) = out.glob("*.parquet")
    assert set(pq.read_table(ticks)["instrument_token"].to_pylist()) == {
        int(line.split(",")[0]) for line in (out / "instruments.csv").read_text().split()[1:]
    }
    bad = CliRunner().invoke(main, ["load", "--nope"])
    assert bad.exit_code == 2 and "usage: alpha-panda load" in bad.output
    pace = CliRunner().invoke(main, ["run", "--progress", "soon"])
    assert pace.exit_code == 2 and "seconds (a number >= 0) or off" in pace.output


def test_report_and_compare_read_run_folders(conf: Path, tmp_path: Path) -> None:
    _run(tmp_path, "-c", str(conf), "--name", "a", "--progress", "off")
    a = tmp_path / "runs" / "a"
    shutil.copytree(a, tmp_path / "runs" / "b")
    runner = CliRunner()
    done = runner.invoke(main, ["report", str(a)])
    assert done.exit_code == 0, done.output
    assert "written:" in done.output and (a / "report.html").stat().st_size > 0
    assert (a / "report.txt").read_text().strip() in done.output
    both = runner.invoke(main, ["compare", str(a), str(tmp_path / "runs" / "b")])
    assert both.exit_code == 0, both.output
    assert "a: " in both.output and "b: " in both.output and "net PnL" in both.output
    assert runner.invoke(main, ["compare", str(a)]).exit_code == 2
    empty = runner.invoke(main, ["report", str(tmp_path)])
    assert empty.exit_code == 2 and "not a run folder" in empty.output


def test_a_run_folder_whose_config_is_not_yaml_is_named_in_one_line(
    conf: Path, tmp_path: Path
) -> None:
    _run(tmp_path, "-c", str(conf), "--name", "a", "--progress", "off")
    a = tmp_path / "runs" / "a"
    shutil.copytree(a, tmp_path / "runs" / "b")
    (a / "config.yaml").write_text("source: [\n")
    for args in (["report", str(a)], ["compare", str(tmp_path / "runs" / "b"), str(a)]):
        done = CliRunner().invoke(main, args)
        assert done.exit_code == 2, done.output
        assert done.output == (
            f"Error: {a / 'config.yaml'}: invalid YAML: expected the node content, but found "
            "'<stream end>' (line 2)\n"
        )
    (a / "config.yaml").write_bytes(b"\xff\xfe")
    done = CliRunner().invoke(main, ["report", str(a)])
    assert done.exit_code == 2 and done.output == f"Error: {a / 'config.yaml'}: not UTF-8 text\n"


@pytest.mark.parametrize(
    "args",
    [["--instruments", "-1"], ["--instruments", "0"], ["--instruments", "x"], ["--days", "0"]],
)
def test_generate_refuses_counts_below_one_in_one_line(tmp_path: Path, args: list[str]) -> None:
    """``--instruments -1`` failed in a traceback, ``0`` quietly wrote the 20-instrument
    sample instead: a count is a whole number >= 1 (leave --instruments out for the sample)."""
    done = CliRunner().invoke(main, ["generate", *args, "--out", str(tmp_path / "gen")])
    option, value = args[-2:]
    assert done.exit_code == 2, done.output
    assert done.output == f"Error: {option}: {value!r} is not a whole number >= 1\n"
    assert not (tmp_path / "gen").exists()


@pytest.mark.parametrize("args", [["--instruments", "-1"], ["--days", "0"], ["--days", "x"]])
def test_the_generator_module_refuses_bad_counts_without_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "gen"
    cmd = [sys.executable, "-m", "data.generate", *args, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument {args[0]}: {args[1]!r} is not a whole number" in done.stderr
    assert not out.exists()


def test_run_hands_recovery_flags_to_bytewax(conf: Path, tmp_path: Path) -> None:
    _run(tmp_path, "-c", str(conf), "--name", "plain", "--progress", "off")
    store = tmp_path / "store"  # made by the command: one partition
    _run(tmp_path, "-c", str(conf), "--name", "kept", "-r", str(store), "-s", "0", "-b", "0")
    assert sorted(p.name for p in store.glob("*.sqlite3")) == ["part-0.sqlite3"]
    runs = tmp_path / "runs"
    assert ledger_bytes(runs / "kept") == ledger_bytes(runs / "plain")
    missing = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-c", str(conf), "-r", str(store)],
        cwd=tmp_path, env=flow_env(None), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode != 0 and "-s/--snapshot_interval" in missing.stderr


def test_the_kafka_command_starts_a_broker_the_topics_command_can_use() -> None:
    port = free_ports(1)[0]
    script = shutil.which("alpha-panda")
    assert script
    broker = subprocess.Popen([script, "kafka", "--port", str(port)], stderr=subprocess.PIPE)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                assert broker.poll() is None and time.monotonic() < deadline, "no broker"
                time.sleep(0.1)
        admin.create_topics([NewTopic("market.ticks", 2, 1)])["market.ticks"].result(timeout=10)
        assert len(admin.list_topics(timeout=5).topics["market.ticks"].partitions) == 2
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def test_a_strategy_file_beside_its_config_runs_from_any_folder(
    ticks_dir: Path, tmp_path: Path
) -> None:
    """The README's step 2: copy the example strategy next to a config, rename the class,
    run from elsewhere; the strategy trades."""
    mine = tmp_path / "mine"
    mine.mkdir()
    source = (ROOT / "operators" / "strategies" / "example_user.py").read_text()
    (mine / "my_breakout.py").write_text(source.replace("class Breakout", "class MyBreakout"))
    raw = config_dict(ticks_dir)
    raw["strategies"] = [
        {
            "id": "mine",
            "class": "my_breakout:MyBreakout",
            "brokers": ["paper"],
            "instruments": "all",
            "params": {"window": 20, "quantity": 3},
        }
    ]
    (mine / "cfg.yaml").write_text(yaml.safe_dump(raw))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(elsewhere, "--config", str(mine / "cfg.yaml"), "--name", "mine")
    [folder] = [
        line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("output: ")
    ]
    fills = pq.read_table(elsewhere / folder / "fills")  # relative to where it ran
    assert fills.num_rows > 0 and set(fills.column("strategy_id").to_pylist()) == {"mine"}
    raw["strategies"][0]["class"] = "not_there:MyBreakout"
    (mine / "bad.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "flows.cli", "run", "--config", str(mine / "bad.yaml")]
    env = flow_env(None)
    bad = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "strategies[mine].class" in bad.stderr
    assert "config's folder" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
