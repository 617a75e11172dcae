"""Exchange trading days from exchange_calendars, kept on disk per library version: building
a calendar imports pandas and costs about a second, which every run and config check paid.

Only calendars whose range the library fixes (XBOM: the years it records holidays for) are
kept; the others span years around today's date, so a kept copy would go stale. A kept
file is believed only if it names its calendar, the library version and format, and its
days lie inside its range; anything else is rebuilt from the library."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from schemas.kept import kept_root, read_kept, write_kept

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FORMAT = 1  # of the kept file; a change to what is kept raises it
Days = tuple[frozenset[date], date, date]  # the sessions, the first and the last day


@lru_cache(maxsize=4)
def calendar_days(name: str) -> Days:
    """The sessions of exchange calendar ``name`` over all the years it records holidays for
    (a fixed range: never one that moves with today's date, for the calendars kept)."""
    path = calendar_cache(name)
    cached = _read_days(path, name) if path is not None else None
    if cached is not None:
        return cached
    days, fixed = _library_days(name)
    if path is not None and fixed:
        _write_days(path, name, days)
    return days


def _version() -> str | None:
    try:
        return metadata.version("exchange_calendars")
    except metadata.PackageNotFoundError:
        return None


def calendar_cache(name: str) -> Path | None:
    """Where calendar ``name``'s sessions are kept (schemas.kept): calendars/<name>-<
    exchange_calendars version>.json; None if unknown."""
    version = _version()
    if version is None or not (_NAME.fullmatch(name) and _NAME.fullmatch(version)):
        return None
    return kept_root() / "calendars" / f"{name}-{version}.json"


def _read_days(path: Path, name: str) -> Days | None:
    """The kept sessions of ``name``, or None if absent or not exactly as written."""
    doc = read_kept(path)
    try:
        head = (doc["format"], doc["calendar"], doc["version"])
        ordinals, first, last = doc["days"], doc["first"], doc["last"]
    except (TypeError, KeyError, IndexError):
        return None
    if head != (FORMAT, name, _version()):
        return None
    numbers = [first, last, *ordinals] if isinstance(ordinals, list) else None
    if not numbers or not all(type(n) is int and 0 < n < 3_652_060 for n in numbers):
        return None
    if not ordinals or not first <= min(ordinals) <= max(ordinals) <= last:
        return None
    days = frozenset(date.fromordinal(d) for d in ordinals)
    return days, date.fromordinal(first), date.fromordinal(last)


def _write_days(path: Path, name: str, days: Days) -> None:
    sessions, first, last = days
    doc = {"format": FORMAT, "calendar": name, "version": _version(),
           "first": first.toordinal(), "last": last.toordinal(),
           "days": sorted(d.toordinal() for d in sessions)}  # fmt: skip
    write_kept(path, doc)


def _library_days(name: str) -> tuple[Days, bool]:
    """The library's sessions of ``name``, and whether their range is fixed (keepable)."""
    import exchange_calendars
    from exchange_calendars import calendar_utils

    kinds = getattr(calendar_utils, "_default_calendar_factories", {})  # the library's table
    kind = kinds.get(name)
    start, end = (kind.bound_min(), kind.bound_max()) if kind is not None else (None, None)
    fixed = start is not None and end is not None
    if not fixed:  # no recorded bounds: the library's default range, around today
        cal = exchange_calendars.get_calendar(name)
    else:
        cal = exchange_calendars.get_calendar(name, start=start, end=end)
    days = frozenset(d.date() for d in cal.sessions)
    return (days, cal.first_session.date(), cal.last_session.date()), fixed


def known_calendar(name: str) -> bool:
    """Whether exchange_calendars has a calendar ``name`` (one kept for it, read back whole
    and naming it, is proof enough)."""
    path = calendar_cache(name)
    if path is not None and _read_days(path, name) is not None:
        return True
    import exchange_calendars

    return name in exchange_calendars.get_calendar_names()
