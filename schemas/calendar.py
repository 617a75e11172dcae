"""Exchange trading days from exchange_calendars, kept on disk per library version: building
a calendar imports pandas and costs about a second, which every run and config check paid."""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import date
from functools import lru_cache
from importlib import metadata
from pathlib import Path

log = logging.getLogger("alpha_panda.session")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@lru_cache(maxsize=4)
def calendar_days(name: str) -> tuple[frozenset[date], date, date]:
    """The sessions of exchange calendar ``name`` over all the years it records holidays for
    (a fixed range: never one that moves with today's date). Kept on disk per library
    version (see calendar_cache): building them costs about a second per run."""
    path = calendar_cache(name)
    cached = _read_days(path) if path is not None else None
    if cached is not None:
        return cached
    days = _library_days(name)
    if path is not None:
        _write_days(path, days)
    return days


def calendar_cache(name: str) -> Path | None:
    """Where calendar ``name``'s sessions are kept: ``$ALPHA_PANDA_CACHE`` (or the user's
    cache folder)/calendars/<name>-<exchange_calendars version>.json; None if unknown."""
    try:
        version = metadata.version("exchange_calendars")
    except metadata.PackageNotFoundError:
        return None
    root = os.environ.get("ALPHA_PANDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "alpha-panda"
    )
    if not (_NAME.fullmatch(name) and _NAME.fullmatch(version)):
        return None
    return Path(root) / "calendars" / f"{name}-{version}.json"


def _read_days(path: Path) -> tuple[frozenset[date], date, date] | None:
    """The cached sessions, or None if absent or not as written (then they are rebuilt)."""
    try:
        doc = json.loads(path.read_text())
        days = frozenset(date.fromordinal(int(d)) for d in doc["days"])
        return days, date.fromordinal(int(doc["first"])), date.fromordinal(int(doc["last"]))
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return None


def _write_days(path: Path, days: tuple[frozenset[date], date, date]) -> None:
    """Write atomically (a concurrent run reads the old file or the new, never half); a
    cache that cannot be written is only a slower next start."""
    sessions, first, last = days
    doc = {"days": sorted(d.toordinal() for d in sessions), "first": first.toordinal(),
           "last": last.toordinal()}  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as e:
        log.debug("calendar cache %s not written: %s", path, e)


def _library_days(name: str) -> tuple[frozenset[date], date, date]:
    import exchange_calendars
    from exchange_calendars import calendar_utils

    kinds = getattr(calendar_utils, "_default_calendar_factories", {})  # the library's table
    kind = kinds.get(name)
    start, end = (kind.bound_min(), kind.bound_max()) if kind is not None else (None, None)
    if start is None or end is None:  # no recorded bounds: the library's default range
        cal = exchange_calendars.get_calendar(name)
    else:
        cal = exchange_calendars.get_calendar(name, start=start, end=end)
    days = frozenset(d.date() for d in cal.sessions)
    return days, cal.first_session.date(), cal.last_session.date()


def known_calendar(name: str) -> bool:
    """Whether exchange_calendars has a calendar ``name`` (a cached one is known)."""
    path = calendar_cache(name)
    if path is not None and path.is_file():
        return True
    import exchange_calendars

    return name in exchange_calendars.get_calendar_names()
