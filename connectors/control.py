"""Control inboxes: where a broker's account finds operator commands (halt, flatten, resume).

The account calls ``inbox.due(event_us, cursor)`` before each item it processes and keeps the
returned cursor in its own snapshotted state, so a recovered run neither loses nor repeats a
command. ``FileControl`` replays a command file by event time (deterministic); ``RedisControl``
reads what ``flows.control`` sent (``send_command``) through a Redis stream, live.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import redis

from connectors.redis_state import connect, redact
from schemas.config import RedisConfig, SourceUnavailable
from schemas.control import ControlCommand, ControlKind
from schemas.enums import Broker
from schemas.redis_keys import LiveKeys
from schemas.ticks import to_us

log = logging.getLogger("alpha_panda.control")

STREAM_MAXLEN = 1000
READ_COUNT = 100
MAX_SEQ = 2**64 - 1  # the largest sequence number of a Redis stream id
ENTRY_FIELDS = frozenset({"broker", "command"})


class FileControl:
    """This broker's commands of a command file, each due once event time reaches its ts.
    Cursor: how many were returned (int)."""

    def __init__(self, commands: Sequence[ControlCommand], broker: Broker) -> None:
        mine = [c for c in commands if c.broker == Broker(broker).value]
        self.commands = sorted(mine, key=lambda c: c.ts)
        self._us = [to_us(c.ts) for c in self.commands]

    def due(self, event_us: int, cursor: Any) -> tuple[list[ControlCommand], Any]:
        done = int(cursor or 0)
        upto = bisect.bisect_right(self._us, event_us, lo=done)
        return self.commands[done:upto], upto

    def peek(self, cursor: Any) -> int | None:
        """Event time (µs) of the next command not yet returned, if any."""
        done = int(cursor or 0)
        return self._us[done] if done < len(self._us) else None


class RedisControl:
    """Live commands from this broker's Redis stream, polled at most every ``poll_s`` of wall
    time (between polls ``due`` returns at once). Cursor: the last stream id read; at first, the
    run's start (``since_ms``, else construction), so commands sent before the run are not
    applied. A command's
    ts is the wall clock when it was read. Never raises: bad entries and Redis errors are
    logged (Redis errors at most once per ``cfg.log_interval_s``) and skipped or retried."""

    def __init__(
        self, cfg: RedisConfig, broker: Broker, poll_s: float = 0.25, since_ms: int | None = None
    ) -> None:
        self.cfg = cfg
        self.broker = Broker(broker)
        self.poll_s = poll_s
        self.key = LiveKeys(cfg.key_prefix).control(self.broker)
        start = since_ms if since_ms is not None else int(time.time() * 1000)
        self.start_ms = start
        # XREAD returns ids strictly after this one: every entry of the start's millisecond
        # (``start-0`` included) belongs to the run; earlier ones are the standing state.
        self.start_id = f"{start - 1}-{MAX_SEQ}"
        self.where = redact(cfg.resolved_url())
        self._client: redis.Redis | None = None
        self._next_poll = float("-inf")
        self._last_log = float("-inf")
        self._down = False
        self._backoff = 0.0

    def due(self, event_us: int, cursor: Any) -> tuple[list[ControlCommand], Any]:
        now = time.monotonic()
        if now < self._next_poll:
            return [], cursor
        self._next_poll = now + self.poll_s
        last = str(cursor) if cursor is not None else self.start_id
        try:
            if self._client is None:
                self._client = self._connect()
            held = self._standing(self._client) if cursor is None else []
            reply: Any = self._client.xread({self.key: last}, count=READ_COUNT)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return [], cursor
        self._backoff = 0.0
        if self._down:
            self._down = False
            log.info(
                "control: reading %s at %s again (reason=CONTROL_REDIS_BACK)", self.key, self.where
            )
        out: list[ControlCommand] = list(held)
        if isinstance(reply, dict):  # RESP3 replies map key → entries
            reply = list(reply.items())
        for _key, entries in reply or []:
            for raw_id, fields in entries:
                last = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                cmd = self._command(last, fields)
                if cmd is not None:
                    out.append(cmd)
        return out, last

    def _connect(self) -> redis.Redis:
        """A client that never holds the account up long: short timeouts, no retries."""
        return connect(self.cfg.model_copy(update={"timeout_s": min(self.cfg.timeout_s, 0.5)}))

    def _standing(self, client: redis.Redis) -> list[ControlCommand]:
        """A fresh run starts as the operator last left it: if the newest command sent
        before the run is a halt or a flatten, the run starts halted (until a resume)."""
        before = f"{self.start_ms - 1}"
        rows: Any = client.xrevrange(self.key, max=before, min="-", count=1)
        for raw_id, fields in rows or []:
            entry = _text(raw_id)
            cmd = self._command(entry, fields)
            if cmd is not None and cmd.command in (ControlKind.HALT, ControlKind.FLATTEN):
                log.warning(
                    "control: %s was the last command before this run: starting halted "
                    "(reason=CONTROL_STANDING_HALT); send resume to trade",
                    cmd.command,
                )
                return [cmd.model_copy(update={"command": ControlKind.HALT,
                                               "origin": f"redis:{entry}:standing"})]  # fmt: skip
        return []

    def _failed(self, exc: BaseException) -> None:
        """Back off (1 s doubling to ``retry_max_s``), measured from the end of the failed
        call, so that an unanswering Redis never slows every item."""
        now = time.monotonic()
        self._down = True
        self._backoff = min(max(1.0, 2 * self._backoff), self.cfg.retry_max_s)
        self._next_poll = now + self._backoff
        if now - self._last_log >= self.cfg.log_interval_s:
            self._last_log = now
            log.warning(
                "control: cannot read %s at %s (reason=CONTROL_REDIS_UNREACHABLE, %s: %s); "
                "operator commands wait until it answers",
                self.key,
                self.where,
                type(exc).__name__,
                exc,
            )

    def _command(self, entry_id: str, fields: Any) -> ControlCommand | None:
        """The entry as a command, or None (logged once: the cursor moves past it)."""
        problem = _entry_problem(fields, self.broker)
        if problem is not None:
            log.warning(
                "control: skipped entry %s of %s (reason=CONTROL_BAD_ENTRY): %s",
                entry_id,
                self.key,
                problem,
            )
            return None
        text = {_text(k): _text(v) for k, v in fields.items()}
        return ControlCommand(
            ts=datetime.now(timezone.utc),
            broker=self.broker,
            command=ControlKind(text["command"]),
            origin=f"redis:{entry_id}",
        )


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _entry_problem(fields: Any, broker: Broker) -> str | None:
    """Why a stream entry is not a command for ``broker`` (None: it is one)."""
    try:
        text = {_text(k): _text(v) for k, v in dict(fields).items()}
    except (UnicodeDecodeError, TypeError, ValueError):
        return "fields are not UTF-8 text"
    if set(text) != ENTRY_FIELDS:
        return f"fields {sorted(text)}; expected exactly {sorted(ENTRY_FIELDS)}"
    if text["broker"] != broker.value:
        return f"broker: {text['broker']!r} in the stream of {broker.value!r}"
    if text["command"] not in {c.value for c in ControlKind}:
        return f"command: unknown command {text['command']!r}"
    return None


def send_command(cfg: RedisConfig, broker: Broker, command: ControlKind) -> str:
    """Append a command to ``broker``'s stream (kept to about the last 1000); its stream id.
    Raises ``SourceUnavailable`` (naming the URL, password masked) if Redis fails."""
    b, c = Broker(broker).value, ControlKind(command).value
    key = LiveKeys(cfg.key_prefix).control(b)
    client = connect(cfg)
    try:
        entry_id = client.xadd(
            key, {"broker": b, "command": c}, maxlen=STREAM_MAXLEN, approximate=True
        )
    except (redis.RedisError, OSError) as exc:
        where = redact(cfg.resolved_url())
        raise SourceUnavailable(
            f"redis.url: cannot send to {where} ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        client.close()
    return _text(entry_id)
