"""Kafka transport: tick source, event sink, topic administration and the tick loader."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata

from schemas.config import KafkaConfig, SourceUnavailable


class KafkaUnavailable(SourceUnavailable):
    """The cluster cannot be reached, or a topic we need is missing; the message says which."""


def client_config(cfg: KafkaConfig, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for any client of ``cfg``'s cluster (``kafka.client`` wins)."""
    timeout_ms = int(cfg.timeout_s * 1000)
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(cfg.brokers),
        "socket.connection.setup.timeout.ms": timeout_ms,
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
