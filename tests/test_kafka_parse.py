"""Kafka tick messages: accepted columns, or dead letters with reason and original bytes."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main
from confluent_kafka import Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import stop
from connectors.kafka.parse import RAW_KEEP, parse_batch, parse_tick
from connectors.kafka.source import poll_items
from connectors.replay import RowsRead
from flows.config import DEFAULT_CONFIG, parse_config
from flows.graph import build_flow
from flows.plan import prepare
from schemas.events import DeadLetter
from schemas.ticks import US, TickBatch, to_us
from tests.kafka_broker import create_topic
from tests.support import read_ledger

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


# --- Poison messages (issue 14): nothing in a message may raise past the parser ---------

ENTERED = to_us(datetime(2026, 11, 20, 6, 0, tzinfo=timezone.utc))  # when they entered Kafka


def poison(token: int, entered: int) -> dict[str, tuple[bytes, str]]:
    """The hostile messages measured in issue 14 (and more), for ``token``, with the reason
    each must get; ``entered``: when they enter Kafka (µs)."""
    later = datetime.fromtimestamp(entered / US + 2 * 86_400, timezone.utc).isoformat()
    return {
        "JSON nested 1,200 deep": (
            b'{"instrument_token": %d, "volume": ' % token + b"[" * 1200 + b"]" * 1200 + b"}",
            "MALFORMED_JSON",
        ),
        "token above int64": (tick(token=2**64 + 1), "INVALID_FIELD"),
        "volume above int64": (tick(token=token, volume=2**64), "INVALID_FIELD"),
        "volume 2^62": (tick(token=token, volume=2**62), "INVALID_FIELD"),
        "volume negative": (tick(token=token, volume=-5), "INVALID_FIELD"),
        "top-level null": (b"null", "MALFORMED_JSON"),
        "year 9999": (tick(token=token, ts="9999-12-31T23:59:59Z"), "TIMESTAMP_IMPLAUSIBLE"),
        "year 1": (tick(token=token, ts="0001-01-01T00:00:00+05:30"), "TIMESTAMP_IMPLAUSIBLE"),
        "dated 2100": (tick(token=token, ts="2100-01-01T09:15:00+05:30"), "TIMESTAMP_IMPLAUSIBLE"),
        "two days after it entered": (
            tick(token=token, ts=later),
            "TIMESTAMP_IMPLAUSIBLE",
        ),
        "price 1e308": (tick(token=token, price=1e308), "INVALID_PRICE"),
    }


POISON = poison(256265, ENTERED)


def minute(i: int, token: int = 256265) -> bytes:
    """A valid tick ``i`` minutes after 09:15 IST on 2026-11-20 (a trading day)."""
    return tick(token=token, price=100.0 + i, ts=f"2026-11-20T{9 + (15 + i) // 60:02d}:"
                f"{(15 + i) % 60:02d}:00+05:30")  # fmt: skip


def poll(values: Sequence[bytes | None], last: dict[int, int]) -> list[Any]:
    entered = np.full(len(values), ENTERED, dtype=np.int64)
    offsets = list(range(len(values)))
    known = frozenset({256265})
    return poll_items(list(values), entered, offsets, TOPIC, PART, known, 16_384, last)


def test_poison_messages_are_dead_letters_with_their_reason() -> None:
    names = list(POISON)
    values = [minute(0), *(POISON[n][0] for n in names), minute(1)]
    items = poll(values, {})
    dead = {d.offset: d for d in items if isinstance(d, DeadLetter)}
    for k, name in enumerate(names, start=1):
        assert dead[k].reason == POISON[name][1], (name, dead[k].detail)
    ticks = [b for b in items if isinstance(b, TickBatch)]
    assert [len(b) for b in ticks] == [2]
    assert items[0] == RowsRead(len(values))


def test_a_tick_dated_2100_never_moves_its_instruments_order_check() -> None:
    last: dict[int, int] = {}
    first = poll([minute(0), tick(ts="2100-01-01T09:15:00+05:30"), minute(1)], last)
    later = poll([minute(i) for i in range(2, 50)], last)  # a later poll: 48 valid ticks
    assert [d.reason for d in first if isinstance(d, DeadLetter)] == ["TIMESTAMP_IMPLAUSIBLE"]
    assert not [d for d in later if isinstance(d, DeadLetter)]
    assert sum(len(b) for b in later if isinstance(b, TickBatch)) == 48
    assert last[256265] == to_us(datetime.fromisoformat("2026-11-20T10:04:00+05:30"))


def test_a_tick_a_little_after_it_entered_kafka_is_accepted() -> None:
    """Clock skew: up to a day after arrival is plausible (the bound is not zero)."""
    when = datetime.fromtimestamp(ENTERED / US + 3600, timezone.utc).isoformat()
    items = poll([tick(ts=when)], {})
    assert [len(b) for b in items if isinstance(b, TickBatch)] == [1]


def _kafka_config(address: str, topic: str, out: Path) -> Any:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["source"] = {"kind": "kafka", "topic": topic, "tail": False, "batch_size": 7}
    raw["kafka"] = {"brokers": [address], "partitions": 1}
    raw["output"] = {"dir": str(out)}
    return parse_config(raw, DEFAULT_CONFIG.parent)


def test_poison_on_the_broker_never_stops_the_flow_nor_a_resume(kafka: str, tmp_path: Path) -> None:
    """The measured failures, on a real broker: every poison message is a dead letter, its
    offset is passed in the recovery state, and a resume reads on (and never dies on it)."""
    topic = "poison.ticks"
    create_topic(kafka, topic, 1)
    token = 738561  # RELIANCE, in the bundled instrument list

    def send(values: list[bytes]) -> None:
        p = Producer({"bootstrap.servers": kafka})
        for v in values:
            p.produce(topic, v, str(token).encode())
        p.flush()

    cases = poison(token, time.time_ns() // 1000)  # they enter Kafka now
    bad = [v for v, _ in cases.values()]
    send([minute(i, token) for i in range(10)] + bad + [minute(i, token) for i in range(10, 20)])
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    reports = []
    for run in ("first", "resumed", "resumed again"):
        out = tmp_path / run.replace(" ", "_")
        flow = build_flow(prepare(_kafka_config(kafka, topic, out)))
        run_main(flow, epoch_interval=None, recovery_config=RecoveryConfig(str(recovery)))
        reports.append(json.loads((out / "report.json").read_text()))
        if run == "first":  # after the 2100 tick: later valid ticks of its instrument
            send([minute(i, token) for i in range(20, 40)] + bad)
        dead = read_ledger(out, "dead_letters") if (out / "dead_letters").exists() else []
        assert "TIMESTAMP_OUT_OF_ORDER" not in {d["reason"] for d in dead}
    first, resumed, again = reports
    assert (first["rows_read"], first["ticks_processed"]) == (20 + len(cases), 20)
    assert first["dead_letters_by_reason"] == dict(Counter(r for _, r in cases.values()))
    # the resumed run carries on from the recovery state: 20 new valid ticks, the poison again
    assert (resumed["rows_read"], resumed["ticks_processed"]) == (40 + 2 * len(cases), 40)
    assert resumed["dead_letters"] == 2 * len(cases)
    assert (again["rows_read"], again["ticks_processed"]) == (resumed["rows_read"], 40)


def test_a_lost_tick_topic_is_reported_and_read_again_from_its_start(kafka: str) -> None:
    """A broker back empty: the tick topic vanishes, then is created again and fills with new
    ticks. The tail partition says so once (health: TOPIC_LOST) and reads the new topic from
    its start, instead of waiting silently until it grows past the old offsets."""
    from confluent_kafka.admin import AdminClient

    from schemas.ticks import FeedStale

    topic, token = "lost.ticks", 738561
    create_topic(kafka, topic, 1)
    _publish(kafka, topic, token, range(0, 30))
    src = _tick_source(kafka, topic, token, tail=True)
    part = src.build_part("t", src.list_parts()[0], None)
    assert part.lost is not None
    part.lost[0].every_s = 0.0  # look at every idle poll

    def until(done: Any) -> list[Any]:
        got: list[Any] = []
        for _ in range(20_000):  # a bound on polls, not a timing
            got.extend(part.next_batch())
            if done(got):
                return got
        raise AssertionError(f"never came: {got}")

    def ticks(got: list[Any]) -> list[int]:
        return [int(t) for b in got if isinstance(b, TickBatch) for t in b.ts]

    first = until(lambda got: len(ticks(got)) == 30)
    admin = AdminClient({"bootstrap.servers": kafka})  # kept: its futures need it
    admin.delete_topics([topic])[topic].result()
    gone = until(lambda got: any(isinstance(x, FeedStale) for x in got))
    create_topic(kafka, topic, 1)
    _publish(kafka, topic, token, range(30, 35))
    back = until(lambda got: len(ticks(got)) == 5)
    assert [x for x in gone if isinstance(x, FeedStale)] == [
        FeedStale(max(ticks(first)), 0.0, True)
    ]
    assert not [x for x in back if isinstance(x, (FeedStale, DeadLetter))]
    assert ticks(back) == [
        to_us(datetime.fromisoformat(f"2026-11-20T09:{45 + i}:00+05:30")) for i in range(5)
    ]
    part.close()
    stop.reset()  # forget this partition: a later flow in this process waits for its own


def test_a_lost_topic_makes_market_data_critical_in_its_window() -> None:
    from operators.health import HealthJudge, WindowAcc
    from operators.session import MarketSession
    from schemas.config import HealthConfig, SessionConfig
    from schemas.enums import Broker, Stage

    cfg = HealthConfig(window_s=60, startup_windows=1)
    j = HealthJudge(Broker.PAPER, Stage.MARKET_DATA, cfg, True, MarketSession(SessionConfig()))
    w = 60 * US
    got = [
        j.on_item((ENTERED // w + k, WindowAcc(10, ENTERED + k * w, [], 10, lost=int(k == 2))))
        for k in range(4)
    ]
    assert [(str(h.status), str(h.reason)) for (h,) in got] == [
        ("startup", "STARTUP_GRACE"),
        ("healthy", "OK"),
        ("critical", "TOPIC_LOST"),
        ("healthy", "OK"),
    ]


def test_a_resume_after_its_topic_was_recreated_reads_the_new_one(kafka: str) -> None:
    """The flow was down while the broker lost the topic and it was made again: the resumed
    partition sees another topic id than its snapshot's, says so, and reads from the start."""
    from confluent_kafka.admin import AdminClient

    from schemas.ticks import FeedStale

    topic, token = "remade.ticks", 738561
    create_topic(kafka, topic, 1)
    src = _tick_source(kafka, topic, token, tail=True)
    _publish(kafka, topic, token, range(0, 20))
    first = src.build_part("t", src.list_parts()[0], None)
    assert _ticks(_poll_until(first, 20)) == 20
    state = first.snapshot()
    first.close()
    assert state.offset == 20 and state.topic_id
    admin = AdminClient({"bootstrap.servers": kafka})  # kept: its futures need it
    admin.delete_topics([topic])[topic].result()
    create_topic(kafka, topic, 1)
    _publish(kafka, topic, token, range(20, 25))
    resumed = src.build_part("t", src.list_parts()[0], state)
    got = _poll_until(resumed, 5)
    assert _ticks(got) == 5 and isinstance(got[0], FeedStale) and got[0].lost
    assert resumed.snapshot().topic_id not in ("", state.topic_id)
    resumed.close()
    stop.reset()  # forget these partitions (see above)


