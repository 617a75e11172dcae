"""What every config section shares: strict types (no bool for a number, no "300" for an
int, no NaN or inf), bounds, the error types."""

from __future__ import annotations

from datetime import date, time
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

I64_MAX = 2**63 - 1
MAX_MONEY = 1e13  # ₹: far above any account, far below int64 paise
DAY_S = 86_400
WEEK_S = 7 * DAY_S


class ConfigError(ValueError):
    """Bad configuration; the message (one line) starts with the offending field's path."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class SourceUnavailable(RuntimeError):
    """A configured source or sink cannot be reached; the message names the setting."""


class Section(BaseModel):
    """Strict: a number is a number (an int is not a bool, a float or a string), finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


NOT_ZONES = frozenset({"localtime", "Factory"})  # the machine's setting; no zone at all


@cache
def _iana_names() -> frozenset[str]:
    """The IANA zone names this machine has (read from disk once: ~10 ms a listing)."""
    from zoneinfo import available_timezones

    return frozenset(available_timezones())


def iana_zone(name: str) -> str:
    """``name`` if it is an IANA time zone name (the same on every machine), else
    ValueError: not "localtime", "Factory", a leap-second "right/..." or a path."""
    from zoneinfo import ZoneInfo

    if name in NOT_ZONES or name not in _iana_names():
        raise ValueError(f"unknown timezone {name!r} (an IANA name: Asia/Kolkata)")
    try:
        ZoneInfo(name)
    except Exception:  # listed but unreadable: as unknown
        raise ValueError(f"unknown timezone {name!r} (an IANA name: Asia/Kolkata)") from None
    return name


def _text(kind: type) -> Any:
    def check(v: Any) -> Any:
        if isinstance(v, kind | str):
            return v
        raise ValueError(f"expected a {kind.__name__} as text (YAML read {v!r})")

    return check


ClockTime = Annotated[time, Strict(False), BeforeValidator(_text(time))]
"""``"09:15"`` (quote it: YAML reads an unquoted 9:15 as the number 555)."""

Day = Annotated[date, Strict(False), BeforeValidator(_text(date))]
"""``2026-01-26`` (an ISO date)."""


Token = Annotated[int, Field(gt=0, le=I64_MAX)]


def seconds(default: float | None, most: float = DAY_S, **kw: Any) -> Any:
    """A positive duration, at most ``most`` seconds."""
    return Field(default=default, gt=0, le=most, **kw)
