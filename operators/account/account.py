"""The account: ONE step per broker that owns the book. Risk decides against it, the venue
executes, and every outcome (fill, partial fill, rejection, cancellation, broker down)
updates it at once. Strategies state targets; the account orders the difference.

Items arrive in event-time order (see operators.ordering): target signals, marks (every
``risk.mark_interval_s`` and each instrument's last tick at the end), clocks, tick counts,
strategy failures, and (zerodha) Kite's order updates. Operator commands come from a
control inbox (file: at their event time; Redis: as they arrive).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from bytewax.dataflow import Stream

from operators.account.book import AccountBook
from operators.account.marks import loss_candidates, may_breach
from operators.account.portfolio import snapshot, summary
from operators.account.rates import RateState
from operators.account.risk import Request, RiskChecks
from operators.account.trading import TradingControl, TradingStatus, Verdict
from operators.keyed import stateful_by_key
from schemas.config import BrokerConfig, CostModel
from schemas.enums import Broker, SignalType, StateReason
from schemas.events import (
    OrderEvent,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    RejectedSignal,
    TradingSignal,
    TradingStateChanged,
    ValidatedSignal,
)
from schemas.ids import content_id
from schemas.kite import OrderUpdate
from schemas.ticks import (
    F64,
    I64,
    US,
    Clock,
    MarkSet,
    OrderLatency,
    StrategyFailed,
    TickCount,
    from_us,
    to_us,
)

PRUNE_US = 60 * US
AccountIn = TradingSignal | MarkSet | Clock | TickCount | StrategyFailed | OrderUpdate
AccountOut = Any  # events, snapshots, the summary, and pass-through clocks / counts


class Venue(Protocol):
    """Where validated orders go: paper (operators.account.paper) or Kite (.zerodha)."""

    def send(self, v: ValidatedSignal, order_type: str) -> list[OrderEvent]: ...

    def knows(self, v: ValidatedSignal) -> bool:
        """The venue already has an order for ``v``'s signal (a replay after a resume)."""
        ...

    def update(self, u: OrderUpdate) -> list[OrderEvent]: ...

    def venue_state(self) -> Any: ...

    def drain_latency(self) -> list[OrderLatency]: ...


class Inbox(Protocol):
    """Operator commands (connectors.control): due at an event time, from a cursor."""

    def due(self, event_us: int, cursor: Any) -> tuple[list[Any], Any]: ...


@dataclass
class AccountState:
    book: AccountBook
    trading: TradingStatus = field(default_factory=TradingStatus)
    rates: RateState = field(default_factory=RateState)
    venue: Any = None
    control_cursor: Any = None
    targets: dict[tuple[str, int], int] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    changes: list[TradingStateChanged] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    flattens: int = 0  # flatten rounds so far: each round's orders get fresh ids


@dataclass(frozen=True)
class AccountSetup:
    """What every broker's account needs besides its own config."""

    costs: CostModel
    session: Any  # operators.session.MarketSession
    lot_sizes: Mapping[int, int]
    order_types: Mapping[str, str]
    universe: tuple[int, ...] = ()  # the configured instruments: slots in every book


