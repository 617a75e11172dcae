"""Kafka end to end against a real Kafka-protocol broker (tansu): topics, loader, the flow
from Kafka to Kafka, dead letters, 2 processes, and offsets in the recovery state."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from connectors.kafka.load import publish
from data.generate import SAMPLE_FILE
from flows.config import DEFAULT_CONFIG, parse_config
from flows.graph import build_flow
from flows.plan import prepare
from schemas.config import AppConfig, KafkaConfig
from schemas.events import Model, OrderFilled, PnlSnapshot, StageHealth
from schemas.ledger import LEDGER_KINDS
from schemas.topics import BROKER_TOPICS, broker_topic, dlq_topic
from tests.kafka_broker import Record, create_topic, read_topic
from tests.support import ROOT, bytewax_run, finish, free_ports, ledger_bytes, read_ledger

SAMPLE_TOPIC = "sample.ticks"
TRADING_KINDS = [k for k in LEDGER_KINDS if k != "dead_letters"]
MODEL_OF: dict[str, type[Model]] = {k: LEDGER_KINDS[k] for k in LEDGER_KINDS}


def kafka_raw(address: str, topic: str, prefix: str, out: Path) -> dict[str, Any]:
    """The bundled default config, reading ``topic`` to its end and writing Kafka too."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["source"] = {"kind": "kafka", "topic": topic, "tail": False, "batch_size": 3000}
    raw["sinks"] = ["ledger", "kafka"]
    raw["kafka"] = {"brokers": [address], "topic_prefix": prefix, "partitions": 2}
    raw["output"] = {"dir": str(out)}
    return raw


def as_config(raw: dict[str, Any]) -> AppConfig:
    return parse_config(raw, DEFAULT_CONFIG.parent)


def write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    # instruments/paths are relative to config/: make them absolute for a file elsewhere
    raw = {**raw, "instruments": str(DEFAULT_CONFIG.parent / raw["instruments"])}
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def sample_topic(kafka: str) -> str:
    """The bundled sample ticks, loaded once to a 4-partition topic."""
    create_topic(kafka, SAMPLE_TOPIC, 4)
    n = publish(SAMPLE_FILE, KafkaConfig(brokers=[kafka]), SAMPLE_TOPIC)
    assert n == 314_968
    return SAMPLE_TOPIC


@pytest.fixture(scope="session")
def replay_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["output"] = {"dir": str(out)}
    run_main(build_flow(prepare(as_config(raw))))
    return out


