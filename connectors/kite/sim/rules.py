"""Kite's order rules in the simulator: input checks (prices and triggers on the tick size,
quantities in lots), market protection, stop-loss triggers, the daily circuit band and
limit price protection (LPP), with Kite's messages, and the volume each tape tick traded
(paper's rule, from the module that owns it)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, time, timezone

import numpy as np

from operators.strategies.execution import traded_volume
from schemas.kite import IST

VARIETIES = ("regular", "amo", "co", "iceberg", "auction")
PRODUCTS = ("CNC", "NRML", "MIS", "MTF")
ORDER_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
REQUIRED = ("exchange", "tradingsymbol", "transaction_type", "quantity", "product", "order_type")

MIS_CUTOFF = time(15, 20)  # IST: no new MIS exposure from here
MIS_BLOCKED = (
    "MIS orders that open or add to a position are blocked after the 15:20 square-off time."
)
NO_PROTECTION = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)
AUTO_PROTECTION_PCT = 2.0  # what this simulator applies for -1 (Kite picks its own band)
CIRCUIT = "Price exceeds circuit limits for the instrument. Place an order within the daily range."
LPP_CANCELLED = (
    "The order was cancelled by the exchange because the price is outside the current "
    "allowed limit price protection range."
)
NOT_FOUND = "Couldn't find that `order_id`: {}"
TICK_SIZE = (  # Kite's wording (an InputException), the instrument's tick size in it
    "Tick size for this script is {}. Kindly enter trigger price / price in the multiple of "
    "tick size for this script"
)
LOT_SIZE = "Quantity should be a multiple of the lot size ({}) for this script."
INSUFFICIENT_HOLDINGS = (  # an RMS rejection: the order is booked, then REJECTED
    "Insufficient holdings: {avail} {symbol} can be sold under CNC (holdings and CNC buys, "
    "less pending CNC sells), the order is for {qty}. Check your holdings or use MIS."
)
LPP_WINDOW_US = 30_000_000  # the reference price: the average trade price of the last 30 s
TRIGGER_VS_PRICE = {"BUY": "Trigger price can't be higher than price",
                    "SELL": "Trigger price can't be lesser than price"}  # fmt: skip
TRIGGER_VS_LAST = {
    "BUY": "Trigger price for stoploss buy orders should be higher than the last traded price.",
    "SELL": "Trigger price for stoploss sell orders should be lower than the last traded price.",
}
TRIGGER_VS_CIRCUIT = {
    "BUY": "Trigger price for stoploss buy orders cannot be above the upper circuit price. "
    "Please try placing the order with trigger price below {:.2f}.",
    "SELL": "Trigger price for stoploss sell orders cannot be below the lower circuit price. "
    "Please try placing the order with trigger price above {:.2f}.",
}


class KiteError(Exception):
    """An error the API returns: HTTP status, Kite ``error_type`` and message."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def refuse(message: str) -> KiteError:
    return KiteError(400, "InputException", message)


@dataclass(frozen=True)
class Request:
    """A checked order placement: the numbers parsed, the type's own fields present."""

    variety: str
    side: str
    quantity: int
    product: str
    order_type: str
    price: float
    trigger: float
    protection: float | None


def parse(variety: str, p: dict[str, str]) -> Request:
    """Kite's input checks of a placement's fields (an ``InputException`` if one fails);
    market protection is checked once the instrument is known (``protection_pct``)."""
    if variety not in VARIETIES:
        raise refuse(f"Invalid `variety`: {variety}")
    for name in REQUIRED:
        if not p.get(name):
            raise refuse(f"Missing or empty field `{name}`")
    if p["transaction_type"] not in ("BUY", "SELL"):
        raise refuse("Invalid `transaction_type`")
    kind = p["order_type"]
    if kind not in ORDER_TYPES or p["product"] not in PRODUCTS:
        raise refuse("Invalid `order_type` or `product`")
    try:
        qty, price = int(p["quantity"]), float(p.get("price") or 0)
        trigger = float(p.get("trigger_price") or 0)
    except ValueError:
        raise refuse("Invalid `quantity`, `price` or `trigger_price`") from None
    if qty <= 0:
        raise refuse("Quantity should be greater than 0")
    if kind in ("LIMIT", "SL") and price <= 0:
        raise refuse(f"Missing or empty field `price` for a {kind} order")
    if kind in ("SL", "SL-M") and trigger <= 0:
        raise refuse("Missing or empty field `trigger_price` for a stoploss order")
    side = p["transaction_type"]
    if kind == "SL" and (trigger > price if side == "BUY" else trigger < price):
        raise refuse(TRIGGER_VS_PRICE[side])
    return Request(variety, side, qty, p["product"], kind, price, trigger, None)


