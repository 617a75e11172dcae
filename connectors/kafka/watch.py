"""The Kafka event sink's producer, and a watch on the cluster while the flow runs.

Bytewax's KafkaSink drops delivery failures silently; this sink logs them (per topic and
reason, once a minute) and reports what was never delivered at close. A daemon thread on
worker 0 looks at the topics this process produced to, every ``interval_s``: a topic that is
gone (a broker restarted empty: topics, data and committed offsets lost) is logged as an
ERROR, and again when it comes back (empty: offsets the source kept may be past its end); a
topic whose id changed between two looks (gone and recreated in between) is an ERROR too.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient

from connectors.kafka import KafkaUnavailable, _Throttle, client_config, metadata
from schemas.config import KafkaConfig

log = logging.getLogger("alpha_panda.kafka.sink")
log.addFilter(_Throttle())

Message = KafkaSinkMessage[bytes, bytes]


class TopicWatch:
    """Remembers the topics it has seen and their ids (``topics``: only those; None: every
    topic); ``check()`` logs those gone, back, or recreated between two looks."""

    def __init__(self, cfg: KafkaConfig, topics: set[str] | None = None) -> None:
        self.cfg, self.topics = cfg, topics
        self.seen: dict[str, str] = {}  # topic -> its id ("" if the cluster gives none)
        self.gone: set[str] = set()
        self.where = ",".join(cfg.brokers)

    def _ids(self, names: list[str]) -> dict[str, str]:
        if not names:
            return {}
        admin = AdminClient(client_config(self.cfg))
        found = admin.describe_topics(TopicCollection(names), request_timeout=self.cfg.timeout_s)
        ids: dict[str, str] = {}
        for name, fut in found.items():
            try:
                ids[name] = str(fut.result(timeout=self.cfg.timeout_s).topic_id or "")
            except KafkaException:
                ids[name] = ""
        return ids

    def check(self) -> list[str]:
        """One look at the cluster; returns the watched topics gone or recreated since."""
        try:
            md = metadata(self.cfg)
        except KafkaUnavailable as exc:
            log.error("kafka: %s", exc)
            return []
        present = {n for n, t in md.topics.items() if t.error is None}
        if self.topics is not None:
            present &= frozenset(self.topics)  # a copy: sink partitions add to it
        ids = self._ids(sorted(present))
        lost = sorted(set(self.seen) - present)
        for name in lost:
            if name not in self.gone:
                log.error(
                    "kafka: topic %r is gone from %s (the broker lost its data?): its messages "
                    "and committed offsets are lost", name, self.where,
                )  # fmt: skip
        for name in sorted(self.gone - set(lost)):
            log.warning(
                "kafka: topic %r is back on %s, possibly empty: offsets kept in the recovery "
                "state may be past its end", name, self.where,
            )  # fmt: skip
        remade = [
            n
            for n, i in sorted(ids.items())
            if i and self.seen.get(n, i) not in (i, "") and n not in self.gone
        ]
        for name in remade:
            log.error(
                "kafka: topic %r was recreated on %s (the broker lost its data?): its "
                "earlier messages and committed offsets are lost", name, self.where,
            )  # fmt: skip
        self.gone = set(lost)
        self.seen.update(ids)
        return sorted({*lost, *remade})


class _Watcher(threading.Thread):
    def __init__(self, watch: TopicWatch, interval_s: float) -> None:
        super().__init__(name="alpha-panda-kafka-watch", daemon=True)
        self.watch, self.interval_s = watch, interval_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            self.watch.check()


class _SinkPartition(StatelessSinkPartition[Message]):
    def __init__(self, producer: Producer, watcher: _Watcher | None, topics: set[str]) -> None:
        self.producer, self.watcher, self.topics = producer, watcher, topics
        self.failed: Counter[tuple[str, str]] = Counter()

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failed[(msg.topic(), err.str())] += 1
            log.error("kafka: message to %r not delivered: %s", msg.topic(), err.str())

    def write_batch(self, items: list[Message]) -> None:
        for m in items:
            assert m.topic is not None  # every event message names its topic
            self.topics.add(m.topic)
            headers: Any = m.headers
            self.producer.produce(
                m.topic, m.value, m.key, headers=headers, on_delivery=self._delivered
            )
            self.producer.poll(0)
        self.producer.flush()

    def close(self) -> None:
        left = self.producer.flush()
        if self.watcher is not None:
            self.watcher.done.set()
        lost = sum(self.failed.values()) + left
        if lost:
            log.error("kafka: %d event message(s) were not delivered: %s", lost,
                      dict(self.failed) or "still queued at close")  # fmt: skip


class EventSink(DynamicSink[Message]):
    """Produces each message to the topic it names (idempotent producer, linger 5 ms)."""

    def __init__(self, cfg: KafkaConfig, interval_s: float = 10.0) -> None:
        self.cfg, self.interval_s = cfg, interval_s
        self.topics: set[str] = set()  # produced to by this process: the ones watched

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _SinkPartition:
        conf = client_config(self.cfg, **{"linger.ms": 5, "enable.idempotence": True})
        watcher = None
        if worker_index == 0:
            watcher = _Watcher(TopicWatch(self.cfg, self.topics), self.interval_s)
            watcher.start()
        return _SinkPartition(Producer(conf), watcher, self.topics)
