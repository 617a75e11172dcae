"""Replay column values the row check must refuse, not pass on as something else: a volume
no share count can be (negative, fractional, NaN, inf, beyond int64) is an INVALID_FIELD
dead letter; a null volume is a tick without volume."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from connectors.replay_files import read_ticks
from operators.ticks import RawTicks, validate
from schemas.ticks import NO_VOLUME, to_us
from tests.support import TOKENS

T0 = to_us(datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc))


def _table(volume: pa.Array) -> pa.Table:
    n = len(volume)
    return pa.table({
        "instrument_token": pa.array([TOKENS[0]] * n, pa.int64()),
        "timestamp": pa.array([T0 + i * 1_000_000 for i in range(n)], pa.timestamp("us", "UTC")),
        "last_price": pa.array([100.0 + i for i in range(n)], pa.float64()),
        "volume": volume,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("volume", "refused"),
    [
        (pa.array([10.0, 2.5, float("nan"), float("inf"), None, -1.0, 12.0]), [1, 2, 3, 5]),
        (pa.array([10, -1, None, -7, 12], pa.int64()), [1, 3]),
        (pa.array([10, 2**64 - 1, None, 12], pa.uint64()), [1]),
        (pa.array([10, 2**63 + 5, 12], pa.uint64()), [1]),
        (pa.array(np.array([10, -1, 2.5, np.nan, 12], np.float16)), [1, 2, 3]),
        (pa.array([10, -3, None, 12], pa.int8()), [1]),
    ],
)
def test_a_volume_no_count_can_be_is_a_dead_letter_and_a_null_is_no_volume(
    volume: pa.Array, refused: list[int]
) -> None:
    cols = read_ticks(_table(volume), None)
    raw = RawTicks("f.parquet", "replay-0", TOKENS[0], np.arange(len(volume)), cols.ts,
                   cols.price, cols.volume)  # fmt: skip
    batch, dead, _ = validate(raw, frozenset(TOKENS), np.iinfo(np.int64).min)
    assert [d.offset for d in dead] == refused
    assert {d.reason for d in dead} == {"INVALID_FIELD"}
    assert all(json.loads(d.raw)["volume"] in ("unreadable",) or json.loads(d.raw)["volume"] < 0
               for d in dead)  # fmt: skip
    kept = [i for i in range(len(volume)) if i not in refused]
    assert batch is not None and len(batch) == len(kept)
    given = volume.to_pylist()
    assert batch.volume.tolist() == [NO_VOLUME if given[i] is None else int(given[i])
                                     for i in kept]  # fmt: skip
