"""Fuzz every input path with hostile data: Kafka messages (bytes and JSON), KiteTicker
binary frames, replay Parquet tables. Each property: nothing raises, and every input is
processed or a dead letter (in = processed + dead letters); no accepted tick is dated
implausibly, so none can move an instrument's order check.

``python -m tests.fuzz_figures [EXAMPLES]`` runs each property EXAMPLES times and prints
the figures the README quotes: inputs tried, crashes, in = processed + dead letters.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import struct
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.kafka.source import poll_items
from connectors.kite.packets import parse_frame
from connectors.kite.sim.ticker import Quote, message, packet
from connectors.kite.ticks import KiteTickState, frame_items
from connectors.replay import ReplaySource, RowsRead
from operators.session import MarketSession
from operators.ticks import MAX_AHEAD_US, MAX_PRICE, MAX_VOLUME
from schemas.config import ConfigError, SessionConfig
from schemas.events import DeadLetter
from schemas.ticks import PLAUSIBLE_FROM, US, TickBatch, from_us, to_us
from tests.support import drain

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KNOWN = frozenset({738561, 408065})
ARRIVAL = to_us(datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc))  # a Friday, in session
TRADING = MarketSession(SessionConfig()).trading_mask
TALLY: Counter[str] = Counter()  # figures per path: inputs, processed, dead


def check_items(path: str, items: list[Any], n_in: int, bound: int | None) -> None:
    """in = processed + dead letters; offsets unique; accepted ticks plausibly dated."""
    read = sum(i.count for i in items if isinstance(i, RowsRead))
    dead = [i for i in items if isinstance(i, DeadLetter)]
    batches = [i for i in items if isinstance(i, TickBatch)]
    processed = sum(len(b) for b in batches)
    assert read == n_in == processed + len(dead), (read, n_in, processed, len(dead))
    for b in batches:
        if len(b):
            assert b.ts.min() >= PLAUSIBLE_FROM and np.all(np.diff(b.ts) >= 0)
            assert bound is None or b.ts.max() <= bound
            assert np.all(b.price <= MAX_PRICE) and np.all(b.volume <= MAX_VOLUME)
            assert np.all((b.volume >= 0) | (b.volume == -1))
    TALLY[f"{path} inputs"] += n_in
    TALLY[f"{path} processed"] += processed
    TALLY[f"{path} dead"] += len(dead)


# --- Kafka: JSON and bytes -------------------------------------------------------------

IST = timezone(timedelta(hours=5, minutes=30))
near = st.integers(-3 * 86_400, 3 * 86_400).map(
    lambda s: from_us(ARRIVAL + s * US).astimezone(IST).isoformat()
)
any_date = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([timezone.utc, IST, timezone(timedelta(hours=-12))]),
).map(datetime.isoformat)
odd_ts = st.sampled_from(
    ["2100-01-01T00:00:00Z", "2099-06-01T10:00:00+05:30", "9999-12-31T23:59:59Z",
     "0001-01-01T00:00:00+05:30", "1970-01-01T00:00:00Z", "2026-11-20T09:15:00", "",
     "yesterday", None, 1795166100, True]
)  # fmt: skip
big_ints = st.integers(-(2**70), 2**70)
tokens = st.one_of(
    st.sampled_from([738561, 408065, 738561, 4242, 0, -1, 2**63 - 1, 2**63, 2**64 + 5]),
    st.sampled_from([True, None, "738561", 1.5]),
    big_ints,
)
prices = st.one_of(
    st.floats(0.05, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, MAX_PRICE * 2, "1.0", None, True]),
    big_ints,
)
volumes = st.one_of(
    st.integers(0, 10**7), st.sampled_from([2**62, -1, -5, 2**63, 2**64, "ten", 1.5]), big_ints
)
tick_json = st.fixed_dictionaries(
    {"instrument_token": tokens, "last_price": prices,
     "timestamp": st.one_of(near, any_date, odd_ts)},
    optional={"volume": st.one_of(st.none(), volumes), "colour": st.text(max_size=4)},
)  # fmt: skip
json_any = st.recursive(
    st.none() | st.booleans() | big_ints | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=10,
)


def _dumps(v: Any) -> bytes:
    return json.dumps(v).encode()


def _splice(msg: bytes, at: int, junk: bytes) -> bytes:
    at %= len(msg) + 1
    return msg[:at] + junk + msg[at + len(junk) :]


def _nested(depth: int, obj: bool) -> bytes:
    inner = b'{"a":' * depth + b"1" + b"}" * depth if obj else b"[" * depth + b"]" * depth
    return b'{"instrument_token": 738561, "last_price": 1.0, "volume": ' + inner + b"}"


def _near(lo_s: int, hi_s: int) -> st.SearchStrategy[str]:
    """ISO times (IST) ``lo_s``..``hi_s`` seconds from ARRIVAL."""
    return st.integers(lo_s, hi_s).map(
        lambda s: from_us(ARRIVAL + s * US).astimezone(IST).isoformat()
    )


good_tick = st.fixed_dictionaries(
    {"instrument_token": st.sampled_from(sorted(KNOWN)), "last_price": st.floats(0.05, 5000),
     "timestamp": _near(-7200, 3600)},
    optional={"volume": st.integers(0, 10**7)},
)  # fmt: skip
messages = st.one_of(
    good_tick.map(_dumps),
    good_tick.map(_dumps),
    good_tick.map(_dumps),
    tick_json.map(_dumps),
    tick_json.map(_dumps),
    json_any.map(_dumps),
    st.binary(max_size=64),
    st.builds(_splice, tick_json.map(_dumps), st.integers(0, 120), st.binary(max_size=4)),
    st.builds(_nested, st.integers(100, 6000), st.booleans()),
    st.just(b'{"x": "' + b"a" * 20_000 + b'"}'),
    st.sampled_from([None, b"null", b" null ", b"[]", b"{}"]),
)  # fmt: skip


@FUZZ
@given(st.lists(messages, min_size=1, max_size=30), st.integers(-600, 600))
def test_kafka_messages_never_raise_and_each_is_processed_or_dead(
    values: list[bytes | None], skew_s: int
) -> None:
    entered = np.full(len(values), ARRIVAL + skew_s * US, dtype=np.int64)
    last: dict[int, int] = {}
    offsets = list(range(100, 100 + len(values)))
    topic, part = "market.ticks", "0-market.ticks"
    items = poll_items(values, entered, offsets, topic, part, KNOWN, 16_384, last, TRADING)
    bound = int(entered.max()) + MAX_AHEAD_US
    check_items("kafka", items, len(values), bound)
    assert all(v <= bound for v in last.values())  # nothing implausible moved the order check
    assert {d.offset for d in items if isinstance(d, DeadLetter)} <= set(offsets)


# --- KiteTicker: binary frames ---------------------------------------------------------

_LENGTHS = st.sampled_from([8, 28, 32, 44, 184])


@st.composite
def kite_packet(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind <= 2:  # a well-formed tick, some with hostile values
        token = draw(st.sampled_from([738561, 408065, 738561, 408065, 4242, 0, 2**32 - 1]))
        secs = st.integers(-7200, 3600).map(lambda s: ARRIVAL // US + s)
        q = Quote(
            draw(st.one_of(st.floats(0.05, 5000), st.floats(0.0, 40_000_000.0))),
            1.0,
            2.0,
            0.5,
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.one_of(secs, secs, st.integers(0, 2**32 - 1))),
        )
        return packet(token, draw(st.sampled_from(["ltp", "quote", "full"])), q)
    if kind == 3:  # a known length, any bytes
        return draw(st.binary(min_size=184, max_size=184))[: draw(_LENGTHS)]
    return draw(st.binary(max_size=200))


@st.composite
def kite_frame(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    body = draw(st.lists(kite_packet(), max_size=6))
    frame = message(body)
    if draw(st.booleans()):  # lie about the count, cut the frame, or add bytes
        count = draw(st.integers(0, 65535))
        frame = struct.pack(">H", count) + frame[2:]
    cut = draw(st.integers(0, len(frame)))
    return frame[:cut] if draw(st.booleans()) else frame + draw(st.binary(max_size=8))


@FUZZ
@given(st.lists(kite_frame(), min_size=1, max_size=8))
def test_kite_frames_never_raise_and_each_packet_is_processed_or_dead(frames: list[bytes]) -> None:
    parsed = [(ARRIVAL, parse_frame(f)) for f in frames]
    n_in = sum(len(p) for _, p in parsed)
    state = KiteTickState(seq=7)
    items, batches = frame_items(parsed, state, KNOWN)
    check_items("kite", [*items, *batches], n_in, ARRIVAL + MAX_AHEAD_US)
    assert state.seq == 7 + n_in
    assert all(v <= ARRIVAL + MAX_AHEAD_US for v in state.last_ts.values())


# --- Replay: Arrow tables --------------------------------------------------------------

I64 = st.integers(-(2**63), 2**63 - 1)
_TS_TYPES = ["s", "ms", "us", "ns"]


@st.composite
def tick_table(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(1, 40))
    base = ARRIVAL + np.cumsum(draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))) * US
    wild = st.one_of(
        st.none(), I64, st.sampled_from([to_us(datetime(2100, 1, 1, tzinfo=timezone.utc))])
    )
    ts: list[int | None] = [
        draw(wild) if draw(st.integers(0, 9)) == 0 else int(b) for b in base
    ]  # fmt: skip
    unit = draw(st.sampled_from([*_TS_TYPES, "text"]))
    if unit == "text":
        ts_col = pa.array([None if v is None else _iso_or_junk(v) for v in ts], pa.string())
    else:
        div = {"s": US, "ms": 1000, "us": 1, "ns": 1}[unit]
        mul = 1000 if unit == "ns" else 1
        vals = [None if v is None else (v // div if mul == 1 else _clip(v * mul)) for v in ts]
        ts_col = pa.array(vals, pa.int64()).cast(pa.timestamp(unit, "UTC"))

    def column(*choices: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(st.one_of(*choices), min_size=n, max_size=n))

    good_price = st.floats(0.05, 5000)
    tokens = column(st.sampled_from([*KNOWN, *KNOWN, *KNOWN, 4242, -7, None]))
    prices = column(good_price, good_price, st.floats(), st.none())
    cols = {
        "instrument_token": pa.array(tokens, pa.int64()),
        "timestamp": ts_col,
        "last_price": pa.array(prices, pa.float64()),
    }
    if draw(st.booleans()):
        vol = column(st.integers(0, 10**7), st.integers(0, 10**7), I64, st.none())
        cols["volume"] = pa.array(vol, pa.int64())
    return pa.table(cols)  # fmt: skip


def _clip(v: int) -> int:
    return max(min(v, 2**63 - 1), -(2**63))


def _iso_or_junk(us: int) -> str:
    try:
        return from_us(us).isoformat()
    except OverflowError:
        return f"junk-{us}"


_files = itertools.count()
_DIR = Path(tempfile.mkdtemp(prefix="fuzz-replay-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def run_replay(table: pa.Table) -> list[Any] | None:
    """Every item of a replay over ``table`` (2 partitions), or None if the file check
    refused the file before the run (a clear error naming it, not a crash)."""
    path = _DIR / f"f{next(_files):06d}"
    path.mkdir()
    pq.write_table(table, path / "ticks.parquet")
    try:
        src = ReplaySource(path, sorted(KNOWN), 7, 2, TRADING)
    except ConfigError:
        return None
    return [item for name in src.list_parts() for item in drain(src.build_part("fuzz", name, None))]


@FUZZ
@given(tick_table())
def test_replay_rows_never_raise_and_each_is_processed_or_dead(table: pa.Table) -> None:
    items = run_replay(table)
    if items is None:
        TALLY["replay files refused"] += 1
        return
    check_items("replay", items, table.num_rows, ARRIVAL + 367 * 86_400 * US)


# --- The measured failures, one by one ------------------------------------------------

Y2100 = to_us(datetime(2100, 1, 1, 3, 45, tzinfo=timezone.utc))
Y9999 = to_us(datetime(9999, 12, 31, tzinfo=timezone.utc))


def _reasons(items: list[Any]) -> Counter[str]:
    return Counter(str(d.reason) for d in items if isinstance(d, DeadLetter))


def _replay_files(tables: list[pa.Table], batch: int) -> list[Any]:
    """Everything one replay partition emits for these tables, written as files a, b, …"""
    path = _DIR / f"f{next(_files):06d}"
    path.mkdir()
    for name, table in zip("abcdefgh", tables, strict=False):
        pq.write_table(table, path / f"{name}.parquet")
    return drain(
        ReplaySource(path, sorted(KNOWN), batch, 1, TRADING).build_part("t", "replay-0", None)
    )


def test_replay_a_row_dated_2100_first_never_moves_the_order_check() -> None:
    """Its instrument's first row is dated 2100: a dead letter, and every later valid row of
    it (this file and the next) is processed, none out of order."""
    minutes = [ARRIVAL + 60 * US * i for i in range(30)]
    ts = [Y2100, *minutes[:10], Y9999, *minutes[10:20]]
    vol = [5] * len(ts)
    vol[3] = 2**62  # absurd volume: never reaches the fill model
    table = pa.table({
        "instrument_token": pa.array([738561] * len(ts), pa.int64()),
        "timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "last_price": pa.array([100.0] * len(ts)),
        "volume": pa.array(vol, pa.int64()),
    })  # fmt: skip
    later = pa.table({
        "instrument_token": pa.array([738561] * 10, pa.int64()),
        "timestamp": pa.array(minutes[20:], pa.int64()).cast(pa.timestamp("us", "UTC")),
        "last_price": pa.array([101.0] * 10),
        "volume": pa.array([5] * 10, pa.int64()),
    })  # fmt: skip
    items = _replay_files([table, later], batch=7)
    assert _reasons(items) == {"TIMESTAMP_IMPLAUSIBLE": 2, "INVALID_FIELD": 1}
    got = np.concatenate([b.ts for b in items if isinstance(b, TickBatch)])
    wild = (0, 3, 11)  # rows: dated 2100, absurd volume, dated 9999
    assert got.tolist() == [t for i, t in enumerate(ts) if i not in wild] + minutes[20:]


def test_replay_a_row_dated_days_after_its_file_never_blinds_its_instrument() -> None:
    """One tick of a one-day file moved three days ahead (well within a year of the file):
    a dead letter, and the instrument's later ticks are all processed, none out of order."""
    minutes = [ARRIVAL + 60 * US * i for i in range(200)]
    ts = list(minutes)
    ts[5] = minutes[5] + 3 * 86_400 * US
    table = pa.table({
        "instrument_token": pa.array([738561] * len(ts), pa.int64()),
        "timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "last_price": pa.array([100.0] * len(ts)),
        "volume": pa.array([5] * len(ts), pa.int64()),
    })  # fmt: skip
    items = _replay_files([table], batch=50)
    assert _reasons(items) == {"TIMESTAMP_IMPLAUSIBLE": 1}
    got = np.concatenate([b.ts for b in items if isinstance(b, TickBatch)])
    assert got.tolist() == [t for i, t in enumerate(minutes) if i != 5]


