"""Live operator commands: the Redis inbox a running flow polls, and the
``python -m flows.control`` command that writes to it."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from connectors.control import RedisControl, send_command
from schemas.config import RedisConfig, SourceUnavailable
from schemas.control import ControlCommand, ControlKind
from schemas.enums import Broker, StateReason, TradingState
from schemas.events import TradingStateChanged
from schemas.redis_keys import KeyKind, LiveKey, LiveKeys, RunMeta, decode, encode

ROOT = Path(__file__).resolve().parent.parent
DEAD_URL = "redis://127.0.0.1:1/0"


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
