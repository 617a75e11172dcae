"""The project's test command: ``python -m tests`` (lint, types, then the test suite).

Starts a local Redis first if none answers at ``$REDIS_URL`` (default 127.0.0.1:6379) and
``redis-server`` is installed. Exits non-zero if any step fails; pytest's "no tests
collected" (exit 5) is a failure too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from schemas.config import RedisConfig

ROOT = Path(__file__).resolve().parent.parent

STEPS = [
    ["ruff", "check", "."],
    ["ruff", "format", "--check", "."],
    ["mypy", "."],
    ["pytest", *sys.argv[1:]],
]


def ensure_redis() -> None:
    """Start ``redis-server`` (no persistence) when the test Redis does not answer."""
    url = RedisConfig().resolved_url()
    parts = urlsplit(url)

    def ping() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
        except redis.RedisError:
            return False

    if ping():
        return
    binary = shutil.which("redis-server")
    if binary is None or parts.hostname not in ("127.0.0.1", "localhost"):
        print(f"no Redis at {parts.hostname}:{parts.port}; the Redis tests will say so", flush=True)
        return
    print(f"$ redis-server --daemonize yes --port {parts.port or 6379} (none answered)", flush=True)
    subprocess.call(
        [binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(parts.port or 6379),
         "--save", "", "--appendonly", "no"]
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not ping() and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> int:
    ensure_redis()
    for step in STEPS:
        print(f"$ {' '.join(step)}", flush=True)
        rc = subprocess.call([sys.executable, "-m", *step], cwd=ROOT)
        if rc != 0:
            print(f"FAILED ({rc}): {' '.join(step)}", flush=True)
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
