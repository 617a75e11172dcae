"""The simulator's KiteTicker websocket through the real ``KiteTicker`` client: packet
layouts and prices in each mode, subscribe/mode/unsubscribe, order-update messages, and the
websocket faults (a drop: the client reconnects; silence: connection open, nothing sent)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kiteconnect import KiteTicker

from connectors.kite.client import call_in_reactor, start_ticker
from connectors.kite.sim.http import SimApi
from tests.live_sim import wait
from tests.support import KEY, TOKEN, advance, client, faults, place

INFY, RELIANCE, TCS = 408065, 738561, 2953217


class Recorder:
    """A KiteTicker on the shared reactor, recording what its callbacks receive."""

    def __init__(self, root: str, modes: dict[str, list[int]]) -> None:
        self.ticks: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.orders: list[dict[str, Any]] = []
        self.connects = 0
        self.kws = KiteTicker(KEY, TOKEN, root=root.replace("http", "ws"), reconnect_max_delay=5)

        def on_connect(ws: KiteTicker, response: Any) -> None:
            self.connects += 1
            for mode, tokens in modes.items():
                ws.subscribe(tokens)
                ws.set_mode(mode, tokens)

        self.kws.on_connect = on_connect
        self.kws.on_ticks = lambda ws, ticks: self._put(ticks)
        self.kws.on_order_update = lambda ws, data: self.orders.append(data)
        start_ticker(self.kws)
        wait(lambda: self.connects, 10, "the ticker to connect")

    def _put(self, ticks: list[dict[str, Any]]) -> None:
        for t in ticks:
            self.ticks.put(t)

    def drain(self, settle: float = 0.3) -> list[dict[str, Any]]:
        time.sleep(settle)
        out = []
        while not self.ticks.empty():
            out.append(self.ticks.get())
        return out

    def close(self) -> None:
        call_in_reactor(self.kws.close)


@pytest.fixture
def ticker(sim: tuple[SimApi, str]) -> Iterator[Callable[[dict[str, list[int]]], Recorder]]:
    made: list[Recorder] = []

    def make(modes: dict[str, list[int]]) -> Recorder:
        made.append(Recorder(sim[1], modes))
        return made[-1]

    yield make
    for r in made:
        r.close()


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
