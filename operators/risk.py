"""Risk filter, per broker, over the event-time ordered stream.

Approved orders enter the exposure book at once (pending or filled), through the same
accounting code the portfolio uses. Rejections carry every failing reason code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from bytewax.dataflow import Stream

from operators.accounting import Book, fees, signed
from operators.keyed import stateful_by_key
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel
from schemas.enums import Broker, RejectReason
from schemas.events import RejectedSignal, TradingSignal, ValidatedSignal
from schemas.ids import content_id
from schemas.ticks import US, BrokerItem, Clock, MarkSet, TickCount, to_us

RiskOut = ValidatedSignal | RejectedSignal | MarkSet | Clock | TickCount


@dataclass
class RiskState:
    book: Book
    day: date | None = None
    day_start_pnl: float = 0.0
    loss_breached: bool = False
    recent: deque[int] = field(default_factory=deque)


class RiskFilter:
    """Pure logic: decide each signal in order; marks keep the book's prices current."""

    def __init__(
        self,
        broker: Broker,
        cfg: BrokerConfig,
        costs: CostModel,
        session: MarketSession,
        state: RiskState | None = None,
    ) -> None:
        self.broker = broker
        self.cfg = cfg
        self.risk = cfg.risk
        self.costs = costs
        self.session = session
        self.allowed = frozenset(cfg.risk.allowed_instruments or ()) or None
        self.state = state or RiskState(book=Book(cfg.starting_cash))

    def check(self, s: TradingSignal) -> tuple[list[RejectReason], list[str]]:
        st, r = self.state, self.risk
        ts = to_us(s.timestamp)
        reasons: list[RejectReason] = []
        detail: list[str] = []
        if r.enforce_session and not self.session.is_open(ts):
            reasons.append(RejectReason.MARKET_CLOSED)
            detail.append(f"{self.session.local(ts):%a %H:%M:%S %Z} is outside the session")
        if self.allowed is not None and s.instrument_token not in self.allowed:
            reasons.append(RejectReason.INSTRUMENT_NOT_ALLOWED)
            detail.append(f"instrument {s.instrument_token} not in allowed_instruments")
        value = s.quantity * s.price
        if value > r.max_order_value:
            reasons.append(RejectReason.MAX_ORDER_VALUE_EXCEEDED)
            detail.append(f"order value {value:.2f} > {r.max_order_value:.2f}")
        pos = st.book.position(s.instrument_token)
        new = pos + signed(s.signal_type, s.quantity)
        if abs(new) > r.max_position_qty:
            reasons.append(RejectReason.MAX_POSITION_EXCEEDED)
            detail.append(f"position would be {new}, limit {r.max_position_qty}")
        day = self.session.trading_day(ts)
        if day != st.day:
            st.day, st.day_start_pnl, st.loss_breached = day, st.book.net_pnl(), False
        if not st.loss_breached and st.book.net_pnl() - st.day_start_pnl <= -r.max_daily_loss:
            st.loss_breached = True
        reducing = abs(new) < abs(pos) and (new == 0 or (new > 0) == (pos > 0))
        if st.loss_breached and not reducing:
            reasons.append(RejectReason.MAX_DAILY_LOSS_BREACHED)
            detail.append(f"daily loss limit {r.max_daily_loss:.2f} breached on {day}")
        opening = abs(new) if (new > 0) != (pos > 0) else max(0, abs(new) - abs(pos))
        if opening:
            need = opening * s.price + fees(self.costs, s.signal_type, s.quantity, s.price)
            free = st.book.cash - st.book.short_value()
            if need > free:
                reasons.append(RejectReason.INSUFFICIENT_FUNDS)
                detail.append(f"needs {need:.2f}, free cash {free:.2f}")
        while st.recent and st.recent[0] <= ts - US:
            st.recent.popleft()
        if len(st.recent) >= r.max_orders_per_second:
            reasons.append(RejectReason.MAX_ORDER_RATE_EXCEEDED)
            detail.append(f"{len(st.recent)} orders in the last second")
        return reasons, detail

    def decide(self, s: TradingSignal) -> ValidatedSignal | RejectedSignal:
        reasons, detail = self.check(s)
        common = dict(
            correlation_id=s.correlation_id,
            causation_id=s.signal_id,
            broker=self.broker,
            timestamp=s.timestamp,
            signal=s,
        )
        if reasons:
            return RejectedSignal(
                event_id=content_id("rej", s.signal_id),
                reasons=reasons,
                detail="; ".join(detail),
                **common,
            )
        st = self.state
        st.recent.append(to_us(s.timestamp))
        fee = fees(self.costs, s.signal_type, s.quantity, s.price)
        st.book.apply(s.instrument_token, s.signal_type, s.quantity, s.price, fee)
        return ValidatedSignal(event_id=content_id("val", s.signal_id), **common)

    def on_item(self, item: BrokerItem) -> list[RiskOut]:
        if isinstance(item, TradingSignal):
            return [self.decide(item)]
        if isinstance(item, MarkSet):
            for token, price in item.prices:
                self.state.book.mark(token, price)
            return [item]
        if isinstance(item, (Clock, TickCount)):
            return [item]  # for stage health downstream
        return []

    def on_eof(self) -> list[RiskOut]:
        return []


def risk_filter(
    step_id: str,
    up: Stream[tuple[str, list[BrokerItem]]],
    make: Callable[[str, RiskState | None], RiskFilter],
) -> Stream[tuple[str, list[RiskOut]]]:
    """Keyed by broker: ValidatedSignal / RejectedSignal per signal; marks and clocks pass."""
    return stateful_by_key(step_id, up, make, batched=True)
