"""Placing Kite orders so that no signal ever leads to two of them.

1. The intent is recorded first: Redis ``SET intent:{tag} NX EX ttl`` (schemas.redis_keys).
   If it was already there (a resume, a replayed signal), Kite's orders are listed and an
   order with our tag is adopted instead of placing a new one.
2. A timeout, a lost connection or a 5xx is ambiguous: the order may exist, and Kite may
   list it only after a while. The day's orders are polled and matched by tag for
   ``kite.ambiguous_window_s``; a match is adopted. No match: the order's fate is unknown
   and it is never placed again (``KiteUnavailable``: its exposure is released, and should
   Kite report it after all, its fills are booked).
3. 429: wait (exponential backoff) and try again; every try passes the client-side rate
   limiter (``kite.max_orders_per_s``).
4. Any other Kite error (4xx: input, margins, order rules) → ``OrderRejected`` with Kite's
   message. Still ambiguous after ``kite.attempts`` tries → ``KiteUnavailable``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from connectors.kite.intents import IntentStore, check_persistent
from schemas.config import AppConfig, Instrument, KiteConfig, SourceUnavailable
from schemas.enums import Product
from schemas.kite import IST, BrokerLocked, KiteUnavailable, OrderRejected, is_our_tag
from schemas.redis_keys import LiveKeys, OrderIntent

log = logging.getLogger("alpha_panda.kite.orders")


@dataclass(frozen=True)
class Submitted:
    order_id: str
    adopted: bool  # True: the order already existed at Kite (no new placement)


class RateLimiter:
    """At most ``per_s`` calls per second, spaced evenly (monotonic clock)."""

    def __init__(self, per_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.gap = 1.0 / per_s
        self.next = 0.0
        self.sleep = sleep
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            if self.next > now:
                self.sleep(self.next - now)
                now = self.next
            self.next = now + self.gap


AMBIGUOUS = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    kex.GeneralException,  # 5xx
    kex.DataException,  # a reply that is not Kite's JSON
    kex.NetworkException,  # the gateway could not reach the order system (429 aside)
)


class KiteOrders:
    """Idempotent placement through the real ``kiteconnect`` client (see module doc)."""

    def __init__(
        self,
        client: KiteConnect,
        intents: IntentStore,
        cfg: KiteConfig,
        instruments: dict[int, Instrument],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client, self.intents, self.cfg = client, intents, cfg
        self.instruments = instruments
        self.limiter = RateLimiter(cfg.max_orders_per_s, sleep)
        self.note_limiter = RateLimiter(cfg.max_orders_per_s, sleep)  # never an order's slot
        self.sleep = sleep
        self.placed = self.adopted = self.throttled = self.ambiguous = 0  # for the log and tests
        self.at_kite: dict[str, str] = {}  # our orders Kite listed at start, by tag
        self.today_rows: list[dict[str, Any]] = []  # and those orders as Kite shows them
        self.opening_cash: float | None = None  # the day's opening cash at Kite

    def find(self, tag: str) -> dict[str, Any] | None:
        """Kite's order carrying ``tag`` today, if any (one list call)."""
        try:
            rows = self.client.orders()
        except (kex.TokenException, kex.PermissionException) as e:
            raise BrokerLocked(f"{type(e).__name__}: {e}") from None
        for row in rows:
            if row.get("tag") == tag:
                return dict(row)
        return None

    def recall(self, tag: str) -> OrderIntent | None:
        """The intent recorded under ``tag`` (by this run or one before a restart)."""
        return self.intents.get(tag)

    def load_today(self) -> None:
        """Our orders Kite lists today, by tag: a signal replayed after a restart (even
        with Redis emptied in between) finds its order here instead of placing another,
        and the account adopts them all before its first decision (``today``)."""
        for row in self.client.orders():
            if is_our_tag(row.get("tag")):
                self.at_kite[str(row["tag"])] = str(row["order_id"])
                self.today_rows.append(dict(row))

    def load_cash(self) -> None:
        """The day's opening cash from Kite's equity margins (the zerodha account's
        starting cash; the day's orders are then applied to it as at Kite)."""
        equity = self.client.margins("equity")
        self.opening_cash = float(equity["available"]["opening_balance"])

    def today(self) -> list[dict[str, Any]]:
        """Our orders Kite listed at start (handed over once)."""
        rows, self.today_rows = self.today_rows, []
        return rows

    def _too_old(self, intent: OrderIntent) -> str | None:
        got, limit = intent.validated.signal.received_us, self.cfg.max_signal_age_s
        if got is None or limit is None:
            return None
        age = time.time() - got / 1e6
        if age <= limit:
            return None
        return (
            f"SIGNAL_TOO_OLD: its tick was received {age:,.0f} s ago, beyond "
            f"kite.max_signal_age_s ({limit:g} s); not placed"
        )

    def submit(self, intent: OrderIntent, order_type: str) -> Submitted:
        old = self._too_old(intent)
        if old is not None:
            raise OrderRejected(old)
        listed = self.at_kite.get(intent.tag)
        if listed is not None:
            self.adopted += 1
            log.info("order %s is at Kite (%s): not placing again", intent.tag, listed)
            return Submitted(listed, adopted=True)
        try:
            fresh = self.intents.claim(intent)
        except redis.RedisError as e:  # never place an order whose intent is not recorded
            raise _no_intents(intent.tag, e) from None
        if not fresh:
            found = self._find_settled(intent.tag)
            if found is not None:
                self.adopted += 1
                log.info("order %s already at Kite (%s): not placing again", intent.tag, found)
                return Submitted(found, adopted=True)
            late = self._recorded_today(intent.tag)
            if late is not None:
                self.adopted += 1
                return Submitted(late, adopted=True)
        return self._place(intent, order_type)

    def _recorded_today(self, tag: str) -> str | None:
        """An intent recorded before but not at Kite: one recorded today, never sent (a
        crash between recording and sending) and still not listed after the ambiguous
        window may be placed; one sent (its fate unknown), from an earlier day or of
        unknown age never is."""
        earlier = self.intents.get(tag)
        if earlier is not None and earlier.sent:
            found = self._settle(tag)
            if found is not None:
                return found
            raise KiteUnavailable(
                f"order {tag}: sent to Kite by an earlier run, its fate unknown; not placed "
                "again (Kite's updates or reconciliation settle it)"
            )
        claimed = earlier.claimed_us if earlier is not None else None
        today = datetime.now(IST).date()
        if claimed is None or datetime.fromtimestamp(claimed / 1e6, IST).date() != today:
            raise OrderRejected(
                f"INTENT_WITHOUT_ORDER: order {tag} was recorded on an earlier day and Kite "
                "lists no such order today; not placed again"
            )
        return self._settle(tag, strict=True)  # listed late after all: adopted

    def _find_settled(self, tag: str) -> str | None:
        for attempt in range(self.cfg.attempts):
            try:
                row = self.find(tag)
                return None if row is None else str(row["order_id"])
            except AMBIGUOUS as e:
                log.warning("listing Kite orders failed (%s); retrying", type(e).__name__)
                self.sleep(self._backoff(attempt))
        raise KiteUnavailable(f"order {tag}: Kite's order list unavailable")

    def _mark_sent(self, tag: str) -> None:
        try:
            self.intents.mark_sent(tag)
        except redis.RedisError as e:
            raise _no_intents(tag, e) from None

    def _settle(self, tag: str, strict: bool = False) -> str | None:
        """After an ambiguous reply: poll Kite's orders for ``tag`` over the ambiguous window
        (a bounded number of polls), since an accepted order may be listed late. ``strict``:
        a window in which no listing answered is itself unknown (KiteUnavailable)."""
        answered = False
        gap = min(0.5, self.cfg.ambiguous_window_s)
        polls = max(1, math.ceil(self.cfg.ambiguous_window_s / gap)) + 1
        for n in range(polls):
            if n:
                self.sleep(gap)
            try:
                row = self.find(tag)
            except AMBIGUOUS as e:
                log.warning("listing Kite orders failed (%s); polling on", type(e).__name__)
                continue
            answered = True
            if row is not None:
                return str(row["order_id"])
        if strict and not answered:
            raise KiteUnavailable(f"order {tag}: Kite's order list did not answer; not placed")
        log.warning("order %s: not in Kite's orders after %.1f s", tag, self.cfg.ambiguous_window_s)
        return None

    def cancel(self, kite_order_id: str) -> None:
        """Ask Kite to cancel an order (an order already ended stays as it is); its end
        comes back as Kite's order update."""
        for attempt in range(self.cfg.attempts):
            self.limiter.wait()
            try:
                self.client.cancel_order(variety="regular", order_id=kite_order_id)
                return
            except AMBIGUOUS as e:
                log.warning("cancelling %s: %s; trying again", kite_order_id, type(e).__name__)
                self.sleep(self._backoff(attempt))
            except kex.KiteException as e:  # ended already, or Kite refuses: it says which
                log.info("Kite did not cancel %s: %s", kite_order_id, e)
                return
        log.warning("cancelling %s: no answer after %d tries", kite_order_id, self.cfg.attempts)

    def contract_note(self, order: dict[str, Any]) -> dict[str, Any]:
        """Kite's virtual contract note (its ``charges``) for one completed order; ``order``
        as the venue has it (``instrument_token`` for the exchange and symbol)."""
        inst = self.instruments[int(order["instrument_token"])]
        ask = {k: v for k, v in order.items() if k != "instrument_token"}
        ask.update(exchange=inst.exchange, tradingsymbol=inst.tradingsymbol, variety="regular")
        self.note_limiter.wait()
        rows = self.client.get_virtual_contract_note([ask])
        return dict(rows[0]["charges"])  # answers come in the order asked

    def _backoff(self, attempt: int) -> float:
        return float(min(self.cfg.backoff_max_s, 0.1 * 2**attempt))

    def _params(self, intent: OrderIntent, order_type: str) -> dict[str, Any]:
        v = intent.validated
        s = v.signal
        inst = self.instruments[s.instrument_token]
        params: dict[str, Any] = dict(
            variety="regular",
            exchange=inst.exchange,
            tradingsymbol=inst.tradingsymbol,
            transaction_type=v.side,
            quantity=v.quantity,
            product=Product(v.product).value,
            order_type=order_type,
            tag=intent.tag,
        )
        if order_type == "LIMIT":
            params["price"] = s.price
        if order_type in ("SL", "SL-M"):
            params["trigger_price"] = v.trigger_price
        if order_type == "SL":
            params["price"] = v.trigger_price  # its limit is its trigger
        if order_type in ("MARKET", "SL-M"):
            params["market_protection"] = self.cfg.market_protection
        if self.cfg.algo_id:
            params["algo_id"] = self.cfg.algo_id
        return params

    def _place(self, intent: OrderIntent, order_type: str) -> Submitted:
        params = self._params(intent, order_type)
        for attempt in range(self.cfg.attempts):
            self.limiter.wait()
            if not attempt:  # as late as can be: a crash before this never sent it
                self._mark_sent(intent.tag)
            try:
                order_id = str(self.client.place_order(**params))
                self.placed += 1
                return Submitted(order_id, adopted=False)
            except AMBIGUOUS as e:
                if isinstance(e, kex.NetworkException) and e.code == 429:
                    self.throttled += 1
                    log.warning("Kite rate limit (429) on order %s; backing off", intent.tag)
                    self.sleep(self._backoff(attempt))
                    continue
                self.ambiguous += 1
                log.warning(
                    "order %s: %s, its fate unknown; checking Kite's orders",
                    intent.tag,
                    type(e).__name__,
                )
                found = self._settle(intent.tag)
                if found is not None:
                    self.adopted += 1
                    return Submitted(found, adopted=True)
                raise KiteUnavailable(  # held as unknown: never a second order on a guess
                    f"order {intent.tag}: {type(e).__name__} and not in Kite's orders after "
                    f"{self.cfg.ambiguous_window_s:g} s; not placed again (Kite's updates or "
                    "reconciliation settle it)"
                ) from None
            except (kex.TokenException, kex.PermissionException) as e:
                raise BrokerLocked(f"{type(e).__name__}: {e}") from None
            except kex.KiteException as e:
                raise OrderRejected(str(e)) from None
        raise KiteUnavailable(f"order {intent.tag}: not placed after {self.cfg.attempts} tries")


