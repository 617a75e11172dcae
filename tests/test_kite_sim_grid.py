"""Kite's price and order grid in the simulator, through the real ``kiteconnect`` client on
loopback: the circuit band and LPP, prices and triggers off the tick size, quantities off
the lot size, and a CNC sell beyond the shares held, refused as Kite refuses them. Expected
outcomes are worked out here, not taken from the simulator."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from kiteconnect import exceptions as kex

from connectors.kite.sim.__main__ import SIM_DEFAULTS, build
from connectors.kite.sim.http import SimApi, serve
from connectors.kite.sim.rules import DAY_US, IST_US
from tests.support import (
    INFY,
    INSTRUMENTS,
    ROOT,
    advance,
    advance_to,
    client,
    ist_us,
    place,
    sim_config,
    small_ticks,
    tape_ticks,
    to_tick,
)

CIRCUIT = "Price exceeds circuit limits for the instrument. Place an order within the daily range."


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
    mine = tape_ticks(api, INFY, 0)
    day = [(int(tape.ts[i]) + IST_US) // DAY_US for i in mine]
    first2 = mine[day.index(day[-1])]  # the first INFY tick of the second day
    ref1, ref2 = float(tape.price[mine[0]]), float(tape.price[mine[day.index(day[-1]) - 1]])
    assert ref2 != float(tape.price[first2])  # the band is not around day 2's own first tick
    advance_to(root, api, mine[0])
    lo1, hi1 = ref1 * 0.95, ref1 * 1.05  # day 1: around its first tick

    def px(x: float) -> float:  # on the 0.05 grid, half a rupee or more from the edge
        return to_tick(x, 0.05)

    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", price=px(hi1 + 0.5))
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", transaction_type="SELL", price=px(lo1 - 0.5))
    assert place(kite, order_type="LIMIT", price=px(lo1 + 0.5), tag="in")
    advance_to(root, api, first2)
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
    mine = tape_ticks(api, INFY, 0)
    hi = round(float(tape.price[mine[0]]) * 1.2, 2)
    beyond = next(i for i in mine if tape.price[i] > hi)
    advance_to(root, api, beyond - 1)
    held = [dict(instrument_token=INFY, quantity=1, average_price=1000.0)]  # a CNC sell's
    requests.post(f"{root}/_sim/holdings", json=held, timeout=5).raise_for_status()
    oid = place(kite, qty=1, transaction_type="SELL", product="CNC", market_protection=50)
    advance_to(root, api, beyond)
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
    sim_config(root, lpp_pct=1)
    now = int(tape.ts[api.ex.cursor - 1])
    recent = [float(tape.price[i]) for i in tape_ticks(api, INFY, 0)
              if now - 30_000_000 < tape.ts[i] <= now]  # fmt: skip
    ref = sum(recent) / len(recent)
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", price=px(ref * 1.011))
    with pytest.raises(kex.InputException, match=CIRCUIT):
        place(kite, order_type="LIMIT", transaction_type="SELL", price=px(ref * 0.989))
    assert place(kite, order_type="LIMIT", price=px(ref * 1.009), tag="near")
    assert sorted(o["tag"] for o in kite.orders()) == ["near", "off"]


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