class Account:
    """Pure logic of one broker's account (risk, venue, book, trading state composed)."""

    def __init__(
        self,
        broker: Broker,
        cfg: BrokerConfig,
        setup: AccountSetup,
        venue: Callable[[Any], Venue],
        inbox: Inbox | None,
        state: AccountState | None = None,
    ) -> None:
        self.broker, self.setup, self.inbox = broker, setup, inbox
        self.state = state or AccountState(book=AccountBook.new(cfg.starting_cash, setup.universe))
        st = self.state
        self.risk = RiskChecks(cfg.risk, setup.costs, setup.session, setup.lot_sizes, st.rates)
        st.rates = self.risk.rates.state
        self.trading = TradingControl(broker, cfg.risk, setup.session, st.trading)
        self.venue = venue(st.venue)
        st.venue = self.venue.venue_state()
        self._pruned = 0

    # -- time, commands and the trading state -------------------------------------------
    def _net(self) -> float:
        return self.state.book.total.book.net_pnl()

    def _verdict(self, v: Verdict, ts: int) -> list[AccountOut]:
        self.state.changes.extend(v.changes)
        out: list[AccountOut] = list(v.changes)
        if v.flatten is not None:
            out += self.flatten(v.flatten, ts)
        return out

    def _commands(self, ts: int, final: bool = False) -> list[AccountOut]:
        if self.inbox is None:
            return []
        st = self.state
        due, st.control_cursor = self.inbox.due(ts, st.control_cursor)
        if final and hasattr(self.inbox, "rest"):
            rest, st.control_cursor = self.inbox.rest(st.control_cursor)
            due = [*due, *rest]
        out: list[AccountOut] = []
        for cmd in due:  # at its own time (file), or at the event time it arrived (live)
            at = min(ts, to_us(cmd.ts)) if not final else ts
            out += self._verdict(self.trading.command(str(cmd.command), at, cmd.origin), at)
        return out

    # -- orders --------------------------------------------------------------------------
    def _apply(self, events: list[OrderEvent]) -> list[AccountOut]:
        book = self.state.book
        for e in events:
            if isinstance(e, OrderPlaced) and e.order_id not in book.open:
                book.opened(e)
            elif isinstance(e, OrderFilled):
                book.fill(e)
            elif isinstance(e, OrderFailed):
                book.release(e)
        return list(events)

    def _send(self, v: ValidatedSignal) -> list[AccountOut]:
        kind = self.setup.order_types.get(v.signal.strategy_id, "MARKET")
        if self.venue.knows(v):  # its order exists (and counts in the book): never a second
            return self._apply(self.venue.send(v, kind))
        self.risk.rates.record(to_us(v.timestamp))
        return [v, *self._apply(self.venue.send(v, kind)), *self.venue.drain_latency()]

    def _request(self, s: TradingSignal, side: SignalType, qty: int) -> dict[str, Any]:
        return dict(
            order_id=content_id("ord", s.signal_id),
            correlation_id=s.correlation_id,
            causation_id=s.signal_id,
            broker=self.broker,
            timestamp=s.timestamp,
            signal=s,
            side=side,
            quantity=qty,
        )

    def decide(self, s: TradingSignal) -> list[AccountOut]:
        """Order the difference between the strategy's target and what it holds."""
        st, ts = self.state, to_us(s.timestamp)
        out = self._verdict(self.trading.on_time(ts, self._net()), ts)
        token = s.instrument_token
        st.targets[(s.strategy_id, token)] = s.target_quantity
        held = st.book.strategy_position(s.strategy_id, token) + st.book.pending(
            token, s.strategy_id
        )
        diff = s.target_quantity - held
        if diff == 0:
            return out
        side = SignalType.BUY if diff > 0 else SignalType.SELL
        kind = self.setup.order_types.get(s.strategy_id, "MARKET")
        req = Request(s, side, abs(diff), kind, ts)
        found = self.risk.check(req, st.book, self.trading.state)
        fields = self._request(s, side, abs(diff))
        if not found:
            v = ValidatedSignal(event_id=content_id("val", s.signal_id), **fields)
            return out + self._send(v)
        st.rejections.update(code.value for code, _ in found)
        rejected = RejectedSignal(
            event_id=content_id("rej", s.signal_id),
            reasons=[code for code, _ in found],
            detail="; ".join(f"{code.value}: {why}" for code, why in found),
            **fields,
        )
        return [*out, rejected]

    def flatten(self, reason: StateReason, ts: int) -> list[AccountOut]:
        """Close every holding at once (orders that only reduce, past the risk checks)."""
        st, out = self.state, []
        st.flattens += 1
        for sid, token, held in st.book.strategy_holdings():
            price = st.book.price(token, 0.0)
            if price <= 0:
                continue
            sig = TradingSignal(
                signal_id=content_id("flatten", self.broker.value, st.flattens, sid, token, ts),
                correlation_id=content_id("flatten", self.broker.value, st.flattens, ts),
                strategy_id=sid,
                broker=self.broker,
                instrument_token=token,
                target_quantity=0,
                price=price,
                timestamp=from_us(ts),
                reason=f"FLATTEN: {reason.value}",
            )
            side = SignalType.SELL if held > 0 else SignalType.BUY
            fields = self._request(sig, side, abs(held))
            out += self._send(ValidatedSignal(event_id=content_id("val", sig.signal_id), **fields))
        return out

    # -- marks ---------------------------------------------------------------------------
    def _marks(self, m: MarkSet) -> list[AccountOut]:
        """A run of mark boundaries (one trading day: clocks cut runs). The day rolls at its
        first boundary; the loss limit holds after every boundary: a cheap bound on the
        run's summary, an exact scan only where it could be reached."""
        book, status = self.state.book, self.trading.status
        out = self._verdict(self.trading.on_time(m.first, self._net()), m.first)
        peek = getattr(self.inbox, "peek", None)
        nxt = peek(self.state.control_cursor) if peek is not None else None
        limit = self.trading.risk.max_daily_loss
        day = self.setup.session.trading_day
        if (
            (nxt is not None and nxt <= m.until)
            or day(m.until) != day(m.first)
            or (
                not status.loss_breached
                and may_breach(
                    book.total.book,
                    m.tokens,
                    m.high,
                    m.low,
                    self._net(),
                    status.day_start_pnl,
                    limit,
                )
            )
        ):
            out += self._by_time(*m.entries.by_time())
        else:
            book.mark_many(m.tokens, m.last)
        self._after_marks(m)
        return out

    def _after_marks(self, m: MarkSet) -> None:
        last = m.until
        self.state.book.last_ts = max(self.state.book.last_ts or last, last)
        if last // PRUNE_US != self._pruned:  # order-rate windows: about once a minute
            self._pruned = last // PRUNE_US
            self.risk.rates.prune(last)

    def _by_time(self, times: I64, tokens: I64, prices: F64) -> list[AccountOut]:
        """Every mark in time order, cut at operator commands and trading days, scanned
        exactly."""
        out: list[AccountOut] = []
        peek = getattr(self.inbox, "peek", None)
        while len(times):
            nxt = peek(self.state.control_cursor) if peek is not None else None
            cut = self.setup.session.day_end(int(times[0]))
            cut = cut if nxt is None else min(cut, nxt)
            k = int(np.searchsorted(times, cut, "left"))
            out += self._scan(times[:k], tokens[:k], prices[:k])
            if k == len(times):
                break
            if cut == nxt:
                out += self._commands(nxt)
            at = int(times[k])
            out += self._verdict(self.trading.on_time(at, self._net()), at)  # a new day rolls
            times, tokens, prices = times[k:], tokens[k:], prices[k:]
        return out

    def _scan(self, times: I64, tokens: I64, prices: F64) -> list[AccountOut]:
        """Time-sorted marks, checked exactly at each boundary the vectorised pass flags."""
        book, status = self.state.book, self.trading.status
        out: list[AccountOut] = []
        limit, k = self.trading.risk.max_daily_loss, 0
        if status.loss_breached:
            book.mark_many(tokens, prices)
            return out
        found = loss_candidates(
            book.total.book, times, tokens, prices, self._net(), status.day_start_pnl, limit
        )
        for end in found.tolist():
            book.mark_many(tokens[k:end], prices[k:end])
            k, at = end, int(times[end - 1])
            out += self._verdict(self.trading.on_time(at, self._net()), at)
            if status.loss_breached:
                break
        book.mark_many(tokens[k:], prices[k:])
        return out

    # -- the stream ----------------------------------------------------------------------
    def on_item(self, item: AccountIn) -> list[AccountOut]:
        book = self.state.book
        ts = book.last_ts if isinstance(item, OrderUpdate) else _ts(item)
        if ts is not None:
            book.last_ts = ts if book.last_ts is None else max(book.last_ts, ts)
        out = self._commands(ts) if ts is not None else []
        if isinstance(item, TradingSignal):
            return out + self.decide(item)
        if isinstance(item, MarkSet):
            return out + self._marks(item)
        if isinstance(item, OrderUpdate):
            return out + self._apply(self.venue.update(item))
        if isinstance(item, StrategyFailed):
            self.state.failed.append(f"{item.strategy_id} on {item.instrument_token}")
        if isinstance(item, Clock) and item.grid == "snapshot":
            out.append(snapshot(self.broker, book, item.ts, final=False))
        return [*out, item]

    def on_eof(self) -> list[AccountOut]:
        st = self.state
        if st.book.last_ts is None:
            return []
        out = self._commands(st.book.last_ts, final=True)
        out.append(snapshot(self.broker, st.book, st.book.last_ts, final=True))
        out.append(summary(self.broker, st.book, st.rejections, st.changes, st.failed))
        return out


def _ts(item: Any) -> int | None:
    if isinstance(item, TradingSignal):
        return to_us(item.timestamp)
    return getattr(item, "ts", None)


def account(
    step_id: str,
    up: Stream[tuple[str, list[AccountIn]]],
    make: Callable[[str, AccountState | None], Account],
) -> Stream[tuple[str, list[AccountOut]]]:
    """Keyed by broker: the account's decisions, orders, fills, snapshots and state changes;
    clocks, tick counts and strategy failures pass on for stage health."""
    return stateful_by_key(step_id, up, make, batched=True)
