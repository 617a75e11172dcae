"""The account: ONE step per broker that owns the book. Risk decides against it, the venue
executes, and every outcome (fill, partial fill, rejection, cancellation, broker down)
updates it at once. Strategies state targets; the account orders the difference.

Items arrive in event-time order (operators.ordering): target signals, marks, clocks, tick
counts, strategy failures, (zerodha) Kite's order updates; operator commands from a control
inbox (file: at their event time; Redis: as they arrive). A stop is not the data's end."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bytewax.dataflow import Stream

from operators.account import orders
from operators.account.book import AccountBook
from operators.account.closing import Closing
from operators.account.exits import ExitRule, Exits, ExitState, Key
from operators.account.marks import MarkRuns
from operators.account.portfolio import snapshot, summary
from operators.account.rates import RateState
from operators.account.reconcile import ReconcileState, judge
from operators.account.risk import Request, RiskChecks
from operators.account.trading import TradingControl, TradingStatus, Verdict
from operators.account.venue import Inbox, Venue
from operators.keyed import stateful_by_key
from operators.market import stop_trigger
from schemas.config import BrokerConfig, CostModel
from schemas.enums import Broker, Product, SignalType, StateReason
from schemas.events import (
    FeesSettled,
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
from schemas.kite import KiteAlert, KitePositions, OrderUpdate
from schemas.ticks import (
    Clock,
    ExecTick,
    MarkSet,
    StrategyFailed,
    TickCount,
    from_us,
    to_us,
)

log = logging.getLogger("alpha_panda.control")

AccountIn = (
    TradingSignal
    | MarkSet
    | Clock
    | TickCount
    | ExecTick
    | StrategyFailed
    | OrderUpdate
    | KiteAlert
    | KitePositions
)
AccountOut = Any  # events, snapshots, the summary, and pass-through clocks / counts


@dataclass
class AccountState:
    book: AccountBook
    trading: TradingStatus = field(default_factory=TradingStatus)
    rates: RateState = field(default_factory=RateState)
    venue: Any = None
    control_cursor: Any = None
    rejections: Counter[str] = field(default_factory=Counter)
    changes: list[TradingStateChanged] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    flattens: int = 0  # flatten rounds so far: each round's orders get fresh ids
    flattening: str | None = None  # what a flatten in progress answers (its orders' identity)
    flattened_at: int = -1  # event time of the last flatten round
    squared_off: int = -1  # the last MIS cut-off (µs) whose square-off was done
    square_rounds: int = 0  # its rounds beyond the first (a broker that cancelled late)
    exits: ExitState = field(default_factory=ExitState)
    targets: dict[Key, int] = field(default_factory=dict)  # each strategy's last target
    closes: dict[int, float] = field(default_factory=dict)  # previous session's last prices
    closes_day: Any = None  # the trading day they were taken at the start of
    reconcile: ReconcileState = field(default_factory=ReconcileState)  # zerodha: vs Kite
    held_alerts: list[tuple[StateReason, str]] = field(default_factory=list)  # before any time


@dataclass(frozen=True)
class AccountSetup:
    """What every broker's account needs besides its own config."""

    costs: CostModel
    session: Any  # operators.session.MarketSession
    lot_sizes: Mapping[int, int]
    order_types: Mapping[str, str]
    universe: tuple[int, ...] = ()  # the configured instruments: slots in every book
    products: Mapping[str, Product] = field(default_factory=dict)  # by strategy; MIS if absent
    exits: Mapping[str, ExitRule] = field(default_factory=dict)  # by strategy
    circuits: Mapping[int, float] = field(default_factory=dict)  # % band by instrument
    stops: Mapping[str, float] = field(default_factory=dict)  # SL / SL-M: offset bps by strategy
    tick_sizes: Mapping[int, float | str] = field(default_factory=dict)  # by instrument
    symbols: Mapping[str, int] = field(default_factory=dict)  # tradingsymbol → instrument


