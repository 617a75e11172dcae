"""Accounts and strategies: risk limits, the paper fill model, strategies, snapshots, health."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, field_validator, model_validator

from schemas.config.base import DAY_S, MAX_MONEY, WEEK_S, Section, Token, seconds
from schemas.enums import Broker, Product

BrokerName = Annotated[Broker, Strict(False)]  # "paper", in a strict section
ProductName = Annotated[Product, Strict(False)]


def _money(default: float, description: str = "") -> float:
    """₹, positive, at most MAX_MONEY (amounts are kept in int64 paise)."""
    return Field(default=default, gt=0, le=MAX_MONEY, description=description)


def _count(default: int, most: int, description: str = "") -> int:
    return Field(default=default, gt=0, le=most, description=description)


class RiskConfig(Section):
    """Checks on every order request of one broker's account; each refusal names its code."""

    max_position_qty: int = _count(1000, 10**9, "|position| per instrument")
    max_position_value: float = _money(
        1_000_000.0, "|position| × price per instrument, after the order"
    )
    max_gross_exposure: float = _money(
        5_000_000.0, "Σ |position| × price over instruments, after it"
    )
    max_open_positions: int = _count(50, 100_000, "instruments held at once")
    max_order_value: float = _money(500_000.0)
    max_daily_loss: float = _money(50_000.0)
    flatten_on_breach: bool = Field(
        default=True, description="daily loss breached: close every position at once"
    )
    mark_interval_s: float = seconds(
        1.0, description="event-time cadence of marks (loss limit checked on each)"
    )
    price_band_pct: float = Field(
        default=5.0, gt=0, le=100, description="LIMIT price at most this % from the last price"
    )
    max_orders_per_second: int = _count(10, 10**6)
    max_orders_per_minute: int = _count(400, 10**7)
    max_orders_per_day: int = _count(5000, 10**9)
    allowed_instruments: list[Token] | None = None
    enforce_session: bool = True
    circuit_pct: float | None = Field(
        default=None, gt=0, le=100, description="band for instruments without their own, %"
    )


class ExecutionConfig(Section):
    """The paper fill model (operators.account.paper)."""

    latency_ms: int = Field(
        default=0,
        ge=0,
        le=3_600_000,
        description="0: a signal's order fills at its instrument's next tick; more: at the "
        "first tick at or after the signal time plus this latency",
    )
    limit_timeout_s: float = Field(
        default=0,
        ge=0,
        le=WEEK_S,
        description="a resting LIMIT is cancelled after this (0: at the close)",
    )
    market_protection: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="% beyond the signal price a MARKET order may fill (as Kite's market "
        "protection; the rest rests at that price); 0: none; null: kite.market_protection",
    )
    max_participation: float | None = Field(
        default=1.0,
        gt=0,
        le=1,
        description="an order fills at most this share of the volume traded at each tick "
        "(null: no cap)",
    )


class BrokerConfig(Section):
    starting_cash: float = _money(1_000_000.0)
    slippage_bps: float = Field(default=2.0, ge=0, le=10_000)
    risk: RiskConfig = RiskConfig()


class StrategyConfig(Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    type: str | None = Field(default=None, min_length=1, description="built-in strategy name")
    class_path: str | None = Field(
        default=None, alias="class", min_length=1, description="module:Class"
    )
    instruments: list[Token] | Literal["all"] = Field(description='tokens, or "all"')
    brokers: list[BrokerName] = Field(min_length=1)
    params: dict[str, Any] = Field(
        default={}, description="checked against the strategy's parameters before the run"
    )
    enabled: bool = True
    order_type: Literal["MARKET", "LIMIT", "SL", "SL-M"] = "MARKET"
    stop_offset_bps: float | None = Field(
        default=None,
        gt=0,
        le=5_000,
        description="SL / SL-M: the trigger this far beyond the signal price (a buy above, a "
        "sell below); SL's limit is its trigger",
    )
    product: ProductName = Field(
        default=Product.MIS, description="MIS: intraday, squared off at the cut-off; CNC: delivery"
    )
    stop_loss_pct: float | None = Field(
        default=None, gt=0, le=100, description="exit when the position loses this % of its price"
    )
    take_profit_pct: float | None = Field(
        default=None, gt=0, le=10_000, description="exit when the position gains this % of it"
    )
    trailing_stop_pct: float | None = Field(
        default=None, gt=0, le=100, description="exit this % off the best mark since it opened"
    )
    session_reset: bool = Field(
        default=False, description="forget the strategy's state at each new trading day"
    )

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False, strict=True
    )

    @field_validator("instruments", "brokers")
    @classmethod
    def _once(cls, items: Any) -> Any:
        if isinstance(items, list):
            if not items:
                raise ValueError('at least one (instruments: or "all")')
            if len(set(items)) != len(items):
                raise ValueError("listed twice")
        return items

    @model_validator(mode="after")
    def _one_kind(self) -> StrategyConfig:
        if (self.type is None) == (self.class_path is None):
            raise ValueError("set exactly one of 'type' or 'class'")
        if self.order_type in ("SL", "SL-M") and self.stop_offset_bps is None:
            raise ValueError(f"stop_offset_bps: required for order_type {self.order_type}")
        return self


class PortfolioConfig(Section):
    snapshot_interval_s: int = Field(default=300, gt=0, le=DAY_S)


class HealthConfig(Section):
    window_s: int = Field(default=60, gt=0, le=DAY_S)
    startup_windows: int = Field(default=1, ge=0, le=10_000)
    latency_warning_s: float = seconds(5.0)
    latency_critical_s: float = seconds(15.0)
    market_data_silence_warning_windows: int = _count(1, 1_000_000)
    market_data_silence_critical_windows: int = _count(3, 1_000_000)
    stall_warning_windows: int = _count(30, 1_000_000)
    stall_critical_windows: int = _count(60, 1_000_000)

    @model_validator(mode="after")
    def _warning_first(self) -> HealthConfig:
        for kind in ("latency", "market_data_silence", "stall"):
            unit = "s" if kind == "latency" else "windows"
            warn = getattr(self, f"{kind}_warning_{unit}")
            crit = getattr(self, f"{kind}_critical_{unit}")
            if warn > crit:
                raise ValueError(
                    f"{kind}_critical_{unit}: must be at least {kind}_warning_{unit} ({warn})"
                )
        return self
