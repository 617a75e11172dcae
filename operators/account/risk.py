"""Risk checks of one order request against the account's book. Every failing check adds a
reason code and a detail; nothing here changes the book."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from operators.account.book import AccountBook
from operators.account.rates import OrderRates, RateState, kite_caps
from operators.accounting import signed
from operators.charges import fees
from operators.session import MarketSession
from schemas.config import CostModel, RiskConfig
from schemas.enums import Product, RejectReason, SignalType, TradingState
from schemas.events import TradingSignal


@dataclass(frozen=True)
class Request:
    """An order the account means to send: ``quantity`` on ``side`` for ``signal``."""

    signal: TradingSignal
    side: SignalType
    quantity: int
    order_type: str
    ts: int
    product: Product = Product.MIS
    band: tuple[float, float] | None = None  # the instrument's circuit band today


Findings = list[tuple[RejectReason, str]]


def reduces(before: int, after: int) -> bool:
    """``after`` is a smaller position on the same side (or flat)."""
    return abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))


class RiskChecks:
    """Pure checks; the order-rate windows are the only state (kept for recovery)."""

    def __init__(
        self,
        risk: RiskConfig,
        costs: CostModel,
        session: MarketSession,
        lot_sizes: Mapping[int, int],
        rates: RateState | None = None,
    ) -> None:
        self.risk, self.costs, self.session, self.lot_sizes = risk, costs, session, lot_sizes
        self.allowed = frozenset(risk.allowed_instruments or ()) or None
        caps = kite_caps(
            risk.max_orders_per_second, risk.max_orders_per_minute, risk.max_orders_per_day
        )
        self.rates = OrderRates(caps, session.trading_day, rates)

    def check(self, r: Request, book: AccountBook, state: TradingState) -> Findings:
        out: Findings = []
        s, token = r.signal, r.signal.instrument_token
        if self.risk.enforce_session and not self.session.is_open(r.ts):
            out.append((RejectReason.MARKET_CLOSED, f"{self.session.local(r.ts):%a %H:%M:%S %Z}"))
        if self.allowed is not None and token not in self.allowed:
            out.append((RejectReason.INSTRUMENT_NOT_ALLOWED, f"instrument {token} not allowed"))
        lot = self.lot_sizes.get(token, 1)
        if r.quantity % lot:
            out.append((RejectReason.LOT_SIZE_MISMATCH, f"quantity {r.quantity}, lot {lot}"))
        value = r.quantity * s.price
        if value > self.risk.max_order_value:
            limit = self.risk.max_order_value
            out.append((RejectReason.MAX_ORDER_VALUE_EXCEEDED, f"value {value:.2f} > {limit:.2f}"))
        out += self._band(r, book)
        if r.band is not None and not r.band[0] <= s.price <= r.band[1]:
            lo, hi = r.band
            out.append((RejectReason.CIRCUIT_LIMIT, f"price {s.price} outside {lo:.2f}-{hi:.2f}"))
        before = book.exposure(token)
        after = before + signed(r.side, r.quantity)
        shrinks = reduces(before, after)
        out += self._state(state, shrinks)
        out += self._product(r, book, shrinks)
        if not shrinks:
            out += self._exposure(r, book, before, after)
        hit = self.rates.breach(r.ts)
        if hit is not None:
            out.append((RejectReason.MAX_ORDER_RATE_EXCEEDED, hit))
        return out

    def _band(self, r: Request, book: AccountBook) -> Findings:
        if r.order_type != "LIMIT":
            return []
        last = book.last_price(r.signal.instrument_token)
        if last is None:
            return []
        off = abs(r.signal.price - last) / last * 100
        if off <= self.risk.price_band_pct:
            return []
        band = self.risk.price_band_pct
        return [
            (RejectReason.PRICE_OUTSIDE_BAND, f"limit {off:.2f}% from last {last}, band {band}%")
        ]

    def _product(self, r: Request, book: AccountBook, shrinks: bool) -> Findings:
        if r.product is Product.CNC:  # sells only what is held: an unfilled buy is not
            s = r.signal
            held = book.strategy_position(s.strategy_id, s.instrument_token)
            selling = book.pending_sells(s.instrument_token, s.strategy_id)
            after = held + selling + signed(r.side, r.quantity)
            if r.side is SignalType.SELL and after < 0:
                why = f"CNC holds {held}, {-selling} already selling, would go {after}"
                return [(RejectReason.CNC_SHORT_NOT_ALLOWED, why)]
            return []
        cut = self.session.cutoff(r.ts)
        if not shrinks and cut is not None and cut <= r.ts < self.session.closes(r.ts):
            at = f"{self.session.local(cut):%H:%M}"
            return [(RejectReason.MIS_CUTOFF, f"MIS: no new entries after the {at} cut-off")]
        return []

    def _state(self, state: TradingState, reducing: bool) -> Findings:
        if state is TradingState.HALTED:
            return [(RejectReason.TRADING_HALTED, "account halted: no orders but its flattens")]
        if state is TradingState.REDUCING and not reducing:
            why = "account is REDUCING (daily loss limit): only orders that shrink a position"
            return [(RejectReason.MAX_DAILY_LOSS_BREACHED, why)]
        return []

    def _exposure(self, r: Request, book: AccountBook, before: int, after: int) -> Findings:
        out: Findings = []
        risk, token = self.risk, r.signal.instrument_token
        price = book.price(token, r.signal.price)
        if abs(after) > risk.max_position_qty:
            out.append((RejectReason.MAX_POSITION_EXCEEDED, f"position {after}"))
        if abs(after) * price > risk.max_position_value:
            v = abs(after) * price
            out.append((RejectReason.MAX_POSITION_VALUE_EXCEEDED, f"position value {v:,.2f}"))
        gross = book.gross_exposure() + max(abs(after) - abs(before), 0) * price
        if gross > risk.max_gross_exposure:
            out.append((RejectReason.MAX_GROSS_EXPOSURE_EXCEEDED, f"gross {gross:,.2f}"))
        if before == 0 and book.held_count() >= risk.max_open_positions:
            out.append(
                (RejectReason.MAX_OPEN_POSITIONS_EXCEEDED, f"{risk.max_open_positions} open")
            )
        opening = abs(after) if (after > 0) != (before > 0) else abs(after) - abs(before)
        need = opening * r.signal.price + fees(
            self.costs, r.side, r.quantity, r.signal.price, r.product
        )
        b = book.total.book
        free = b.cash - b.short_value() - book.pending_cash()
        if need > free:
            out.append((RejectReason.INSUFFICIENT_FUNDS, f"needs {need:,.2f}, free {free:,.2f}"))
        return out
