"""Kite's order rules in the simulator, through the real ``kiteconnect`` client on loopback:
stop-loss orders, partial fills within the tape's volume, Kite's own MIS square-off, and an
order that stays out of sight after a lost reply (the price grid and bands:
test_kite_sim_grid). Expected values are computed here from the tape, not taken from the
simulator."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from kiteconnect import exceptions as kex

from connectors.kite.sim.__main__ import SIM_DEFAULTS, build
from connectors.kite.sim.http import SimApi, serve
from connectors.kite.sim.rules import DAY_US, IST_US
from tests.live_sim import Recorder, wait
from tests.support import (
    INFY,
    ROOT,
    advance,
    advance_to,
    client,
    faults,
    free_ports,
    ist_us,
    place,
    sim_config,
    tape_ticks,
)


def traded(api: SimApi, i: int) -> int:
    """What the tape says tick ``i`` traded, counted here tick by tick as paper counts it:
    the rise of its instrument's cumulative volume over the higher of the last two counts
    known before it (a fall trades nothing; a count of 0 or less, or none, trades nothing
    and is skipped; the instrument's first count in the tape trades nothing; a new IST
    day starts from zero)."""
    tape = api.ex.tape
    assert tape.volume is not None
    known: list[int] = []  # the counts known so far (their last two are the reference)
    day = None
    for j in tape_ticks(api, int(tape.token[i]), 0):
        today, count = (int(tape.ts[j]) + IST_US) // DAY_US, int(tape.volume[j])
        if day is not None and today != day:
            known = [0]
        day = today
        took = max(count - max(known[-2:]), 0) if known and count > 0 else 0
        if count > 0:
            known.append(count)
        if j == i:
            return took
    raise AssertionError(f"tick {i} not on the tape")


# -- SL and SL-M -----------------------------------------------------------------------


def test_stoploss_orders_are_checked_as_kite_does(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    advance(root, 200)
    last = api.ex.last[INFY]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"order_type": "SL", "price": last + 5}, "`trigger_price`"),
        ({"order_type": "SL-M"}, "`trigger_price`"),
        ({"order_type": "SL", "trigger_price": last + 5}, "`price`"),
        ({"order_type": "SL", "trigger_price": last + 6, "price": last + 5},
         "Trigger price can't be higher than price"),
        ({"order_type": "SL", "trigger_price": last - 6, "price": last - 5,
          "transaction_type": "SELL"}, "Trigger price can't be lesser than price"),
        ({"order_type": "SL", "trigger_price": last - 1, "price": last + 5},
         "stoploss buy orders should be higher than the last traded price"),
        ({"order_type": "SL-M", "trigger_price": last + 1, "transaction_type": "SELL"},
         "stoploss sell orders should be lower than the last traded price"),
    ]  # fmt: skip
    for kw, message in cases:
        args: dict[str, Any] = {
            k: round(v, 2) if isinstance(v, float) else v for k, v in kw.items()
        }
        with pytest.raises(kex.InputException, match=message):
            place(kite, qty=1, **args)
    assert kite.orders() == []


def test_sl_buy_waits_for_its_trigger_then_fills_as_a_limit(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    rec = Recorder(root, {})
    try:
        advance(root, 200)
        last = api.ex.last[INFY]
        trigger, limit = round(last + 1.0, 2), round(last + 3.0, 2)
        ahead = tape_ticks(api, INFY)
        hit = next(i for i in ahead if tape.price[i] >= trigger)
        oid = place(kite, qty=1, order_type="SL", trigger_price=trigger, price=limit)
        advance_to(root, api, hit - 1)
        (o,) = kite.orders()
        assert (o["status"], o["trigger_price"], o["price"]) == ("TRIGGER PENDING", trigger, limit)
        advance_to(root, api, hit)  # the trigger tick: active, not filled by it
        o = kite.order_history(oid)[-1]
        assert (o["status"], o["filled_quantity"], o["pending_quantity"]) == ("OPEN", 0, 1)
        after = [i for i in ahead if i > hit]
        fill_i, price = after[0], float(tape.price[after[0]])
        assert price <= limit  # the first tick after the trigger reaches the limit: fills there
        advance_to(root, api, fill_i)
        (t,) = kite.order_trades(oid)
        assert t["average_price"] == pytest.approx(price) and t["quantity"] == 1
        assert kite.order_history(oid)[-1]["status"] == "COMPLETE"
        wait(lambda: any(m["status"] == "COMPLETE" for m in rec.orders), 10, "the fill message")
        statuses = [m["status"] for m in rec.orders if m["order_id"] == oid]
        assert statuses == ["TRIGGER PENDING", "OPEN", "COMPLETE"]
    finally:
        rec.close()


def test_slm_sell_becomes_a_market_order_protected_around_the_trigger_tick(
    sim: tuple[SimApi, str],
) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    advance(root, 300)
    trigger = round(api.ex.last[INFY] - 0.5, 2)
    ahead = tape_ticks(api, INFY)
    hit = next(i for i in ahead if tape.price[i] <= trigger)
    oid = place(kite, qty=1, order_type="SL-M", trigger_price=trigger,
                transaction_type="SELL", market_protection=0.01)  # fmt: skip
    advance_to(root, api, hit)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    cap = round(float(tape.price[hit]) * (1 - 0.01 / 100), 2)
    after = [i for i in ahead if i > hit]
    if tape.price[after[0]] >= cap:
        fill_i, price = after[0], float(tape.price[after[0]])
    else:
        fill_i, price = next(i for i in after if tape.price[i] >= cap), cap
    advance_to(root, api, fill_i)
    (t,) = kite.order_trades(oid)
    assert t["average_price"] == pytest.approx(price) and t["transaction_type"] == "SELL"


# -- partial fills -----------------------------------------------------------------------


def test_orders_fill_at_most_their_share_of_each_ticks_volume(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    assert sim_config(root, participation=0.5)["participation"] == 0.5
    rec = Recorder(root, {})
    try:
        advance(root, 100)
        qty = 2000
        oid = place(kite, qty=qty, market_protection=100)
        ahead = tape_ticks(api, INFY)[:6]
        expect, left = [], qty
        for i in ahead:
            take = min(left, math.floor(0.5 * traded(api, i)))
            if take:
                expect.append((take, float(tape.price[i])))
                left -= take
        assert 0 < left < qty  # partly filled after these ticks
        advance_to(root, api, ahead[-1])
        trades = kite.order_trades(oid)
        assert [(t["quantity"], t["average_price"]) for t in trades] == expect
        o = kite.order_history(oid)[-1]
        filled = qty - left
        vwap = sum(q * p for q, p in expect) / filled
        assert (o["status"], o["filled_quantity"], o["pending_quantity"]) == ("OPEN", filled, left)
        assert o["average_price"] == pytest.approx(vwap, abs=1e-4)
        partials = [h["filled_quantity"] for h in kite.order_history(oid) if h["status"] == "OPEN"]
        assert partials[-len(expect) :] == list(np.cumsum([q for q, _ in expect]))
        wait(lambda: sum(m["order_id"] == oid for m in rec.orders) >= 1 + len(expect), 10,
             "the partial fill messages")  # fmt: skip
        pushed = [m["filled_quantity"] for m in rec.orders if m["order_id"] == oid]
        assert pushed[-len(expect) :] == partials[-len(expect) :]
        kite.cancel_order("regular", oid)
        o = kite.order_history(oid)[-1]
        assert (o["status"], o["filled_quantity"], o["cancelled_quantity"]) == (
            "CANCELLED", filled, left,
        )  # fmt: skip
        (pos,) = kite.positions()["net"]
        assert pos["quantity"] == filled
    finally:
        rec.close()


@pytest.fixture
def glitch_tape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimApi, str]]:
    """INFY on two IST days, a second apart; day 1's cumulative volume falls once (1400,
    then 1390, then 1395), day 2 starts again from a small count."""
    for k in SIM_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    day1 = [1000, 1100, 1250, 1400, 1390, 1395, 1500, 1700]
    day2 = [300, 450, 440, 600]
    ts = [ist_us("2026-11-20", "10:00") + k * 1_000_000 for k in range(len(day1))]
    ts += [ist_us("2026-11-23", "10:00") + k * 1_000_000 for k in range(len(day2))]
    n = len(ts)
    pq.write_table(pa.table({
        "instrument_token": pa.array([INFY] * n, pa.int64()),
        "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "last_price": pa.array([100.0] * n),
        "volume": pa.array(day1 + day2, pa.int64()),
    }), tmp_path / "tape.parquet")  # fmt: skip
    inst = tmp_path / "instruments.csv"
    inst.write_text("instrument_token,tradingsymbol,exchange,tick_size,lot_size\n"
                    f"{INFY},INFY,NSE,0.05,1\n")  # fmt: skip
    api = build(tmp_path / "tape.parquet", inst)
    server = serve(api, "127.0.0.1", 0)
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_volume_count_that_falls_never_lifts_the_cap(glitch_tape: tuple[SimApi, str]) -> None:
    """A falling count is a glitch, not a new day: the order takes nothing there (it once
    took the whole 1390), nor at 1395, still under 1400; the next IST day's first tick
    trades its whole count. Filled quantities are read through kiteconnect
    after each tick and compared with the count made here."""
    api, root = glitch_tape
    kite = client(root)
    assert sim_config(root, participation=0.5)["participation"] == 0.5
    advance(root, 1)  # the first tick: the order comes after it
    oid = place(kite, qty=1000, product="CNC", market_protection=100)
    got, expect, filled = [], [], 0
    for i in range(1, len(api.ex.tape)):
        advance(root, 1)
        now = kite.order_history(oid)[-1]["filled_quantity"]
        got.append(now - filled)
        filled = now
        expect.append(math.floor(0.5 * traded(api, i)))
    # each over the higher of the two counts before it: 1390 and 1395 trade nothing (1400
    # came before them), 1500 trades 105 over 1395; day 2 starts from 0
    by_hand = [0, 100, 150, 150, 0, 0, 105, 200, 300, 150, 0, 150]
    assert [traded(api, i) for i in range(len(api.ex.tape))] == by_hand
    assert got == expect == [50, 75, 75, 0, 0, 52, 100, 150, 75, 0, 75]
    trades = kite.order_trades(oid)
    assert [t["quantity"] for t in trades] == [q for q in expect if q]
    o = kite.order_history(oid)[-1]
    assert (o["status"], o["filled_quantity"]) == ("OPEN", sum(expect))


def test_the_simulator_command_takes_the_exchange_settings() -> None:
    port = free_ports(1)[0]
    cmd = [sys.executable, "-m", "connectors.kite.sim", "--port", str(port), "--speed", "0",
           "--participation", "0.25", "--circuit-pct", "10", "--lpp-pct", "3",
           "--square-off", "15:22"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        root = f"http://127.0.0.1:{port}"

        def up() -> Any:
            try:
                return requests.get(f"{root}/_sim/config", timeout=1).json()["data"]
            except requests.ConnectionError:
                return None

        got = wait(up, 20, "the simulator")
        assert got == {"participation": 0.25, "circuit_pct": 10.0, "lpp_pct": 3.0,
                       "square_off": "15:22"}  # fmt: skip
        bad = requests.post(f"{root}/_sim/config", json={"participation": 2}, timeout=5)
        assert bad.status_code == 400 and bad.json()["error_type"] == "InputException"
        assert up() == got  # refused as a whole
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- Kite's own MIS square-off -----------------------------------------------------------


def test_kite_squares_off_open_mis_positions_itself(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    rec = Recorder(root, {})
    try:
        advance_to(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:00"))))
        long_ = place(kite, qty=5, tag="long")
        cnc = place(kite, qty=3, tag="cnc", product="CNC")
        low = round(api.ex.last[INFY] * 0.9, 2)
        resting = place(kite, qty=5, order_type="LIMIT", price=low, tag="rest")
        sq = int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:25")))  # the first tick
        advance_to(root, api, sq - 1)
        assert {o["tag"]: o["status"] for o in kite.orders()} == {
            "long": "COMPLETE", "cnc": "COMPLETE", "rest": "OPEN"}  # fmt: skip
        advance_to(root, api, sq)
        assert kite.order_history(resting)[-1]["status"] == "CANCELLED"
        (auto,) = [o for o in kite.orders() if o["tag"] == "AUTO-SQ"]
        assert (auto["transaction_type"], auto["quantity"], auto["product"]) == ("SELL", 5, "MIS")
        assert auto["status"] == "OPEN"
        nxt = next(i for i in tape_ticks(api, INFY) if traded(api, i) >= 5)
        advance_to(root, api, nxt)
        (t,) = kite.order_trades(auto["order_id"])
        assert t["average_price"] == pytest.approx(float(tape.price[nxt])) and t["quantity"] == 5
        net = {p["product"]: p["quantity"] for p in kite.positions()["net"]}
        assert net == {"CNC": 3, "MIS": 0}
        wait(lambda: any(m["tag"] == "AUTO-SQ" and m["status"] == "COMPLETE" for m in rec.orders),
             10, "the square-off messages")  # fmt: skip
        assert {long_, cnc} <= {o["order_id"] for o in kite.orders()}
    finally:
        rec.close()


def test_the_square_off_time_is_a_setting(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    sim_config(root, square_off="15:21")
    advance_to(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:10"))))
    place(kite, qty=5, tag="long")
    advance_to(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:21"))) - 1)
    assert [o["tag"] for o in kite.orders()] == ["long"]
    advance_to(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:21"))))
    assert [o["tag"] for o in kite.orders()] == ["long", "AUTO-SQ"]


# -- a lost reply, then an order out of sight --------------------------------------------


def test_a_lost_order_stays_out_of_sight_for_a_while(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root, timeout=1)
    rec = Recorder(root, {})
    try:
        advance(root, 100)
        faults(root, lost_response=1, lost_delay_s=1.5, lost_visible_s=4)
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            place(kite, tag="lost")
        (o,) = api.ex.orders.values()  # it exists at the exchange
        advance(root, 2000)
        assert o.status == "COMPLETE"  # and fills there meanwhile
        assert kite.orders() == [] and kite.trades() == []
        with pytest.raises(kex.InputException, match="Couldn't find that `order_id`"):
            kite.order_history(o.order_id)
        assert kite.order_trades(o.order_id) == []
        assert time.monotonic() - t0 < 4
        assert [m for m in rec.orders if m["order_id"] == o.order_id] == []
        wait(lambda: kite.orders(), 10, "the order to appear")
        assert time.monotonic() - t0 >= 4
        assert [x["tag"] for x in kite.orders()] == ["lost"] and len(kite.trades()) == 1
        assert kite.order_history(o.order_id)[-1]["status"] == "COMPLETE"
        wait(lambda: any(m["status"] == "COMPLETE" for m in rec.orders), 10, "its messages")
        statuses = [m["status"] for m in rec.orders if m["order_id"] == o.order_id]
        assert statuses == ["OPEN", "COMPLETE"]
    finally:
        rec.close()
