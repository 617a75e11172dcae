"""The market: instruments, the exchange session, Zerodha's charges."""

from __future__ import annotations

import math
from datetime import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.calendar import known_calendar
from schemas.config.base import ClockTime, Day, Section, Token, iana_zone

MAX_TICK = 100.0
"""The largest tick size in ₹ (NSE's largest band is 5.00): a bigger one moves fill prices
far past the market."""


class Instrument(Section):
    instrument_token: Token
    tradingsymbol: str = Field(min_length=1)
    exchange: str = Field(default="NSE", min_length=1)
    tick_size: float | Literal["auto"] = Field(
        default=0.05,
        description=f"₹, whole paise up to {MAX_TICK:g}, or auto: NSE's band for the price",
    )

    @field_validator("tick_size")
    @classmethod
    def _paise_tick(cls, tick: float | str) -> float | str:
        """A whole number of paise (0.01 to MAX_TICK ₹, within float noise of a CSV's
        decimal text), kept as paise / 100; or auto."""
        if tick == "auto":
            return tick
        paise = tick * 100 if isinstance(tick, float | int) and math.isfinite(tick) else -1.0
        whole = round(paise)
        if not (1 <= whole <= MAX_TICK * 100 and abs(paise - whole) < 1e-6):
            raise ValueError(
                f"must be a whole number of paise from 0.01 to {MAX_TICK:g} (₹), or auto; "
                f"got {tick!r}"
            )
        return whole / 100

    lot_size: int = Field(default=1, gt=0, le=10_000_000)
    circuit_pct: float | None = Field(
        default=None, gt=0, le=100, description="price band around the previous close, %"
    )


def _share(default: float, description: str = "") -> float:
    """A charge as a fraction of value (0.0003 is 0.03%)."""
    return Field(default=default, ge=0, le=1, description=description)


def _rupees(default: float, description: str = "") -> float:
    return Field(default=default, ge=0, le=1_000_000, description=description)


class CostModel(Section):
    """Zerodha equity charges (published schedules): intraday (MIS) and delivery (CNC)."""

    brokerage_pct: float = _share(0.0003, "intraday, per order")
    brokerage_cap: float = _rupees(20.0, "intraday, ₹ per order")
    stt_sell_pct: float = _share(0.00025, "intraday, on sells")
    transaction_pct: float = _share(0.0000297, "NSE, both products")
    sebi_per_crore: float = _rupees(10.0)
    stamp_buy_pct: float = _share(0.00003, "intraday, on buys")
    gst_pct: float = _share(0.18, "on brokerage, exchange, SEBI, DP")
    delivery_brokerage_pct: float = _share(0.0, "CNC: free")
    delivery_stt_pct: float = _share(0.001, "CNC, buys and sells")
    delivery_stamp_buy_pct: float = _share(0.00015, "CNC, on buys")
    dp_per_scrip: float = _rupees(13.0, "CNC: ₹ per scrip per sell day")
    square_off_charge: float = _rupees(
        50.0, "₹ per order the broker squares off at the MIS cut-off"
    )


class SpecialSession(Section):
    """A session on a day the calendar does not trade (e.g. Muhurat trading), its hours."""

    date: Day
    open: ClockTime
    close: ClockTime

    @model_validator(mode="after")
    def _ordered(self) -> SpecialSession:
        if self.open >= self.close:
            raise ValueError(f"close: must be after open ({self.open})")
        return self


class SessionConfig(Section):
    """Market session; in replay judged by tick time. Trading days come from ``calendar``
    (exchange_calendars: XBOM, whose holidays NSE shares), less ``holidays``, plus
    ``special_sessions``; outside the calendar's years, ``weekdays`` less ``holidays``."""

    calendar: str | None = Field(
        default="XBOM", description="exchange_calendars name; null: weekdays and holidays only"
    )
    special_sessions: list[SpecialSession] = Field(default=[])

    open: ClockTime = time(9, 15)
    close: ClockTime = time(15, 30)
    mis_cutoff: ClockTime = Field(
        default=time(15, 20), description="MIS: no new entries from here, open ones squared off"
    )
    timezone: str = Field(default="Asia/Kolkata", description="IANA name")
    weekdays: list[int] = Field(
        default=[0, 1, 2, 3, 4], min_length=1, description="0 = Monday … 6 = Sunday"
    )
    holidays: list[Day] = Field(default=[])

    @field_validator("calendar")
    @classmethod
    def _known_calendar(cls, name: str | None) -> str | None:
        if name is not None and not known_calendar(name):
            raise ValueError(f"unknown exchange calendar {name!r}")
        return name

    _known_zone = field_validator("timezone")(iana_zone)

    @field_validator("weekdays")
    @classmethod
    def _days(cls, days: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in days):
            raise ValueError(f"days are 0 (Monday) to 6 (Sunday), not {days}")
        if len(set(days)) != len(days):
            raise ValueError(f"a day listed twice: {days}")
        return days

    @model_validator(mode="after")
    def _hours(self) -> SessionConfig:
        if self.open >= self.close:
            raise ValueError(f"close: must be after open ({self.open})")
        if not self.open <= self.mis_cutoff <= self.close:
            raise ValueError(
                f"mis_cutoff: must be between open ({self.open}) and close ({self.close})"
            )
        return self
