"""The Kafka phases of the benchmark (``python -m flows.bench --kafka HOST:PORT``): one
day of ticks loaded to a 4-partition topic, Kafka → flow → Kafka with 1 and 2 processes,
against a plain confluent-kafka loop that consumes and produces each message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.bench import raw_config


def kafka_bench(address: str, data: Path) -> None:
    """Kafka → flow → Kafka (1 and 2 processes) against a plain consume-and-produce loop."""
    import yaml
    from confluent_kafka.admin import AdminClient, NewTopic

    from connectors.kafka.load import publish
    from schemas.config import KafkaConfig

    run = f"bench{os.getpid()}"
    topic = f"{run}.ticks"
    admin = AdminClient({"bootstrap.servers": address})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(timeout=10)
    t0 = time.perf_counter()
    n = publish(data, KafkaConfig(brokers=[address]), topic)
    print(f"loaded {n:,} ticks to {topic} (4 partitions) in {time.perf_counter() - t0:.1f} s")
    rates: dict[str, float] = {}
    cmd = [sys.executable, "-m", "flows.bench", "--kafka-plain", address, "--data", topic]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    rates["plain"] = res["messages"] / res["seconds"]
    print(f"{'kafka plain':<12} {res['messages']:>11,} msgs  {res['seconds']:>7.2f} s "
          f"{rates['plain']:>12,.0f} msgs/s  (consume + produce only)", flush=True)  # fmt: skip
    for procs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            raw = raw_config(data, out, 20_000)
            raw["source"] = {"kind": "kafka", "topic": topic, "tail": False}
            raw["sinks"] = ["kafka"]
            raw["kafka"] = {"brokers": [address], "topic_prefix": f"{run}.p{procs}."}
            raw["output"] = {"dir": str(out), "report": True}
            raw["instruments"] = str(data.resolve() / "instruments.csv")
            path = Path(tmp) / "bench.yaml"
            path.write_text(yaml.safe_dump(raw))
            addrs = _addresses(procs)
            env = {**os.environ, "ALPHA_PANDA_CONFIG": str(path)}
            args = [sys.executable, "-m", "bytewax.run", "flows.main"]
            started = time.perf_counter()
            ps = [
                subprocess.Popen(
                    [*args, *(["-i", str(i), "-a", addrs] if procs > 1 else [])],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for i in range(procs)
            ]  # fmt: skip
            if any(p.wait() for p in ps):
                raise SystemExit(f"kafka flow with {procs} process(es) failed")
            wall = time.perf_counter() - started
            report = json.loads((out / "report.json").read_text())
        name = f"kafka flow {procs}p"
        rates[name] = report["rows_read"] / wall
        print(f"{name:<12} {report['rows_read']:>11,} ticks {wall:>7.2f} s "
              f"{rates[name]:>12,.0f} ticks/s  (wall time incl. start-up)", flush=True)  # fmt: skip
    for procs in (1, 2):
        name = f"kafka flow {procs}p"
        print(f"{name} / plain loop = {rates[name] / rates['plain']:.2f}")


def _addresses(n: int) -> str:
    """``-a`` for a cluster of ``n`` processes on free loopback ports."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for sk in socks:
        sk.bind(("127.0.0.1", 0))
    addrs = ";".join(f"127.0.0.1:{sk.getsockname()[1]}" for sk in socks)
    for sk in socks:
        sk.close()
    return addrs


def kafka_plain(address: str, topic: str) -> dict[str, Any]:
    """Ceiling: one confluent-kafka consumer and producer forwarding every message."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    out_topic = f"{topic}.plain"
    admin = AdminClient({"bootstrap.servers": address})
    parts = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    admin.create_topics([NewTopic(out_topic, len(parts), 1)])[out_topic].result(timeout=10)
    consumer = Consumer({"bootstrap.servers": address, "group.id": "bench",
                         "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
    producer = Producer({"bootstrap.servers": address, "linger.ms": 5})
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    done: set[int | None] = set()
    n = 0
    while len(done) < len(parts):
        for m in consumer.consume(5000, 0.001):
            if m.error() is not None:
                done.add(m.partition())
                continue
            while True:
                try:
                    producer.produce(out_topic, m.value(), m.key())
                    break
                except BufferError:
                    producer.poll(0.01)
            n += 1
        producer.poll(0)
    producer.flush()
    return {"messages": n, "seconds": time.perf_counter() - t0}
