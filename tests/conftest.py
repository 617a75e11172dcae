"""Shared fixtures: small synthetic tick files and configs built from the real schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from data.generate import generate, sample_instruments
from flows.config import parse_config
from schemas.config import AppConfig

DAY = date(2026, 11, 20)
INSTRUMENTS = sample_instruments()[:6]
TOKENS = [t for t, _, _ in INSTRUMENTS]


def small_ticks(folder: Path, days: int = 1, gap_s: float = 6.0, bad_rows: bool = True) -> Path:
    """A few instruments, ~4k ticks each per day, one file per day (with the bad rows)."""
    from data.generate import trading_days

    out = folder / "ticks"
    generate(
        out, INSTRUMENTS, trading_days(DAY, days), seed=11, mean_gap_s=gap_s, bad_rows=bad_rows
    )
    return out


def config_dict(ticks: Path, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "source": {"path": str(ticks), "batch_size": 700, "partitions": 3},
        "instruments": [
            {"instrument_token": t, "tradingsymbol": s, "tick_size": ts} for t, s, ts in INSTRUMENTS
        ],
        "brokers": {"paper": {"starting_cash": 1_000_000}, "zerodha": {}},
        "strategies": [
            {
                "id": "mom",
                "type": "momentum",
                "instruments": TOKENS[:3],
                "brokers": ["paper"],
                "params": {"lookback": 60, "threshold": 0.003, "quantity": 5},
            },
            {
                "id": "mr",
                "type": "mean_reversion",
                "instruments": TOKENS[2:],
                "brokers": ["paper"],
                "params": {"bollinger_lookback": 30, "bollinger_width": 2.0, "quantity": 5},
            },
        ],
        "portfolio": {"snapshot_interval_s": 300},
        "health": {"window_s": 60},
    }
    raw.update(over)
    return raw


def make_config(ticks: Path, **over: Any) -> AppConfig:
    return parse_config(config_dict(ticks, **over), Path("."))


def read_ledger(root: Path, kind: str) -> list[dict[str, Any]]:
    return ds.dataset(root / kind).to_table().to_pylist()


@pytest.fixture(scope="session")
def ticks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_ticks(tmp_path_factory.mktemp("ticks"))


@pytest.fixture(scope="session")
def config(ticks_dir: Path) -> AppConfig:
    return make_config(ticks_dir)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a real Kafka-protocol broker (tansu), one per test session."""
    from tests.kafka_broker import start_broker

    yield from start_broker(tmp_path_factory.mktemp("tansu") / "tansu.log")
