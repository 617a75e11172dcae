"""What the account needs of a venue (paper: operators.account.paper; Kite:
operators.account.zerodha) and of an operator command inbox (connectors.control); what the
Kite venue needs of its placer and placement worker (connectors.kite)."""

from __future__ import annotations

from typing import Any, Protocol

from schemas.enums import StateReason
from schemas.events import OrderEvent, ValidatedSignal
from schemas.kite import OrderUpdate, PlacementOutcome
from schemas.redis_keys import OrderIntent
from schemas.ticks import F64, I64, ExecTick, OrderLatency


class Venue(Protocol):
    """Where validated orders go: paper (operators.account.paper) or Kite (.zerodha)."""

    def send(
        self, v: ValidatedSignal, order_type: str, on_mark: bool = False, square_off: bool = False
    ) -> list[OrderEvent]:
        """Place ``v``; ``on_mark``: the account's own order (a flatten), no ExecTick follows;
        ``square_off``: the broker's MIS square-off (its charge applies)."""
        ...

    def on_exec(self, e: ExecTick) -> list[OrderEvent]:
        """The tick that executes the orders of ``e.signals`` (simulated venues)."""
        ...

    def waiting(self, until: int) -> bool:
        """Some order may fill or end at a mark at or before event time ``until`` (a run's
        last): only then are the run's marks scanned one by one (simulated venues)."""
        ...

    def next_fill(self, times: I64, tokens: I64, prices: F64) -> int | None:
        """The earliest of these time-sorted marks that fills or ends a waiting order."""
        ...

    def on_marks(self, times: I64, tokens: I64, prices: F64) -> list[OrderEvent]:
        """What these time-sorted marks fill or end of the waiting orders."""
        ...

    def cancel(self, order_id: str, ts: int, why: str) -> list[OrderEvent]:
        """Cancel an open order at event time ``ts`` (what the venue can end at once)."""
        ...

    def expire(self, ts: int) -> list[OrderEvent]:
        """The end of the stream: what still rests and will never execute."""
        ...

    simulated: bool  # the venue is the market (paper): it squares off what the day left

    def settle(self, close: int) -> list[OrderEvent]:
        """Simulated venues: the square-offs of a session that closed at ``close`` that no
        tick filled, filled at that close at their last price."""
        ...

    def knows(self, v: ValidatedSignal) -> bool:
        """The venue already has an order for ``v``'s signal (a replay after a resume)."""
        ...

    def update(self, u: OrderUpdate) -> list[OrderEvent]: ...

    def venue_state(self) -> Any: ...

    def drain_latency(self) -> list[OrderLatency]: ...

    def drain_alerts(self) -> list[tuple[StateReason, str]]:
        """Why the account must halt (Kite refused our session, a placement backlog), since
        last asked."""
        ...

    def collect(self, final: bool = False) -> list[OrderEvent]:
        """Outcomes of orders placed asynchronously, since last asked (``final``: the end of
        the stream, wait a while for those under way)."""
        ...

    def reconciled(self) -> list[OrderEvent]:
        """A reconciliation with the broker passed (orders of unknown fate it settles)."""
        ...


class Inbox(Protocol):
    """Operator commands (connectors.control FileControl, RedisControl)."""

    def due(self, event_us: int, cursor: Any) -> tuple[list[Any], Any]:
        """Commands to apply now (``event_us``: the account's event time, µs since epoch UTC)
        and the new cursor (opaque, picklable; None at first)."""
        ...


class Placer(Protocol):
    """What this venue needs of connectors.kite.orders.KiteOrders (tests may pass another)."""

    def submit(self, intent: OrderIntent, order_type: str) -> Any: ...

    def recall(self, tag: str) -> OrderIntent | None: ...

    def today(self) -> list[dict[str, Any]]: ...

    def cancel(self, kite_order_id: str) -> None: ...

    def contract_note(self, order: dict[str, Any]) -> dict[str, Any]: ...


class Worker(Protocol):
    """connectors.kite.placement.PlacementWorker: placing off the dataflow thread."""

    def offer(self, intent: OrderIntent, order_type: str) -> bool: ...

    def offer_cancel(self, kite_order_id: str) -> bool: ...

    def offer_note(self, tag: str, order: dict[str, Any]) -> bool: ...

    def outcomes(self) -> list[PlacementOutcome]: ...

    def finish(self, timeout_s: float) -> None: ...
