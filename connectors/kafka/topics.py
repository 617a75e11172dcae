"""``python -m connectors.kafka.topics``: list, or create (``--create``), every topic of a config.

Creation is idempotent: an existing topic is left as it is and reported. An unreachable
cluster fails within ``kafka.timeout_s`` with the address named (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka import KafkaUnavailable, client_config, metadata
from flows.config import load_config
from schemas.config import AppConfig, ConfigError, KafkaConfig, KafkaSourceConfig
from schemas.topics import TICKS_TOPIC, all_topics


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int | None  # None: missing
    created: bool


def wanted_topics(cfg: AppConfig) -> list[str]:
    """Topics of the configured brokers, the tick topic and its dead-letter topic."""
    ticks = cfg.source.topic if isinstance(cfg.source, KafkaSourceConfig) else TICKS_TOPIC
    return all_topics(sorted(cfg.brokers, key=lambda b: b.value), ticks, cfg.kafka.topic_prefix)


def ensure_topics(kafka: KafkaConfig, names: list[str], create: bool) -> list[TopicState]:
    """State of each topic; with ``create``, missing ones are created first."""
    existing = {n: len(t.partitions) for n, t in metadata(kafka).topics.items() if not t.error}
    created: set[str] = set()
    missing = [n for n in names if n not in existing]
    if create and missing:
        admin = AdminClient(client_config(kafka))
        config = {"retention.ms": str(kafka.retention_ms)}
        new = [
            NewTopic(n, kafka.partitions, kafka.replication_factor, config=config) for n in missing
        ]
        for name, fut in admin.create_topics(new, request_timeout=kafka.timeout_s).items():
            try:
                fut.result(timeout=kafka.timeout_s)
                created.add(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaUnavailable(f"kafka: cannot create topic {name!r}: {exc}") from None
        existing = {n: len(t.partitions) for n, t in metadata(kafka).topics.items() if not t.error}
    return [TopicState(n, existing.get(n), n in created) for n in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m connectors.kafka.topics", description=__doc__)
    ap.add_argument("--config", help="config file (default: $ALPHA_PANDA_CONFIG or bundled)")
    ap.add_argument("--brokers", help="bootstrap servers, overriding kafka.brokers")
    ap.add_argument("--create", action="store_true", help="create missing topics")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
        kafka = cfg.kafka
        if args.brokers:
            kafka = kafka.model_copy(update={"brokers": args.brokers.split(",")})
        states = ensure_topics(kafka, wanted_topics(cfg), args.create)
    except (ConfigError, KafkaUnavailable) as exc:
        print(f"alpha-panda: {exc}", file=sys.stderr)
        return 2
    for s in states:
        status = "created" if s.created else ("exists" if s.partitions else "MISSING")
        parts = f"{s.partitions} partitions" if s.partitions else ""
        print(f"{s.name:<32} {status:<8} {parts}")
    missing = [s.name for s in states if s.partitions is None]
    if missing:
        print(f"{len(missing)} topic(s) missing: run with --create", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
