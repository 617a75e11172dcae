"""Kafka tick source: Bytewax's KafkaSource underneath, columnar batches and dead letters out.

Each Kafka partition is a source partition (Bytewax's own, hence bytewax==0.21.1 pinned).
A poll's messages are parsed, grouped per instrument (in offset order) and validated
exactly like replay rows, so the rest of the flow cannot tell the sources apart. The
snapshot holds Bytewax's offset and the last valid tick time per instrument: a resume
continues at the next message, with order checks intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bytewax.connectors.kafka import KafkaSource, _KafkaSourcePartition
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    KafkaError,
    TopicPartition,
)

from connectors import stop
from connectors.kafka import client_config, partitions_of
from connectors.kafka.lost import LostTopic
from connectors.kafka.parse import parse_batch
from connectors.replay import RowsRead, SourceItem
from connectors.replay_read import group_rows
from operators.ticks import MISSING_TS, RawTicks, TradingDays, arrival_bounds, validate
from schemas.config import KafkaConfig, KafkaSourceConfig
from schemas.ticks import I64, FeedStale

_TOPIC_MISSING = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}


log = logging.getLogger("alpha_panda.kafka.source")


@dataclass
class KafkaTickState:
    offset: int | None
    last_ts: dict[int, int] = field(default_factory=dict)
    topic_id: str = ""  # the topic's id at the snapshot (tail runs; "" unknown)


def part_name(topic: str, idx: int) -> str:
    """Bytewax's name for a Kafka partition (also the dead letters' ``source_partition``)."""
    return f"{idx}-{topic}"


class _Pick(Sequence[bytes]):
    """Original bytes of some messages of a poll, by row (for dead letters)."""

    def __init__(self, values: list[bytes | None], pos: np.ndarray) -> None:
        self.values, self.pos = values, pos

    def __len__(self) -> int:
        return len(self.pos)

    def __getitem__(self, i: Any) -> Any:
        return self.values[int(self.pos[i])] or b""


def poll_items(
    values: list[bytes | None],
    entered: I64,
    offsets: list[int],
    topic: str,
    name: str,
    known: frozenset[int],
    max_bytes: int,
    last_ts: dict[int, int],
    trading: TradingDays | None = None,
    live: bool = False,
) -> list[SourceItem]:
    """One poll's messages (``entered``: when each entered Kafka, µs) → RowsRead, dead
    letters (offset order), then one batch per instrument; ``last_ts`` (per instrument) is
    updated. Every message is processed or a dead letter; nothing in one can raise."""
    cols, dead = parse_batch(values, offsets, max_bytes, topic, name)
    offs = np.array(offsets, dtype=np.int64)
    batches = []
    for token, rows in group_rows(cols.token).items():
        pos = cols.pos[rows]
        raw = RawTicks(
            source=topic,
            partition=name,
            instrument_token=token,
            offsets=offs[pos],
            ts=cols.ts[rows],
            price=cols.price[rows],
            volume=cols.volume[rows],
            raw_records=_Pick(values, pos),
            recv=entered[pos] if live else None,
        )
        last = last_ts.get(token, MISSING_TS)
        bounds = arrival_bounds(entered[pos])
        batch, bad, new_last = validate(raw, known, last, trading, bounds)
        if token in known:
            last_ts[token] = new_last
        dead.extend(bad)
        if batch is not None:
            batches.append(batch)
    dead.sort(key=lambda d: d.offset)
    return [RowsRead(len(values)), *dead, *batches]


class _TickPartition(StatefulSourcePartition[SourceItem, KafkaTickState]):
    def __init__(
        self,
        inner: _KafkaSourcePartition,
        topic: str,
        name: str,
        known: frozenset[int],
        max_bytes: int,
        state: KafkaTickState | None,
        idle_stop_s: float | None = None,
        tail: bool = False,
        trading: TradingDays | None = None,
        lost: tuple[LostTopic, Callable[[int], _KafkaSourcePartition]] | None = None,
    ) -> None:
        self.inner, self.topic, self.name, self.trading = inner, topic, name, trading
        self.lost = lost  # tail runs: a watch on the topic, and how to open it again
        self.known, self.max_bytes = known, max_bytes
        self.last_ts = dict(state.last_ts) if state else {}
        self.idle_stop_s, self.tail = idle_stop_s, tail
        self.heard = time.monotonic()
        stop.tick_part_open(name)
        self.resumed_lost = False  # the snapshot's topic was replaced while we were down
        if lost is not None and state is not None:
            if lost[0].replaced(getattr(state, "topic_id", "")):  # older snapshots: none
                self.inner.close()
                self.inner, self.resumed_lost = lost[1](OFFSET_BEGINNING), True
        if state is not None and state.offset is not None and not self.resumed_lost:
            self._check_offset(state.offset, lost[1] if lost is not None else None)

    def _check_offset(self, at: int, reopen: Callable[[int], Any] | None) -> None:
        """A resume's offset against the partition's log: below its start (messages deleted
        by retention before they were read) it reads on from the start, logged with the
        count lost; beyond its end (a log truncated or emptied under the same topic) it
        reads the log from the start, logged, and health shows TOPIC_LOST. Never silent."""
        tp = TopicPartition(self.topic, self.inner._part_idx)
        try:
            low, high = self.inner._consumer.get_watermark_offsets(tp, timeout=5)
        except Exception as e:  # the cluster does not say: the consumer's own reset applies
            log.warning("%s: cannot check the resume offset %d (%s)", self.name, at, e)
            return
        if low <= at <= high or (at > high and self._reaches(tp, at)):
            return
        if at < low:
            log.error("%s: offsets %d..%d were deleted before they were read (retention); "
                      "reading on from %d", self.name, at, low - 1, low)  # fmt: skip
        else:
            log.error("%s: the resume offset %d is beyond the log's end %d (truncated or "
                      "emptied): reading it from its start", self.name, at, high)  # fmt: skip
            self.resumed_lost = True
        start = low if at < low else OFFSET_BEGINNING
        if reopen is not None:
            self.inner.close()
            self.inner = reopen(start)
        else:
            self.inner._consumer.assign([TopicPartition(self.topic, tp.partition, start)])
            self.inner._offset = low if at < low else 0

    def _reaches(self, tp: TopicPartition, at: int, wait_s: float = 3.0) -> bool:
        """The log holds offset ``at - 1`` (read it): a broker's log-end answer can fall short
        of what it serves (batches counted as one), so a claim of "beyond the end" is checked."""
        consumer = self.inner._consumer
        consumer.assign([TopicPartition(tp.topic, tp.partition, at - 1)])
        deadline, found = time.monotonic() + wait_s, False
        while not found and time.monotonic() < deadline:
            msgs = consumer.consume(1, 0.2)
            found = any(m.error() is None and m.offset() == at - 1 for m in msgs)
        consumer.assign([TopicPartition(tp.topic, tp.partition, at)])
        return found

    def _poll(self) -> tuple[list[bytes | None], list[int], list[int]]:
        """Bytewax's ``next_batch`` without building a message object per message (half the
        cost of the source): same consumer, EOF handling and offset bookkeeping, plus each
        message's Kafka timestamp (µs; -1 where it has none)."""
        inner = self.inner
        if inner._eof or stop.requested():
            raise stop.tick_part_ended(self.name)
        values: list[bytes | None] = []
        offsets: list[int] = []
        stamps: list[int] = []
        for msg in inner._consumer.consume(inner._batch_size, 0.001):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    inner._eof = True
                    break
                if err.code() in _TOPIC_MISSING and self.lost is not None:
                    continue  # the topic is gone: the watch reports it (connectors.kafka.lost)
                raise RuntimeError(f"error consuming from Kafka topic {self.topic!r}: {err}")
            values.append(msg.value())
            offsets.append(msg.offset() or 0)
            kind, ms = msg.timestamp()
            stamps.append(ms * 1000 if kind != TIMESTAMP_NOT_AVAILABLE and ms > 0 else -1)
        if offsets:
            inner._offset = offsets[-1] + 1
        return values, offsets, stamps

    def _lost_note(self) -> list[Any]:
        """The topic was lost: a note for health at the last tick's time (none before a
        tick with a usable time, as the Kite source's silent-feed note)."""
        last = max((t for t in self.last_ts.values() if t != MISSING_TS), default=None)
        return [] if last is None else [FeedStale(last, 0.0, lost=True)]

    def next_batch(self) -> list[SourceItem]:
        if self.resumed_lost:  # say so to health first, once a tick's time can date it
            note: list[Any] = self._lost_note()
            if note:
                self.resumed_lost = False
                return note  # not a SourceItem: a note for health, as the Kite source sends
        values, offsets, stamps = self._poll()
        if not values:
            idle = self.idle_stop_s
            if idle is not None and time.monotonic() - self.heard >= idle:
                raise stop.tick_part_ended(self.name)  # tail run: this partition is done
            return self._look()
        self.heard = time.monotonic()
        # when each tick entered Kafka (else its receipt): no tick is dated much later (see
        # operators.ticks.arrival_bounds); tail runs: the feed latency, and how old a signal
        # is when a resume reads old messages again (kite.max_signal_age_s). A bounded read
        # is a recording: no receipt latency.
        received = time.time_ns() // 1000
        entered = np.array(stamps, dtype=np.int64)
        entered[entered < 0] = received
        return poll_items(
            values, entered, offsets, self.topic, self.name, self.known, self.max_bytes,
            self.last_ts, self.trading, self.tail,
        )  # fmt: skip

    def _look(self) -> list[Any]:
        """An idle tail partition: if its topic was lost, say so to health, and read the
        topic from its start once it is back."""
        if self.lost is None:
            return []
        watch, reopen = self.lost
        report, restart = watch.look()
        if restart:  # a new consumer: the old one's view of the topic is of the lost one
            self.inner.close()
            self.inner = reopen(OFFSET_BEGINNING)
        if not report:
            return []
        note = self._lost_note()
        self.resumed_lost = self.resumed_lost or not note  # no time yet: sent once there is
        return note

    def snapshot(self) -> KafkaTickState:
        topic_id = self.lost[0].topic_id() if self.lost is not None else ""
        return KafkaTickState(self.inner.snapshot(), dict(self.last_ts), topic_id)

    def close(self) -> None:
        self.inner.close()


