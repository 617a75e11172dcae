"""Kite refusing our session: a bad access token at start stops the flow before it writes
anything (exit 2, one line); a token that expires mid-session halts the zerodha account
(TOKEN_INVALID), with no order sent after it, through the real kiteconnect client."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
import requests
import yaml

from connectors.kite import client as kite_client
from connectors.kite import login
from connectors.kite.client import CredentialsMissing, OrderFeed, check_session, credentials
from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders
from operators.account.account import Account, AccountSetup
from operators.account.zerodha import ZerodhaVenue
from operators.session import MarketSession
from schemas.config import (
    BrokerConfig,
    CostModel,
    Instrument,
    KiteConfig,
    SessionConfig,
    SourceUnavailable,
)
from schemas.enums import Broker, TradingState
from schemas.events import OrderFailed, RejectedSignal, TradingSignal, TradingStateChanged
from schemas.kite import KiteAlert
from schemas.redis_keys import LiveKeys
from tests.live_sim import SECRETS, Sim, live_config, tape
from tests.redis_server import shared_url
from tests.support import KEY, SECRET, TOKEN, client, flow_env, free_ports, zerodha_signal

INFY = 408065
T = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)


def _start_with_token(tmp_path: Path, token: str) -> subprocess.CompletedProcess[str]:
    """The live flow against the simulator, started with ``token`` as the access token."""
    sim = Sim(tape(tmp_path), tmp_path / "sim.log")
    try:
        cfg = live_config(tmp_path, sim, shared_url(), f"tok-{uuid.uuid4().hex[:6]}:")
        env = {**flow_env(cfg), **SECRETS, "KITE_ACCESS_TOKEN": token}
        cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
    finally:
        sim.stop()


def test_a_refused_token_at_start_exits_2_and_leaves_the_last_run_alone(tmp_path: Path) -> None:
    earlier = tmp_path / "run"
    earlier.mkdir()
    (earlier / "report.json").write_text('{"from": "the run before"}')
    done = _start_with_token(tmp_path, "expired-token-8Hq2")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Kite refused the access token" in lines[0]
    assert "Traceback" not in done.stderr and "expired-token-8Hq2" not in done.stderr
    assert sorted(p.name for p in earlier.iterdir()) == ["report.json"]
    assert (earlier / "report.json").read_text() == '{"from": "the run before"}'


def test_a_token_pasted_with_a_non_ascii_character_exits_2_naming_the_variable_only(
    tmp_path: Path,
) -> None:
    """A zero-width space after the token failed in the HTTP client's header encoding: a
    52-line traceback quoting the character and its position in the secret."""
    done = _start_with_token(tmp_path, SECRETS["KITE_ACCESS_TOKEN"] + "\u200b")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == (
        "alpha-panda: Kite credentials: KITE_ACCESS_TOKEN holds whitespace or a character "
        "that is not printable ASCII (pasted with it?); set it again\n"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KITE_API_KEY", "key with space"),
        ("KITE_API_KEY", "k\u00e9y"),
        ("KITE_ACCESS_TOKEN", "tok\t"),
        ("KITE_ACCESS_TOKEN", "\u200btok"),
    ],
)
def test_credentials_are_printable_ascii_without_whitespace(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("KITE_API_KEY", "key")
    monkeypatch.setenv("KITE_ACCESS_TOKEN", "token")
    monkeypatch.setenv(name, value)
    with pytest.raises(CredentialsMissing) as err:
        credentials()
    assert str(err.value).startswith(f"Kite credentials: {name} holds whitespace")
    assert value.strip() not in str(err.value)


def test_the_session_check_turns_any_failure_into_one_line_without_the_secret(
    sim: tuple[object, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the client raises, the message is the exception's type, never its text."""
    _, root = sim
    monkeypatch.setattr(kite_client, "credentials", lambda: (KEY, TOKEN + "\u200b"))
    with pytest.raises(SourceUnavailable) as err:
        check_session(KiteConfig(api_root=root, timeout_s=2))
    assert str(err.value) == (
        f"kite.api_root: {root}: the profile request failed (UnicodeEncodeError)"
    )


