"""Order intents in Redis (``intent`` keys of schemas.redis_keys): recorded before an order
is placed, so that no signal ever leads to two orders (connectors.kite.orders); and the
check that Redis keeps them across its own restart."""

from __future__ import annotations

import time

import redis

from schemas.config import AppConfig, SourceUnavailable
from schemas.redis_keys import KeyKind, LiveKeys, OrderIntent, decode


class IntentStore:
    """Order intents in Redis, under the one key module's ``intent`` keys."""

    def __init__(self, client: redis.Redis, keys: LiveKeys, ttl_s: int) -> None:
        self.client, self.keys, self.ttl_s = client, keys, ttl_s

    def claim(self, intent: OrderIntent) -> bool:
        """Record the intent (stamped with the wall clock); False if it was already
        recorded (by us, earlier)."""
        key = self.keys.intent(intent.tag)
        stamped = intent.model_copy(update={"claimed_us": time.time_ns() // 1000})
        return bool(self.client.set(key, stamped.model_dump_json(), nx=True, ex=self.ttl_s))

    def mark_sent(self, tag: str) -> None:
        """Note that the order is about to go to Kite: from here its fate can be unknown,
        and an order whose fate is unknown is never placed again."""
        got = self.get(tag)
        if got is not None:
            sent = got.model_copy(update={"sent": True})
            self.client.set(self.keys.intent(tag), sent.model_dump_json(), xx=True, keepttl=True)

    def get(self, tag: str) -> OrderIntent | None:
        raw = self.client.get(self.keys.intent(tag))
        return None if raw is None else decode(KeyKind.INTENT, raw)


def check_persistent(client: redis.Redis, cfg: AppConfig) -> None:
    """Redis must keep the intents across its own restart (AOF or RDB snapshots)."""
    from connectors.redis_state import redact

    where = redact(cfg.redis.resolved_url())
    try:
        aof = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except redis.RedisError as e:
        raise SourceUnavailable(
            f"redis.url: {where} does not say whether it persists ({type(e).__name__}); "
            "set kite.require_persistent_redis: false if you know it does"
        ) from None
    if aof != "yes" and not save:
        raise SourceUnavailable(
            f"redis.url: {where} keeps no data on disk (appendonly no, no save points): a "
            "restart would forget the order intents. Enable AOF (appendonly yes) or set "
            "kite.require_persistent_redis: false"
        )
