"""Kite's instrument master (``GET /instruments[/{exchange}]``) built from the simulator's
instrument file: one EQ row per instrument in its exchange's cash segment, plus an index and
a future as Kite lists them, which an equity download must leave out."""

from __future__ import annotations

import csv
import io
from typing import Any

from connectors.kite.sim.exchange import Exchange

KITE_COLUMNS = (
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
    "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange",
)  # fmt: skip

# Not equity cash instruments: an index (Kite lists it as EQ, in the INDICES segment of NSE)
# and an index future (NFO). Left out when a token of the instrument file is the same.
NON_EQ_ROWS: tuple[dict[str, Any], ...] = (
    {"instrument_token": 256265, "exchange_token": 1001, "tradingsymbol": "NIFTY 50",
     "name": "NIFTY 50", "last_price": 0.0, "expiry": "", "strike": 0.0, "tick_size": 0.0,
     "lot_size": 0, "instrument_type": "EQ", "segment": "INDICES", "exchange": "NSE"},
    {"instrument_token": 13238786, "exchange_token": 51714, "tradingsymbol": "NIFTY26DECFUT",
     "name": "NIFTY", "last_price": 0.0, "expiry": "2026-12-29", "strike": 0.0,
     "tick_size": 0.1, "lot_size": 75, "instrument_type": "FUT", "segment": "NFO-FUT",
     "exchange": "NFO"},
)  # fmt: skip


class CsvBody(str):
    """A handler's answer sent as ``text/csv`` rather than in the JSON envelope."""


def instrument_rows(ex: Exchange, exchange: str | None = None) -> list[dict[str, Any]]:
    """Kite's rows for the instruments of ``exchange`` (all exchanges when None)."""
    rows: list[dict[str, Any]] = []
    with ex.lock:
        for inst in ex.instruments.values():
            price, tick = ex.reference_price(inst.token), ex.tick_size(inst)
            rows.append({
                "instrument_token": inst.token, "exchange_token": inst.token // 256,
                "tradingsymbol": inst.tradingsymbol, "name": inst.tradingsymbol,
                "last_price": price if inst.token in ex.last else 0.0, "expiry": "",
                "strike": 0.0, "tick_size": tick, "lot_size": inst.lot_size,
                "instrument_type": "EQ", "segment": inst.exchange, "exchange": inst.exchange,
            })  # fmt: skip
    rows += [r for r in NON_EQ_ROWS if r["instrument_token"] not in ex.instruments]
    return [r for r in rows if exchange is None or r["exchange"] == exchange]


def master_csv(ex: Exchange, exchange: str | None = None) -> CsvBody:
    """The CSV body Kite sends: a header of Kite's columns, one line per instrument."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=KITE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(instrument_rows(ex, exchange))
    return CsvBody(out.getvalue())
