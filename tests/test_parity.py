"""Paper and the Kite simulator fill the same orders alike: on the same ticks, each strategy
order that paper fills (MARKET, LIMIT), placed in the simulator through the real kiteconnect
client at its signal's tick, fills there at the same price, quantity and tick."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.kite.sim.__main__ import build
from connectors.kite.sim.fills import kite_time
from connectors.kite.sim.http import SimApi, serve
from data.generate import write_instruments
from schemas.ids import tick_id
from schemas.ticks import to_us
from tests.support import INSTRUMENTS, client, make_config, run_graph, small_ticks


@pytest.fixture
def tape_and_sim(tmp_path: Path) -> Iterator[tuple[Path, SimApi, str]]:
    ticks = small_ticks(tmp_path, bad_rows=False)
    inst = tmp_path / "instruments.csv"
    write_instruments(inst, INSTRUMENTS)
    (day,) = sorted(ticks.glob("*.parquet"))
    api = build(day, inst)
    server = serve(api, "127.0.0.1", 0)
    yield ticks, api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tape_index(api: SimApi, token: int, correlation_id: str) -> int:
    """Where the signal's tick sits in the simulator's tape."""
    tape = api.ex.tape
    mine = np.flatnonzero(tape.token == token)
    for seq, i in enumerate(mine.tolist()):
        if tick_id(token, int(tape.ts[i]), seq) == correlation_id:
            return i
    raise AssertionError(f"tick {correlation_id} not in the simulator's tape")


@pytest.mark.parametrize("order_type", ["MARKET", "LIMIT"])
def test_paper_and_the_simulator_fill_the_same_orders_alike(
    tape_and_sim: tuple[Path, SimApi, str], tmp_path: Path, order_type: str
) -> None:
    ticks, api, root = tape_and_sim
    raw = make_config(ticks).model_dump(mode="json", by_alias=True)
    for s in raw["strategies"]:
        s["order_type"] = order_type
    brokers = {"paper": {"starting_cash": 1_000_000, "slippage_bps": 0}}
    rows, _ = run_graph(make_config(ticks, strategies=raw["strategies"], brokers=brokers),
                        tmp_path / "paper")  # fmt: skip
    signals = {s.signal_id: s for s in rows["signals"]}
    fills: dict[str, list[Any]] = {}
    for f in rows["fills"]:
        if not f.auto_square_off:
            fills.setdefault(f.order_id, []).append(f)
    ended = {f.order_id: f for f in rows["order_failures"]}  # paper: never reached in session
    own = {o.order_id for o in rows["orders"] if signals[o.signal_id].reason.startswith("AUTO")}
    orders = sorted(
        (o for o in rows["orders"] if o.order_id not in own),
        key=lambda o: (to_us(o.timestamp), o.order_id),
    )
    assert len(fills) > 20 and set(fills) | set(ended) >= {o.order_id for o in orders}
    symbols = {t: s for t, s, _ in INSTRUMENTS}
    kite, placed = client(root), {}
    for o in orders:
        s = signals[o.signal_id]
        at = _tape_index(api, s.instrument_token, s.correlation_id)
        if api.ex.cursor <= at:
            api.ex.advance(at + 1 - api.ex.cursor)  # the signal's tick is the last one seen
        kw: dict[str, Any] = {"market_protection": 100} if order_type == "MARKET" else {}
        if order_type == "LIMIT":
            kw["price"] = s.price
        placed[o.order_id] = kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol=symbols[s.instrument_token],
            transaction_type=o.side, quantity=o.quantity, product="MIS",
            order_type=order_type, tag=o.order_id[-20:], **kw,
        )  # fmt: skip
    api.ex.advance(len(api.ex.tape))
    rested = parts = 0
    for oid, kite_id in placed.items():
        sim = api.ex.get(kite_id)
        if oid in ended:  # no tick reached it before the close: nor in the simulator
            close = to_us(ended[oid].timestamp)
            # open at the close: still open, or cancelled by Kite's own MIS square-off
            assert sim.status in ("OPEN", "CANCELLED") or sim.filled_at >= close
            continue
        mine = fills[oid]  # one per tick it took volume at (both take their share alike)
        trades = [t for t in api.ex.trades if t["order_id"] == kite_id]
        assert sim.status == "COMPLETE" and sim.filled == sum(f.quantity for f in mine)
        got = [(t["quantity"], t["average_price"], t["fill_timestamp"]) for t in trades]
        assert got == [(f.quantity, f.fill_price, kite_time(to_us(f.timestamp))) for f in mine]
        assert sim.filled_at == to_us(mine[-1].timestamp)
        rested += sim.rested
        parts += len(mine) > 1
    assert order_type == "MARKET" or rested > 0  # LIMITs that rested, then filled, agree too
    assert parts > 0  # orders filled in parts by volume agree part by part
