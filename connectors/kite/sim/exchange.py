"""The simulated exchange behind the Kite simulator: a tick tape from Parquet, an order book
per account, fills (MARKET at the next tick, LIMIT when the price crosses), trades,
positions and margins, in the shapes of the Kite Connect v3 API."""

from __future__ import annotations

import csv
import threading
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.kite import IST

VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")


class KiteError(Exception):
    """An error the API returns: HTTP status, Kite ``error_type`` and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def kite_time(ts_us: int) -> str:
    """Kite's timestamp format: IST wall time, no zone."""
    dt = datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).astimezone(IST)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Tape:
    """Valid ticks of a Parquet file in time order (rows the flow would dead-letter are
    skipped: the exchange never sends them)."""

    ts: np.ndarray
    token: np.ndarray
    price: np.ndarray
    volume: np.ndarray

    @classmethod
    def load(cls, path: Path, tokens: set[int]) -> Tape:
        t = pq.read_table(path, columns=["instrument_token", "timestamp", "last_price", "volume"])
        tok = pc.fill_null(t["instrument_token"], -1).to_numpy(zero_copy_only=False)
        ts = pc.fill_null(pc.cast(t["timestamp"], "int64"), -1).to_numpy(zero_copy_only=False)
        price = pc.fill_null(t["last_price"], np.nan).to_numpy(zero_copy_only=False)
        vol = pc.fill_null(t["volume"], 0).to_numpy(zero_copy_only=False)
        ok = np.isin(tok, list(tokens)) & np.isfinite(price) & (price > 0) & (ts > 0)
        order = np.argsort(ts[ok], kind="stable")
        return cls(ts[ok][order], tok[ok][order].astype(np.int64), price[ok][order], vol[ok][order])

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class Instrument:
    token: int
    tradingsymbol: str
    exchange: str


def load_instruments(path: Path) -> dict[int, Instrument]:
    with path.open(newline="") as fh:
        return {
            int(r["instrument_token"]): Instrument(
                int(r["instrument_token"]), r["tradingsymbol"], r.get("exchange") or "NSE"
            )
            for r in csv.DictReader(fh)
        }


@dataclass
class Order:
    order_id: str
    variety: str
    inst: Instrument
    transaction_type: str
    quantity: int
    product: str
    order_type: str
    price: float
    tag: str | None
    placed_at: int
    status: str = "OPEN"
    status_message: str | None = None
    filled: int = 0
    average_price: float = 0.0
    protection: float | None = None  # MARKET / SL-M: the % band it may fill within
    rested: bool = False  # its first tick did not reach its limit: it fills at the limit
    filled_at: int = 0  # tape time (µs) of the tick that filled it
    limit: float | None = None  # the protected price, set from the last price when known
    updated_at: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        pending = self.quantity - self.filled if self.status == "OPEN" else 0
        return {
            "placed_by": "AP0001", "order_id": self.order_id,
            "exchange_order_id": None if self.status == "REJECTED" else f"1{self.order_id}",
            "parent_order_id": None, "status": self.status,
            "status_message": self.status_message, "status_message_raw": self.status_message,
            "order_timestamp": kite_time(self.updated_at or self.placed_at),
            "exchange_update_timestamp": kite_time(self.updated_at or self.placed_at),
            "exchange_timestamp": kite_time(self.placed_at), "variety": self.variety,
            "modified": False, "exchange": self.inst.exchange,
            "tradingsymbol": self.inst.tradingsymbol, "instrument_token": self.inst.token,
            "order_type": self.order_type, "transaction_type": self.transaction_type,
            "validity": "DAY", "validity_ttl": 0, "product": self.product,
            "quantity": self.quantity, "disclosed_quantity": 0, "price": self.price,
            "trigger_price": 0, "average_price": self.average_price,
            "filled_quantity": self.filled, "pending_quantity": pending,
            "cancelled_quantity": self.quantity - self.filled if self.status == "CANCELLED" else 0,
            "market_protection": 0, "meta": {}, "tag": self.tag,
            "tags": [self.tag] if self.tag else [], "guid": f"sim-{self.order_id}",
        }  # fmt: skip

    def mark(self, status: str, at: int) -> None:
        self.status, self.updated_at = status, at
        self.history.append(self.view())