def on_grid(x: float, tick: float) -> bool:
    """``x`` is a whole number of ``tick`` (within float noise)."""
    steps = x / tick
    return abs(steps - round(steps)) < 1e-6


def tick_text(tick: float) -> str:
    """A tick size as Kite writes it: two decimals (0.05, 0.10), more only if needed."""
    return f"{tick:.2f}" if abs(tick * 100 - round(tick * 100)) < 1e-9 else f"{tick:g}"


def check_grid(r: Request, tick: float, lot: int) -> None:
    """Kite's checks of a placement against its instrument: the price (LIMIT, SL) and the
    trigger (SL, SL-M) on the tick size, the quantity a multiple of the lot size."""
    prices = [r.price] if r.order_type in ("LIMIT", "SL") else []
    prices += [r.trigger] if r.order_type in ("SL", "SL-M") else []
    if tick > 0 and not all(on_grid(x, tick) for x in prices):
        raise refuse(TICK_SIZE.format(tick_text(tick)))
    if lot > 1 and r.quantity % lot:
        raise refuse(LOT_SIZE.format(lot))


def protection_pct(p: dict[str, str]) -> float:
    """The market protection of a MARKET / SL-M order, as Kite checks it (since April 2026)."""
    raw = p.get("market_protection")
    if raw is None or raw == "":
        raise refuse(NO_PROTECTION)
    try:
        pct = float(raw)
    except ValueError:
        why = f"Invalid request (failed to decode market_protection, got: {raw} (expected decimal))"
        raise refuse(why) from None
    if pct == -1:
        return AUTO_PROTECTION_PCT
    if not 0 < pct <= 100:
        raise refuse(NO_PROTECTION)
    return pct


def protected(last: float, side: str, pct: float) -> float:
    """The limit a protected market order becomes: ``pct`` % through the last price."""
    return round(last * (1 + pct / 100) if side == "BUY" else last * (1 - pct / 100), 2)


def ist(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).astimezone(IST)


IST_US, DAY_US = 19_800_000_000, 86_400_000_000  # IST is UTC+05:30 all year


def ist_day(ts_us: int) -> int:
    """The IST calendar day of a tape time, as a day number (cheap enough for every tick)."""
    return (ts_us + IST_US) // DAY_US


def ist_clock_us(ts_us: int) -> int:
    """µs since IST midnight."""
    return (ts_us + IST_US) % DAY_US


def clock_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


@dataclass
class Settings:
    """What the simulated exchange may be told (``--flags`` or ``POST /_sim/config``)."""

    participation: float = 1.0  # share of each tick's traded volume our orders may take
    circuit_pct: float = 20.0  # the daily band of an instrument without its own circuit_pct
    lpp_pct: float | None = None  # limit price protection on LIMIT prices; None: off
    square_off: time = time(15, 25)  # IST: Kite's own MIS square-off (it starts at 15:20)

    def update(self, body: dict[str, object]) -> None:
        """Apply ``body`` (all of it, or nothing if a value is refused)."""
        new = dict(vars(self))
        for k, v in body.items():
            if k == "square_off":
                new[k] = time.fromisoformat(str(v))
            elif k == "lpp_pct":
                new[k] = None if v is None else float(str(v))
            elif k in ("participation", "circuit_pct"):
                new[k] = float(str(v))
            else:
                raise refuse(f"unknown setting: {k}")
        if not 0 < new["participation"] <= 1:
            raise refuse("participation must be in (0, 1]")
        vars(self).update(new)

    def view(self) -> dict[str, object]:
        return {
            "participation": self.participation, "circuit_pct": self.circuit_pct,
            "lpp_pct": self.lpp_pct, "square_off": self.square_off.isoformat("minutes"),
        }  # fmt: skip


NO_CAP = 1 << 62  # what a tick of a tape without volume lets our orders take: all they ask