def _no_intents(tag: str, e: Exception) -> KiteUnavailable:
    return KiteUnavailable(
        f"order {tag}: intent store (Redis) unreachable ({type(e).__name__}); not placed"
    )


def kite_orders(cfg: AppConfig) -> KiteOrders:
    """Placement for the zerodha broker; fails fast, naming the setting, if Redis (where
    intents live) cannot be reached: real orders are never placed without it."""
    from connectors.kite.client import http_client
    from connectors.redis_state import connect, redact

    client = connect(cfg.redis)
    try:
        client.ping()
    except redis.RedisError as e:
        raise SourceUnavailable(
            f"redis.url: {redact(cfg.redis.resolved_url())} unreachable ({type(e).__name__}); "
            "the zerodha broker records order intents there before placing"
        ) from None
    if cfg.kite.require_persistent_redis:
        check_persistent(client, cfg)
    store = IntentStore(client, LiveKeys(cfg.redis.key_prefix), cfg.kite.intent_ttl_s)
    instruments = {i.instrument_token: i for i in cfg.instruments}
    placer = KiteOrders(http_client(cfg.kite), store, cfg.kite, instruments)
    try:
        placer.load_today()
        placer.load_cash()
    except (kex.KiteException, requests.RequestException, KeyError, TypeError, ValueError) as e:
        raise SourceUnavailable(
            f"kite.api_root: reading today's orders and margins failed ({type(e).__name__}); "
            "live orders are not placed without knowing which exist"
        ) from None
    return placer
