"""Kafka tick source: Bytewax's KafkaSource underneath, columnar batches and dead letters out.

Each Kafka partition is a source partition. A poll's messages are parsed, grouped per
instrument (in offset order) and validated exactly like replay rows, so the rest of the
flow cannot tell the sources apart. The snapshot holds Bytewax's offset and the last valid
tick time per instrument: a resume continues at the next message, with order checks intact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bytewax.connectors.kafka import KafkaSource, KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from connectors.kafka import client_config, partitions_of
from connectors.kafka.parse import parse_tick
from connectors.replay import RowsRead, SourceItem
from operators.ticks import MISSING_TS, RawTicks, validate
from schemas.config import KafkaConfig, KafkaSourceConfig
from schemas.events import DeadLetter


@dataclass
class KafkaTickState:
    offset: int | None
    last_ts: dict[int, int] = field(default_factory=dict)


def part_name(topic: str, idx: int) -> str:
    """Bytewax's name for a Kafka partition (also the dead letters' ``source_partition``)."""
    return f"{idx}-{topic}"


class _Rows:
    """One instrument's parsed messages of a poll, as columns."""

    __slots__ = ("offsets", "price", "raw", "ts", "volume")

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.ts: list[int] = []
        self.price: list[float] = []
        self.volume: list[int] = []
        self.raw: list[bytes] = []


class _TickPartition(StatefulSourcePartition[SourceItem, KafkaTickState]):
    def __init__(
        self,
        inner: StatefulSourcePartition[Any, int | None],
        topic: str,
        name: str,
        known: frozenset[int],
        max_bytes: int,
        state: KafkaTickState | None,
    ) -> None:
        self.inner, self.topic, self.name = inner, topic, name
        self.known, self.max_bytes = known, max_bytes
        self.last_ts = dict(state.last_ts) if state else {}

    def next_batch(self) -> list[SourceItem]:
        msgs: list[KafkaSourceMessage[bytes | None, bytes | None]] = list(self.inner.next_batch())
        if not msgs:
            return []
        dead: list[DeadLetter] = []
        groups: dict[int, _Rows] = {}
        for m in msgs:
            offset = m.offset if m.offset is not None else -1
            got = parse_tick(m.value, self.max_bytes, self.topic, self.name, offset)
            if isinstance(got, DeadLetter):
                dead.append(got)
                continue
            rows = groups.get(got[0])
            if rows is None:
                rows = groups[got[0]] = _Rows()
            rows.offsets.append(offset)
            rows.ts.append(got[1])
            rows.price.append(got[2])
            rows.volume.append(got[3])
            rows.raw.append(m.value or b"")
        batches = []
        for token in sorted(groups):
            batch, bad, new_last = validate(
                self._raw(token, groups[token]), self.known, self.last_ts.get(token, MISSING_TS)
            )
            if token in self.known:
                self.last_ts[token] = new_last
            dead.extend(bad)
            if batch is not None:
                batches.append(batch)
        dead.sort(key=lambda d: d.offset)
        return [RowsRead(len(msgs)), *dead, *batches]

    def _raw(self, token: int, rows: _Rows) -> RawTicks:
        return RawTicks(
            source=self.topic,
            partition=self.name,
            instrument_token=token,
            offsets=np.array(rows.offsets, dtype=np.int64),
            ts=np.array(rows.ts, dtype=np.int64),
            price=np.array(rows.price, dtype=np.float64),
            volume=np.array(rows.volume, dtype=np.int64),
            raw_records=rows.raw,
        )

    def snapshot(self) -> KafkaTickState:
        return KafkaTickState(self.inner.snapshot(), dict(self.last_ts))

    def close(self) -> None:
        self.inner.close()


class KafkaTickSource(FixedPartitionedSource[SourceItem, KafkaTickState]):
    """Ticks from ``source.topic``: one JSON MarketTick per message, key = instrument token."""

    def __init__(
        self, src: KafkaSourceConfig, kafka: KafkaConfig, instruments: Sequence[int]
    ) -> None:
        self.src, self.kafka = src, kafka
        self.known = frozenset(instruments)
        self.inner = KafkaSource(
            kafka.brokers,
            [src.topic],
            tail=src.tail,
            starting_offset=OFFSET_BEGINNING if src.from_start else OFFSET_END,
            add_config=client_config(kafka),
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
        return _TickPartition(
            inner, self.src.topic, for_part, self.known, self.src.max_message_bytes, resume_state
        )