def _avg(r: dict[str, Any], qty: int) -> float:
    if qty > 0:
        return float(r["buy_value"] / r["buy_quantity"])
    return float(r["sell_value"] / r["sell_quantity"]) if qty < 0 else 0.0


class Exchange:
    """Orders, trades and positions of one simulated account, advanced tick by tick."""

    def __init__(self, tape: Tape, instruments: dict[int, Instrument], cash: float = 1e6) -> None:
        self.tape, self.instruments, self.cash = tape, instruments, cash
        self.cursor = 0
        self.last: dict[int, float] = {}
        self.orders: dict[str, Order] = {}
        self.trades: list[dict[str, Any]] = []
        self.lock = threading.RLock()
        self.listeners: list[Any] = []  # called with each order view on every change
        self.tick_listeners: list[Any] = []  # called with the tape indexes of each advance

    @property
    def now(self) -> int:
        return int(self.tape.ts[max(self.cursor - 1, 0)]) if len(self.tape) else 0

    def _instrument(self, exchange: str, symbol: str) -> Instrument:
        for inst in self.instruments.values():
            if inst.tradingsymbol == symbol and inst.exchange == exchange:
                return inst
        raise KiteError(400, "InputException", f"Invalid `tradingsymbol`: {exchange}:{symbol}")

    def place(self, variety: str, p: dict[str, str]) -> Order:
        if variety not in VARIETIES:
            raise KiteError(400, "InputException", f"Invalid `variety`: {variety}")
        for name in (
            "exchange",
            "tradingsymbol",
            "transaction_type",
            "quantity",
            "product",
            "order_type",
        ):
            if not p.get(name):
                raise KiteError(400, "InputException", f"Missing `{name}`")  # fmt: skip
        if p["transaction_type"] not in ("BUY", "SELL"):
            raise KiteError(400, "InputException", "Invalid `transaction_type`")
        if p["order_type"] not in ORDER_TYPES or p["product"] not in PRODUCTS:
            raise KiteError(400, "InputException", "Invalid `order_type` or `product`")
        try:
            qty = int(p["quantity"])
            price = float(p.get("price") or 0)
        except ValueError:
            raise KiteError(400, "InputException", "Invalid `quantity` or `price`") from None
        if qty <= 0:
            raise KiteError(400, "InputException", "Quantity should be greater than 0")
        if p["order_type"] == "LIMIT" and price <= 0:
            raise KiteError(400, "InputException", "Invalid `price` for a LIMIT order")
        inst = self._instrument(p["exchange"], p["tradingsymbol"])
        protection = _protection(p) if p["order_type"] in ("MARKET", "SL-M") else None
        if p["product"] == "MIS" and self._after_cutoff() and self._adds(inst, p, qty):
            raise KiteError(400, "InputException", MIS_BLOCKED)
        with self.lock:
            oid = f"{2511200000000 + len(self.orders) + 1}"
            o = Order(oid, variety, inst, p["transaction_type"], qty, p["product"],
                      p["order_type"], price, p.get("tag") or None, self.now)  # fmt: skip
            if protection is not None:
                o.protection = protection
                last = self.last.get(inst.token)
                o.limit = _protected(last, p["transaction_type"], protection) if last else None
            self.orders[oid] = o
            for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"):
                o.mark(status, self.now)
            o.mark("OPEN", self.now)
            self._notify(o)
            return o

    def _after_cutoff(self) -> bool:
        """The tape's time is past the MIS cut-off of its day (IST)."""
        local = datetime.fromtimestamp(self.now / 1e6, tz=timezone.utc).astimezone(IST)
        return local.time() >= MIS_CUTOFF

    def _adds(self, inst: Instrument, p: dict[str, str], qty: int) -> bool:
        """The order would open or add to the instrument's MIS position."""
        held = sum(
            (t["quantity"] if t["transaction_type"] == "BUY" else -t["quantity"])
            for t in self.trades
            if t["instrument_token"] == inst.token and t["product"] == "MIS"
        )
        after = held + (qty if p["transaction_type"] == "BUY" else -qty)
        return abs(after) > abs(held) or (after != 0 and held != 0 and (after > 0) != (held > 0))

    def reject(self, o: Order, message: str) -> None:
        with self.lock:
            o.status_message = message
            o.mark("REJECTED", self.now)
            self._notify(o)

    def get(self, order_id: str) -> Order:
        o = self.orders.get(order_id)
        if o is None:
            raise KiteError(400, "InputException", f"Couldn't find that `order_id`: {order_id}")
        return o

    def modify(self, order_id: str, p: dict[str, str]) -> Order:
        with self.lock:
            o = self.get(order_id)
            if o.status != "OPEN":
                raise KiteError(400, "InputException", f"Order cannot be modified: {o.status}")
            if p.get("quantity"):
                o.quantity = int(p["quantity"])
            if p.get("price"):
                o.price = float(p["price"])
            if p.get("order_type"):
                o.order_type = p["order_type"]
            o.mark("OPEN", self.now)
            self._notify(o)
            return o

    def cancel(self, order_id: str) -> Order:
        with self.lock:
            o = self.get(order_id)
            if o.status != "OPEN":
                raise KiteError(400, "InputException", f"Order cannot be cancelled: {o.status}")
            o.mark("CANCELLED", self.now)
            self._notify(o)
            return o

    def advance(self, n: int) -> list[int]:
        """Move ``n`` ticks forward, filling what the new prices allow; the tick indexes."""
        with self.lock:
            moved = self._advance(n)
            for listener in self.tick_listeners:
                listener(moved)
            return moved

    def _advance(self, n: int) -> list[int]:
        with self.lock:
            start, end = self.cursor, min(self.cursor + n, len(self.tape))
            for i in range(start, end):
                tok, price, ts = (
                    int(self.tape.token[i]),
                    float(self.tape.price[i]),
                    int(self.tape.ts[i]),
                )
                self.last[tok] = price
                self.cursor = i + 1
                for o in list(self.orders.values()):
                    if o.status == "OPEN" and o.inst.token == tok:  # a tick after its placing
                        self._try_fill(o, price, ts)
            return list(range(start, end))

    def _try_fill(self, o: Order, price: float, ts: int) -> None:
        if o.protection is not None and o.limit is None:  # placed before any price: this one
            o.limit = _protected(price, o.transaction_type, o.protection)
        limit = o.price if o.order_type == "LIMIT" else o.limit
        if limit is not None:
            crossed = price <= limit if o.transaction_type == "BUY" else price >= limit
            if not crossed:
                o.rested = True  # a protected market order rests as the limit it became
                return
            price = limit if o.rested else price  # a resting limit fills at its price
        o.filled, o.average_price, o.filled_at = o.quantity, price, ts
        self.trades.append({
            "trade_id": f"{len(self.trades) + 1:08d}", "order_id": o.order_id,
            "exchange_order_id": f"1{o.order_id}", "tradingsymbol": o.inst.tradingsymbol,
            "exchange": o.inst.exchange, "instrument_token": o.inst.token, "product": o.product,
            "average_price": price, "quantity": o.quantity, "transaction_type": o.transaction_type,
            "exchange_timestamp": kite_time(ts), "fill_timestamp": kite_time(ts),
            "order_timestamp": kite_time(ts),
        })  # fmt: skip
        o.mark("COMPLETE", ts)
        self._notify(o)

    def _notify(self, o: Order) -> None:
        view = o.view()
        for listener in self.listeners:
            listener(view)

    def positions(self) -> dict[str, list[dict[str, Any]]]:
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for t in self.trades:
            r = rows.setdefault((t["instrument_token"], t["product"]), {
                "tradingsymbol": t["tradingsymbol"], "exchange": t["exchange"],
                "instrument_token": t["instrument_token"], "product": t["product"],
                "buy_quantity": 0, "buy_value": 0.0, "sell_quantity": 0, "sell_value": 0.0,
            })  # fmt: skip
            side = "buy" if t["transaction_type"] == "BUY" else "sell"
            r[f"{side}_quantity"] += t["quantity"]
            r[f"{side}_value"] += t["quantity"] * t["average_price"]
        net = []
        for (tok, _), r in sorted(rows.items()):
            qty = r["buy_quantity"] - r["sell_quantity"]
            last = self.last.get(tok, 0.0)
            pnl = r["sell_value"] - r["buy_value"] + qty * last
            bq, sq = r["buy_quantity"], r["sell_quantity"]
            net.append({
                **r, "quantity": qty, "overnight_quantity": 0, "multiplier": 1,
                "average_price": _avg(r, qty),
                "close_price": 0, "last_price": last, "value": r["sell_value"] - r["buy_value"],
                "pnl": round(pnl, 2), "m2m": round(pnl, 2), "unrealised": round(pnl, 2),
                "realised": 0, "buy_price": r["buy_value"] / bq if bq else 0,
                "sell_price": r["sell_value"] / sq if sq else 0, "buy_m2m": r["buy_value"],
                "sell_m2m": r["sell_value"], "day_buy_quantity": bq, "day_sell_quantity": sq,
                "day_buy_price": r["buy_value"] / bq if bq else 0,
                "day_sell_price": r["sell_value"] / sq if sq else 0,
                "day_buy_value": r["buy_value"], "day_sell_value": r["sell_value"],
            })  # fmt: skip
        return {"net": net, "day": net}

    def margins(self) -> dict[str, Any]:
        used = sum(abs(p["quantity"]) * p["last_price"] for p in self.positions()["net"]) * 0.2
        equity = {
            "enabled": True, "net": round(self.cash - used, 2),
            "available": {"adhoc_margin": 0, "cash": self.cash, "opening_balance": self.cash,
                          "live_balance": round(self.cash - used, 2), "collateral": 0,
                          "intraday_payin": 0},
            "utilised": {"debits": round(used, 2), "exposure": 0, "m2m_realised": 0,
                         "m2m_unrealised": 0, "option_premium": 0, "payout": 0,
                         "span": round(used, 2), "holding_sales": 0, "turnover": 0,
                         "liquid_collateral": 0, "stock_collateral": 0, "delivery": 0},
        }  # fmt: skip
        return {"equity": equity, "commodity": {**equity, "enabled": False, "net": 0}}


MIS_CUTOFF = time(15, 20)  # IST: no new MIS exposure from here
MIS_BLOCKED = (
    "MIS orders that open or add to a position are blocked after the 15:20 square-off time."
)
NO_PROTECTION = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)
AUTO_PROTECTION_PCT = 2.0  # what this simulator applies for -1 (Kite picks its own band)


def _protection(p: dict[str, str]) -> float:
    """The market protection of a MARKET / SL-M order, as Kite checks it (since April 2026)."""
    raw = p.get("market_protection")
    if raw is None or raw == "":
        raise KiteError(400, "InputException", NO_PROTECTION)
    try:
        pct = float(raw)
    except ValueError:
        why = f"Invalid request (failed to decode market_protection, got: {raw} (expected decimal))"
        raise KiteError(400, "InputException", why) from None
    if pct == -1:
        return AUTO_PROTECTION_PCT
    if not 0 < pct <= 100:
        raise KiteError(400, "InputException", NO_PROTECTION)
    return pct


def _protected(last: float, side: str, pct: float) -> float:
    """The limit a protected market order becomes: ``pct`` % through the last price."""
    return round(last * (1 + pct / 100) if side == "BUY" else last * (1 - pct / 100), 2)
