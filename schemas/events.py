"""Pydantic models: the only things that cross a stage boundary (besides tick batches).

Required fields have no defaults; ``broker`` is required wherever an event belongs to a broker.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from schemas.enums import (
    Broker,
    DeadLetterReason,
    HealthReason,
    HealthStatus,
    OrderStatus,
    Product,
    RejectReason,
    SignalType,
    Stage,
    StateReason,
    TradingState,
)


class Model(BaseModel):
    """Base of every event: immutable, no unknown fields, enums stored as their values."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=True)


def _finite_positive(v: float) -> float:
    if not math.isfinite(v) or v <= 0:
        raise ValueError("must be a finite number > 0")
    return v


class Ohlc(Model):
    open: float
    high: float
    low: float
    close: float


class DepthLevel(Model):
    price: float
    quantity: int
    orders: int


class Depth(Model):
    buy: list[DepthLevel]
    sell: list[DepthLevel]


class MarketTick(Model):
    """One tick, for validation at the edges (Kafka JSON, websocket)."""

    instrument_token: int = Field(gt=0)
    last_price: float
    timestamp: AwareDatetime
    volume: int | None = None
    ohlc: Ohlc | None = None
    depth: Depth | None = None

    _price = field_validator("last_price")(_finite_positive)


class TradingSignal(Model):
    """A strategy's target: hold ``target_quantity`` (signed; 0 = flat) of the instrument.
    The account orders the difference from that strategy's actual position."""

    signal_id: str
    correlation_id: str
    strategy_id: str
    broker: Broker
    instrument_token: int
    target_quantity: int
    price: float
    timestamp: AwareDatetime
    reason: str
    # live: wall-clock receipt of its tick (µs), for the placer's age check only; private,
    # so no ledger or topic ever carries it (they stay the same in replay and tail)
    _received_us: int | None = PrivateAttr(default=None)

    _price = field_validator("price")(_finite_positive)

    def received(self, us: int | None) -> TradingSignal:
        """This signal, noting when its tick was received (live sources)."""
        self._received_us = us
        return self

    @property
    def received_us(self) -> int | None:
        return self._received_us


class OrderRequest(Model):
    """The order the account means to send for a signal: the difference between the
    strategy's target and its position plus open orders. Base of the risk decisions."""

    event_id: str
    order_id: str
    correlation_id: str
    causation_id: str
    broker: Broker
    timestamp: AwareDatetime
    signal: TradingSignal
    side: SignalType
    quantity: int = Field(gt=0)
    product: Product = Product.MIS
    trigger_price: float | None = None  # SL / SL-M: the price that activates the order


class ValidatedSignal(OrderRequest):
    """Risk approved the order request; execution sends it."""


class RejectedSignal(OrderRequest):
    """Risk refused the order request, with every failing reason code."""

    reasons: list[RejectReason] = Field(min_length=1)
    detail: str


class OrderEvent(Model):
    """Fields every order event shares (paper and zerodha build them in one place:
    operators.account.orders)."""

    event_id: str
    order_id: str
    correlation_id: str
    causation_id: str
    broker: Broker
    broker_order_id: str | None  # the broker's own id (Kite's order_id); paper: None
    status: OrderStatus
    signal_id: str
    strategy_id: str
    instrument_token: int
    side: SignalType
    timestamp: AwareDatetime


class OrderPlaced(OrderEvent):
    quantity: int = Field(gt=0)
    order_type: str
    price: float  # the signal's price (a LIMIT's limit)
    trigger_price: float | None = None  # SL / SL-M


class OrderFilled(OrderEvent):
    """One fill (a partial fill too): ``quantity`` filled at ``fill_price`` in this fill."""

    quantity: int = Field(gt=0)
    fill_price: float
    fees: float  # the charges below summed to the paisa; < 0 only when a same-day CNC
    # round trip re-prices its earlier leg at intraday rates (a refund)
    product: Product = Product.MIS
    auto_square_off: bool = False  # the broker closed it at the MIS cut-off (₹50 + GST)
    brokerage: float = 0.0
    stt: float = 0.0
    exchange: float = 0.0
    sebi: float = 0.0
    stamp: float = 0.0
    gst: float = 0.0
    dp: float = 0.0
    square_off: float = 0.0

    _price = field_validator("fill_price")(_finite_positive)


class FeesSettled(OrderEvent):
    """Kite's virtual contract note for a completed order: the account's fees for the order
    become ``note_fees`` (the heads below are Kite's); ``adjustment`` = note − ``model_fees``
    (what the cost model had booked on its fills) is booked to cash and fees."""

    quantity: int = Field(gt=0)  # the order's filled quantity
    model_fees: float
    note_fees: float
    adjustment: float
    brokerage: float = 0.0
    stt: float = 0.0
    exchange: float = 0.0
    sebi: float = 0.0
    stamp: float = 0.0
    gst: float = 0.0


class OrderFailed(OrderEvent):
    """The order ended (or could not be sent) with ``quantity`` unfilled: its exposure is
    released. ``reason`` is the broker's message or a reason code."""

    quantity: int = Field(ge=0)
    reason: str


class Position(Model):
    instrument_token: int
    quantity: int
    average_price: float
    last_price: float
    realized_pnl: float
    unrealized_pnl: float


class PnlSnapshot(Model):
    event_id: str
    broker: Broker
    timestamp: AwareDatetime
    starting_cash: float
    cash: float
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    equity: float
    positions: list[Position]
    final: bool


class StageHealth(Model):
    event_id: str
    broker: Broker
    stage: Stage
    status: HealthStatus
    reason: HealthReason
    window_start: AwareDatetime
    window_end: AwareDatetime
    count: int = Field(ge=0)
    rate_per_s: float
    last_event_time: AwareDatetime | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class TradingStateChanged(Model):
    """A broker's trading state moved: ACTIVE (all orders), REDUCING (only orders that
    shrink a position), HALTED (no orders)."""

    event_id: str
    broker: Broker
    state: TradingState
    previous: TradingState
    reason: StateReason
    detail: str
    timestamp: AwareDatetime


class DeadLetter(Model):
    """A refused input record: ``raw`` is the record as received (``raw_encoding`` says how
    it is written: UTF-8 text, or base64 for bytes that are not UTF-8)."""

    event_id: str
    reason: DeadLetterReason
    detail: str
    source: str
    source_partition: str
    offset: int
    timestamp: AwareDatetime | None
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"


EVENT_MODELS: tuple[type[Model], ...] = (
    MarketTick,
    TradingSignal,
    ValidatedSignal,
    RejectedSignal,
    OrderPlaced,
    OrderFilled,
    OrderFailed,
    FeesSettled,
    PnlSnapshot,
    StageHealth,
    TradingStateChanged,
    DeadLetter,
)