@pytest.fixture(scope="session")
def kafka_run(kafka: str, sample_topic: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, Kafka → flow → Kafka (prefix ``one.``) and the Parquet ledger."""
    out = tmp_path_factory.mktemp("kafka1")
    run_main(build_flow(prepare(as_config(kafka_raw(kafka, sample_topic, "one.", out)))))
    return out


def topic_events(kafka: str, prefix: str, broker: str) -> dict[type[Model], list[Record]]:
    return {m: read_topic(kafka, broker_topic(broker, m, prefix)) for m in BROKER_TOPICS}


def canon(model: type[Model], data: dict[str, Any]) -> str:
    return model.model_validate(data).model_dump_json()


def test_kafka_run_matches_the_replay_ledger_byte_for_byte(
    replay_ledger: Path, kafka_run: Path
) -> None:
    replay, kafka = ledger_bytes(replay_ledger), ledger_bytes(kafka_run)
    trading = [k for k in replay if k.split("/")[0] in TRADING_KINDS]
    assert any(k.startswith("fills/") for k in trading)
    assert {k: kafka[k] for k in trading} == {k: replay[k] for k in trading}
    report = json.loads((kafka_run / "report.json").read_text())
    assert report["rows_read"] == 314_968  # every message in the topic
    assert report["rows_read"] == report["ticks_processed"] + report["dead_letters"]
    assert report["dead_letters"] == 6


def test_output_topics_hold_every_ledger_event_as_envelopes(
    kafka: str, replay_ledger: Path, kafka_run: Path
) -> None:
    topics = {b: topic_events(kafka, "one.", b) for b in ("paper", "zerodha")}
    kind_of = {m: k for k, m in MODEL_OF.items()}
    for broker, by_model in topics.items():
        for model, records in by_model.items():
            envs = [r.json() for r in records]
            for r, env in zip(records, envs, strict=True):
                assert env["broker"] == broker  # the real broker, never "unknown"
                assert r.key is not None and r.key.decode() == env["key"]
                assert r.headers["broker"].decode() == broker
                assert r.headers["event_type"].decode() == env["type"]
                assert r.headers["correlation_id"].decode() == env["correlation_id"]
                token = env["data"].get("instrument_token") or env["data"].get("signal", {}).get(
                    "instrument_token"
                )
                assert env["key"] == (f"{broker}:{token}" if token else broker)
            if model not in kind_of:
                continue  # validated signals have no ledger kind; checked through the chain
            rows = [
                canon(model, row)
                for row in read_ledger(replay_ledger, kind_of[model])
                if row["broker"] == broker
            ]
            got = [canon(model, env["data"]) for env in envs]
            assert Counter(got) == Counter(rows), (broker, model.__name__)
            # per key (and stage, for health), the topic keeps the ledger's order
            by_key: dict[str, list[str]] = defaultdict(list)
            for env, text in zip(envs, got, strict=True):
                by_key[env["key"] + str(env["data"].get("stage"))].append(text)
            for key, texts in by_key.items():
                assert texts == [t for t in rows if t in set(texts)], key
    fills = [r for r in read_ledger(replay_ledger, "fills") if r["broker"] == "paper"]
    assert len(topics["paper"][OrderFilled]) == len(fills) > 0
    trading = [m for m in BROKER_TOPICS if m not in (StageHealth, PnlSnapshot)]
    assert not any(topics["zerodha"][m] for m in trading)  # no strategy trades on zerodha


def test_ids_chain_from_the_tick_to_the_fill(kafka: str, kafka_run: Path) -> None:
    by_model = topic_events(kafka, "one.", "paper")
    by_id = {env["id"]: env for records in by_model.values() for env in (r.json() for r in records)}
    own = {}
    for env in by_id.values():
        data = env["data"]
        own[data.get("event_id") or data.get("signal_id")] = env
    fills = [r.json() for r in by_model[OrderFilled]]
    assert fills
    for fill in fills:
        chain = [fill["type"]]
        env = fill
        while env["causation_id"] in own:
            nxt = own[env["causation_id"]]
            assert nxt["correlation_id"] == fill["correlation_id"]
            chain.append(nxt["type"])
            env = nxt
        assert chain == ["order_filled", "order_placed", "validated_signal", "trading_signal"]
        assert env["causation_id"] == fill["correlation_id"]  # the signal's cause: its tick
        own_order = fill["data"]["auto_square_off"]  # the account's: caused by the cut-off
        assert fill["correlation_id"].startswith("squareoff-" if own_order else "tick-")
    assert len(by_id) == sum(len(v) for v in by_model.values())  # ids are unique


def test_dead_letters_carry_reason_original_bytes_and_position(
    kafka: str, sample_topic: str, replay_ledger: Path, kafka_run: Path
) -> None:
    dlq = read_topic(kafka, dlq_topic(sample_topic))
    assert len(dlq) == 6
    ticks = {(r.partition, r.offset): r.value for r in read_topic(kafka, sample_topic)}
    for r in dlq:
        env = r.json()
        assert env["type"] == "dead_letter" and env["broker"] is None
        d = env["data"]
        part = int(r.headers["source_partition"].decode().split("-", 1)[0])
        offset = int(r.headers["source_offset"].decode())
        assert r.headers["source_topic"].decode() == sample_topic == d["source"]
        assert d["offset"] == offset and r.headers["reason"].decode() == d["reason"]
        assert d["raw"].encode() == ticks[(part, offset)]  # the original bytes
    replay_reasons = Counter(r["reason"] for r in read_ledger(replay_ledger, "dead_letters"))
    assert Counter(r.json()["data"]["reason"] for r in dlq) == replay_reasons


def test_bad_messages_go_to_the_dlq_and_the_flow_keeps_running(kafka: str, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    topic = "bad.ticks"
    create_topic(kafka, topic, 2)
    good = [
        json.dumps(
            {
                "instrument_token": 738561,
                "last_price": 2900.0 + i / 10,
                "timestamp": f"2026-11-20T09:{15 + i // 60:02d}:{i % 60:02d}+05:30",
            }
        ).encode()
        for i in range(120)
    ]
    bad = [
        b"{not json",
        b'{"instrument_token": "738561", "last_price": 1.0, '
        b'"timestamp": "2026-11-20T09:20:00+05:30"}',
        b'{"last_price": 1.0, "timestamp": "2026-11-20T09:20:00+05:30"}',
        b'{"instrument_token": 738561, "last_price": -5, "timestamp": "2026-11-20T09:20:00Z"}',
        b'{"instrument_token": 738561, "last_price": 5, "timestamp": "2026-11-20T09:20:00Z", '
        b'"junk": "' + b"x" * 100_000 + b'"}',
        b'{"instrument_token": 4242, "last_price": 5.0, "timestamp": "2026-11-20T09:20:00Z"}',
        b"\xff\xfe",
    ]
    p = Producer({"bootstrap.servers": kafka})
    for i, v in enumerate(good):
        p.produce(topic, v, b"738561")
        if i % 20 == 0:
            for b in bad:
                p.produce(topic, b, b"738561")
    p.flush()
    out = tmp_path / "out"
    run_main(build_flow(prepare(as_config(kafka_raw(kafka, topic, "bad.", out)))))
    report = json.loads((out / "report.json").read_text())
    assert report["rows_read"] == len(good) + 6 * len(bad)
    assert report["ticks_processed"] == len(good)
    assert report["dead_letters"] == 6 * len(bad)
    reasons = Counter(r.json()["data"]["reason"] for r in read_topic(kafka, dlq_topic(topic)))
    assert reasons == {
        "MALFORMED_JSON": 12,
        "INVALID_FIELD": 6,
        "MISSING_TOKEN": 6,
        "INVALID_PRICE": 6,
        "MESSAGE_TOO_LARGE": 6,
        "UNKNOWN_INSTRUMENT": 6,
    }


def test_two_processes_produce_what_one_process_produces(
    kafka: str, sample_topic: str, kafka_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "two"
    config = write_yaml(tmp_path / "two.yaml", kafka_raw(kafka, sample_topic, "two.", out))
    addrs = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    procs = [bytewax_run(["-i", str(i), "-a", addrs], config, tmp_path) for i in range(2)]
    printed = "".join(finish(p) for p in procs)
    assert printed.count("=== Alpha Panda run report ===") == 1
    one, two = ledger_bytes(kafka_run), ledger_bytes(out)
    assert one == two
    for broker in ("paper", "zerodha"):
        a, b = topic_events(kafka, "one.", broker), topic_events(kafka, "two.", broker)
        for model in BROKER_TOPICS:
            ids_a = sorted(r.json()["id"] for r in a[model])
            assert ids_a == sorted(r.json()["id"] for r in b[model]), (broker, model.__name__)


def test_offsets_live_in_the_recovery_state(kafka: str, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    topic = "resume.ticks"
    create_topic(kafka, topic, 2)

    def send(minutes: range) -> None:
        p = Producer({"bootstrap.servers": kafka})
        for m in minutes:
            for tok, price in ((738561, 2900.0), (408065, 1500.0)):
                v = {
                    "instrument_token": tok,
                    "last_price": price + m / 10,
                    "timestamp": f"2026-11-20T{9 + (15 + m) // 60:02d}:{(15 + m) % 60:02d}:00Z",
                }
                p.produce(topic, json.dumps(v).encode(), str(tok).encode())
        p.flush()

    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    rc = RecoveryConfig(str(recovery))
    send(range(0, 30))
    first = tmp_path / "first"
    run_main(
        build_flow(prepare(as_config(kafka_raw(kafka, topic, "resume.", first)))),
        epoch_interval=None,
        recovery_config=rc,
    )
    assert json.loads((first / "report.json").read_text())["rows_read"] == 60
    send(range(30, 50))
    second = tmp_path / "second"
    run_main(
        build_flow(prepare(as_config(kafka_raw(kafka, topic, "resume.", second)))),
        epoch_interval=None,
        recovery_config=rc,
    )
    # The resumed run starts at the stored offsets: its report (state resumed too) counts
    # 60 + 40 messages; re-reading the topic from the start would make it 160.
    report = json.loads((second / "report.json").read_text())
    assert report["rows_read"] == report["ticks_processed"] == 100


def test_topic_command_creates_idempotently_and_fails_fast_on_a_bad_address(
    kafka: str, tmp_path: Path
) -> None:
    raw = kafka_raw(kafka, "cmd.ticks", "cmd.", tmp_path / "out")
    config = write_yaml(tmp_path / "cmd.yaml", raw)
    cmd = [sys.executable, "-m", "connectors.kafka.topics", "--config", str(config)]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)

    listed = run()
    assert listed.returncode == 1 and "MISSING" in listed.stdout
    created = run("--create")
    assert created.returncode == 0, created.stderr
    names = [line.split()[0] for line in created.stdout.splitlines()]
    assert "cmd.paper.orders.filled" in names and "cmd.ticks.dlq" in names
    suffixes = ("signals.raw", "signals.validated", "signals.rejected", "orders.placed",
                "orders.filled", "orders.failed", "orders.fees", "pnl.snapshots", "health",
                "trading.state")  # fmt: skip
    per_broker = {f"cmd.{b}.{x}" for b in ("paper", "zerodha") for x in suffixes}
    assert sorted(names) == sorted({"cmd.ticks", "cmd.ticks.dlq"} | per_broker)
    assert all("created" in line for line in created.stdout.splitlines())
    again = run("--create")
    assert again.returncode == 0
    assert all(" exists " in line for line in again.stdout.splitlines())
    assert "2 partitions" in again.stdout
    bad = run("--brokers", "127.0.0.1:1")  # timeout=60 above: a hang fails the test
    assert bad.returncode == 2
    assert "cannot reach 127.0.0.1:1 within 5s" in bad.stderr


def test_flow_with_an_unreachable_cluster_stops_with_the_address_named(tmp_path: Path) -> None:
    raw = kafka_raw("127.0.0.1:1", "market.ticks", "", tmp_path / "out")
    raw["kafka"]["timeout_s"] = 1
    p = bytewax_run([], write_yaml(tmp_path / "down.yaml", raw), tmp_path)
    _, err = p.communicate(timeout=60)  # a hang fails the test
    assert p.returncode == 2
    assert "kafka.brokers: cannot reach 127.0.0.1:1 within 1s" in err


def test_tail_over_a_loaded_topic_gives_the_replay_ledger(
    kafka: str, sample_topic: str, replay_ledger: Path, tmp_path: Path
) -> None:
    """The README's live example (tail, max_delay_s 2 s of wall time) over a topic that
    already holds the sample: the same trading ledger as the replay, every run. Health
    differs, truthfully, only where live market data carries its receipt latency: every
    window counts the ticks the replay's counts (the latency samples, which reach health
    ahead of the ordered tick counts, close no window before its count)."""

    def ticks(root: Path) -> dict[tuple[str, str], int]:
        rows = read_ledger(root, "health")
        return {(h["broker"], str(h["window_start"])): h["count"] for h in rows
                if h["stage"] == "market_data"}  # fmt: skip

    for run in ("a", "b"):
        out = tmp_path / run
        raw = kafka_raw(kafka, sample_topic, f"tail{run}.", out)
        raw["source"] = {"kind": "kafka", "topic": sample_topic, "tail": True,
                         "max_delay_s": 2.0, "idle_stop_s": 3.0}  # fmt: skip
        raw["sinks"] = ["ledger"]
        raw["control"] = {"redis": False}
        run_main(build_flow(prepare(as_config(raw))))
        replay, tail = ledger_bytes(replay_ledger), ledger_bytes(out)
        trading = [k for k in replay if k.split("/")[0] in TRADING_KINDS and "health" not in k]
        assert any(k.startswith("fills/") for k in trading)
        assert {k: tail.get(k) for k in trading} == {k: replay[k] for k in trading}, run
        counted = ticks(out)
        assert counted == ticks(replay_ledger) and sum(counted.values()) > 600_000, run
        rows = read_ledger(out, "health")
        once = Counter((h["broker"], h["stage"], str(h["window_start"])) for h in rows)
        assert max(once.values()) == 1, run  # every window judged once
        md = [h for h in rows if h["stage"] == "market_data"]
        assert all(h["latency_p50_ms"] is not None for h in md if h["count"]), run


def test_trading_state_changes_are_published_as_envelopes(
    kafka: str, sample_topic: str, tmp_path: Path
) -> None:
    """A control file halts and resumes paper mid-session: both changes reach
    ``{broker}.trading.state`` as envelopes, in order, equal to the ledger's rows."""
    ctl = tmp_path / "control.jsonl"
    lines = [
        {"ts": "2026-11-20T05:00:00+00:00", "broker": "paper", "command": "halt"},
        {"ts": "2026-11-20T05:30:00+00:00", "broker": "paper", "command": "resume"},
    ]
    ctl.write_text("".join(json.dumps(x) + "\n" for x in lines))
    raw = kafka_raw(kafka, sample_topic, "state.", tmp_path / "out")
    raw["control"] = {"path": str(ctl)}
    run_main(build_flow(prepare(as_config(raw))))
    from schemas.events import TradingStateChanged

    records = read_topic(kafka, broker_topic("paper", TradingStateChanged, "state."))
    envs = [r.json() for r in sorted(records, key=lambda r: (r.partition, r.offset))]
    assert [(e["type"], e["broker"], e["data"]["state"]) for e in envs] == [
        ("trading_state_changed", "paper", "HALTED"),
        ("trading_state_changed", "paper", "ACTIVE"),
    ]
    ledger = read_ledger(tmp_path / "out", "trading_states")
    assert [canon(TradingStateChanged, e["data"]) for e in envs] == [
        canon(TradingStateChanged, row) for row in ledger
    ]
