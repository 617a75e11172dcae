"""Operator commands: the command file, the file and Redis inboxes, and the CLI, against a real
Redis ($REDIS_URL or 127.0.0.1:6379; missing: skip locally, fail when CI=true)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from connectors.control import FileControl, RedisControl, send_command
from operators.account.venue import Inbox
from schemas.config import ConfigError, RedisConfig, SourceUnavailable
from schemas.control import ControlCommand, ControlKind, load_control_file, parse_control_line
from schemas.enums import Broker, StateReason, TradingState
from schemas.events import TradingStateChanged
from schemas.redis_keys import KeyKind, LiveKey, LiveKeys, RunMeta, decode, encode
from schemas.ticks import to_us

ROOT = Path(__file__).resolve().parent.parent
DEAD_URL = "redis://127.0.0.1:1/0"
IST = timezone(timedelta(hours=5, minutes=30))


def _shared_url() -> str:
    """The shared Redis, answering PING (else skip; fail when CI=true)."""
    url = RedisConfig().resolved_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        msg = f"Redis at {url} does not answer ({exc}); start redis-server or set REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return url


@pytest.fixture
def rcfg() -> Iterator[RedisConfig]:
    """A RedisConfig with a prefix of its own, cleaned up afterwards."""
    cfg = RedisConfig(url=_shared_url(), key_prefix=f"ctl-{uuid.uuid4().hex[:10]}:")
    yield cfg
    client = redis.Redis.from_url(str(cfg.url))
    for key in client.scan_iter(match=f"{cfg.key_prefix}*"):
        client.delete(key)
    client.close()


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
    for path in (tmp_path / "missing.jsonl", tmp_path):
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
    assert inbox.rest(2) == ([cmds[3], cmds[4]], 4)
    assert inbox.rest(4) == ([], 4)
    assert FileControl(cmds, Broker.ZERODHA).due(at[30], None) == ([cmds[2]], 1)


def test_file_control_resumes_from_a_pickled_cursor() -> None:
    cmds = [_cmd(m) for m in (1, 2, 3)]
    at3 = to_us(cmds[2].ts)
    first, cursor = FileControl(cmds, Broker.PAPER).due(to_us(cmds[0].ts), None)
    assert first == cmds[:1]
    again = FileControl(cmds, Broker.PAPER)  # a recovered run builds a new inbox
    assert again.due(at3, pickle.loads(pickle.dumps(cursor))) == (cmds[1:], 3)
    assert again.rest(None) == (cmds, 3)


# --- Redis keys -------------------------------------------------------------------------------


def _state(state: TradingState = TradingState.HALTED) -> TradingStateChanged:
    return TradingStateChanged(
        event_id="ts-1",
        broker=Broker.PAPER,
        state=state,
        previous=TradingState.ACTIVE,
        reason=StateReason.OPERATOR_HALT,
        detail="operator",
        timestamp=datetime.now(timezone.utc),
    )


def test_control_and_trading_state_keys() -> None:
    keys = LiveKeys("desk-1:")
    for b in Broker:
        assert keys.control(b) == f"desk-1:broker:{b.value}:control"
        assert keys.trading_state(b) == f"desk-1:broker:{b.value}:trading_state"
        assert keys.parse(keys.control(b)) == LiveKey(KeyKind.CONTROL, b)
        assert keys.parse(keys.trading_state(b)) == LiveKey(KeyKind.TRADING_STATE, b)
    assert keys.parse("desk-1:broker:icici:control") is None
    assert keys.parse("desk-1:broker:paper:control:x") is None
    meta = RunMeta(source="s", brokers=[Broker.PAPER], workers=1, window_s=60, history_windows=5)
    run = keys.run_keys(meta)
    assert keys.trading_state("paper") in run and keys.control("paper") not in run
    item = _state()
    assert keys.values_of(item) == [(keys.trading_state("paper"), encode(item))]
    assert decode(KeyKind.TRADING_STATE, encode(item)) == item
    with pytest.raises(TypeError):
        decode(KeyKind.CONTROL, b"")


# --- RedisControl -----------------------------------------------------------------------------


def _poll(inbox: RedisControl, cursor: Any, want: int, within_s: float = 1.5) -> tuple[list, Any]:
    got: list[ControlCommand] = []
    deadline = time.monotonic() + within_s
    while len(got) < want and time.monotonic() < deadline:
        new, cursor = inbox.due(0, cursor)
        got += new
        time.sleep(0.01)
    return got, cursor


def test_redis_control_receives_a_sent_command(rcfg: RedisConfig) -> None:
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.05)
    assert inbox.due(0, None)[0] == []
    sent_at = datetime.now(timezone.utc)
    entry = send_command(rcfg, Broker.PAPER, ControlKind.FLATTEN)
    send_command(rcfg, Broker.ZERODHA, ControlKind.HALT)  # another broker's stream
    t0 = time.monotonic()
    got, cursor = _poll(inbox, None, 1)
    assert time.monotonic() - t0 < 1.0
    assert [(c.broker, c.command, c.origin) for c in got] == [
        ("paper", "flatten", f"redis:{entry}")
    ]
    assert cursor == entry
    assert sent_at - timedelta(seconds=1) <= got[0].ts <= datetime.now(timezone.utc)
    assert _poll(inbox, cursor, 1, within_s=0.3)[0] == []  # never twice


def test_a_fresh_run_starts_as_the_operator_left_it(rcfg: RedisConfig) -> None:
    """Commands sent before a run are not replayed, except the standing one: if the last
    was a halt or a flatten, the run starts halted (the kill switch survives a restart)."""
    send_command(rcfg, Broker.PAPER, ControlKind.FLATTEN)
    halted = send_command(rcfg, Broker.PAPER, ControlKind.HALT)
    time.sleep(0.01)  # the next millisecond
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)
    got, cursor = _poll(inbox, None, 1, within_s=0.3)
    assert [(c.command, c.origin) for c in got] == [("halt", f"redis:{halted}:standing")]
    assert _poll(inbox, cursor, 1, within_s=0.3)[0] == []  # once
    entry = send_command(rcfg, Broker.PAPER, ControlKind.RESUME)
    got, _ = _poll(inbox, cursor, 1)
    assert [(c.command, c.origin) for c in got] == [("resume", f"redis:{entry}")]
    time.sleep(0.01)
    after_resume = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)  # the last was a resume
    assert _poll(after_resume, None, 1, within_s=0.3)[0] == []


def test_an_unanswering_redis_never_holds_the_account_up(rcfg: RedisConfig) -> None:
    """A port that accepts and never answers: a poll gives up, then the inbox backs off:
    twenty items in a row make one attempt, not twenty (each would wait its timeout)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(32)
    url = f"redis://127.0.0.1:{srv.getsockname()[1]}/0"
    try:
        inbox = RedisControl(RedisConfig(url=url, timeout_s=5.0), Broker.PAPER, poll_s=0.0)
        for _ in range(20):
            assert inbox.due(0, None) == ([], None)
        srv.setblocking(False)
        accepted = []
        while True:
            try:
                accepted.append(srv.accept()[0])
            except BlockingIOError:
                break
        for c in accepted:
            c.close()
    finally:
        srv.close()
    assert len(accepted) == 1


