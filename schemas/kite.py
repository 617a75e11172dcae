"""Kite Connect names the product relies on: credential variables, order tags, order updates.

Secrets live only in the environment: ``KITE_API_KEY`` and ``KITE_ACCESS_TOKEN`` for trading,
``KITE_API_SECRET`` for the login command. Nothing here ever holds or prints their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from hashlib import blake2b
from typing import Any

from pydantic import AwareDatetime, Field

from schemas.events import Model

API_KEY_ENV = "KITE_API_KEY"
ACCESS_TOKEN_ENV = "KITE_ACCESS_TOKEN"
API_SECRET_ENV = "KITE_API_SECRET"

IST = timezone(timedelta(hours=5, minutes=30))
TAG_PREFIX = "ap"
"""Every order the flow places carries a tag ``ap`` + 16 hex digits (Kite allows 20)."""

TERMINAL = ("COMPLETE", "REJECTED", "CANCELLED")


class OrderRejected(Exception):
    """Kite refused the order; ``message`` is Kite's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KiteUnavailable(Exception):
    """An order's fate could not be settled within ``kite.attempts`` tries."""


class BrokerLocked(Exception):
    """Kite refused our session (TokenException: the access token expired or is wrong;
    PermissionException); ``message`` is Kite's. Nothing more can be sent until a new login."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PlacementOutcome:
    """How placing the order tagged ``tag`` ended, off the dataflow thread: ``kind`` PLACED
    (``order_id``, at wall time ``sent_us``), REJECTED (Kite's ``message``), LOCKED (Kite
    refused our session) or UNAVAILABLE (its fate unknown: never placed again); NOTE
    (``charges``: Kite's contract note of a completed order) or NOTE_FAILED."""

    tag: str
    kind: str
    order_id: str | None = None
    message: str = ""
    sent_us: int = 0
    charges: dict[str, Any] | None = None


@dataclass(frozen=True)
class KitePositions:
    """Kite's net positions (instrument, signed quantity per product row), polled every
    ``kite.reconcile_s`` for the zerodha account to reconcile against."""

    rows: tuple[tuple[int, int], ...]
    holdings: tuple[tuple[str, int, int], ...] = ()  # demat: (tradingsymbol, token, quantity)


@dataclass(frozen=True)
class KiteAlert:
    """Kite refused our session outside an order (the orders() poll): the zerodha account
    halts with ``detail``."""

    detail: str


def order_tag(signal_id: str) -> str:
    """The Kite ``tag`` of the one order a signal may cause: same signal, same tag."""
    return TAG_PREFIX + blake2b(signal_id.encode(), digest_size=8).hexdigest()


def is_our_tag(tag: object) -> bool:
    return isinstance(tag, str) and len(tag) == 18 and tag.startswith(TAG_PREFIX)


def kite_datetime(v: Any) -> datetime | None:
    """A Kite timestamp (``YYYY-mm-dd HH:MM:SS`` text or a naive datetime, IST) as aware."""
    if v is None or v == "":
        return None
    dt = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return dt if dt.tzinfo else dt.replace(tzinfo=IST)


class OrderUpdate(Model):
    """The state of one of our orders at Kite, from a ticker order message or an orders() poll.
    ``timestamp``: Kite's last update of the order."""

    order_id: str = Field(min_length=1)
    tag: str
    status: str
    instrument_token: int
    transaction_type: str
    quantity: int
    filled_quantity: int = Field(ge=0)
    average_price: float = Field(ge=0)
    status_message: str | None
    timestamp: AwareDatetime

    @classmethod
    def from_kite(cls, d: dict[str, Any]) -> OrderUpdate:
        """From Kite's order dict (websocket ``data`` or one row of ``orders()``)."""
        ts = kite_datetime(d.get("exchange_update_timestamp")) or kite_datetime(
            d.get("order_timestamp")
        )
        return cls(
            order_id=str(d["order_id"]),
            tag=str(d.get("tag") or ""),
            status=str(d["status"]),
            instrument_token=int(d["instrument_token"]),
            transaction_type=str(d["transaction_type"]),
            quantity=int(d["quantity"]),
            filled_quantity=int(d.get("filled_quantity") or 0),
            average_price=float(d.get("average_price") or 0.0),
            status_message=d.get("status_message"),
            timestamp=ts,
        )
