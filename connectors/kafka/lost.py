"""The tick topic lost under a tail run: gone from the cluster, or recreated (a broker back
empty), so the offsets the source keeps point into a log that no longer exists and the
partition would wait, silently, until the new log grew past them.

A partition that polls nothing looks at its topic at most every ``LOOK_S`` (wall clock, at
the input only) with ``connectors.kafka.watch.TopicWatch`` (topic present, and its id). A
topic gone or recreated is logged as an ERROR there, and the source emits a ``FeedStale``
with ``lost`` set: market_data health is ``critical`` (``TOPIC_LOST``) in that window. Once
the topic is back, the partition reads it from its start: every message in it is new.
"""

from __future__ import annotations

import logging
import time

from connectors.kafka.watch import TopicWatch
from schemas.config import KafkaConfig

log = logging.getLogger("alpha_panda.kafka.source")
LOOK_S = 10.0
LOOK_TIMEOUT_S = 1.0


class LostTopic:
    """One source topic, looked at now and then; ``look()`` says what changed."""

    def __init__(self, cfg: KafkaConfig, topic: str, every_s: float = LOOK_S) -> None:
        self.topic, self.every_s = topic, every_s
        quick = cfg.model_copy(update={"timeout_s": min(cfg.timeout_s, LOOK_TIMEOUT_S)})
        self.watch = TopicWatch(quick, {topic})  # a look blocks its worker: at most ~1 s
        self.watch.check()  # the topic as it is now: present, with its id
        self.looked = time.monotonic()
        self.gone = False

    def topic_id(self) -> str:
        """The topic's id at the last look ("" if gone or the cluster gives none)."""
        return "" if self.gone else self.watch.seen.get(self.topic, "")

    def replaced(self, old_id: str) -> bool:
        """Whether the topic is not the one of id ``old_id`` (a resume's): recreated since."""
        new = self.topic_id()
        if not (old_id and new and old_id != new):
            return False
        log.error(
            "kafka: topic %r was recreated since the snapshot (the broker lost its data?): "
            "the offsets kept are void; reading it from its start", self.topic,
        )  # fmt: skip
        return True

    def look(self) -> tuple[bool, bool]:
        """If due: (lost since the last look: report it, restart: read it from its start)."""
        now = time.monotonic()
        if now - self.looked < self.every_s:
            return False, False
        self.looked = now
        changed = self.topic in self.watch.check()
        was_gone, self.gone = self.gone, self.topic in self.watch.gone
        restart = not self.gone and (changed or was_gone)
        if restart:
            log.error("kafka: reading topic %r again from its start", self.topic)
        return changed and not was_gone, restart