def test_a_resumed_cursor_continues_after_the_last_applied_id(rcfg: RedisConfig) -> None:
    first = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)
    send_command(rcfg, Broker.PAPER, ControlKind.HALT)
    got, cursor = _poll(first, None, 1)
    assert [c.command for c in got] == ["halt"]
    later = [send_command(rcfg, Broker.PAPER, k) for k in (ControlKind.FLATTEN, ControlKind.RESUME)]
    time.sleep(0.01)
    second = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)  # restarted after they were sent
    got, cursor2 = _poll(second, pickle.loads(pickle.dumps(cursor)), 2)
    assert [c.origin for c in got] == [f"redis:{i}" for i in later]
    assert cursor2 == later[-1]
    assert _poll(second, None, 1, within_s=0.2)[0] == []  # a fresh start skips them


def test_garbage_entries_are_logged_once_and_skipped(
    rcfg: RedisConfig, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)
    client = redis.Redis.from_url(str(rcfg.url))
    key = LiveKeys(rcfg.key_prefix).control(Broker.PAPER)
    client.xadd(key, {"foo": "bar"})
    client.xadd(key, {"broker": "paper", "command": "explode"})
    client.xadd(key, {"broker": "zerodha", "command": "halt"})
    client.xadd(key, {"broker": "paper", "command": "halt", "ts": "2026-11-20T10:00:00Z"})
    client.xadd(key, {"broker": b"paper", "command": b"\xff"})
    client.close()
    good = send_command(rcfg, Broker.PAPER, ControlKind.HALT)
    with caplog.at_level(logging.WARNING, logger="alpha_panda.control"):
        got, cursor = _poll(inbox, None, 1)
        assert _poll(inbox, cursor, 1, within_s=0.2)[0] == []
    assert [c.origin for c in got] == [f"redis:{good}"]
    bad = [r.getMessage() for r in caplog.records if "CONTROL_BAD_ENTRY" in r.getMessage()]
    assert len(bad) == 5, bad
    assert any("unknown command 'explode'" in m for m in bad)


