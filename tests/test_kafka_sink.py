"""The Kafka event sink against a real Kafka-protocol broker: no reachable cluster stops a run
before it starts (exit 2, address named), and a topic lost by a broker that came back empty
is logged, never silent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from connectors.kafka.watch import TopicWatch
from schemas.config import KafkaConfig
from tests.kafka_broker import create_topic, start_broker
from tests.support import bytewax_run, config_dict, free_ports


def test_a_replay_with_an_unreachable_kafka_sink_fails_fast(
    ticks_dir: Path, tmp_path: Path
) -> None:
    raw = config_dict(ticks_dir, sinks=["ledger", "kafka"], output={"dir": str(tmp_path / "o")})
    raw["kafka"] = {"brokers": ["127.0.0.1:1"], "timeout_s": 1}
    config = tmp_path / "down.yaml"
    config.write_text(yaml.safe_dump(raw))
    p = bytewax_run([], config, tmp_path)
    _, err = p.communicate(timeout=60)  # it hung > 400 s: a hang fails the test
    assert p.returncode == 2
    lines = [x for x in err.splitlines() if x.startswith("alpha-panda:")]
    assert lines == ["alpha-panda: kafka.brokers: cannot reach 127.0.0.1:1 within 1s "
                     "(Failed to get metadata: Local: Broker transport failure)"]  # fmt: skip
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_a_topic_lost_by_a_broker_back_empty_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_ports(1)[0]
    first = start_broker(tmp_path / "a.log", port)
    address = next(first)
    create_topic(address, "watched.ticks", 2)
    watch = TopicWatch(KafkaConfig(brokers=[address], timeout_s=5))
    assert watch.check() == [] and "watched.ticks" in watch.seen
    first.close()  # the broker stops: memory storage, everything is lost
    second = start_broker(tmp_path / "b.log", port)
    next(second)
    try:
        with caplog.at_level(logging.WARNING, "alpha_panda.kafka.sink"):
            assert watch.check() == ["watched.ticks"]
            assert watch.check() == ["watched.ticks"]  # logged once, not on every look
            create_topic(address, "watched.ticks", 2)
            assert watch.check() == []
            assert watch.check() == []  # nothing new: nothing logged
    finally:
        second.close()
    third = start_broker(tmp_path / "c.log", port)  # empty again, and the topic recreated
    next(third)  # before the next look: only its new id tells
    try:
        create_topic(address, "watched.ticks", 2)
        with caplog.at_level(logging.WARNING, "alpha_panda.kafka.sink"):
            assert watch.check() == ["watched.ticks"]
    finally:
        third.close()
    where = f"'watched.ticks' is gone from {address}"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        f"kafka: topic {where} (the broker lost its data?): "
        "its messages and committed offsets are lost",
        f"kafka: topic 'watched.ticks' was recreated on {address} (the broker lost its data?): "
        "its earlier messages and committed offsets are lost",
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'watched.ticks' is back" in warnings[0]
