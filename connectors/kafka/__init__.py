"""Kafka transport: tick source, event sink, topic administration and the tick loader."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from schemas.config import KafkaConfig, SourceUnavailable


class KafkaUnavailable(SourceUnavailable):
    """The cluster cannot be reached, or a topic we need is missing; the message says which."""


class _Throttle(logging.Filter):
    """librdkafka repeats a failing connect many times a second: pass each message once a minute."""

    def __init__(self, interval_s: float = 60.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().split("]: ", 1)[-1].split(" (after", 1)[0]
        now = time.monotonic()
        if now - self.last.get(text, -self.interval_s) < self.interval_s:
            return False
        self.last[text] = now
        return True


CLIENT_LOG = logging.getLogger("alpha_panda.kafka.client")
CLIENT_LOG.addFilter(_Throttle())


def client_config(cfg: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for any client of ``cfg``'s cluster (``kafka.client`` wins)."""
    timeout_ms = int(cfg.timeout_s * 1000)
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(cfg.brokers),
        "socket.connection.setup.timeout.ms": timeout_ms,
        "logger": CLIENT_LOG,
        **extra,
    }
    conf.update(cfg.client)
    return conf


def metadata(cfg: KafkaConfig, topic: str | None = None) -> ClusterMetadata:
    """Cluster metadata within ``kafka.timeout_s``, or KafkaUnavailable naming the address."""
    admin = AdminClient(client_config(cfg))
    try:
        return admin.list_topics(topic, timeout=cfg.timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"kafka.brokers: cannot reach {','.join(cfg.brokers)} within {cfg.timeout_s:g}s "
            f"({exc.args[0].str()})"
        ) from None


def partitions_of(cfg: KafkaConfig, topic: str) -> list[int]:
    """Partition ids of an existing topic (never creates it)."""
    md = metadata(cfg)
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise KafkaUnavailable(
            f"source.topic: topic {topic!r} does not exist on {','.join(cfg.brokers)}; "
            "create it with: python -m connectors.kafka.topics --create"
        )
    return sorted(meta.partitions)