class Account(Closing, MarkRuns):
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
        self.exits = Exits(dict(setup.exits), st.exits)
        self.circuit_pct = cfg.risk.circuit_pct
        self._products = {sid: Product(p) for sid, p in setup.products.items()}
        self._pruned = 0
        use_bands = getattr(self.venue, "use_bands", None)  # a simulated venue clamps fills
        if use_bands is not None:
            use_bands(self.band)

    def band(self, token: int) -> tuple[float, float] | None:
        """The instrument's circuit band today: its % around the previous session's last
        price (none before a previous session is known)."""
        pct = self.setup.circuits.get(token, self.circuit_pct)
        ref = self.state.closes.get(token)
        if pct is None or ref is None:
            return None
        return ref * (1 - pct / 100), ref * (1 + pct / 100)

    def _new_day(self, ts: int) -> None:
        """At the first item of a trading day: yesterday's last prices become the closes."""
        day = self.setup.session.trading_day(ts)
        st = self.state
        if st.closes_day is None or day > st.closes_day:
            if st.closes_day is not None:
                st.closes = st.book.total.book.last_prices()
            st.closes_day = day

    # -- time, commands and the trading state -------------------------------------------
    def _net(self) -> float:
        return self.state.book.total.book.net_pnl()

    def _verdict(self, v: Verdict, ts: int, why: str | None = None) -> list[AccountOut]:
        """Apply a state verdict. ``why`` names what asked (a command's origin); a loss
        breach is named by its trading day, so a replay after a restart gives the same
        flatten orders (the same Kite tags) whenever it happens to be noticed."""
        if not v.changes and v.flatten is None:
            return []
        st = self.state
        st.changes.extend(v.changes)
        out: list[AccountOut] = list(v.changes)
        if any(c.state == "ACTIVE" for c in v.changes):
            st.flattening = None
        if v.flatten is not None:
            st.flattening = why or f"{v.flatten.value}:{st.trading.day}"
            out += self.flatten(v.flatten, ts)
        return out

    def _commands(self, ts: int, final: bool = False) -> list[AccountOut]:
        if self.inbox is None:
            return []
        st = self.state
        due, st.control_cursor = self.inbox.due(ts, st.control_cursor)
        out: list[AccountOut] = []
        for cmd in due:  # at its own time (file), or at the event time it arrived (live)
            at = min(ts, to_us(cmd.ts))
            verdict = self.trading.command(str(cmd.command), at, cmd.origin)
            out += self._verdict(verdict, at, cmd.origin)
        nxt = self._next_command() if final else None
        if nxt is not None:  # the stream ended (or stopped) before event time reached it
            when = from_us(nxt).isoformat()
            log.warning("control: %s: not applied from %s on (reason=CONTROL_AFTER_DATA)",
                        self.broker.value, when)  # fmt: skip
        return out

    # -- orders --------------------------------------------------------------------------
    def _apply(self, events: list[OrderEvent]) -> list[AccountOut]:
        book = self.state.book
        for e in events:
            if isinstance(e, OrderPlaced) and e.order_id not in book.open:
                book.opened(e)
            elif isinstance(e, OrderFilled):
                book.fill(e)
                sid, token = e.strategy_id, e.instrument_token
                lot = book.strategies[sid].book.lots[token]
                self.exits.on_fill(sid, token, lot.quantity, lot.average_price, e.fill_price)
            elif isinstance(e, FeesSettled):
                book.settle(e)
            elif isinstance(e, OrderFailed):
                book.release(e)
                key = (e.strategy_id, e.instrument_token)
                if not book.closing(key[1], key[0], book.strategy_position(*key)):
                    self.exits.rearm(key)  # no close left out for it: judge it again
        return list(events)

    def _send(
        self, v: ValidatedSignal, kind: str | None = None, square_off: bool = False
    ) -> list[AccountOut]:
        """Send ``v``: a strategy's order (``kind`` None: its configured type) or, with
        ``kind``, the account's own (``square_off``: the broker's MIS square-off)."""
        own = kind is not None
        kind = kind or self.setup.order_types.get(v.signal.strategy_id, "MARKET")
        if self.venue.knows(v):  # its order exists (and counts in the book): never a second
            return self._apply(self.venue.send(v, kind, own, square_off))
        self.risk.rates.record(to_us(v.timestamp))
        sent = self.venue.send(v, kind, own, square_off)
        if not sent and self.venue.knows(v):  # placing in the background: open meanwhile
            self.state.book.opened(orders.placed(v, None, kind, v.timestamp))
        return [v, *self._apply(sent), *self.venue.drain_latency()]

    def _product(self, strategy_id: str) -> Product:
        return self._products.get(strategy_id, Product.MIS)

    def _request(self, s: TradingSignal, side: SignalType, qty: int) -> dict[str, Any]:
        return dict(
            order_id=orders.order_id(s.signal_id),
            correlation_id=s.correlation_id,
            causation_id=s.signal_id,
            broker=self.broker,
            timestamp=s.timestamp,
            signal=s,
            side=side,
            quantity=qty,
            product=self._product(s.strategy_id),
        )

    def decide(self, s: TradingSignal) -> list[AccountOut]:
        """Order the difference between the strategy's target and what it holds."""
        st, ts = self.state, to_us(s.timestamp)
        out = self._judge(ts)
        token, key = s.instrument_token, (s.strategy_id, s.instrument_token)
        st.targets[key] = s.target_quantity
        if self.exits.holds_back(key, s.target_quantity):
            return out  # exited: not again until the strategy changes its mind
        held = st.book.strategy_position(s.strategy_id, token) + st.book.pending(
            token, s.strategy_id
        )
        diff, product = s.target_quantity - held, self._product(s.strategy_id)
        if product is Product.CNC and diff < 0:
            cancelled, diff = self._cnc_sell(key, s.target_quantity, ts)
            out += cancelled
        if diff == 0:
            return out
        side = SignalType.BUY if diff > 0 else SignalType.SELL
        kind = self.setup.order_types.get(s.strategy_id, "MARKET")
        req = Request(s, side, abs(diff), kind, ts, product, self.band(token))
        found = self.risk.check(req, st.book, self.trading.state)
        fields = self._request(s, side, abs(diff))
        offset = self.setup.stops.get(s.strategy_id)
        if offset is not None:
            tick = self.setup.tick_sizes.get(token, 0.05)
            fields["trigger_price"] = stop_trigger(s.price, side is SignalType.BUY, offset, tick)
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

    def _cnc_sell(self, key: tuple[str, int], target: int, ts: int) -> tuple[list[Any], int]:
        """A CNC target below what is held and being bought: the strategy's open buys are
        cancelled, then it goes to the target from the shares held (not being sold), never
        below flat; a buy back up to the target waits while a cancel is under way (a live
        broker's). A target below flat with nothing held goes on: risk refuses the short
        (CNC_SHORT_NOT_ALLOWED)."""
        book, (sid, token) = self.state.book, key
        why = "CANCELLED: the CNC target fell below what is held and being bought"
        out = self._cancel_open(
            ts, why, lambda o: (o.strategy_id, o.token) == key and o.remaining > 0
        )
        selling = book.pending_sells(token, sid)
        sellable = book.strategy_position(sid, token) + selling
        if target < 0 and sellable <= 0:
            return out, target - sellable
        diff = max(target, 0) - sellable
        buying = book.pending(token, sid) - selling > 0  # cancels not yet confirmed
        return out, 0 if diff > 0 and buying else diff

    # -- the stream ----------------------------------------------------------------------
    def on_item(self, item: AccountIn) -> list[AccountOut]:
        collected = self.venue.collect()
        out = self._apply(collected) if collected else []
        out += self._held(item) + self._route(item)
        alerts = self.venue.drain_alerts()
        if isinstance(item, KiteAlert):
            alerts.append((StateReason.TOKEN_INVALID, item.detail))
        if isinstance(item, KitePositions):
            st, universe = self.state, self.setup.universe
            out += self._apply(self.venue.reconciled())
            why = judge(st.reconcile, item, st.book.position, universe, self.setup.symbols)
            alerts += [(StateReason.RECONCILE_MISMATCH, why)] if why else []
        ts, st = self.state.book.last_ts, self.state
        if ts is None:  # no event time yet to stamp a halt with: held until there is
            st.held_alerts += [a for a in alerts if a not in st.held_alerts]
            return out
        alerts, st.held_alerts = st.held_alerts + alerts, []
        for reason, detail in alerts:
            out += self._verdict(self.trading.lock(reason, detail, ts), ts)
        return out

    def _held(self, item: AccountIn) -> list[AccountOut]:
        """Halts found before the first event time: applied at the first item with one."""
        if not self.state.held_alerts or self.state.book.last_ts is not None:
            return []
        ts = _ts(item)
        if ts is None:
            return []
        if isinstance(item, (OrderUpdate, KiteAlert, KitePositions)):
            return []
        self.state.book.last_ts = ts
        alerts, self.state.held_alerts = self.state.held_alerts, []
        return [o for r, d in alerts for o in self._verdict(self.trading.lock(r, d, ts), ts)]

    def _route(self, item: AccountIn) -> list[AccountOut]:
        book = self.state.book
        outside = isinstance(item, (OrderUpdate, KiteAlert, KitePositions))  # no event time
        ts, prev = book.last_ts if outside else _ts(item), book.last_ts
        out = self.day_over(prev, ts) if ts is not None and prev is not None else []
        if ts is not None:
            book.last_ts = ts if book.last_ts is None else max(book.last_ts, ts)
        if ts is not None and (self.setup.circuits or self.circuit_pct is not None):
            self._new_day(ts)
        out += self._commands(ts) if ts is not None else []
        cut = self.square_off_due(ts) if ts is not None and not isinstance(item, MarkSet) else None
        if cut is not None and (cut > self.state.squared_off or not self.risk.rates.breach(ts)):
            out += self.square_off(cut, ts)  # again within the broker's order caps
        if isinstance(item, TradingSignal):  # on to the ledger with the account's own signals
            return [*out, item, *self.decide(item)]
        if isinstance(item, MarkSet):
            return out + self._marks(item)
        if isinstance(item, ExecTick):  # a fill's fees may breach the loss limit: judged now
            out += self._apply(self.venue.on_exec(item))
            return out + self._judge(item.ts)
        if isinstance(item, OrderUpdate):
            return out + self._apply(self.venue.update(item))
        if isinstance(item, (KiteAlert, KitePositions)):
            return out
        if isinstance(item, StrategyFailed):
            self.state.failed.append(f"{item.strategy_id} on {item.instrument_token}")
        if isinstance(item, Clock) and item.grid == "snapshot":
            out.append(snapshot(self.broker, book, item.ts, final=False))
        return [*out, item]

    def on_stop(self) -> list[AccountOut]:
        """A stop: orders already sent are booked (Kite's placements under way awaited), then
        the book for the report; nothing the data's end does (a resume goes on)."""
        st = self.state
        if st.book.last_ts is None:
            return []
        out = self._apply(self.venue.collect(final=True))
        out.append(snapshot(self.broker, st.book, st.book.last_ts, final=True))
        return [*out, summary(self.broker, st.book, st.rejections, st.changes, st.failed)]

    def on_eof(self) -> list[AccountOut]:
        st = self.state
        if st.book.last_ts is None:
            return []
        out = self._apply(self.venue.collect(final=True))
        out += self._commands(st.book.last_ts, final=True)
        out += self._apply(self.venue.expire(st.book.last_ts))
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
    stopping: Callable[[], bool] | None = None,
) -> Stream[tuple[str, list[AccountOut]]]:
    """Keyed by broker: the account's decisions, orders, fills, snapshots and state changes;
    clocks, tick counts and strategy failures pass on for stage health."""
    return stateful_by_key(step_id, up, make, batched=True, stopping=stopping)
