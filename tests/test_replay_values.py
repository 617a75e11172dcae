"""Replay column values the row check must refuse, not pass on as something else: a volume
no share count can be (negative, fractional, NaN, inf, beyond int64) is an INVALID_FIELD
dead letter; a null volume is a tick without volume. A file's plausible time bounds are
the quantiles of its times, in time order or not."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.replay_files import read_ticks
from operators import ticks
from operators.ticks import (
    DAY_US,
    MAX_PRICE,
    MAX_SPAN_US,
    MAX_VOLUME,
    MIN_PRICE,
    MISSING_TS,
    Bounds,
    RawTicks,
    arrival_bounds,
    recording_bounds,
    validate,
)
from schemas.ticks import NO_VOLUME, PLAUSIBLE_FROM, PLAUSIBLE_UNTIL, US, to_us
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


_TIMES = st.lists(
    st.one_of(
        st.integers(T0 - 400 * DAY_US, T0 + 400 * DAY_US),
        st.sampled_from([MISSING_TS, PLAUSIBLE_FROM - 1, PLAUSIBLE_UNTIL, T0]),
    ),
    max_size=60,
)


@given(_TIMES, st.booleans())
@settings(max_examples=300, deadline=None)
def test_recording_bounds_are_the_quantiles_of_the_plausible_times(
    times: list[int], in_order: bool
) -> None:
    """A file in time order takes the no-sort path; either way the bounds are those of the
    sorted plausible times, worked out here with sorted()."""
    ts = np.array(sorted(times) if in_order else times, dtype=np.int64)
    sane = sorted(t for t in times if PLAUSIBLE_FROM <= t < PLAUSIBLE_UNTIL)
    if not sane:
        assert recording_bounds(ts) == (PLAUSIBLE_FROM, PLAUSIBLE_UNTIL - 1)
        return
    n = len(sane)
    k = max(1, n // 1000) if n >= 20 else 0
    mid, lo, hi = sane[n // 2], sane[k], sane[n - 1 - k]
    first = max(mid - MAX_SPAN_US, lo - DAY_US, PLAUSIBLE_FROM)
    last = min(mid + MAX_SPAN_US, hi + DAY_US, PLAUSIBLE_UNTIL - 1)
    assert recording_bounds(ts) == (first, last)


_PRICES = st.sampled_from([100.0, MIN_PRICE, MAX_PRICE, 0.0, float("nan"), float("inf"), 2e9])
_VOLUMES = st.sampled_from([0, 5, MAX_VOLUME, MAX_VOLUME + 1, NO_VOLUME, -3])
_SPOIL = {  # one row made to fail one check (or pass at its edge)
    "early": lambda r: (1, *r[1:]),
    "missing": lambda r: (-1, *r[1:]),
    "price": lambda r: (r[0], float("nan"), r[2]),
    "cheap": lambda r: (r[0], MIN_PRICE / 2, r[2]),
    "edge": lambda r: (r[0], MAX_PRICE, MAX_VOLUME),
    "volume": lambda r: (r[0], r[1], MAX_VOLUME + 1),
    "none": lambda r: (r[0], r[1], NO_VOLUME),
}


@given(
    st.lists(st.tuples(st.integers(-3, 40), _PRICES, _VOLUMES), min_size=1, max_size=12),
    st.sampled_from([None, (T0 + 2 * US, T0 + 30 * US), "arrival"]),
    st.sampled_from([MISSING_TS, T0, T0 + 5 * US, T0 + 9 * US]),
    st.sampled_from([TOKENS[0], TOKENS[0] + 10**9, None]),
    st.booleans(),
    st.sampled_from([None, "clean", *_SPOIL]),
    st.integers(0, 11),
)
@settings(max_examples=500, deadline=None)
def test_a_batch_that_passes_whole_is_what_the_row_checks_give(
    rows: list[tuple[int, float, int]],
    given: tuple[int, int] | str | None,
    last: int,
    token: int | None,
    weekend: bool,
    spoil: str | None,
    at: int,
) -> None:
    """The whole-batch test (no row copied) never passes what a row check refuses: the
    batch, dead letters and order mark are those of the row-by-row checks (unknown or
    missing tokens, a live source's per-row bounds included); and a clean batch is taken
    whole."""
    if spoil is not None:  # clean rows, in order, in range; one of them spoiled
        rows = sorted((max(k, 6), 100.0 + max(k, 6), max(k, 6)) for k, _, _ in rows)
        i = at % len(rows)
        rows[i] = _SPOIL[spoil](rows[i]) if spoil in _SPOIL else rows[i]
    ts = np.array([MISSING_TS if k < 0 else T0 + k * US for k, _, _ in rows], dtype=np.int64)
    price, volume = np.array([p for _, p, _ in rows]), np.array([v for _, _, v in rows])
    raw = RawTicks("f.parquet", "replay-0", token, np.arange(len(rows)), ts, price, volume)
    bounds: Bounds | None = given if isinstance(given, tuple) else None
    if given == "arrival":  # a live source's: per row, from each tick's receipt time
        bounds = arrival_bounds(ts)
    trading = (lambda t: t < T0 + 20 * US) if weekend else None
    known = frozenset(TOKENS)
    whole = ticks._all_pass(raw, known, last, trading, bounds)
    got = validate(raw, known, last, trading, bounds)
    real, ticks._all_pass = ticks._all_pass, lambda *a: False
    try:
        want = validate(raw, known, last, trading, bounds)
    finally:
        ticks._all_pass = real
    assert [d.model_dump() for d in got[1]] == [d.model_dump() for d in want[1]]
    assert got[2] == want[2] and (got[0] is None) == (want[0] is None)
    if got[0] is not None and want[0] is not None:
        for col in ("ts", "price", "volume"):
            np.testing.assert_array_equal(getattr(got[0], col), getattr(want[0], col))
        assert got[0].watermark == want[0].watermark
    assert whole <= (not want[1])  # never past a refused row
    if spoil in ("clean", "edge") and bounds is None and not weekend and last <= T0 + 6 * US:
        assert whole == (token == TOKENS[0])  # a clean batch is taken whole (known token)
