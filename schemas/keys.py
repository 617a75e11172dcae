"""Stream keys: the one place that builds and parses them.

Per-instrument stages are keyed ``"{broker}:{instrument_token}"``; per-broker stages (the
account, health) by ``"{broker}"``; stage health by ``"{broker}:{stage}"``.
"""

from __future__ import annotations

from schemas.enums import Broker, Stage


def route_key(broker: Broker | str, token: int) -> str:
    """Key of one (broker, instrument): ``"paper:738561"``."""
    return f"{Broker(broker).value}:{token}"


def parse_route_key(key: str) -> tuple[Broker, int]:
    """``"paper:738561"`` → (Broker.PAPER, 738561)."""
    broker, _, token = key.partition(":")
    return Broker(broker), int(token)


def broker_of(key: str) -> str:
    """The broker part of any key (route, stage or broker key)."""
    return key.split(":", 1)[0]


def stage_key(broker: Broker | str, stage: Stage | str) -> str:
    """Key of one (broker, stage) of stage health: ``"paper:market_data"``."""
    return f"{Broker(broker).value}:{Stage(stage).value}"


def parse_stage_key(key: str) -> tuple[Broker, Stage]:
    broker, _, stage = key.partition(":")
    return Broker(broker), Stage(stage)
