"""``python -m connectors.kafka.load``: publish a Parquet tick file to the tick topic.

One JSON MarketTick per row, key = instrument token, so each instrument's ticks stay in
one partition in file order (a recording's order: by time). Rows are sent as they are, bad
ones included, so that the flow dead-letters them exactly as a replay would.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import KafkaError, Producer

from connectors.kafka import KafkaUnavailable, client_config, partitions_of
from connectors.replay_files import list_files
from data.generate import SAMPLE_FILE
from flows.config import load_config
from schemas.config import ConfigError, KafkaConfig, KafkaSourceConfig
from schemas.topics import TICKS_TOPIC

log = logging.getLogger("alpha_panda.load")


def _iso(col: pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_timestamp(col.type):
        return [None if v is None else v.isoformat() for v in col.to_pylist()]
    return [None if v is None else str(v) for v in col.to_pylist()]


def _json(tok: Any, ts: str | None, price: Any, vol: Any) -> bytes:
    if price is not None and not math.isfinite(price):
        price_text = json.dumps(price)  # NaN/Infinity: sent as recorded, refused by the flow
    else:
        price_text = "null" if price is None else repr(float(price))
    return (
        f'{{"instrument_token": {json.dumps(tok)}, "last_price": {price_text}, '
        f'"timestamp": {json.dumps(ts)}, "volume": {json.dumps(vol)}}}'
    ).encode()


def publish(path: str | Path, kafka: KafkaConfig, topic: str = TICKS_TOPIC) -> int:
    """Send every row of the file(s) under ``path`` to ``topic``; returns the message count."""
    partitions_of(kafka, topic)  # the topic must exist: we never auto-create it
    failed: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    conf = client_config(kafka, **{"linger.ms": 20, "enable.idempotence": True})
    producer = Producer(conf)
    sent, last_log = 0, time.monotonic()
    for f in list_files(path):
        t = pq.read_table(f)
        vol = t["volume"].to_pylist() if "volume" in t.column_names else [None] * len(t)
        rows = zip(
            t["instrument_token"].to_pylist(),
            _iso(t["timestamp"]),
            t["last_price"].to_pylist(),
            vol,
            strict=True,
        )
        for tok, ts, price, v in rows:
            key = None if tok is None else str(tok).encode()
            while True:
                try:
                    producer.produce(topic, _json(tok, ts, price, v), key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
            if sent % 10_000 == 0:
                producer.poll(0)
                if time.monotonic() - last_log > 5:
                    last_log = time.monotonic()
                    log.info("%d messages sent", sent)
    producer.flush()
    if failed:
        raise KafkaUnavailable(f"{len(failed)} message(s) not delivered to {topic}: {failed[0]}")
    return sent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m connectors.kafka.load", description=__doc__)
    ap.add_argument("path", nargs="?", default=str(SAMPLE_FILE), help="Parquet file or folder")
    ap.add_argument("--config", help="config file (default: $ALPHA_PANDA_CONFIG or bundled)")
    ap.add_argument("--brokers", help="bootstrap servers, overriding kafka.brokers")
    ap.add_argument("--topic", help="tick topic (default: source.topic or market.ticks)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        kafka = cfg.kafka
        if args.brokers:
            kafka = kafka.model_copy(update={"brokers": args.brokers.split(",")})
        default = cfg.source.topic if isinstance(cfg.source, KafkaSourceConfig) else TICKS_TOPIC
        topic = args.topic or default
        started = time.perf_counter()
        n = publish(args.path, kafka, topic)
    except (ConfigError, KafkaUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"alpha-panda: {exc}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - started
    print(f"published {n} ticks from {args.path} to {topic} in {secs:.1f}s ({n / secs:,.0f}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
