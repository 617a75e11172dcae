"""Kite Connect clients for the flow: credentials from the environment, the HTTP client, a
KiteTicker on the one shared Twisted reactor, and the order feed (ticker order messages plus
a periodic ``orders()`` poll) that turns Kite's view of our orders into ``OrderUpdate``s."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from kiteconnect import KiteConnect, KiteTicker
from kiteconnect import exceptions as kex
from pydantic import ValidationError

from operators.ticks import dead_letter
from schemas.config import KiteConfig, SourceUnavailable
from schemas.enums import DeadLetterReason
from schemas.events import DeadLetter
from schemas.kite import (
    ACCESS_TOKEN_ENV,
    API_KEY_ENV,
    KiteAlert,
    KitePositions,
    OrderUpdate,
    is_our_tag,
)

log = logging.getLogger("alpha_panda.kite")
FeedItem = OrderUpdate | KiteAlert | KitePositions  # what Kite tells the zerodha account
_reactor_lock = threading.Lock()


class CredentialsMissing(SourceUnavailable):
    """A Kite credential variable is unset or not usable as one; the message names it
    (never any part of a value)."""


def env_credentials(*names: str) -> tuple[str, ...]:
    """The values of credential variables ``names``: each set, and printable ASCII without
    whitespace (Kite's keys, secrets and tokens are; a character pasted with one, such as a
    zero-width space, would fail deep in the HTTP client, quoting the secret)."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        hint = " (python -m connectors.kite.login makes an access token)"
        raise CredentialsMissing(
            f"Kite credentials: set {' and '.join(missing)} in the environment"
            + (hint if ACCESS_TOKEN_ENV in missing else "")
        )
    for name in names:
        if not all("!" <= c <= "~" for c in os.environ[name]):
            raise CredentialsMissing(
                f"Kite credentials: {name} holds whitespace or a character that is not "
                "printable ASCII (pasted with it?); set it again"
            )
    return tuple(os.environ[n] for n in names)


def credentials() -> tuple[str, str]:
    """(api_key, access_token) from ``KITE_API_KEY`` / ``KITE_ACCESS_TOKEN``."""
    api_key, token = env_credentials(API_KEY_ENV, ACCESS_TOKEN_ENV)
    return api_key, token


def http_client(cfg: KiteConfig) -> KiteConnect:
    api_key, token = credentials()
    return KiteConnect(api_key, access_token=token, root=cfg.api_root, timeout=cfg.timeout_s)


def check_session(cfg: KiteConfig) -> None:
    """Ask Kite who we are (``profile``) before anything runs: a refused access token or an
    unreachable API raises SourceUnavailable naming the problem (never a credential)."""
    client = http_client(cfg)
    try:
        client.profile()
    except (kex.TokenException, kex.PermissionException) as e:
        raise SourceUnavailable(
            f"Kite refused the access token ({type(e).__name__}: {e}); log in again "
            f"(python -m connectors.kite.login) and set {ACCESS_TOKEN_ENV}"
        ) from None
    except (requests.RequestException, kex.KiteException) as e:
        raise SourceUnavailable(
            f"kite.api_root: {cfg.api_root} did not answer a profile request ({type(e).__name__})"
        ) from None
    except Exception as e:  # its text may quote a credential: the type alone
        raise SourceUnavailable(
            f"kite.api_root: {cfg.api_root}: the profile request failed ({type(e).__name__})"
        ) from None


def start_ticker(kws: KiteTicker) -> None:
    """Connect ``kws`` on the process's one reactor thread (started once, never stopped, so
    every source of the process, and every reconnect, can use it)."""
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    with _reactor_lock:
        if not reactor.running:
            threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="kite-reactor",
                daemon=True,
            ).start()
            deadline = time.monotonic() + 5
            while not reactor.running and time.monotonic() < deadline:
                time.sleep(0.005)
    reactor.callFromThread(kws.connect, threaded=True)