def test_login_refuses_an_api_secret_that_is_not_printable_ascii(
    sim: tuple[object, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = sim
    monkeypatch.setenv("KITE_API_KEY", KEY)
    monkeypatch.setenv("KITE_API_SECRET", SECRET + "\u200b")
    assert login.main(["--request-token", "rt", "--root", root, "--env-file", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("login: Kite credentials: KITE_API_SECRET holds whitespace")
    assert SECRET not in err and err.count("\n") == 1


def test_a_ticker_that_never_connects_ends_the_run_with_exit_1_and_says_so(
    tmp_path: Path,
) -> None:
    """Kite's API answers, its websocket does not: the run ends at idle_stop_s with its
    report, exit 1 and one line naming the ticker's address (not a quiet exit 0)."""
    sim = Sim(tape(tmp_path), tmp_path / "sim.log")
    try:
        cfg = live_config(tmp_path, sim, shared_url(), f"ws-{uuid.uuid4().hex[:6]}:",
                          idle_stop_s=3)  # fmt: skip
        raw = yaml.safe_load(cfg.read_text())
        dead = f"ws://127.0.0.1:{free_ports(1)[0]}"
        raw["kite"]["ws_root"] = dead
        cfg.write_text(yaml.safe_dump(raw))
        cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
        done = subprocess.run(cmd, cwd=tmp_path, env={**flow_env(cfg), **SECRETS},
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    finally:
        sim.stop()
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"the Kite ticker never connected to {dead}" in done.stderr.strip().splitlines()[-1]
    assert "=== Alpha Panda run report ===" in done.stdout and "Traceback" not in done.stderr


def _signal(n: int, target: int) -> TradingSignal:
    return zerodha_signal(n, target)


def _zerodha_account(root: str) -> tuple[Account, KiteOrders]:
    r = redis.Redis.from_url(shared_url())
    keys = LiveKeys(f"tok-{uuid.uuid4().hex[:8]}:")
    cfg = KiteConfig(api_root=root, timeout_s=2, attempts=2, backoff_max_s=0.05)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    placer = KiteOrders(client(root), IntentStore(r, keys, 60), cfg, inst)
    session = MarketSession(SessionConfig())
    setup = AccountSetup(CostModel(), session, {}, {}, (INFY,))
    venue = ZerodhaVenue(CostModel(), placer, {})
    acct = Account(Broker.ZERODHA, BrokerConfig(), setup, lambda _s: venue, None)
    return acct, placer


def test_a_token_expiring_mid_session_halts_the_account_and_sends_nothing_more(sim) -> None:
    api, root = sim
    acct, placer = _zerodha_account(root)
    acct.on_item(_signal(1, 5))
    assert placer.placed == 1
    requests.post(f"{root}/_sim/token", json={"expire": True}, timeout=5)
    out = acct.on_item(_signal(2, -5))
    [failed] = [e for e in out if isinstance(e, OrderFailed)]
    assert failed.reason.startswith("TOKEN_INVALID") and failed.quantity == 10
    [halt] = [e for e in out if isinstance(e, TradingStateChanged)]
    assert halt.state == "HALTED" and halt.reason == "TOKEN_INVALID"
    assert acct.trading.state is TradingState.HALTED
    orders_before = len(api.ex.orders)
    later = acct.on_item(_signal(3, 0))
    [refused] = [e for e in later if isinstance(e, RejectedSignal)]
    assert refused.reasons == ["TRADING_HALTED"]
    assert len(api.ex.orders) == orders_before  # nothing reached Kite after the refusal


def test_the_order_poll_reports_a_refused_token_once(sim) -> None:
    _, root = sim
    feed = OrderFeed(KiteConfig(api_root=root, timeout_s=2), client(root))
    feed.poll_once()
    requests.post(f"{root}/_sim/token", json={"expire": True}, timeout=5)
    for _ in range(3):
        try:
            feed.poll_once()
        except Exception as e:  # the poll loop logs and goes on
            assert type(e).__name__ == "TokenException"
    items, _ = feed.drain("kite", 0)
    alerts = [i for i in items if isinstance(i, KiteAlert)]
    assert len(alerts) == 1 and "TokenException" in alerts[0].detail
    acct, _ = _zerodha_account(root)
    acct.on_item(_signal(1, 0))  # the account has an event time
    out = acct.on_item(alerts[0])
    assert [(c.state, c.reason) for c in out if isinstance(c, TradingStateChanged)] == [
        ("HALTED", "TOKEN_INVALID")
    ]
