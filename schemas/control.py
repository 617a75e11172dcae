"""Operator commands to a broker's account: halt, flatten, resume.

They come from a JSON-lines file (``control.path``: applied at their event time, in replay and
live alike) or, live, from ``python -m flows.control`` through a Redis stream. One line::

    {"ts": "2026-11-20T10:30:00+05:30", "broker": "paper", "command": "flatten"}
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime

from schemas.config import ConfigError
from schemas.enums import Broker
from schemas.events import Model
from schemas.files import regular_file
from schemas.ticks import PLAUSIBLE_FROM, PLAUSIBLE_UNTIL, to_us

FIELDS = ("ts", "broker", "command")


class ControlKind(str, Enum):
    """HALT: no orders. FLATTEN: close every position, then no orders (halted).
    RESUME: back to every order."""

    HALT = "halt"
    FLATTEN = "flatten"
    RESUME = "resume"


class ControlCommand(Model):
    """One operator command; ``origin`` says where it came from (file line or stream id)."""

    ts: AwareDatetime
    broker: Broker
    command: ControlKind
    origin: str


def _choices(enum: type[Enum]) -> str:
    return ", ".join(repr(e.value) for e in enum)


def _object(text: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                raise ConfigError(f"{k}: given twice")
            seen[k] = v
        return seen

    try:
        raw = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except ConfigError:
        raise
    except (RecursionError, ValueError) as exc:  # nesting or a number too deep/long to read
        why = type(exc).__name__
        raise ConfigError(f"invalid JSON ({why}: nested or long beyond reason)") from None
    if not isinstance(raw, dict):
        raise ConfigError('expected a JSON object {"ts": ..., "broker": ..., "command": ...}')
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown field; expected exactly {', '.join(FIELDS)}")
    missing = [k for k in FIELDS if k not in raw]
    if missing:
        raise ConfigError(f"{missing[0]}: missing")
    return raw


def _ts(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ConfigError(f"ts: expected an ISO-8601 string, got {value!r}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"ts: not an ISO-8601 date-time: {value!r}") from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ConfigError(f"ts: no timezone in {value!r} (write e.g. +05:30 or Z)")
    try:
        us = to_us(ts)
    except OverflowError:
        us = PLAUSIBLE_FROM - 1
    if not PLAUSIBLE_FROM <= us < PLAUSIBLE_UNTIL:
        raise ConfigError(f"ts: {value!r} is outside 1990..2099 (as ticks must be)")
    return ts


def parse_control_line(text: str, origin: str) -> ControlCommand:
    """One JSON line → a command; ``ConfigError`` names the bad field and the problem."""
    raw = _object(text)
    ts = _ts(raw["ts"])
    broker, command = raw["broker"], raw["command"]
    if not isinstance(broker, str) or broker not in {b.value for b in Broker}:
        raise ConfigError(f"broker: unknown broker {broker!r}; expected one of {_choices(Broker)}")
    if not isinstance(command, str) or command not in {c.value for c in ControlKind}:
        raise ConfigError(
            f"command: unknown command {command!r}; expected one of {_choices(ControlKind)}"
        )
    return ControlCommand(ts=ts, broker=Broker(broker), command=ControlKind(command), origin=origin)


def load_control_file(path: str | Path, brokers: Collection[Broker]) -> list[ControlCommand]:
    """Every command of a JSON-lines file, sorted by ``ts`` (file order among equal ts).
    Blank lines and lines starting with '#' are skipped; commands must name a broker in
    ``brokers``."""
    regular_file(Path(path), "control.path")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"control.path: cannot read {path}: {why}") from None
    allowed = {Broker(b).value for b in brokers}
    out: list[ControlCommand] = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            cmd = parse_control_line(stripped, f"file:{path}:{n}")
            if cmd.broker not in allowed:
                raise ConfigError(f"broker: {cmd.broker!r} is not configured in brokers")
        except ConfigError as exc:
            raise ConfigError(f"control.path: {path} line {n}: {exc}") from None
        out.append(cmd)
    return sorted(out, key=lambda c: c.ts)