def call_in_reactor(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    reactor.callFromThread(fn, *args, **kwargs)


def ticker(cfg: KiteConfig, reconnect_max_delay_s: float = 5.0) -> KiteTicker:
    api_key, token = credentials()
    kws = KiteTicker(
        api_key, token, root=cfg.ws_root, reconnect_max_delay=int(max(reconnect_max_delay_s, 5))
    )
    kws.on_error = lambda ws, code, reason: log.warning("Kite ticker error %s", code)
    return kws


class OrderFeed:
    """Our orders as Kite reports them: ticker order messages (``on_message``) and an
    ``orders()`` poll every ``poll_s`` in a thread. Rows without our tag are ignored;
    rows Kite sends malformed come out as (raw, error) for the dead letters."""

    def __init__(self, cfg: KiteConfig, client: KiteConnect | None = None) -> None:
        self.cfg = cfg
        self.client = client or http_client(cfg)
        self.out: queue.SimpleQueue[FeedItem | tuple[str, str]] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.polls = 0
        self.locked = False  # Kite refuses our session (reported once)
        self.thread = threading.Thread(target=self._poll_loop, name="kite-orders", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def on_message(self, data: dict[str, Any]) -> None:
        self._put(data)

    def _put(self, data: Any) -> None:
        if not isinstance(data, dict) or not is_our_tag(data.get("tag")):
            return
        try:
            self.out.put(OrderUpdate.from_kite(data))
        except (ValidationError, KeyError, TypeError, ValueError) as e:
            self.out.put((repr(data), f"order update: {type(e).__name__}: {e}"[:500]))

    def poll_once(self) -> None:
        try:
            rows = self.client.orders()
        except (kex.TokenException, kex.PermissionException) as e:
            if not self.locked:  # once per refusal; a new login (a restart) clears it
                self.out.put(KiteAlert(f"orders() poll: {type(e).__name__}: {e}"[:300]))
            self.locked = True
            raise
        self.locked = False
        for row in rows:
            self._put(row)
        self.polls += 1

    def positions_once(self) -> None:
        """What Kite says we hold, for the zerodha account's reconciliation: net positions
        (today's, CNC sells of holdings included, negative) plus demat holdings from earlier
        days (settled and T1)."""
        rows = self.client.positions()["net"]
        got = tuple((int(r["instrument_token"]), int(r["quantity"])) for r in rows)
        self.out.put(KitePositions(got, self._holdings()))

    def _holdings(self) -> tuple[tuple[str, int, int], ...]:
        """Demat holdings (``quantity``: Kite's net, T1 included), by symbol: Kite lists one
        row per ISIN, possibly under its BSE token. Unreadable: positions alone, logged."""
        out = []
        try:
            rows = self.client.holdings()
        except Exception as e:  # a refusal here must not stop the positions check
            log.warning("Kite holdings() failed (%s): reconciling positions only", type(e).__name__)
            return ()
        for h in rows:
            try:
                out.append(
                    (str(h["tradingsymbol"]), int(h["instrument_token"]), int(h["quantity"]))
                )
            except (KeyError, TypeError, ValueError):
                log.warning("Kite holdings row unreadable, skipped: %s", str(h)[:200])
        return tuple(out)

    def _poll_loop(self) -> None:
        failing, reconciled = False, 0.0
        while not self.stop.wait(self.cfg.poll_s):
            try:
                self.poll_once()
                if time.monotonic() - reconciled >= self.cfg.reconcile_s:
                    self.positions_once()
                    reconciled = time.monotonic()
                if failing:
                    log.info("Kite orders() poll works again")
                failing = False
            except Exception as e:  # a poll failure must not end the feed
                if not failing:
                    log.warning("Kite orders() poll failed: %s", type(e).__name__)
                failing = True

    def drain(
        self, part: str, seq: int
    ) -> tuple[list[OrderUpdate | KiteAlert | KitePositions | DeadLetter], int]:
        """Updates so far, malformed ones as dead letters of ``part`` numbered after ``seq``;
        returns them and the last number used."""
        items: list[FeedItem | DeadLetter] = []
        while True:
            try:
                u = self.out.get_nowait()
            except queue.Empty:
                return items, seq
            if isinstance(u, tuple):
                seq += 1
                why = DeadLetterReason.INVALID_FIELD
                items.append(dead_letter(part, part, seq, why, u[1], u[0]))
            else:
                items.append(u)

    def close(self) -> None:
        self.stop.set()
