"""Operator commands: the command file, the file inbox and the live-state keys they
share with the CLI."""

from __future__ import annotations

import json
import logging
import os
import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.control import FileControl, RedisControl
from operators.account.venue import Inbox
from schemas.config import ConfigError, RedisConfig
from schemas.control import ControlCommand, ControlKind, load_control_file, parse_control_line
from schemas.enums import Broker
from schemas.ticks import to_us
from tests.support import make_config, run_graph

IST = timezone(timedelta(hours=5, minutes=30))


def _line(
    ts: Any = "2026-11-20T10:00:00+05:30",
    broker: Any = "paper",
    command: Any = "halt",
    **extra: Any,
) -> str:
    return json.dumps({"ts": ts, "broker": broker, "command": command, **extra})


def _cmd(
    minute: int,
    broker: Broker = Broker.PAPER,
    kind: ControlKind = ControlKind.HALT,
    origin: str = "",
) -> ControlCommand:
    ts = datetime(2026, 11, 20, 10, minute, tzinfo=IST)
    return ControlCommand(ts=ts, broker=broker, command=kind, origin=origin or f"t:{minute}")


# --- the command file -------------------------------------------------------------------------


def test_a_good_file_loads_sorted_by_time_with_file_order_among_equals(tmp_path: Path) -> None:
    path = tmp_path / "ctl.jsonl"
    lines = [
        "# operator commands",
        _line("2026-11-20T11:00:00+05:30", command="resume"),
        "",
        _line("2026-11-20T04:00:00Z", "zerodha", "flatten"),  # 09:30 IST: first
        _line("2026-11-20T10:30:00+05:30", command="halt"),
        "   ",
        _line("2026-11-20T05:00:00+00:00", command="flatten"),  # 10:30 IST, after the halt
    ]
    path.write_text("\n".join(lines) + "\n")
    got = load_control_file(path, [Broker.PAPER, Broker.ZERODHA])
    assert [(c.broker, c.command, c.origin) for c in got] == [
        ("zerodha", "flatten", f"file:{path}:4"),
        ("paper", "halt", f"file:{path}:5"),
        ("paper", "flatten", f"file:{path}:7"),
        ("paper", "resume", f"file:{path}:2"),
    ]
    assert got[0].ts == datetime(2026, 11, 20, 4, tzinfo=timezone.utc)
    assert load_control_file(str(path), {Broker.PAPER, Broker.ZERODHA}) == got


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (_line("2026-11-20T10:00:00"), "ts: no timezone in '2026-11-20T10:00:00'"),
        (_line("2026-11-20"), "ts: no timezone"),
        (_line("at ten"), "ts: not an ISO-8601 date-time: 'at ten'"),
        (_line(1733112345), "ts: expected an ISO-8601 string"),
        (_line(broker="icici"), "broker: unknown broker 'icici'; expected one of 'paper'"),
        (_line(broker=None), "broker: unknown broker None"),
        (_line(command="panic"), "command: unknown command 'panic'; expected one of 'halt'"),
        (_line(command="HALT"), "command: unknown command 'HALT'"),
        (_line(qty=5), "qty: unknown field; expected exactly ts, broker, command"),
        ('{"ts": "2026-11-20T10:00:00Z", "broker": "paper"}', "command: missing"),
        ('{"broker": "paper", "command": "halt"}', "ts: missing"),
        (
            '{"ts": "2026-11-20T10:00:00Z", "broker": "paper", "broker": "x", "command": "halt"}',
            "broker: given twice",
        ),
        ('["halt"]', "expected a JSON object"),
        ("halt paper", "invalid JSON"),
        (_line("0001-01-01T00:00:00+05:30"), "ts: '0001-01-01T00:00:00+05:30' is outside"),
        (_line("1989-12-31T23:59:59Z"), "ts: '1989-12-31T23:59:59Z' is outside 1990..2099"),
        (_line("2100-01-01T00:00:00Z"), "ts: '2100-01-01T00:00:00Z' is outside"),
        (_line("9999-12-31T23:59:59-05:00"), "ts: '9999-12-31T23:59:59-05:00' is outside"),
        pytest.param("[" * 100_000 + "]" * 100_000, "invalid JSON (Recur", id="deep-nesting"),
        pytest.param('{"ts": ' + "1" * 5000 + "}", "invalid JSON (Val", id="5000-digits"),
    ],
)
def test_each_bad_line_names_its_line_field_and_problem(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "ctl.jsonl"
    path.write_text(_line() + "\n" + line + "\n")
    with pytest.raises(ConfigError) as err:
        load_control_file(path, [Broker.PAPER, Broker.ZERODHA])
    msg = str(err.value)
    assert msg.startswith(f"control.path: {path} line 2: {problem}"), msg
    assert "\n" not in msg


def test_a_control_path_that_is_not_a_regular_file_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "ops.fifo"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(ConfigError) as err:
            load_control_file(path, [Broker.PAPER])
        assert str(err.value) == f"control.path: {path} is not a regular file"


def test_parse_control_line_refuses_a_naive_time() -> None:
    with pytest.raises(ConfigError, match=r"^ts: no timezone"):
        parse_control_line(_line("2026-11-20T10:00:00"), "x")
    cmd = parse_control_line(_line(command="flatten"), "here")
    assert (cmd.broker, cmd.command, cmd.origin) == ("paper", "flatten", "here")
    assert cmd.ts.utcoffset() == timedelta(hours=5, minutes=30)


def test_a_broker_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ctl.jsonl"
    path.write_text(_line() + "\n" + _line(broker="zerodha") + "\n")
    with pytest.raises(ConfigError) as err:
        load_control_file(path, [Broker.PAPER])
    assert str(err.value) == (
        f"control.path: {path} line 2: broker: 'zerodha' is not configured in brokers"
    )


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.jsonl",):
        with pytest.raises(ConfigError, match=rf"^control.path: cannot read {path}: "):
            load_control_file(path, [Broker.PAPER])
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_control_file(binary, [Broker.PAPER])


# --- FileControl --------------------------------------------------------------------------------


def test_file_control_returns_each_due_command_once_in_order() -> None:
    cmds = [
        _cmd(10),
        _cmd(10, kind=ControlKind.FLATTEN),
        _cmd(12, Broker.ZERODHA),
        _cmd(20, kind=ControlKind.RESUME),
        _cmd(30, kind=ControlKind.HALT),
    ]
    inbox = FileControl(cmds, Broker.PAPER)
    inboxes: list[Inbox] = [inbox, RedisControl(RedisConfig(), Broker.PAPER)]
    assert inboxes
    at = [to_us(datetime(2026, 11, 20, 10, m, tzinfo=IST)) for m in range(31)]
    assert inbox.due(at[9], None) == ([], 0)
    assert inbox.due(at[10] - 1, 0) == ([], 0)
    assert inbox.due(at[10], 0) == (cmds[:2], 2)  # ts <= event time: due
    assert inbox.due(at[15], 2) == ([], 2)  # zerodha's command is not paper's
    assert inbox.due(at[10], 2) == ([], 2)  # never twice, even if time goes back
    assert inbox.due(at[30], 2) == ([cmds[3], cmds[4]], 4)
    assert inbox.peek(2) == at[20]  # the next one not yet returned
    assert inbox.peek(4) is None
    assert FileControl(cmds, Broker.ZERODHA).due(at[30], None) == ([cmds[2]], 1)


def test_file_control_resumes_from_a_pickled_cursor() -> None:
    cmds = [_cmd(m) for m in (1, 2, 3)]
    at3 = to_us(cmds[2].ts)
    first, cursor = FileControl(cmds, Broker.PAPER).due(to_us(cmds[0].ts), None)
    assert first == cmds[:1]
    again = FileControl(cmds, Broker.PAPER)  # a recovered run builds a new inbox
    assert again.due(at3, pickle.loads(pickle.dumps(cursor))) == (cmds[1:], 3)
    assert again.peek(None) == to_us(cmds[0].ts) and again.peek(3) is None


# --- Redis keys -------------------------------------------------------------------------------


# --- The account applies a command only when event time reaches it -----------------------------


def test_a_command_after_the_last_tick_is_not_applied_and_is_logged(
    ticks_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctl = tmp_path / "ops.jsonl"
    late = "2090-01-01T09:20:00+05:30"  # long after the data: event time never reaches it
    ctl.write_text(_line("2026-11-20T09:20:00+05:30") + "\n" + _line(late, command="flatten"))
    cfg = make_config(ticks_dir, control={"path": str(ctl)})
    with caplog.at_level(logging.WARNING, logger="alpha_panda.control"):
        rows, report = run_graph(cfg, tmp_path / "out")
    ticks = sorted(to_us(p.timestamp) for p in rows["pnl"])
    halt = to_us(datetime.fromisoformat("2026-11-20T09:20:00+05:30"))
    assert ticks[0] < halt < ticks[-1]  # the first command is inside the data
    states = [(s.state, s.reason) for s in rows["trading_states"]]
    assert states == [("HALTED", "OPERATOR_HALT")]  # the flatten never happened
    (b,) = [b for b in report.brokers if b.broker == "paper"]
    assert [c.state for c in b.trading_states] == ["HALTED"]
    notes = [r.getMessage() for r in caplog.records if "CONTROL_AFTER_DATA" in r.getMessage()]
    assert notes == ["control: paper: not applied from 2090-01-01T03:50:00+00:00 on "
                     "(reason=CONTROL_AFTER_DATA)"]  # fmt: skip