def test_an_entry_in_the_start_millisecond_belongs_to_the_run(rcfg: RedisConfig) -> None:
    start = 1_796_277_107_302
    client = redis.Redis.from_url(str(rcfg.url))
    key = LiveKeys(rcfg.key_prefix).control(Broker.PAPER)
    client.xadd(key, {"broker": "paper", "command": "halt"}, id=f"{start - 1}-7")
    client.xadd(key, {"broker": "paper", "command": "flatten"}, id=f"{start}-0")
    client.xadd(key, {"broker": "paper", "command": "resume"}, id=f"{start}-1")
    client.close()
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.0, since_ms=start)
    got, cursor = inbox.due(0, None)
    assert [(c.command, c.origin) for c in got] == [
        ("halt", f"redis:{start - 1}-7:standing"),  # sent before the run: its standing state
        ("flatten", f"redis:{start}-0"),
        ("resume", f"redis:{start}-1"),
    ]
    assert cursor == f"{start}-1"


def test_redis_control_polls_at_most_every_poll_s(rcfg: RedisConfig) -> None:
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.4)
    assert inbox.due(0, None) == ([], inbox.start_id)
    send_command(rcfg, Broker.PAPER, ControlKind.HALT)
    t0 = time.perf_counter()
    for _ in range(1000):
        assert inbox.due(0, "cursor") == ([], "cursor")  # between polls: at once, unchanged
    assert time.perf_counter() - t0 < 0.2
    got, _ = _poll(inbox, inbox.start_id, 1)
    assert [c.command for c in got] == ["halt"]


def test_redis_control_against_a_dead_port_returns_nothing_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = RedisConfig(url="redis://ops:s3cret@127.0.0.1:1/0", timeout_s=0.5)
    inbox = RedisControl(cfg, Broker.PAPER, poll_s=0.0)
    with caplog.at_level(logging.WARNING, logger="alpha_panda.control"):
        assert inbox.due(0, None) == ([], None)
        assert inbox.due(0, "5-0") == ([], "5-0")
    warned = [r for r in caplog.records if "CONTROL_REDIS_UNREACHABLE" in r.getMessage()]
    assert len(warned) == 1
    assert "s3cret" not in caplog.text and "ops:***@127.0.0.1:1" in caplog.text


