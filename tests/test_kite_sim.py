"""The Kite simulator's HTTP API through the real ``kiteconnect`` client on loopback:
session exchange, orders and fills against the tape, and the faults on demand."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from kiteconnect import exceptions as kex

from connectors.kite.sim.http import SimApi
from tests.support import KEY, ROOT, SECRET, TOKEN, advance, client, faults, place, to_tick

INFY = 408065


def next_tick(api: SimApi, token: int) -> int:
    """The tape index of the instrument's next tick (after the cursor)."""
    tape = api.ex.tape
    return next(i for i in range(api.ex.cursor, len(tape)) if tape.token[i] == token)


def test_session_exchange_checks_the_checksum(sim: tuple[SimApi, str]) -> None:
    _, root = sim
    kite = client(root, token=None)
    session = kite.generate_session("req-123", api_secret=SECRET)
    assert session["access_token"] == TOKEN and session["user_id"] == "AP0001"
    with pytest.raises(kex.TokenException, match="checksum"):
        kite.generate_session("req-123", api_secret="wrong")
    with pytest.raises(kex.TokenException):
        client(root, token="stale").profile()
    assert client(root).profile()["broker"] == "ZERODHA"


def test_market_order_fills_at_the_next_tick_of_its_instrument(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    advance(root, 100)
    oid = place(kite)
    (o,) = kite.orders()
    assert o["order_id"] == oid and o["status"] == "OPEN" and o["tag"] == "t1"
    token = o["instrument_token"]
    tape = api.ex.tape
    nxt = next(
        i
        for i in range(api.ex.cursor, len(tape))
        if tape.token[i] == token and tape.ts[i] > api.ex.now
    )
    advance(root, nxt - api.ex.cursor + 1)
    (o,) = kite.orders()
    assert o["status"] == "COMPLETE" and o["filled_quantity"] == 5
    assert o["average_price"] == pytest.approx(float(tape.price[nxt]))
    statuses = [h["status"] for h in kite.order_history(oid)]
    assert statuses[0] == "PUT ORDER REQ RECEIVED" and statuses[-2:] == ["OPEN", "COMPLETE"]
    (t,) = kite.order_trades(oid)
    assert t["quantity"] == 5 and t["average_price"] == o["average_price"]
    assert kite.trades() == [t]
    (pos,) = kite.positions()["net"]
    assert pos["tradingsymbol"] == "INFY" and pos["quantity"] == 5
    assert kite.margins()["equity"]["enabled"] and kite.margins("equity")["net"] > 0


def test_limit_order_fills_only_when_the_price_crosses(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    infy = tape.price[tape.token == INFY]
    tick = api.ex.tick_size(api.ex.instruments[INFY])  # 0.10 in the sample's file
    low, high = to_tick(infy[0] * 0.8 + 1, tick), to_tick(infy[0] * 1.2 - 1, tick)  # in the band
    assert infy.min() > low
    advance(root, 50)
    oid = place(kite, order_type="LIMIT", price=low)  # far below the market
    advance(root, 20_000)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    kite.modify_order("regular", oid, price=high)  # now above: crosses at the next tick
    nxt = next_tick(api, INFY)
    assert tape.price[nxt] <= high
    advance(root, nxt - api.ex.cursor + 1)
    o = kite.order_history(oid)[-1]
    assert o["status"] == "COMPLETE" and o["average_price"] == high  # it rested: its limit
    second = place(kite, order_type="LIMIT", price=low, tag="t2")
    kite.cancel_order("regular", second)
    assert kite.order_history(second)[-1]["status"] == "CANCELLED"
    with pytest.raises(kex.InputException, match="cannot be cancelled"):
        kite.cancel_order("regular", second)


def test_faults_429_500_reject_and_a_lost_response(sim: tuple[SimApi, str]) -> None:
    _, root = sim
    kite = client(root, timeout=1)
    faults(root, http_429=1, http_500=1)
    with pytest.raises(kex.NetworkException) as e429:
        place(kite)
    assert e429.value.code == 429
    with pytest.raises(kex.GeneralException) as e500:
        place(kite)
    assert e500.value.code == 500
    assert kite.orders() == []  # neither created an order
    faults(root, reject=1)
    rejected = place(kite, tag="rej")
    assert kite.order_history(rejected)[-1]["status"] == "REJECTED"
    assert kite.order_history(rejected)[-1]["status_message"].startswith("RMS:")
    faults(root, lost_response=1, lost_delay_s=2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        place(kite, tag="lost")  # accepted, but the reply never comes
    assert [o["tag"] for o in kite.orders()] == ["rej", "lost"]  # the lost one exists, once
    assert place(kite, tag="ok")  # faults are used up


def test_bad_input_gets_kite_error_shapes(sim: tuple[SimApi, str]) -> None:
    _, root = sim
    kite = client(root)
    with pytest.raises(kex.InputException, match="tradingsymbol"):
        kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol="NOPE", transaction_type="BUY",
            quantity=1, product="MIS", order_type="MARKET",
        )  # fmt: skip
    with pytest.raises(kex.InputException, match="Quantity"):
        place(kite, qty=0)
    r = requests.get(f"{root}/orders", headers={"X-Kite-Version": "3"}, timeout=5)
    assert r.status_code == 403 and r.json()["error_type"] == "TokenException"


def test_the_simulator_command_serves_the_real_client(tmp_path: Path) -> None:
    from tests.support import free_ports

    port = free_ports(1)[0]
    cmd = [sys.executable, "-m", "connectors.kite.sim", "--port", str(port), "--speed", "0"]
    log = (tmp_path / "sim.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert client(root).profile()["user_id"] == "AP0001"
                break
            except requests.exceptions.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    "simulator did not start"
                )
                time.sleep(0.1)
        assert advance(root, 10)["cursor"] == 10
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert TOKEN not in (tmp_path / "sim.log").read_text()


def test_login_writes_the_access_token_to_an_owner_only_file(
    sim: tuple[SimApi, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from connectors.kite.login import main

    _, root = sim
    monkeypatch.setenv("KITE_API_KEY", KEY)
    monkeypatch.setenv("KITE_API_SECRET", SECRET)
    env_file = tmp_path / "kite.env"
    assert main(["--request-token", "rt-1", "--root", root, "--env-file", str(env_file)]) == 0
    assert env_file.read_text() == f"KITE_ACCESS_TOKEN={TOKEN}\n"
    assert env_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("KITE_API_SECRET", "wrong-secret")
    assert main(["--request-token", "rt-1", "--root", root, "--env-file", str(env_file)]) == 1
    out = capsys.readouterr()
    assert "Invalid `checksum`" in out.err and "AP0001" in out.out
    for secret in (TOKEN, SECRET, "wrong-secret"):
        assert secret not in out.out + out.err


def test_market_orders_need_market_protection_and_become_protected_limits(
    sim: tuple[SimApi, str],
) -> None:
    """As Kite since 1 April 2026: API MARKET and SL-M orders without market protection (or
    with 0) are refused; a protected one may only fill within its band of the last price."""
    api, root = sim
    kite = client(root)
    advance(root, 100)
    for kind, pct in (("MARKET", None), ("SL-M", None), ("MARKET", 0)):
        kw: dict[str, Any] = {"order_type": kind}
        kw["market_protection"] = pct  # None: the client leaves it out
        if kind == "SL-M":
            kw["trigger_price"] = round(api.ex.last[INFY] + 1, 2)
        with pytest.raises(kex.InputException, match="without market protection"):
            kite.place_order(
                variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY",
                quantity=1, product="MIS", **kw,
            )  # fmt: skip
    assert kite.orders() == []  # refused before the order book
    token = next(i.token for i in api.ex.instruments.values() if i.tradingsymbol == "INFY")
    last, tape = api.ex.last[token], api.ex.tape
    nxt = next(  # the next INFY tick at another price decides the side that cannot fill
        i
        for i in range(api.ex.cursor, len(tape))
        if tape.token[i] == token and tape.price[i] != last
    )
    side = "BUY" if tape.price[nxt] > last else "SELL"
    advance(root, nxt - api.ex.cursor)  # up to just before it: ticks at the last price only
    tight = place(kite, tag="tight", market_protection=0.0001, transaction_type=side)
    wide = place(kite, tag="wide", market_protection=5, transaction_type=side)
    advance(root, 1)
    status = {o["tag"]: o["status"] for o in kite.orders()}
    assert status == {"tight": "OPEN", "wide": "COMPLETE"}  # tight rests as its limit
    assert kite.order_history(tight)[-1]["status"] == "OPEN"
    (trade,) = kite.order_trades(wide)
    assert trade["average_price"] == pytest.approx(float(tape.price[nxt]))


def test_the_access_token_expires_at_a_set_time(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    advance(root, 10)
    assert kite.profile()["user_id"] == "AP0001"
    at = api.ex.tape.ts[20] / 1e6
    iso = datetime.fromtimestamp(at, tz=timezone.utc).isoformat()
    assert requests.post(f"{root}/_sim/token", json={"expires_at": iso}, timeout=5).ok
    assert kite.positions() is not None  # not yet
    advance(root, 20)
    with pytest.raises(kex.TokenException):
        kite.profile()
    with pytest.raises(kex.TokenException):
        place(kite, tag="late")
    assert all(o.tag != "late" for o in api.ex.orders.values())
    fresh = client(root, token=None).generate_session("req-2", api_secret=SECRET)
    assert fresh["access_token"] != TOKEN  # a new login gives a new token, which works
    assert client(root, token=fresh["access_token"]).profile()["user_id"] == "AP0001"
    with pytest.raises(kex.TokenException):
        kite.profile()  # the old one stays dead


def test_mis_orders_cannot_add_exposure_after_the_cutoff(sim: tuple[SimApi, str]) -> None:
    import numpy as np

    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    cut = datetime(2026, 11, 20, 9, 50, tzinfo=timezone.utc).timestamp() * 1e6  # 15:20 IST
    before = int(np.searchsorted(tape.ts, cut - 600e6))  # ten minutes earlier
    advance(root, before)
    oid = place(kite, qty=5, tag="early")
    advance(root, int(np.searchsorted(tape.ts, cut)) - api.ex.cursor + 1)
    assert api.ex.get(oid).status == "COMPLETE"
    with pytest.raises(kex.InputException, match="blocked after the 15:20"):
        place(kite, qty=5, tag="more")  # adds to the MIS long
    assert place(kite, qty=5, tag="exit", transaction_type="SELL")  # closing is allowed
    assert place(kite, qty=5, tag="cnc", product="CNC")