def _full(token: int, ts_s: int, price: float = 101.5) -> bytes:
    return packet(token, "full", Quote(price, 100.0, 102.0, 99.0, 1000, 5, ts_s))


def test_kite_bad_packets_are_dead_letters_and_good_ones_pass() -> None:
    now_s = ARRIVAL // US
    frames = [
        message([_full(738561, now_s), packet(408065, "ltp", Quote(50.0, 50, 50, 50))]),
        message([_full(738561, now_s + 1)])[:-3],  # truncated
        struct.pack(">H", 3) + message([_full(738561, now_s + 2)])[2:],  # says 3, holds 1
        message([b"\x00" * 10]),  # no packet is 10 bytes
        message([_full(738561, int(Y2100 // US))]),  # dated 2100
        message([_full(738561, now_s + 3)]) + b"junk",
    ]
    parsed = [(ARRIVAL, parse_frame(f)) for f in frames]
    state = KiteTickState()
    items, batches = frame_items(parsed, state, KNOWN)
    assert _reasons(items) == {"MALFORMED_PACKET": 4, "TIMESTAMP_IMPLAUSIBLE": 1}
    assert sorted(int(b.ts[-1] // US) - now_s for b in batches if b.instrument_token == 738561) == [
        3
    ]
    assert sum(len(b) for b in batches) == 4  # 738561 at +0, +2, +3 and the ltp tick
    assert state.last_ts[738561] == ARRIVAL + 3 * US


def test_kite_frames_read_as_kiteconnect_reads_them() -> None:
    """Well-formed frames give kiteconnect's own tick dicts (the rest of the flow reads them)."""
    from kiteconnect import KiteTicker

    kws = KiteTicker("key", "token")
    q = Quote(2900.05, 2890.0, 2910.0, 2880.0, 12345, 10, ARRIVAL // US)
    for token in (738561, 256265, 0x10C):  # NSE, an index, an nco divisor
        frame = message(packet(token, mode, q) for mode in ("ltp", "quote", "full"))
        assert parse_frame(frame) == kws._parse_binary(frame)


def test_kite_text_messages_never_raise_and_order_updates_still_arrive() -> None:
    from kiteconnect import KiteTicker

    from connectors.kite.ticks import guard_text

    kws = KiteTicker("key", "token")
    got: list[Any] = []
    kws.on_order_update = lambda ws, data: got.append(data)
    guard_text(kws)
    for bad in (b"[" * 5000 + b"]" * 5000, b"[1, 2]", b"null", b"\xff\xfe", b'"text"'):
        kws._parse_text_message(bad)
    kws._parse_text_message(b'{"type": "order", "data": {"order_id": "1"}}')
    assert got == [{"order_id": "1"}]