def test_send_command_to_a_dead_port_raises_source_unavailable() -> None:
    cfg = RedisConfig(url="redis://ops:s3cret@127.0.0.1:1/0", timeout_s=0.5)
    with pytest.raises(SourceUnavailable) as err:
        send_command(cfg, Broker.PAPER, ControlKind.HALT)
    assert "ops:***@127.0.0.1:1" in str(err.value) and "s3cret" not in str(err.value)


# --- the CLI ----------------------------------------------------------------------------------


def _config(tmp_path: Path, url: str, prefix: str) -> Path:
    raw = {
        "source": {"path": str(ROOT / "data" / "sample_ticks.parquet")},
        "instruments": [{"instrument_token": 738561, "tradingsymbol": "RELIANCE"}],
        "brokers": {"paper": {}},
        "redis": {"url": url, "key_prefix": prefix, "timeout_s": 0.5},
    }
    path = tmp_path / "control.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(config: Path, *args: str, **kw: Any) -> Any:
    env = {**os.environ, "ALPHA_PANDA_CONFIG": str(config)}
    cmd = [sys.executable, "-m", "flows.control", *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def _run(config: Path, *args: str) -> tuple[int, str, str]:
    proc = _cli(config, *args)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_cli_refuses_bad_arguments_and_config(tmp_path: Path, rcfg: RedisConfig) -> None:
    config = _config(tmp_path, str(rcfg.url), rcfg.key_prefix)
    code, _, err = _run(config, "paper", "panic")
    assert code == 2 and "invalid choice: 'panic'" in err
    code, _, err = _run(config, "icici", "halt")
    assert code == 2 and "invalid choice: 'icici'" in err
    code, _, err = _run(config, "zerodha", "halt")
    assert (code, err) == (
        2,
        "alpha-panda control: broker: 'zerodha' is not configured in brokers\n",
    )
    code, _, err = _run(tmp_path / "nope.yaml", "paper", "halt")
    assert code == 2 and err.count("\n") == 1 and "configuration error" in err


def test_cli_with_redis_unreachable_exits_2_without_a_traceback(tmp_path: Path) -> None:
    code, out, err = _run(_config(tmp_path, DEAD_URL, "ctl-dead:"), "paper", "halt")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "127.0.0.1:1" in err and "Traceback" not in err


def test_cli_without_a_flow_warns_and_exits_1(tmp_path: Path, rcfg: RedisConfig) -> None:
    config = _config(tmp_path, str(rcfg.url), rcfg.key_prefix)
    code, out, err = _run(config, "paper", "halt", "--wait", "0.5")
    assert code == 1
    assert out.startswith("sent halt to paper (redis id ")
    assert "no running flow applied it within 0.5 s" in err
    code, out, _ = _run(config, "paper", "resume", "--wait", "0")
    assert code == 0 and out.startswith("sent resume to paper")


def test_cli_reports_the_state_the_flow_applied(tmp_path: Path, rcfg: RedisConfig) -> None:
    config = _config(tmp_path, str(rcfg.url), rcfg.key_prefix)
    keys = LiveKeys(rcfg.key_prefix)
    client = redis.Redis.from_url(str(rcfg.url))
    client.set(keys.trading_state("paper"), encode(_state(TradingState.ACTIVE)))
    inbox = RedisControl(rcfg, Broker.PAPER, poll_s=0.0)  # the "flow"
    proc = _cli(config, "paper", "halt", "--wait", "20")
    try:
        got, _ = _poll(inbox, None, 1, within_s=20)
        assert [c.command for c in got] == ["halt"]
        client.set(keys.trading_state("paper"), encode(_state(TradingState.HALTED)))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        client.close()
    assert proc.returncode == 0, err
    assert out.splitlines()[1:] == ["paper: HALTED (OPERATOR_HALT)"]
    assert out.startswith(f"sent halt to paper (redis id {got[0].origin.removeprefix('redis:')})")
