"""The simulator's KiteTicker websocket through the real ``KiteTicker`` client: packet
layouts and prices in each mode, subscribe/mode/unsubscribe, order-update messages, and the
websocket faults (a drop: the client reconnects; silence: connection open, nothing sent)."""

from __future__ import annotations

import time

from connectors.kite.client import call_in_reactor
from tests.live_sim import wait
from tests.support import advance, client, faults, place

INFY, RELIANCE, TCS = 408065, 738561, 2953217


def test_modes_carry_the_tape_prices_and_times(sim, ticker) -> None:
    api, root = sim
    rec = ticker({"full": [RELIANCE], "quote": [INFY], "ltp": [TCS]})
    moved = advance(root, 3000)["advanced"]
    got = rec.drain()
    tape = api.ex.tape
    expect = [(int(tape.token[i]), float(tape.price[i]), int(tape.ts[i]) // 1_000_000)
              for i in range(moved) if int(tape.token[i]) in (RELIANCE, INFY, TCS)]  # fmt: skip
    assert [(t["instrument_token"], t["last_price"]) for t in got] == [e[:2] for e in expect]
    modes = {t["instrument_token"]: t["mode"] for t in got}
    assert modes == {RELIANCE: "full", INFY: "quote", TCS: "ltp"}
    full = [t for t in got if t["mode"] == "full"]
    times = [e[2] for e in expect if e[0] == RELIANCE]
    assert [int(t["exchange_timestamp"].timestamp()) for t in full] == times
    assert all(len(t["depth"]["buy"]) == 5 and len(t["depth"]["sell"]) == 5 for t in full)
    assert all(t["depth"]["buy"][0]["price"] < t["last_price"] for t in full)
    quote = [t for t in got if t["mode"] == "quote"]
    assert all(t["ohlc"]["low"] <= t["last_price"] <= t["ohlc"]["high"] for t in quote)
    assert all("volume_traded" in t and "exchange_timestamp" not in t for t in quote)
    assert all(set(t) == {"tradable", "mode", "instrument_token", "last_price"}
               for t in got if t["mode"] == "ltp")  # fmt: skip


def test_unsubscribe_and_mode_change(sim, ticker) -> None:
    _, root = sim
    rec = ticker({"ltp": [RELIANCE, INFY]})
    call_in_reactor(rec.kws.unsubscribe, [INFY])
    call_in_reactor(rec.kws.set_mode, "full", [RELIANCE])
    time.sleep(0.3)
    advance(root, 3000)
    got = rec.drain()
    assert got and {(t["instrument_token"], t["mode"]) for t in got} == {(RELIANCE, "full")}


def test_order_updates_arrive_as_text_messages(sim, ticker) -> None:
    _, root = sim
    rec = ticker({"ltp": [INFY]})
    order_id = place(client(root), qty=3, tag="aptest")
    advance(root, 3000)
    wait(lambda: any(o["status"] == "COMPLETE" for o in rec.orders), 10, "the fill message")
    mine = [o for o in rec.orders if o["order_id"] == order_id]
    assert [o["status"] for o in mine] == ["OPEN", "COMPLETE"]
    assert mine[-1]["tag"] == "aptest" and mine[-1]["filled_quantity"] == 3


def test_drop_then_reconnect_and_silence(sim, ticker) -> None:
    api, root = sim
    rec = ticker({"ltp": [RELIANCE, INFY]})
    faults(root, ws_drop=1)
    wait(lambda: rec.connects == 2, 10, "KiteTicker's own reconnect, subscriptions restored")
    advance(root, 2000)
    assert rec.drain()
    faults(root, ws_silent=1)
    advance(root, 2000)
    assert rec.drain() == [] and rec.kws.is_connected()  # open, yet nothing arrives
    assert api.ticker.connections == 2
