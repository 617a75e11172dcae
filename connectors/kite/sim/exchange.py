"""The simulated exchange behind the Kite simulator: a tick tape from Parquet, an order book
per account, fills against the tape (MARKET at the next tick, LIMIT when the price crosses,
stop-losses once triggered, each tick's share of the traded volume at most), Kite's own MIS
square-off, trades, positions and margins, in the shapes of the Kite Connect v3 API."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np

from connectors.kite.sim.fills import (
    LIVE,
    Instrument,
    Order,
    activate,
    fill,
    fill_price,
    kite_time,
    trade_row,
)
from connectors.kite.sim.rules import (
    AUTO_PROTECTION_PCT,
    INSUFFICIENT_HOLDINGS,
    MIS_BLOCKED,
    MIS_CUTOFF,
    NOT_FOUND,
    Bands,
    KiteError,
    Request,
    Settings,
    check_grid,
    clock_us,
    ist,
    ist_clock_us,
    ist_day,
    parse,
    protected,
    protection_pct,
    refuse,
    share,
)
from connectors.kite.sim.tape import Tape
from operators.market import nse_tick_size

__all__ = ["Exchange", "Instrument", "KiteError", "Order", "Tape", "kite_time"]
SQUARE_OFF_TAG = "AUTO-SQ"
SQUARE_OFF_CANCEL = "Cancelled at the intraday (MIS) square-off"


def _avg(r: dict[str, Any], qty: int) -> float:
    if qty > 0:
        return float(r["buy_value"] / r["buy_quantity"])
    return float(r["sell_value"] / r["sell_quantity"]) if qty < 0 else 0.0


class Exchange:
    """Orders, trades and positions of one simulated account, advanced tick by tick."""

    def __init__(
        self,
        tape: Tape,
        instruments: dict[int, Instrument],
        cash: float = 1e6,
        settings: Settings | None = None,
    ) -> None:
        self.tape, self.instruments, self.cash = tape, instruments, cash
        self.settings = settings or Settings()
        self.bands = Bands(self.settings, {t: i.circuit_pct for t, i in instruments.items()})
        self.cursor = 0
        self.last: dict[int, float] = {}
        self.orders: dict[str, Order] = {}
        self.trades: list[dict[str, Any]] = []
        self.demat: dict[int, tuple[int, int, float, int]] = {}  # net qty, T1, avg, listed as
        self.squared: set[int] = set()  # the days (ist_day) whose MIS square-off has run
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
        raise refuse(f"Invalid `tradingsymbol`: {exchange}:{symbol}")

    def place(self, variety: str, p: dict[str, str]) -> Order:
        """Check a placement as Kite does (``KiteError`` if refused) and book it; a CNC sell
        beyond what the account may sell is booked and REJECTED, as Kite's RMS does."""
        r = parse(variety, p)
        inst = self._instrument(p["exchange"], p["tradingsymbol"])
        if r.order_type in ("MARKET", "SL-M"):
            r = replace(r, protection=protection_pct(p))
        with self.lock:
            check_grid(r, self.tick_size(inst), inst.lot_size)
            self._check(inst.token, r)
            if r.product == "MIS" and self._after_cutoff() and self._adds(inst, r.side, r.quantity):
                raise refuse(MIS_BLOCKED)
            refused = None
            if r.product == "CNC" and r.side == "SELL":
                refused = self._beyond_holdings(inst, r.quantity)
            return self._book(inst, r, p.get("tag") or None, refused)

    def reference_price(self, token: int) -> float:
        """The last price seen, else the instrument's first on the tape, else 0."""
        if token in self.last:
            return self.last[token]
        hits = np.flatnonzero(self.tape.token == token)
        return float(self.tape.price[hits[0]]) if len(hits) else 0.0

    def tick_size(self, inst: Instrument) -> float:
        """The instrument's tick size (``auto``: NSE's band for its reference price), as the
        instrument master lists it."""
        if inst.tick_size is not None:
            return inst.tick_size
        return nse_tick_size(self.reference_price(inst.token))

    def sellable(self, tok: int, but: Order | None = None) -> int:
        """Shares a CNC sell may take: demat holdings (T1 included, set through
        /_sim/holdings) and the simulator's own CNC trades, less what the CNC sells still
        open or pending ask (``but`` that one)."""
        demat = self.demat.get(tok, (0, 0, 0.0, tok))[0]
        pending = sum(
            o.quantity - o.filled
            for o in self.orders.values()
            if o.inst.token == tok and o.product == "CNC" and o.transaction_type == "SELL"
            and o.status in LIVE and o is not but
        )  # fmt: skip
        return demat + self._held(tok, "CNC") - pending

    def _beyond_holdings(self, inst: Instrument, qty: int, but: Order | None = None) -> str | None:
        """Kite's message if a CNC sell of ``qty`` more is beyond ``sellable``, else None."""
        avail = self.sellable(inst.token, but)
        if qty <= avail:
            return None
        return INSUFFICIENT_HOLDINGS.format(avail=max(avail, 0), symbol=inst.tradingsymbol, qty=qty)

    def _check(self, tok: int, r: Request) -> None:
        """Circuit band, LPP (LIMIT) and stop-loss trigger rules against the tape now."""
        if r.order_type in ("SL", "SL-M"):
            self.bands.check_trigger(tok, r.side, r.trigger, self.last.get(tok))
        if r.order_type in ("LIMIT", "SL"):
            self.bands.check_price(tok, r.price, lpp=r.order_type == "LIMIT")

    def _book(
        self, inst: Instrument, r: Request, tag: str | None, refused: str | None = None
    ) -> Order:
        oid = f"{2511200000000 + len(self.orders) + 1}"
        o = Order(oid, r.variety, inst, r.side, r.quantity, r.product, r.order_type, r.price,
                  tag, self.now, trigger=r.trigger, protection=r.protection)  # fmt: skip
        last = self.last.get(inst.token)
        if r.protection is not None and r.order_type == "MARKET" and last:
            o.limit = self.bands.clamp(inst.token, protected(last, r.side, r.protection))
        self.orders[oid] = o
        for status in ("PUT ORDER REQ RECEIVED", "VALIDATION PENDING"):
            o.mark(status, self.now)
        if refused is not None:  # RMS: rejected at validation, never open
            o.status_message = refused
            o.mark("REJECTED", self.now)
            self._notify(o)
            return o
        o.mark("OPEN PENDING", self.now)
        o.mark("TRIGGER PENDING" if r.order_type in ("SL", "SL-M") else "OPEN", self.now)
        self._notify(o)
        return o

    def _after_cutoff(self) -> bool:
        """The tape's time is past the MIS cut-off of its day (IST)."""
        return ist(self.now).time() >= MIS_CUTOFF

    def _held(self, tok: int, product: str = "MIS") -> int:
        return sum(
            (t["quantity"] if t["transaction_type"] == "BUY" else -t["quantity"])
            for t in self.trades
            if t["instrument_token"] == tok and t["product"] == product
        )

    def _adds(self, inst: Instrument, side: str, qty: int) -> bool:
        """The order would open or add to the instrument's MIS position."""
        held = self._held(inst.token)
        after = held + (qty if side == "BUY" else -qty)
        return abs(after) > abs(held) or (after != 0 and held != 0 and (after > 0) != (held > 0))

    def reject(self, o: Order, message: str) -> None:
        with self.lock:
            o.status_message = message
            o.mark("REJECTED", self.now)
            self._notify(o)

    def get(self, order_id: str) -> Order:
        o = self.orders.get(order_id)
        if o is None:
            raise refuse(NOT_FOUND.format(order_id))
        return o

    def modify(self, order_id: str, p: dict[str, str]) -> Order:
        """Quantity, price, trigger price or order type of an order still open or pending."""
        with self.lock:
            o = self.get(order_id)
            if o.status not in LIVE:
                raise refuse(f"Order cannot be modified: {o.status}")
            qty = int(p["quantity"]) if p.get("quantity") else o.quantity
            price = float(p["price"]) if p.get("price") else o.price
            trigger = float(p["trigger_price"]) if p.get("trigger_price") else o.trigger
            if qty < max(o.filled, 1):
                raise refuse("Quantity should be greater than the filled quantity")
            kind = p.get("order_type") or o.order_type
            if (qty, price, trigger) != (o.quantity, o.price, o.trigger):
                asked = Request(o.variety, o.transaction_type, qty, o.product, kind, price,
                                trigger, o.protection)  # fmt: skip
                check_grid(asked, self.tick_size(o.inst), o.inst.lot_size)
            if o.product == "CNC" and o.transaction_type == "SELL" and qty > o.quantity:
                beyond = self._beyond_holdings(o.inst, qty - o.filled, but=o)
                if beyond is not None:
                    raise refuse(beyond)
            if kind in ("LIMIT", "SL") and price != o.price:
                self.bands.check_price(o.inst.token, price, lpp=kind == "LIMIT")
            if o.status == "TRIGGER PENDING" and trigger != o.trigger:
                self.bands.check_trigger(o.inst.token, o.transaction_type, trigger,
                                         self.last.get(o.inst.token))  # fmt: skip
            o.quantity, o.price, o.trigger, o.order_type = qty, price, trigger, kind
            o.mark(o.status, self.now)
            self._notify(o)
            return o

    def cancel(self, order_id: str, why: str | None = None) -> Order:
        """Cancel what is left of an order (a partly filled one keeps its fills)."""
        with self.lock:
            o = self.get(order_id)
            if o.status not in LIVE:
                raise refuse(f"Order cannot be cancelled: {o.status}")
            o.status_message = why
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
            tape = self.tape
            for i in range(start, end):
                tok, price, ts = int(tape.token[i]), float(tape.price[i]), int(tape.ts[i])
                self.bands.tick(tok, price, ts, self.last.get(tok))
                self.last[tok] = price
                self.cursor = i + 1
                traded = int(tape.traded[i])
                self._match(tok, price, ts, share(self.settings.participation, traded))
                self._square_off(ts)
            return list(range(start, end))

    def _match(self, tok: int, price: float, ts: int, budget: int) -> None:
        """One tick of ``tok``: pending stop-losses it triggers become active (they may fill
        from the next tick), open orders fill in placing order within ``budget``."""
        for o in [o for o in self.orders.values() if o.inst.token == tok and o.status in LIVE]:
            if o.status == "TRIGGER PENDING":
                if o.triggered_by(price):
                    activate(o, price, ts, self.bands)
                    self._notify(o)
                continue
            at = fill_price(o, price, self.bands)
            qty = min(o.quantity - o.filled, budget)
            if at is None or qty <= 0:
                continue
            budget -= qty
            self.trades.append(trade_row(o, len(self.trades) + 1, qty, at, ts))
            fill(o, qty, at, ts)
            self._notify(o)

    def _square_off(self, ts: int) -> None:
        """Kite's own MIS square-off, once a day from ``settings.square_off``: open MIS orders
        are cancelled, then each MIS position is closed by a MARKET order (tag AUTO-SQ)."""
        day = ist_day(ts)
        if day in self.squared or ist_clock_us(ts) < clock_us(self.settings.square_off):
            return
        self.squared.add(day)
        for o in list(self.orders.values()):
            if o.product == "MIS" and o.status in LIVE:
                self.cancel(o.order_id, SQUARE_OFF_CANCEL)
        for tok in sorted({t["instrument_token"] for t in self.trades if t["product"] == "MIS"}):
            held = self._held(tok)
            if held:
                r = Request("regular", "SELL" if held > 0 else "BUY", abs(held), "MIS",
                            "MARKET", 0.0, 0.0, AUTO_PROTECTION_PCT)  # fmt: skip
                self._book(self.instruments[tok], r, SQUARE_OFF_TAG)

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

    def holdings(self) -> list[dict[str, Any]]:
        """Demat holdings from earlier days (set through /_sim/holdings; the simulator's own
        CNC trades stay in its positions across its days)."""
        out = []
        for tok, (qty, t1, avg, listed) in sorted(self.demat.items()):
            i, last = self.instruments[tok], self.last.get(tok, avg)
            out.append({
                "tradingsymbol": i.tradingsymbol, "exchange": "BSE" if listed != tok else "NSE",
                "instrument_token": listed, "isin": "", "product": "CNC", "quantity": qty,
                "t1_quantity": t1, "realised_quantity": qty - t1, "used_quantity": 0,
                "collateral_quantity": 0,
                "collateral_type": "", "average_price": avg, "last_price": last,
                "close_price": last, "pnl": round(qty * (last - avg), 2),
                "day_change": 0, "day_change_percentage": 0,
            })  # fmt: skip
        return out

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