@pytest.mark.parametrize("tail", [True, False])
def test_a_resume_offset_beyond_the_log_is_said_and_the_log_read_from_its_start(
    kafka: str, tail: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The same topic, but its log holds less than the snapshot's offset (truncated, or a
    broker back empty under the same id): the partition logs it, health hears TOPIC_LOST,
    and what the log holds is read, instead of waiting silently for offset 1,000."""
    from connectors.kafka.source import KafkaTickState
    from schemas.ticks import FeedStale

    topic, token = f"short.ticks.{int(tail)}", 738561
    create_topic(kafka, topic, 1)
    _publish(kafka, topic, token, range(6))
    src = _tick_source(kafka, topic, token, tail)
    state = KafkaTickState(offset=1000, last_ts={token: 1})
    part = src.build_part("t", src.list_parts()[0], state)
    got = _poll_until(part, 6)
    assert _ticks(got) == 6
    assert isinstance(got[0], FeedStale) and got[0].lost
    assert "the resume offset 1000 is beyond the log's end" in caplog.text
    part.close()
    stop.reset()


def _ticks(items: list[Any]) -> int:
    return sum(len(b) for b in items if isinstance(b, TickBatch))


def _poll_until(part: Any, n: int) -> list[Any]:
    """What a Kafka partition emits until ``n`` ticks came or it ended (a bound on polls,
    not a timing)."""
    got: list[Any] = []
    for _ in range(20_000):
        try:
            got.extend(part.next_batch())
        except StopIteration:
            break
        if _ticks(got) == n:
            break
    return got


def _publish(kafka: str, topic: str, token: int, minutes: range) -> None:
    """One tick of ``token`` per minute in ``minutes``, keyed by its token."""
    p = Producer({"bootstrap.servers": kafka})
    for i in minutes:
        p.produce(topic, minute(i, token), str(token).encode())
    p.flush()


def _tick_source(kafka: str, topic: str, token: int, tail: bool) -> Any:
    from connectors.kafka.source import KafkaTickSource
    from schemas.config import KafkaConfig, KafkaSourceConfig

    return KafkaTickSource(
        KafkaSourceConfig(kind="kafka", topic=topic, tail=tail),
        KafkaConfig(brokers=[kafka], timeout_s=2),
        [token],
    )
