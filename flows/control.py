"""``python -m flows.control BROKER COMMAND [--config FILE] [--wait S]``: send an operator
command (halt, flatten, resume) to a running flow's account through Redis.

Exit code: 0 sent (and, with ``--wait``, applied: the broker's trading state changed), 1 sent
but no running flow applied it within the wait, 2 bad arguments or config, Redis unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time

import redis
from pydantic import ValidationError

from connectors.control import send_command
from connectors.redis_state import connect, redact
from flows.config import load_config
from schemas.config import ConfigError, RedisConfig, SourceUnavailable
from schemas.control import ControlKind
from schemas.enums import Broker
from schemas.redis_keys import KeyKind, LiveKeys, decode

PROG = "python -m flows.control"
POLL_S = 0.05


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog=PROG, description="Send halt, flatten or resume to a running flow's account."
    )
    ap.add_argument("broker", choices=[b.value for b in Broker])
    ap.add_argument("command", choices=[c.value for c in ControlKind])
    ap.add_argument(
        "--config", help="config file (default: $ALPHA_PANDA_CONFIG or the bundled one)"
    )
    ap.add_argument(
        "--wait",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="wait up to S seconds for the flow to apply it (0: don't wait; default 2)",
    )
    return ap.parse_args(argv)


def _fail(msg: str) -> int:
    sys.stderr.write(f"alpha-panda control: {msg}\n")
    return 2


def _get(client: redis.Redis, key: str, where: str) -> bytes | None:
    try:
        value: bytes | None = client.get(key)  # type: ignore[assignment]
    except (redis.RedisError, OSError) as exc:
        raise SourceUnavailable(
            f"redis.url: cannot read {where} ({type(exc).__name__}: {exc})"
        ) from None
    return value


def _await(
    client: redis.Redis, cfg: RedisConfig, broker: Broker, before: bytes | None, wait_s: float
) -> int:
    """Poll the broker's trading state until it differs from ``before``."""
    key = LiveKeys(cfg.key_prefix).trading_state(broker)
    where = redact(cfg.resolved_url())
    deadline = time.monotonic() + wait_s
    while True:
        value = _get(client, key, where)
        if value is not None and value != before:
            try:
                state = decode(KeyKind.TRADING_STATE, value)
            except ValidationError as exc:
                sys.stderr.write(f"warning: {key} changed but does not decode: {exc}\n")
                return 1
            sys.stdout.write(f"{broker.value}: {state.state} ({state.reason})\n")
            return 0
        if time.monotonic() >= deadline:
            sys.stderr.write(
                f"warning: no running flow applied it within {wait_s:g} s "
                "(is the flow live with control.redis on?)\n"
            )
            return 1
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    broker, command = Broker(args.broker), ControlKind(args.command)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}")
    if broker not in cfg.brokers:
        return _fail(f"broker: {broker.value!r} is not configured in brokers")
    rc = cfg.redis
    client = connect(rc)
    try:
        where = redact(rc.resolved_url())
        before = _get(client, LiveKeys(rc.key_prefix).trading_state(broker), where)
        entry_id = send_command(rc, broker, command)
        sys.stdout.write(f"sent {command.value} to {broker.value} (redis id {entry_id})\n")
        sys.stdout.flush()
        return _await(client, rc, broker, before, args.wait) if args.wait > 0 else 0
    except SourceUnavailable as exc:
        return _fail(str(exc))
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
