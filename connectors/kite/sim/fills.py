"""Orders of the simulated exchange and how a tape tick moves them: stop-loss triggers,
protected market limits, and fills (partial ones too) within the tick's traded volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connectors.kite.sim.rules import LPP_CANCELLED, Bands, protected
from schemas.kite import IST

LIVE = ("OPEN", "TRIGGER PENDING")  # statuses an order can still fill or be cancelled from


def kite_time(ts_us: int) -> str:
    """Kite's timestamp format: IST wall time, no zone."""
    dt = datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).astimezone(IST)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Instrument:
    token: int
    tradingsymbol: str
    exchange: str
    circuit_pct: float | None = None  # its own daily band, else the exchange's default
    tick_size: float | None = 0.05  # None: "auto", NSE's band for the price
    lot_size: int = 1


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
    trigger: float = 0.0  # SL / SL-M: the price that makes it active
    status: str = "OPEN"
    status_message: str | None = None
    filled: int = 0
    value: float = 0.0  # Σ quantity × price of its fills
    protection: float | None = None  # MARKET / SL-M: the % band it may fill within
    rested: bool = False  # a tick did not reach its limit: from then on it fills at the limit
    filled_at: int = 0  # tape time (µs) of the tick that completed it
    limit: float | None = None  # the protected price, set from the last price when known
    updated_at: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def average_price(self) -> float:
        return round(self.value / self.filled, 4) if self.filled else 0.0

    def view(self) -> dict[str, Any]:
        pending = self.quantity - self.filled if self.status in LIVE else 0
        at = kite_time(self.updated_at or self.placed_at)
        return {
            "placed_by": "AP0001", "order_id": self.order_id,
            "exchange_order_id": None if self.status == "REJECTED" else f"1{self.order_id}",
            "parent_order_id": None, "status": self.status,
            "status_message": self.status_message, "status_message_raw": self.status_message,
            "order_timestamp": at, "exchange_update_timestamp": at,
            "exchange_timestamp": kite_time(self.placed_at), "variety": self.variety,
            "modified": False, "exchange": self.inst.exchange,
            "tradingsymbol": self.inst.tradingsymbol, "instrument_token": self.inst.token,
            "order_type": self.order_type, "transaction_type": self.transaction_type,
            "validity": "DAY", "validity_ttl": 0, "product": self.product,
            "quantity": self.quantity, "disclosed_quantity": 0, "price": self.price,
            "trigger_price": self.trigger, "average_price": self.average_price,
            "filled_quantity": self.filled, "pending_quantity": pending,
            "cancelled_quantity": self.quantity - self.filled if self.status == "CANCELLED" else 0,
            "market_protection": self.protection or 0, "meta": {}, "tag": self.tag,
            "tags": [self.tag] if self.tag else [], "guid": f"sim-{self.order_id}",
        }  # fmt: skip

    def mark(self, status: str, at: int) -> None:
        self.status, self.updated_at = status, at
        self.history.append(self.view())

    def triggered_by(self, price: float) -> bool:
        """A tick at or through the trigger (BUY: at or above; SELL: at or below)."""
        return price >= self.trigger if self.transaction_type == "BUY" else price <= self.trigger

    def crosses(self, price: float, limit: float) -> bool:
        return price <= limit if self.transaction_type == "BUY" else price >= limit


def activate(o: Order, price: float, ts: int, bands: Bands) -> None:
    """The trigger was hit by a tick at ``price``: an SL becomes a limit at its price (if LPP
    allows it), an SL-M a protected market order around that tick."""
    tok = o.inst.token
    if o.order_type == "SL" and not bands.in_lpp(tok, o.price):
        o.status_message = LPP_CANCELLED
        o.mark("REJECTED", ts)
        return
    if o.order_type == "SL-M" and o.protection is not None:
        o.limit = bands.clamp(tok, protected(price, o.transaction_type, o.protection))
    o.mark("OPEN", ts)


def fill_price(o: Order, price: float, bands: Bands) -> float | None:
    """Where an OPEN order fills at a tick at ``price`` (None: the tick does not reach it)."""
    tok = o.inst.token
    if o.protection is not None and o.limit is None:  # placed before any price: this one
        o.limit = bands.clamp(tok, protected(price, o.transaction_type, o.protection))
    limit = o.price if o.order_type in ("LIMIT", "SL") else o.limit
    if limit is None:
        return bands.clamp(tok, price)
    if not o.crosses(price, limit):
        o.rested = True  # a protected market order rests as the limit it became
        return None
    return bands.clamp(tok, limit if o.rested else price)  # a resting limit: at its price


def trade_row(o: Order, n: int, qty: int, price: float, ts: int) -> dict[str, Any]:
    return {
        "trade_id": f"{n:08d}", "order_id": o.order_id,
        "exchange_order_id": f"1{o.order_id}", "tradingsymbol": o.inst.tradingsymbol,
        "exchange": o.inst.exchange, "instrument_token": o.inst.token, "product": o.product,
        "average_price": price, "quantity": qty, "transaction_type": o.transaction_type,
        "exchange_timestamp": kite_time(ts), "fill_timestamp": kite_time(ts),
        "order_timestamp": kite_time(ts),
    }  # fmt: skip


def fill(o: Order, qty: int, price: float, ts: int) -> None:
    """Book ``qty`` at ``price``: OPEN while some is left, COMPLETE when all is filled."""
    o.filled += qty
    o.value += qty * price
    if o.filled == o.quantity:
        o.filled_at = ts
    o.mark("COMPLETE" if o.filled == o.quantity else "OPEN", ts)
