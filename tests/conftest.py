"""Shared fixtures (helpers live in tests.support): synthetic ticks, configs, the Kite
simulator, a Kafka-protocol broker."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from connectors.kite.sim.__main__ import SIM_DEFAULTS, build
from connectors.kite.sim.http import SimApi, serve
from schemas.config import AppConfig, RedisConfig
from tests.live_sim import Recorder
from tests.redis_server import shared_url
from tests.support import ROOT, make_config, small_ticks


def pytest_configure(config: pytest.Config) -> None:
    """The run's own cache folder (schemas.calendar): never the user's, which a test could
    neither trust nor leave alone; runs started by tests inherit it."""
    os.environ["ALPHA_PANDA_CACHE"] = tempfile.mkdtemp(prefix="alpha-panda-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("ALPHA_PANDA_CACHE", ""), ignore_errors=True)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimApi, str]]:
    for k in SIM_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    api = build(ROOT / "data" / "sample_ticks.parquet", ROOT / "data" / "instruments.csv")
    server = serve(api, "127.0.0.1", 0)
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def ticker(sim: tuple[SimApi, str]) -> Iterator[Callable[[dict[str, list[int]]], Recorder]]:
    """KiteTickers on the simulator, subscribed as asked (closed after the test)."""
    made: list[Recorder] = []

    def make(modes: dict[str, list[int]]) -> Recorder:
        made.append(Recorder(sim[1], modes))
        return made[-1]

    yield make
    for r in made:
        r.close()


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


@pytest.fixture
def rcfg() -> Iterator[RedisConfig]:
    """The shared Redis with a key prefix of the test's own, cleaned up afterwards."""
    cfg = RedisConfig(url=shared_url(), key_prefix=f"ctl-{uuid.uuid4().hex[:10]}:")
    yield cfg
    client = redis.Redis.from_url(str(cfg.url))
    for key in client.scan_iter(match=f"{cfg.key_prefix}*"):
        client.delete(key)
    client.close()
