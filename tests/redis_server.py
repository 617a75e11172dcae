"""Real Redis for the tests: the shared one (``$REDIS_URL`` or 127.0.0.1:6379) and private
``redis-server`` processes on free ports that a test can stop and restart. Missing Redis:
skip locally, fail when CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from schemas.config import RedisConfig
from tests.support import free_ports


def missing(msg: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def shared_url() -> str:
    """The shared Redis, answering PING (else skip / fail in CI)."""
    url = RedisConfig().resolved_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        missing(f"Redis at {url} does not answer ({exc}); start redis-server or set REDIS_URL")
    return url


class RedisServer:
    """A private ``redis-server`` on a fixed free port; no persistence unless ``aof_dir``
    (append-only file there)."""

    def __init__(self, log: Path, aof_dir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server not found on PATH")
        self.binary = str(binary)
        self.port = free_ports(1)[0]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.aof_dir = aof_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        if self.aof_dir is None:
            cmd += ["--save", "", "--appendonly", "no"]
        else:
            cmd += ["--save", "", "--appendonly", "yes", "--dir", str(self.aof_dir)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {self.port}: see {self.log}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
