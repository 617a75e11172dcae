"""Parquet ledger sink: one dataset directory per kind, files per shard, resumable.

A shard is a stream that one stage writes in a deterministic order (one broker, one
(broker, stage), one source partition), so each file's bytes depend only on ticks and config.
Files are cut every ``rows_per_file`` rows; the snapshot holds the next file number and the
unwritten rows, so a resume deletes files written after the snapshot and writes them again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from schemas.arrow import ledger_row, model_schema
from schemas.events import Model
from schemas.ledger import LEDGER_KINDS


@dataclass(frozen=True)
class LedgerPartState:
    next_seq: int
    pending: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class LedgerOpen:
    """Sent once to every shard at the start of a run, so that every shard is opened:
    a fresh shard clears files of an earlier run, and an empty one still writes its schema."""


class _OpenPartition(StatefulSourcePartition[tuple[str, LedgerOpen], bool]):
    def __init__(self, keys: list[str], done: bool) -> None:
        self.keys, self.done = keys, done

    def next_batch(self) -> list[tuple[str, LedgerOpen]]:
        if self.done:
            raise StopIteration()
        self.done = True
        return [(k, LedgerOpen()) for k in self.keys]

    def snapshot(self) -> bool:
        return self.done


class LedgerOpenSource(FixedPartitionedSource[tuple[str, LedgerOpen], bool]):
    """One partition that emits ``(shard key, LedgerOpen())`` for every shard, once."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def list_parts(self) -> list[str]:
        return ["ledger-open"]

    def build_part(self, step_id: str, for_part: str, resume_state: bool | None) -> _OpenPartition:
        return _OpenPartition(self.keys, bool(resume_state))


def shard_key(kind: str, shard: str) -> str:
    if kind not in LEDGER_KINDS:
        raise KeyError(f"unknown ledger kind {kind!r}")
    return f"{kind}/{shard}"


class _LedgerPartition(StatefulSinkPartition[Model | LedgerOpen, LedgerPartState]):
    def __init__(
        self, folder: Path, shard: str, schema: pa.Schema, rows: int, resume: LedgerPartState | None
    ) -> None:
        self.folder, self.shard, self.schema, self.rows = folder, shard, schema, rows
        folder.mkdir(parents=True, exist_ok=True)
        self.seq = resume.next_seq if resume else 0
        self.pending: list[dict[str, Any]] = list(resume.pending) if resume else []
        for f in folder.glob(f"{shard}-*.parquet"):
            if int(f.stem.rsplit("-", 1)[1]) >= self.seq:
                f.unlink()

    def _flush(self, rows: list[dict[str, Any]]) -> None:
        path = self.folder / f"{self.shard}-{self.seq:05d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), tmp)
        os.replace(tmp, path)
        self.seq += 1

    def write_batch(self, values: list[Model | LedgerOpen]) -> None:
        self.pending.extend(ledger_row(v) for v in values if not isinstance(v, LedgerOpen))
        while len(self.pending) >= self.rows:
            chunk, self.pending = self.pending[: self.rows], self.pending[self.rows :]
            self._flush(chunk)

    def snapshot(self) -> LedgerPartState:
        return LedgerPartState(self.seq, tuple(self.pending))

    def close(self) -> None:
        if self.pending or self.seq == 0:  # an empty shard still gets a file: the schema
            self._flush(self.pending)
            self.pending = []


class ParquetLedger(FixedPartitionedSink[Model | LedgerOpen, LedgerPartState]):
    """Items are ``(shard_key(kind, shard), model)``; ``shards`` lists every shard per kind."""

    def __init__(self, root: Path, shards: dict[str, list[str]], rows_per_file: int) -> None:
        self.root = root
        self.rows = rows_per_file
        self.parts = sorted(shard_key(k, s) for k, names in shards.items() for s in names)
        self.index = {p: i for i, p in enumerate(self.parts)}

    def list_parts(self) -> list[str]:
        return self.parts

    def part_fn(self, item_key: str) -> int:
        return self.index[item_key]

    def build_part(
        self, step_id: str, for_part: str, resume_state: LedgerPartState | None
    ) -> _LedgerPartition:
        kind, shard = for_part.split("/", 1)
        schema = model_schema(LEDGER_KINDS[kind])
        return _LedgerPartition(self.root / kind, shard, schema, self.rows, resume_state)