def tape_traded(ts: np.ndarray, token: np.ndarray, volume: np.ndarray | None) -> np.ndarray:
    """The quantity each tick of a time-ordered tape traded, by paper's rule
    (``operators.strategies.execution.traded_volume``) per instrument: the rise of its
    cumulative day volume over the higher of the two counts known before it (a count that
    falls trades nothing, a dip lends nothing, a spike holds back two ticks); a count of 0
    or less trades nothing; an instrument's first tick in the tape trades
    nothing; the first tick of a new IST day (``ist_day``, as the circuit band and the MIS
    square-off count days) starts from zero. No volume ever known: ``NO_CAP``."""
    out = np.full(len(ts), NO_CAP, dtype=np.int64)
    if volume is None or not len(ts):
        return out
    by_token = np.argsort(token, kind="stable")  # each instrument's ticks, in tape order
    for idx in np.split(by_token, np.flatnonzero(np.diff(token[by_token])) + 1):
        day = (ts[idx] + IST_US) // DAY_US  # ist_day of each tick
        new_day = np.concatenate(([False], day[1:] != day[:-1]))
        got, _ = traded_volume(volume[idx].astype(np.int64), (-1, -1), new_day)
        out[idx] = np.where(np.isinf(got), NO_CAP, got).astype(np.int64)
    return out


@dataclass
class Bands:
    """Per instrument: the circuit band's reference (the previous trading day's last tape
    price; on its first day in the tape, that day's first tick) and the recent prices LPP
    averages."""

    settings: Settings
    circuits: dict[int, float | None]  # per-instrument circuit_pct from the instrument file
    ref: dict[int, float] = field(default_factory=dict)
    day: dict[int, int] = field(default_factory=dict)
    recent: dict[int, deque[tuple[int, float]]] = field(default_factory=dict)

    def tick(self, tok: int, price: float, ts: int, last: float | None) -> None:
        """Take in one tape tick (before it becomes the last price)."""
        today = ist_day(ts)
        if self.day.get(tok) != today:
            self.day[tok], self.ref[tok] = today, last if last is not None else price
        window = self.recent.setdefault(tok, deque())
        window.append((ts, price))
        while window[0][0] <= ts - LPP_WINDOW_US:
            window.popleft()

    def band(self, tok: int) -> tuple[float, float] | None:
        ref = self.ref.get(tok)
        if ref is None:
            return None
        own = self.circuits.get(tok)
        pct = own if own is not None else self.settings.circuit_pct
        return round(ref * (1 - pct / 100), 2), round(ref * (1 + pct / 100), 2)

    def lpp(self, tok: int) -> tuple[float, float] | None:
        pct, window = self.settings.lpp_pct, self.recent.get(tok)
        if pct is None or not window:
            return None
        ref = sum(p for _, p in window) / len(window)
        return round(ref * (1 - pct / 100), 2), round(ref * (1 + pct / 100), 2)

    def check_price(self, tok: int, price: float, lpp: bool) -> None:
        """A LIMIT / SL price: inside the circuit band and (``lpp``, when on) the LPP range."""
        for rng in (self.band(tok), self.lpp(tok) if lpp else None):
            if rng is not None and not rng[0] <= price <= rng[1]:
                raise refuse(CIRCUIT)  # Kite answers LPP breaches with this message too

    def check_trigger(self, tok: int, side: str, trigger: float, last: float | None) -> None:
        """A stop-loss trigger: on the far side of the last price, inside the band."""
        if last is not None and (trigger < last if side == "BUY" else trigger > last):
            raise refuse(TRIGGER_VS_LAST[side])
        band = self.band(tok)
        if band is not None and not band[0] <= trigger <= band[1]:
            edge = band[1] if side == "BUY" else band[0]
            if (trigger > edge) if side == "BUY" else (trigger < edge):
                raise refuse(TRIGGER_VS_CIRCUIT[side].format(edge))
            raise refuse(CIRCUIT)

    def in_lpp(self, tok: int, price: float) -> bool:
        rng = self.lpp(tok)
        return rng is None or rng[0] <= price <= rng[1]

    def clamp(self, tok: int, price: float) -> float:
        band = self.band(tok)
        return price if band is None else min(max(price, band[0]), band[1])


def share(participation: float, traded: int) -> int:
    """What our orders may take of a tick that traded ``traded``."""
    return math.floor(participation * traded + 1e-9)
