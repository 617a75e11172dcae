"""Kafka tick messages: accepted columns, or dead letters with reason and original bytes."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.kafka.parse import RAW_KEEP, parse_batch, parse_tick
from schemas.ticks import to_us

TOPIC, PART = "market.ticks", "0-market.ticks"


def tick(
    token: int = 256265,
    price: object = 101.5,
    ts: object = "2026-11-20T09:15:00+05:30",
    **extra: object,
) -> bytes:
    return json.dumps(
        {"instrument_token": token, "last_price": price, "timestamp": ts, "volume": 10, **extra}
    ).encode()


GOOD = tick()
BAD: dict[str, tuple[bytes | None, str]] = {
    "invalid json": (b'{"instrument_token": 1, "last_pr', "MALFORMED_JSON"),
    "not an object": (b"[256265, 101.5]", "MALFORMED_JSON"),
    "not utf-8": (b"\xff\xfe{}", "MALFORMED_JSON"),
    "empty": (b"", "MALFORMED_JSON"),
    "null value": (None, "MALFORMED_JSON"),
    "token as text": (tick(token="256265"), "INVALID_FIELD"),  # type: ignore[arg-type]
    "token is bool": (tick(token=True), "INVALID_FIELD"),
    "token missing": (
        json.dumps({"last_price": 1.0, "timestamp": "2026-11-20T09:15:00Z"}).encode(),
        "MISSING_TOKEN",
    ),
    "token null": (tick(token=None), "MISSING_TOKEN"),  # type: ignore[arg-type]
    "price missing": (
        json.dumps({"instrument_token": 1, "timestamp": "2026-11-20T09:15:00Z"}).encode(),
        "INVALID_PRICE",
    ),
    "price zero": (tick(price=0), "INVALID_PRICE"),
    "price negative": (tick(price=-3.5), "INVALID_PRICE"),
    "price as text": (tick(price="101.5"), "INVALID_PRICE"),
    "price NaN": (tick(price=float("nan")), "INVALID_PRICE"),
    "timestamp garbage": (tick(ts="yesterday"), "INVALID_TIMESTAMP"),
    "timestamp naive": (tick(ts="2026-11-20T09:15:00"), "INVALID_TIMESTAMP"),
    "timestamp number": (tick(ts=1795146300), "INVALID_TIMESTAMP"),
    "volume as text": (tick(volume="ten"), "INVALID_FIELD"),
    "unknown field": (tick(colour="red"), "INVALID_FIELD"),
    "absurdly large": (tick(pad="x" * 200_000), "MESSAGE_TOO_LARGE"),
}


def test_a_good_message_becomes_columns() -> None:
    got = parse_tick(GOOD, 16_384, TOPIC, PART, 0)
    when = to_us(datetime.fromisoformat("2026-11-20T09:15:00+05:30"))
    assert got == (256265, when, 101.5, 10)
    cols, dead = parse_batch([GOOD, GOOD], [7, 8], 16_384, TOPIC, PART)
    assert not dead
    assert cols.pos.tolist() == [0, 1] and cols.ts.tolist() == [when, when]


def test_each_bad_message_is_a_dead_letter_with_reason_bytes_and_offset() -> None:
    names = list(BAD)
    values = [GOOD] + [BAD[n][0] for n in names] + [GOOD]
    offsets = list(range(100, 100 + len(values)))
    cols, dead = parse_batch(values, offsets, 16_384, TOPIC, PART)
    assert cols.pos.tolist() == [0, len(values) - 1]  # the two good ones, nothing else
    by_offset = {d.offset: d for d in dead}
    assert sorted(by_offset) == offsets[1:-1]
    for k, name in enumerate(names, start=1):
        d = by_offset[offsets[k]]
        raw, reason = BAD[name]
        assert d.reason == reason, (name, d.detail)
        assert d.source == TOPIC and d.source_partition == PART
        if name == "absurdly large":
            assert raw is not None and d.raw.encode() == raw[:RAW_KEEP]
            assert str(len(raw)) in d.detail
        elif d.raw_encoding == "base64":
            assert base64.b64decode(d.raw) == raw
        else:
            assert d.raw.encode() == (raw or b"")


def test_dead_letter_detail_names_the_field() -> None:
    d = parse_tick(tick(volume="ten"), 16_384, TOPIC, PART, 3)
    assert not isinstance(d, tuple) and d.detail.startswith("volume:")


MESSAGES = [GOOD, tick(token=408065, price=77.25)] + [v for v, _ in BAD.values()]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, len(MESSAGES) - 1), min_size=1, max_size=40),
    st.lists(st.integers(1, 39), max_size=5),
)
def test_outcome_of_a_message_never_depends_on_its_neighbours(
    picks: list[int], cuts: list[int]
) -> None:
    values = [MESSAGES[i] for i in picks]
    offsets = list(range(len(values)))
    whole, whole_dead = parse_batch(values, offsets, 16_384, TOPIC, PART)
    bounds = sorted({0, len(values), *(c for c in cuts if c < len(values))})
    pos: list[int] = []
    dead = []
    for a, b in itertools.pairwise(bounds):
        cols, d = parse_batch(values[a:b], offsets[a:b], 16_384, TOPIC, PART)
        pos += (cols.pos + a).tolist()
        dead += d
    assert pos == whole.pos.tolist()
    assert sorted(dead, key=lambda d: d.offset) == sorted(whole_dead, key=lambda d: d.offset)
    assert len(pos) + len(dead) == len(values)
    assert np.all(np.diff(whole.pos) > 0)