class KafkaTickSource(FixedPartitionedSource[SourceItem, KafkaTickState]):
    """Ticks from ``source.topic``: one JSON MarketTick per message, key = instrument token."""

    def __init__(
        self,
        src: KafkaSourceConfig,
        kafka: KafkaConfig,
        instruments: Sequence[int],
        trading: TradingDays | None = None,
    ) -> None:
        """``trading``: ticks dated on other days are dead letters (see operators.ticks)."""
        self.src, self.kafka, self.trading = src, kafka, trading
        self.known = frozenset(instruments)
        self.inner = KafkaSource(
            kafka.brokers,
            [src.topic],
            tail=src.tail,
            starting_offset=OFFSET_BEGINNING if src.from_start else OFFSET_END,
            add_config={"auto.offset.reset": "earliest", **client_config(kafka)},
            batch_size=src.batch_size,
            raise_on_errors=True,
        )
        self._parts: list[str] | None = None

    def list_parts(self) -> list[str]:
        if self._parts is None:
            idxs = partitions_of(self.kafka, self.src.topic)
            self._parts = [part_name(self.src.topic, i) for i in idxs]
        return self._parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: KafkaTickState | None
    ) -> _TickPartition:
        offset = resume_state.offset if resume_state is not None else None
        inner = self.inner.build_part(step_id, for_part, offset)

        def reopen(at: int) -> _KafkaSourcePartition:
            return self.inner.build_part(step_id, for_part, at)

        return _TickPartition(
            inner,
            self.src.topic,
            for_part,
            self.known,
            self.src.max_message_bytes,
            resume_state,
            self.src.idle_stop_s if self.src.tail else None,
            self.src.tail,
            self.trading,
            (LostTopic(self.kafka, self.src.topic), reopen) if self.src.tail else None,
        )
