"""Kite's order rules in the simulator, through the real ``kiteconnect`` client on loopback:
stop-loss orders, partial fills within the tape's volume, circuit bands and LPP, Kite's own
MIS square-off, and an order that stays out of sight after a lost reply. Expected values are
computed here from the tape, not taken from the simulator."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
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
from tests.live_sim import Recorder, wait
from tests.support import (
    INSTRUMENTS,
    ROOT,
    advance,
    client,
    faults,
    free_ports,
    place,
    small_ticks,
    to_tick,
)

INFY = 408065
CIRCUIT = "Price exceeds circuit limits for the instrument. Place an order within the daily range."
IST_US, DAY_US = 19_800_000_000, 86_400_000_000


def ticks_of(api: SimApi, token: int, start: int | None = None) -> list[int]:
    """Tape indexes of the instrument's ticks from ``start`` (default: the cursor)."""
    tape = api.ex.tape
    first = api.ex.cursor if start is None else start
    return [i for i in np.flatnonzero(tape.token == token).tolist() if i >= first]


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
    for j in ticks_of(api, int(tape.token[i]), 0):
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


def upto(root: str, api: SimApi, i: int) -> None:
    """Advance so that tape index ``i`` is the last tick seen."""
    advance(root, i + 1 - api.ex.cursor)


def config(root: str, **kw: Any) -> dict[str, Any]:
    r = requests.post(f"{root}/_sim/config", json=kw, timeout=5)
    assert r.ok, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


def ist_us(day: str, hhmm: str) -> int:
    at = datetime.fromisoformat(f"{day}T{hhmm}:00+05:30")
    return int(at.timestamp() * 1_000_000)


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
        ahead = ticks_of(api, INFY)
        hit = next(i for i in ahead if tape.price[i] >= trigger)
        oid = place(kite, qty=1, order_type="SL", trigger_price=trigger, price=limit)
        upto(root, api, hit - 1)
        (o,) = kite.orders()
        assert (o["status"], o["trigger_price"], o["price"]) == ("TRIGGER PENDING", trigger, limit)
        upto(root, api, hit)  # the trigger tick: active, not filled by it
        o = kite.order_history(oid)[-1]
        assert (o["status"], o["filled_quantity"], o["pending_quantity"]) == ("OPEN", 0, 1)
        after = [i for i in ahead if i > hit]
        fill_i, price = after[0], float(tape.price[after[0]])
        assert price <= limit  # the first tick after the trigger reaches the limit: fills there
        upto(root, api, fill_i)
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
    ahead = ticks_of(api, INFY)
    hit = next(i for i in ahead if tape.price[i] <= trigger)
    oid = place(kite, qty=1, order_type="SL-M", trigger_price=trigger,
                transaction_type="SELL", market_protection=0.01)  # fmt: skip
    upto(root, api, hit)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
    cap = round(float(tape.price[hit]) * (1 - 0.01 / 100), 2)
    after = [i for i in ahead if i > hit]
    if tape.price[after[0]] >= cap:
        fill_i, price = after[0], float(tape.price[after[0]])
    else:
        fill_i, price = next(i for i in after if tape.price[i] >= cap), cap
    upto(root, api, fill_i)
    (t,) = kite.order_trades(oid)
    assert t["average_price"] == pytest.approx(price) and t["transaction_type"] == "SELL"


# -- partial fills -----------------------------------------------------------------------


