"""What the simulated exchange trades on: the tick tape (from Parquet) and the instruments
(from the instrument file)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.kite.sim.fills import Instrument
from connectors.kite.sim.rules import tape_traded


@dataclass
class Tape:
    """Valid ticks of a Parquet file in time order (rows the flow would dead-letter are
    skipped: the exchange never sends them). ``volume``: cumulative day volume (-1: null,
    as the replay reads it), or None when the file has no volume column; ``traded``: what
    each tick traded (``tape_traded``: paper's rule)."""

    ts: np.ndarray
    token: np.ndarray
    price: np.ndarray
    volume: np.ndarray | None
    traded: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.traded = tape_traded(self.ts, self.token, self.volume)

    @classmethod
    def load(cls, path: Path, tokens: set[int]) -> Tape:
        names = set(pq.read_schema(path).names)
        cols = ["instrument_token", "timestamp", "last_price"]
        t = pq.read_table(path, columns=cols + (["volume"] if "volume" in names else []))
        tok = pc.fill_null(t["instrument_token"], -1).to_numpy(zero_copy_only=False)
        ts = pc.fill_null(pc.cast(t["timestamp"], "int64"), -1).to_numpy(zero_copy_only=False)
        price = pc.fill_null(t["last_price"], np.nan).to_numpy(zero_copy_only=False)
        ok = np.isin(tok, list(tokens)) & np.isfinite(price) & (price > 0) & (ts > 0)
        order = np.argsort(ts[ok], kind="stable")
        vol = None
        if "volume" in names:
            vol = pc.fill_null(t["volume"], -1).to_numpy(zero_copy_only=False)[ok][order]
        return cls(ts[ok][order], tok[ok][order].astype(np.int64), price[ok][order], vol)

    def __len__(self) -> int:
        return len(self.ts)


def load_instruments(path: Path) -> dict[int, Instrument]:
    """The instrument file: token, symbol, exchange, optional ``tick_size`` (a number or
    ``auto``), ``lot_size`` and ``circuit_pct``."""
    with path.open(newline="") as fh:
        return {
            int(r["instrument_token"]): Instrument(
                int(r["instrument_token"]), r["tradingsymbol"], r.get("exchange") or "NSE",
                float(r["circuit_pct"]) if r.get("circuit_pct") else None,
                None if r.get("tick_size") == "auto" else float(r.get("tick_size") or 0.05),
                int(r.get("lot_size") or 1),
            )
            for r in csv.DictReader(fh)
        }  # fmt: skip
