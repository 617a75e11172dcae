"""Kite orders placed off the dataflow thread: one worker thread per zerodha account, a
bounded queue of intents in, outcomes out. Retries, backoff and a Kite outage stall only
this thread; ticks, paper and health go on. The account collects the outcomes on its next
item (operators.account.zerodha)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from schemas.kite import BrokerLocked, KiteUnavailable, OrderRejected, PlacementOutcome
from schemas.redis_keys import OrderIntent

log = logging.getLogger("alpha_panda.kite.placement")


class PlacementWorker:
    """Feeds ``placer`` (connectors.kite.orders.KiteOrders) from a queue of at most
    ``capacity`` intents; every intent gets exactly one outcome."""

    def __init__(self, placer: Any, capacity: int) -> None:
        self.placer = placer
        self.inbox: queue.Queue[tuple[str, Any, str]] = queue.Queue(maxsize=capacity)
        self.outbox: queue.SimpleQueue[PlacementOutcome] = queue.SimpleQueue()
        self.pending = 0  # requests queued or under way (only this object changes it)
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="kite-placer", daemon=True)
        self.thread.start()
        # Contract notes: their own thread and unbounded queue, so a burst of completions or
        # a slow /charges endpoint never delays an order nor fills the placement queue.
        self.notes: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.notes_pending = 0
        threading.Thread(target=self._run_notes, name="kite-notes", daemon=True).start()

    def offer(self, intent: OrderIntent, order_type: str) -> bool:
        """Queue ``intent``; False when the queue is full (nothing queued)."""
        return self._put("place", intent, order_type)

    def _put(self, kind: str, what: Any, arg: str) -> bool:
        with self.lock:
            try:
                self.inbox.put_nowait((kind, what, arg))
            except queue.Full:
                return False
            self.pending += 1
            return True

    def offer_cancel(self, kite_order_id: str) -> bool:
        """Queue a cancellation of Kite's order; False when the queue is full."""
        return self._put("cancel", None, kite_order_id)

    def offer_note(self, tag: str, order: dict[str, Any]) -> bool:
        """Queue a request for Kite's contract note of the ended ``order`` (the fields of
        kiteconnect's get_virtual_contract_note, ``instrument_token`` for the symbol)."""
        with self.lock:
            self.notes_pending += 1
        self.notes.put((tag, order))
        return True

    def _run_notes(self) -> None:
        while True:
            tag, order = self.notes.get()
            try:
                self.outbox.put(self._note(tag, order))
            finally:
                with self.lock:
                    self.notes_pending -= 1

    def backlog(self) -> int:
        with self.lock:
            return self.pending

    def finish(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every queued order has its outcome."""
        deadline = time.monotonic() + timeout_s
        while (self.backlog() or self.notes_pending) and time.monotonic() < deadline:
            time.sleep(0.02)

    def outcomes(self) -> list[PlacementOutcome]:
        out = []
        while True:
            try:
                out.append(self.outbox.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        while True:
            kind, what, arg = self.inbox.get()
            try:
                if kind == "cancel":
                    self.placer.cancel(arg)  # its end comes as Kite's order update
                else:
                    self.outbox.put(self._place(what, arg))
            except Exception:  # never let the worker die
                log.exception("Kite request failed unexpectedly")
            finally:
                with self.lock:
                    self.pending -= 1

    def _place(self, intent: OrderIntent, order_type: str) -> PlacementOutcome:
        tag = intent.tag
        try:
            got = self.placer.submit(intent, order_type)
        except OrderRejected as e:
            return PlacementOutcome(tag, "REJECTED", message=e.message)
        except BrokerLocked as e:
            return PlacementOutcome(tag, "LOCKED", message=e.message)
        except KiteUnavailable as e:
            return PlacementOutcome(tag, "UNAVAILABLE", message=str(e))
        except Exception as e:  # never let the worker die: the order's fate is unknown
            log.exception("placing order %s failed unexpectedly", tag)
            return PlacementOutcome(tag, "UNAVAILABLE", message=f"{type(e).__name__}")
        return PlacementOutcome(tag, "PLACED", got.order_id, sent_us=time.time_ns() // 1000)

    def _note(self, tag: str, order: dict[str, Any]) -> PlacementOutcome:
        try:
            note = self.placer.contract_note(order)
        except Exception as e:  # the cost model's fees stand
            log.warning("contract note for %s: %s", order.get("order_id"), type(e).__name__)
            return PlacementOutcome(tag, "NOTE_FAILED", order.get("order_id"), type(e).__name__)
        return PlacementOutcome(tag, "NOTE", order.get("order_id"), charges=note)
