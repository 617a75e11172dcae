"""Zerodha venue: validated orders → Kite orders (never twice, see connectors.kite.orders);
Kite's order updates → fills (each increase of the filled quantity) and order ends.

An order's tag derives from the signal id, so an update (or a replayed signal after a
resume) finds its order even when the account's state was rolled back: the intent stored in
Redis says which validated order the tag belongs to.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from operators.account import orders
from operators.account.venue import Placer, Worker
from operators.charges import Charges, charges
from schemas.config import CostModel
from schemas.enums import OrderStatus, Product, SignalType, StateReason
from schemas.events import OrderEvent, ValidatedSignal
from schemas.kite import (
    TERMINAL,
    BrokerLocked,
    KiteUnavailable,
    OrderRejected,
    OrderUpdate,
    PlacementOutcome,
    order_tag,
)
from schemas.redis_keys import OrderIntent
from schemas.ticks import F64, I64, ExecTick, OrderLatency, to_us

log = logging.getLogger("alpha_panda.zerodha")
FINISH_S = 30.0  # at the end of the stream: how long placements under way are waited for


@dataclass
class Tracked:
    validated: ValidatedSignal
    kite_order_id: str | None
    announced: bool  # OrderPlaced emitted
    filled: int = 0  # quantity filled so far
    value: float = 0.0  # Σ quantity × price of those fills
    charged: Charges = field(default_factory=Charges)  # so far: those of its whole fill
    done: bool = False  # ended: nothing more to emit
    cancel: str | None = None  # why the account wants it cancelled (sent once Kite has it)
    cancel_sent: bool = False
    unknown: int | None = None  # its fate unknown: reconciliations since (None: known)
    fees: float = 0.0  # Σ fees its fills were charged (the cost model)
    ended: datetime | None = None  # when it completed (its contract note's event time)
    noted: bool = False  # its contract note came (or could not be had)


@dataclass
class ZerodhaState:
    orders: dict[str, Tracked] = field(default_factory=dict)  # by tag


class ZerodhaVenue:
    """Pure logic around a ``Placer``: which events each order and update cause."""

    def __init__(
        self,
        costs: CostModel,
        placer: Placer,
        order_types: Mapping[str, str],
        state: ZerodhaState | None = None,
        worker: Worker | None = None,
        limit_timeout_us: int = 0,
    ) -> None:
        self.limit_timeout_us = limit_timeout_us  # 0: a LIMIT stays open at Kite
        self.resumed = False  # snapshot orders not yet sent have been offered again
        self.costs, self.placer, self.order_types = costs, placer, order_types
        self.state = state or ZerodhaState()
        self.worker = worker  # None: place in the calling thread (tests)
        self.latencies: list[OrderLatency] = []  # monitoring only: never in the state
        self.alerts: list[tuple[StateReason, str]] = []  # the account halts for these

    def drain_alerts(self) -> list[tuple[StateReason, str]]:
        out, self.alerts = self.alerts, []
        return out

    def drain_latency(self) -> list[OrderLatency]:
        out, self.latencies = self.latencies, []
        return out

    def venue_state(self) -> ZerodhaState:
        return self.state

    def knows(self, v: ValidatedSignal) -> bool:
        return order_tag(v.signal.signal_id) in self.state.orders

    def on_exec(self, e: ExecTick) -> list[OrderEvent]:
        return []  # Kite executes its own orders

    def _timed(self) -> list[Tracked]:
        """Open LIMIT orders a timeout will cancel (Kite fills its own orders otherwise)."""
        if not self.limit_timeout_us:
            return []
        return [
            t
            for t in self.state.orders.values()
            if not t.done and t.cancel is None and self._kind(t) == "LIMIT"
        ]

    def waiting(self, until: int) -> bool:
        return any(self._due(t) <= until for t in self._timed())

    def _due(self, t: Tracked) -> int:
        """When an open LIMIT's timeout passes."""
        return to_us(t.validated.timestamp) + self.limit_timeout_us

    def next_fill(self, times: I64, tokens: I64, prices: F64) -> int | None:
        """The first mark at which an open LIMIT's timeout has passed."""
        due = [self._due(t) for t in self._timed()]
        k = int(np.searchsorted(times, min(due), "left")) if due else len(times)
        return int(times[k]) if k < len(times) else None

    def on_marks(self, times: I64, tokens: I64, prices: F64) -> list[OrderEvent]:
        """LIMIT orders whose timeout passed by the last of these marks: cancelled at Kite
        (Kite's update ends them)."""
        if not len(times):
            return []
        for t in self._timed():
            if to_us(t.validated.timestamp) + self.limit_timeout_us <= int(times[-1]):
                self._cancel(t, "CANCELLED: limit_timeout_s passed")
        return []

    def cancel(self, order_id: str, ts: int, why: str) -> list[OrderEvent]:
        """Ask Kite to cancel the order (once it has it); Kite's update ends it."""
        for t in self.state.orders.values():
            if t.validated.order_id == order_id and not t.done:
                self._cancel(t, why)
        return []

    def _cancel(self, t: Tracked, why: str) -> None:
        t.cancel = t.cancel or why
        if t.kite_order_id is None or t.cancel_sent:
            return  # sent when Kite's order id comes
        t.cancel_sent = True
        if self.worker is not None:
            if not self.worker.offer_cancel(t.kite_order_id):
                t.cancel_sent = False  # the queue is full: tried again at the next chance
            return
        self.placer.cancel(t.kite_order_id)

    def _kind(self, t: Tracked) -> str:
        return self.order_types.get(t.validated.signal.strategy_id, "MARKET")

    simulated = False  # Kite squares off MIS itself; reconciliation sees what it did

    def expire(self, ts: int) -> list[OrderEvent]:
        return []  # orders still open at Kite stay tracked (updates, reconciliation)

    def settle(self, close: int) -> list[OrderEvent]:
        return []

    def send(
        self, v: ValidatedSignal, order_type: str, on_mark: bool = False, square_off: bool = False
    ) -> list[OrderEvent]:
        tag = order_tag(v.signal.signal_id)
        known = self.state.orders.get(tag)
        if known is not None:  # seen before (a replay after a resume): announce at most once,
            if known.announced or known.done or known.kite_order_id is None:  # never unsent
                return []
            return [self._placed(known, order_type)]
        t = self.state.orders[tag] = Tracked(v, None, announced=False)
        if self.worker is not None:
            return self._queue(t, OrderIntent(tag=tag, validated=v), order_type)
        try:
            submitted = self.placer.submit(OrderIntent(tag=tag, validated=v), order_type)
        except OrderRejected as e:
            return self._ended(t, PlacementOutcome(tag, "REJECTED", message=e.message))
        except BrokerLocked as e:
            return self._ended(t, PlacementOutcome(tag, "LOCKED", message=e.message))
        except KiteUnavailable as e:
            return self._ended(t, PlacementOutcome(tag, "UNAVAILABLE", message=str(e)))
        sent = PlacementOutcome(tag, "PLACED", submitted.order_id, sent_us=time.time_ns() // 1000)
        return self._ended(t, sent)

    def _queue(self, t: Tracked, intent: OrderIntent, order_type: str) -> list[OrderEvent]:
        """Hand the order to the placement thread; its outcome comes back by ``collect``
        (meanwhile the account counts it as open). A full queue: not sent, and the
        account halts."""
        assert self.worker is not None
        if self.worker.offer(intent, order_type):
            return []
        t.done = True
        why = "PLACEMENT_QUEUE_FULL: the Kite placement queue is full (Kite slow or down)"
        self.alerts.append((StateReason.PLACEMENT_BACKLOG, why))
        v = t.validated
        return [orders.failed(v, None, OrderStatus.FAILED, v.quantity, why, v.timestamp)]

    def collect(self, final: bool = False) -> list[OrderEvent]:
        """Outcomes of the placements the thread finished since last asked (``final``: the
        stream ends; wait a while for those still under way)."""
        out = self._adopt_today()
        if self.worker is None:
            return out + self._notes_now()
        if not self.resumed:
            self.resumed = True
            out += self._resend_unsent()
        if final:
            self.worker.finish(FINISH_S)
        for o in self.worker.outcomes():
            known = self.state.orders.get(o.tag)
            if known is None:
                log.warning("placement outcome for unknown order %s (%s)", o.tag, o.kind)
                continue
            out += self._noted(known, o) if o.kind.startswith("NOTE") else self._ended(known, o)
        for t in self.state.orders.values():  # cancels that could not go out before
            if t.cancel is not None and not t.cancel_sent and not t.done:
                self._cancel(t, t.cancel)
        return out

    def _resend_unsent(self) -> list[OrderEvent]:
        """Orders a recovery snapshot holds that never reached the placement thread: sent
        now (the intent in Redis and Kite's order list keep it to one order); contract notes
        asked for and not yet come: asked again."""
        out: list[OrderEvent] = []
        for tag, t in list(self.state.orders.items()):
            if not t.done and t.kite_order_id is None and t.unknown is None:
                out += self._queue(t, OrderIntent(tag=tag, validated=t.validated), self._kind(t))
            elif t.done and t.filled and not t.noted and self.worker is not None:
                self.worker.offer_note(tag, self._note_order(t))  # asked before the restart
        return out

    def reconciled(self) -> list[OrderEvent]:
        """A reconciliation passed: an order whose fate is unknown and that Kite has not
        listed over two of them is released (it never reached Kite)."""
        out: list[OrderEvent] = []
        for t in self.state.orders.values():
            if t.done or t.unknown is None or t.kite_order_id is not None:
                continue
            t.unknown += 1
            if t.unknown >= 2:
                t.done, v = True, t.validated
                why = "KITE_UNAVAILABLE: its fate unknown, and Kite never listed it"
                left = max(v.quantity - t.filled, 0)
                out.append(orders.failed(v, None, OrderStatus.FAILED, left, why, v.timestamp))
        return out

    def _adopt_today(self) -> list[OrderEvent]:
        """Once, before the account's first decision: our orders Kite already lists today
        (placed before a restart), booked as Kite shows them, so that replayed signals
        are decided against what is really at Kite."""
        out: list[OrderEvent] = []
        for row in self.placer.today():
            try:
                u = OrderUpdate.from_kite(row)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("Kite order %s: unreadable (%s)", row.get("order_id"), e)
                continue
            out += self.update(u)
        return out

    def _ended(self, t: Tracked, o: PlacementOutcome) -> list[OrderEvent]:
        """What a placement's outcome means for the order (Kite's updates may have told
        some of it already)."""
        v = t.validated
        left = max(v.quantity - t.filled, 0)
        if o.kind == "PLACED":
            t.kite_order_id = t.kite_order_id or o.order_id
            if t.cancel is not None:  # cancelled before Kite had it: now
                self._cancel(t, t.cancel)
            sig_us = to_us(v.signal.timestamp)
            self.latencies.append(OrderLatency(sig_us, (o.sent_us - sig_us) / 1000.0))
            if t.announced or t.done:
                return []
            return [self._placed(t, self._kind(t))]
        if t.done or t.kite_order_id is not None:  # Kite has told us of the order itself
            if o.kind == "LOCKED":
                self.alerts.append((StateReason.TOKEN_INVALID, o.message))
            return []
        if o.kind == "REJECTED":
            t.done = True
            return [orders.failed(v, None, OrderStatus.REJECTED, left, o.message, v.timestamp)]
        if o.kind == "LOCKED":  # nothing was placed; the account halts (TOKEN_INVALID)
            t.done = True
            self.alerts.append((StateReason.TOKEN_INVALID, o.message))
            why = f"TOKEN_INVALID: {o.message}"
            return [orders.failed(v, None, OrderStatus.FAILED, left, why, v.timestamp)]
        # Unknown: it stays open (its exposure counted) until Kite lists it (an update
        # adopts it) or two reconciliations pass without it (``reconciled``).
        log.warning("order %s held as unknown: %s", o.tag, o.message)
        t.unknown = 0
        return []

    def _placed(self, t: Tracked, order_type: str) -> OrderEvent:
        t.announced = True
        return orders.placed(t.validated, t.kite_order_id, order_type, t.validated.timestamp)

    def update(self, u: OrderUpdate) -> list[OrderEvent]:
        t = self.state.orders.get(u.tag)
        if t is None:
            try:  # placed before a restart rolled state back
                intent = self.placer.recall(u.tag)
            except Exception as e:  # Redis away: the poll brings the update again
                log.warning("Kite order %s: intent unreadable (%s)", u.order_id, type(e).__name__)
                return []
            if intent is None:
                log.warning("Kite order %s: our tag %s, no intent", u.order_id, u.tag)
                return []
            t = self.state.orders[u.tag] = Tracked(intent.validated, u.order_id, announced=False)
        if t.done:
            return []
        t.kite_order_id = u.order_id
        if t.cancel is not None and not t.cancel_sent and u.status not in TERMINAL:
            self._cancel(t, t.cancel)  # asked before Kite's id was known
        out: list[OrderEvent] = [] if t.announced else [self._placed(t, self._kind(t))]
        if u.filled_quantity > t.filled and u.average_price > 0:
            out.append(self._fill(t, u))
        if u.status in TERMINAL:
            t.done, t.ended = True, u.timestamp
            if t.filled and self.worker is not None:  # a cancel after a part fill too
                self.worker.offer_note(u.tag, self._note_order(t))
            if u.status != "COMPLETE":
                v, reason = t.validated, u.status_message or u.status
                left = max(v.quantity - t.filled, 0)
                out.append(
                    orders.failed(v, u.order_id, OrderStatus(u.status), left, reason, u.timestamp)
                )
        return out

    def _fill(self, t: Tracked, u: OrderUpdate) -> OrderEvent:
        """The increase since the last update, at the price that makes Kite's average."""
        qty = u.filled_quantity - t.filled
        total = u.average_price * u.filled_quantity
        price = round((total - t.value) / qty, 2) if t.filled else u.average_price
        if not (math.isfinite(price) and price > 0):  # Kite's rounded averages: keep it sane
            price = u.average_price
        t.filled, t.value = u.filled_quantity, total
        v = t.validated
        whole = charges(self.costs, v.side, t.filled, u.average_price, v.product)  # cap per order
        part = whole.minus(t.charged)
        fee = max(round(whole.total - t.charged.total, 2), 0.0)  # the paise add up per order
        t.charged, t.fees = whole, t.fees + fee
        return orders.filled(v, u.order_id, qty, price, part, t.filled, u.timestamp, fee=fee)

    def _note_order(self, t: Tracked) -> dict[str, Any]:
        """The completed order as Kite's contract note asks for it."""
        v = t.validated
        return dict(
            order_id=t.kite_order_id,
            instrument_token=v.signal.instrument_token,
            transaction_type=SignalType(v.side).value,
            product=Product(v.product).value,
            order_type=self._kind(t),
            quantity=t.filled,
            average_price=round(t.value / t.filled, 4),
        )

    def _notes_now(self) -> list[OrderEvent]:
        """Without a placement thread (tests): ask Kite for the notes in this thread."""
        out: list[OrderEvent] = []
        for tag, t in self.state.orders.items():
            if t.done and t.filled and t.ended is not None and not t.noted:
                try:
                    note = PlacementOutcome(tag, "NOTE", charges=self.placer.contract_note(
                        self._note_order(t)))  # fmt: skip
                except Exception as e:  # the cost model's fees stand
                    note = PlacementOutcome(tag, "NOTE_FAILED", message=type(e).__name__)
                out += self._noted(t, note)
        return out

    def _noted(self, t: Tracked, o: PlacementOutcome) -> list[OrderEvent]:
        """Kite's contract note for a completed order: its fees become Kite's."""
        if t.noted:
            return []  # one note per order
        t.noted = True
        if o.kind != "NOTE" or o.charges is None or t.ended is None or t.kite_order_id is None:
            return []  # no note: the cost model's fees stand
        try:
            e = orders.fees_settled(
                t.validated, t.kite_order_id, t.filled, t.fees, t.value, o.charges, t.ended
            )
        except (ValueError, KeyError, TypeError, ArithmeticError) as err:
            log.warning("contract note for %s unreadable: %s", t.kite_order_id, err)
            return []
        return [e]