def test_orders_fill_at_most_their_share_of_each_ticks_volume(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    assert config(root, participation=0.5)["participation"] == 0.5
    rec = Recorder(root, {})
    try:
        advance(root, 100)
        qty = 2000
        oid = place(kite, qty=qty, market_protection=100)
        ahead = ticks_of(api, INFY)[:6]
        expect, left = [], qty
        for i in ahead:
            take = min(left, math.floor(0.5 * traded(api, i)))
            if take:
                expect.append((take, float(tape.price[i])))
                left -= take
        assert 0 < left < qty  # partly filled after these ticks
        upto(root, api, ahead[-1])
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
    assert config(root, participation=0.5)["participation"] == 0.5
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


# -- circuit band and LPP --------------------------------------------------------------------


@pytest.fixture
def two_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimApi, str]]:
    """Two synthetic trading days in one tape (on the tests' own tick grid); INFY with its
    own 5% circuit."""
    for k in SIM_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    days = sorted(small_ticks(tmp_path, days=2, bad_rows=False).glob("*.parquet"))
    tape = tmp_path / "tape.parquet"
    pq.write_table(pa.concat_tables([pq.read_table(d) for d in days]), tape)
    inst = tmp_path / "instruments.csv"
    with (ROOT / "data" / "instruments.csv").open() as src, inst.open("w", newline="") as out:
        rows = list(csv.DictReader(src))
        w = csv.DictWriter(out, [*rows[0].keys(), "circuit_pct"])
        w.writeheader()
        for r in rows:
            tok = int(r["instrument_token"])
            tick = {t: str(size) for t, _, size in INSTRUMENTS}.get(tok, r["tick_size"])
            w.writerow({**r, "tick_size": tick, "circuit_pct": "5" if tok == INFY else ""})
    api = build(tape, inst)
    server = serve(api, "127.0.0.1", 0)
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_circuit_band_around_the_previous_days_last_price(two_days: tuple[SimApi, str]) -> None:
    api, root = two_days
    kite = client(root)
    tape = api.ex.tape
    mine = ticks_of(api, INFY, 0)
    day = [(int(tape.ts[i]) + IST_US) // 86_400_000_000 for i in mine]
    first2 = mine[day.index(day[-1])]  # the first INFY tick of the second day
    ref1, ref2 = float(tape.price[mine[0]]), float(tape.price[mine[day.index(day[-1]) - 1]])
    assert ref2 != float(tape.price[first2])  # the band is not around day 2's own first tick
    upto(root, api, mine[0])
    lo1, hi1 = ref1 * 0.95, ref1 * 1.05  # day 1: around its first tick

    def px(x: float) -> float:  # on the 0.05 grid, half a rupee or more from the edge
        return to_tick(x, 0.05)

    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", price=px(hi1 + 0.5))
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", transaction_type="SELL", price=px(lo1 - 0.5))
    assert place(kite, order_type="LIMIT", price=px(lo1 + 0.5), tag="in")
    upto(root, api, first2)
    lo2, hi2 = ref2 * 0.95, ref2 * 1.05
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", price=px(hi2 + 0.5))
    assert place(kite, order_type="LIMIT", price=px(hi2 - 0.5), tag="in2")
    with pytest.raises(kex.InputException, match=f"upper circuit price.*below {hi2:.2f}"):
        place(kite, order_type="SL", trigger_price=px(hi2 + 0.5), price=px(hi2 + 1))
    with pytest.raises(kex.InputException, match=f"lower circuit price.*above {lo2:.2f}"):
        place(kite, order_type="SL-M", transaction_type="SELL", trigger_price=px(lo2 - 0.5))
    assert sorted(o["tag"] for o in kite.orders()) == ["in", "in2"]


def test_no_fill_outside_the_band(sim: tuple[SimApi, str]) -> None:
    """The sample's INFY trades above +20% of its first tick late in the day: a SELL filled
    at such a tick is filled at the band's edge."""
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    mine = ticks_of(api, INFY, 0)
    hi = round(float(tape.price[mine[0]]) * 1.2, 2)
    beyond = next(i for i in mine if tape.price[i] > hi)
    upto(root, api, beyond - 1)
    held = [dict(instrument_token=INFY, quantity=1, average_price=1000.0)]  # a CNC sell's
    requests.post(f"{root}/_sim/holdings", json=held, timeout=5).raise_for_status()
    oid = place(kite, qty=1, transaction_type="SELL", product="CNC", market_protection=50)
    upto(root, api, beyond)
    (t,) = kite.order_trades(oid)
    assert float(tape.price[beyond]) > hi and t["average_price"] == hi


def test_lpp_refuses_limits_far_from_the_last_30s_average(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    advance(root, 3000)
    tick = api.ex.tick_size(api.ex.instruments[INFY])  # 0.10 in the sample's file

    def px(x: float) -> float:  # on the tick grid
        return to_tick(x, tick)

    assert place(kite, order_type="LIMIT", price=px(api.ex.last[INFY] * 1.05), tag="off")
    config(root, lpp_pct=1)
    now = int(tape.ts[api.ex.cursor - 1])
    recent = [float(tape.price[i]) for i in ticks_of(api, INFY, 0)
              if now - 30_000_000 < tape.ts[i] <= now]  # fmt: skip
    ref = sum(recent) / len(recent)
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", price=px(ref * 1.011))
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", transaction_type="SELL", price=px(ref * 0.989))
    assert place(kite, order_type="LIMIT", price=px(ref * 1.009), tag="near")
    assert sorted(o["tag"] for o in kite.orders()) == ["near", "off"]


# -- Kite's own MIS square-off -----------------------------------------------------------


def test_kite_squares_off_open_mis_positions_itself(sim: tuple[SimApi, str]) -> None:
    api, root = sim
    kite = client(root)
    tape = api.ex.tape
    rec = Recorder(root, {})
    try:
        upto(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:00"))))
        long_ = place(kite, qty=5, tag="long")
        cnc = place(kite, qty=3, tag="cnc", product="CNC")
        low = round(api.ex.last[INFY] * 0.9, 2)
        resting = place(kite, qty=5, order_type="LIMIT", price=low, tag="rest")
        sq = int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:25")))  # the first tick
        upto(root, api, sq - 1)
        assert {o["tag"]: o["status"] for o in kite.orders()} == {
            "long": "COMPLETE", "cnc": "COMPLETE", "rest": "OPEN"}  # fmt: skip
        upto(root, api, sq)
        assert kite.order_history(resting)[-1]["status"] == "CANCELLED"
        (auto,) = [o for o in kite.orders() if o["tag"] == "AUTO-SQ"]
        assert (auto["transaction_type"], auto["quantity"], auto["product"]) == ("SELL", 5, "MIS")
        assert auto["status"] == "OPEN"
        nxt = next(i for i in ticks_of(api, INFY) if traded(api, i) >= 5)
        upto(root, api, nxt)
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
    config(root, square_off="15:21")
    upto(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:10"))))
    place(kite, qty=5, tag="long")
    upto(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:21"))) - 1)
    assert [o["tag"] for o in kite.orders()] == ["long"]
    upto(root, api, int(np.searchsorted(tape.ts, ist_us("2026-11-20", "15:21"))))
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


# -- tick size, lot size and CNC holdings --------------------------------------------------

GRID = {  # symbol: (token, price, tick_size as the file has it, lot_size)
    "INFY": (INFY, 100.0, "0.05", 1),
    "TCS": (2953217, 100.0, "0.10", 1),
    "LOTS": (341249, 100.0, "0.05", 25),
    "RELIANCE": (738561, 1200.0, "auto", 1),  # NSE's band for 1,200: 0.10
}


@pytest.fixture
def grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimApi, str]]:
    """Four instruments at flat prices, in turn every 250 ms from 10:00 IST, each trading
    100 shares a tick (its first tick none)."""
    for k in SIM_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    rows = list(GRID.values()) * 30
    n = len(rows)
    pq.write_table(pa.table({
        "instrument_token": pa.array([r[0] for r in rows], pa.int64()),
        "timestamp": pa.array([ist_us("2026-11-20", "10:00") + k * 250_000 for k in range(n)],
                              pa.timestamp("us", tz="UTC")),
        "last_price": pa.array([r[1] for r in rows]),
        "volume": pa.array([100 * (k // len(GRID) + 1) for k in range(n)], pa.int64()),
    }), tmp_path / "tape.parquet")  # fmt: skip
    inst = tmp_path / "instruments.csv"
    lines = [f"{tok},{sym},NSE,{tick},{lot}\n" for sym, (tok, _, tick, lot) in GRID.items()]
    inst.write_text("instrument_token,tradingsymbol,exchange,tick_size,lot_size\n" + "".join(lines))
    api = build(tmp_path / "tape.parquet", inst)
    server = serve(api, "127.0.0.1", 0)
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def tick_message(tick: str) -> str:
    return re.escape(f"Tick size for this script is {tick}. Kindly enter trigger price / price "
                     "in the multiple of tick size for this script")  # fmt: skip


def test_prices_and_triggers_off_the_tick_size_are_refused(grid: tuple[SimApi, str]) -> None:
    """Each case is refused (Kite's message, naming the tick size) exactly when one of its
    prices is not a whole number of ticks, worked out here in decimals."""
    _, root = grid
    kite = client(root)
    advance(root, len(GRID))  # every instrument has a last price (100; RELIANCE 1,200)
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("INFY", "0.05", {"order_type": "LIMIT", "price": 100.03}),
        ("INFY", "0.05", {"order_type": "LIMIT", "price": 100.05}),
        ("TCS", "0.10", {"order_type": "LIMIT", "price": 100.05}),
        ("TCS", "0.10", {"order_type": "LIMIT", "price": 100.3}),  # 100.3 / 0.1 ≈ 1002.99..
        ("TCS", "0.10", {"order_type": "SL", "trigger_price": 100.55, "price": 101.0}),
        ("TCS", "0.10", {"order_type": "SL", "trigger_price": 100.5, "price": 101.05}),
        ("TCS", "0.10", {"order_type": "SL", "trigger_price": 100.5, "price": 101.0}),
        ("TCS", "0.10", {"order_type": "SL-M", "trigger_price": 100.55}),
        ("TCS", "0.10", {"order_type": "SL-M", "trigger_price": 100.6}),
        ("TCS", "0.10", {"order_type": "MARKET"}),
        ("RELIANCE", "0.10", {"order_type": "LIMIT", "price": 1200.05}),
        ("RELIANCE", "0.10", {"order_type": "LIMIT", "price": 1200.1}),
    ]
    placed = []
    for sym, tick, kw in cases:
        prices = [Decimal(str(kw[k])) for k in ("price", "trigger_price") if k in kw]
        if all(p % Decimal(tick) == 0 for p in prices):
            placed.append((place(kite, qty=1, tradingsymbol=sym, tag=None, **kw), kw))
        else:
            with pytest.raises(kex.InputException, match=tick_message(tick)):
                place(kite, qty=1, tradingsymbol=sym, tag=None, **kw)
    assert len(placed) == 6
    orders = {o["order_id"]: o for o in kite.orders()}
    assert set(orders) == {oid for oid, _ in placed}  # none of the refused was booked
    for oid, kw in placed:
        stop = kw["order_type"] in ("SL", "SL-M")
        assert orders[oid]["status"] == ("TRIGGER PENDING" if stop else "OPEN")
    # a modification is checked too
    oid = next(o for o, kw in placed if kw.get("price") == 100.3)
    with pytest.raises(kex.InputException, match=tick_message("0.10")):
        kite.modify_order("regular", oid, price=100.15)
    kite.modify_order("regular", oid, price=100.2)
    assert kite.order_history(oid)[-1]["price"] == 100.2


def test_quantities_off_the_lot_size_are_refused(grid: tuple[SimApi, str]) -> None:
    _, root = grid
    kite = client(root)
    advance(root, len(GRID))
    for qty in (10, 26, 1):
        with pytest.raises(kex.InputException, match=r"multiple of the lot size \(25\)"):
            place(kite, qty=qty, tradingsymbol="LOTS", tag=None)
    assert kite.orders() == []
    oid = place(kite, qty=50, tradingsymbol="LOTS", order_type="LIMIT", price=99.0, tag=None)
    with pytest.raises(kex.InputException, match=r"multiple of the lot size \(25\)"):
        kite.modify_order("regular", oid, quantity=60)
    kite.modify_order("regular", oid, quantity=75)
    assert kite.order_history(oid)[-1]["quantity"] == 75
    place(kite, qty=7, tradingsymbol="INFY", tag=None)  # a lot of 1: any quantity
    advance(root, len(GRID))
    assert {(o["tradingsymbol"], o["status"]) for o in kite.orders()} == {
        ("LOTS", "OPEN"), ("INFY", "COMPLETE")}  # fmt: skip


def test_a_cnc_sell_beyond_holdings_is_rejected(grid: tuple[SimApi, str]) -> None:
    """A CNC sell may take demat holdings and CNC buys, less the CNC sells still pending
    (counted here from the orders placed); beyond that Kite's RMS books it REJECTED."""
    _, root = grid
    kite = client(root)
    advance(root, len(GRID))
    tcs_held = 10
    requests.post(f"{root}/_sim/holdings", json=[dict(
        instrument_token=GRID["TCS"][0], quantity=tcs_held, t1_quantity=4, average_price=95.0,
    )], timeout=5).raise_for_status()  # fmt: skip
    free = {"INFY": 0, "TCS": tcs_held}  # what a CNC sell may take, kept here
    steps: list[tuple[str, str, int, dict[str, Any]]] = [
        ("INFY", "SELL", 5, {}),  # nothing held: rejected
        ("INFY", "BUY", 8, {}),  # bought under CNC (fills at the next tick)
        ("INFY", "SELL", 5, {}),
        ("INFY", "SELL", 4, {}),  # 3 left: rejected
        ("INFY", "SELL", 3, {"order_type": "LIMIT", "price": 110.0}),  # rests, pending
        ("INFY", "SELL", 1, {}),  # the 3 are asked by the pending sell: rejected
        ("TCS", "SELL", 10, {}),  # the holding (T1 included)
        ("TCS", "SELL", 1, {}),
    ]
    outcome = []
    for sym, side, qty, kw in steps:
        oid = place(kite, qty=qty, tradingsymbol=sym, transaction_type=side, product="CNC",
                    tag=None, **kw)  # fmt: skip
        ok = side == "BUY" or qty <= free[sym]
        free[sym] += qty if side == "BUY" else -qty if ok else 0
        history = kite.order_history(oid)
        last = history[-1]
        if ok:
            assert last["status"] == "OPEN"
        else:
            assert [h["status"] for h in history] == [
                "PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "REJECTED"]  # fmt: skip
            assert last["status_message"].startswith(
                f"Insufficient holdings: {free[sym]} {sym} can be sold under CNC"
            )
            assert last["exchange_order_id"] is None and last["pending_quantity"] == 0
        outcome.append(ok)
        advance(root, len(GRID))  # the next tick of each: MARKET orders fill
    assert outcome == [False, True, True, False, True, False, True, False]
    assert [(t["tradingsymbol"], t["transaction_type"], t["quantity"]) for t in kite.trades()] == [
        ("INFY", "BUY", 8), ("INFY", "SELL", 5), ("TCS", "SELL", 10)]  # fmt: skip
    # the same sell under MIS is an intraday short, never checked against holdings
    oid = place(kite, qty=5, tradingsymbol="INFY", transaction_type="SELL", tag=None)
    assert kite.order_history(oid)[-1]["status"] == "OPEN"
