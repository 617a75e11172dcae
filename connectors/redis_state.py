"""Redis live-state sink: the flow's latest whole values, written by a background thread.

The flow only hands values over (``put``); a writer thread sends what changed in one MULTI/EXEC
at most every ``flush_interval_s``. If Redis is unreachable the flow keeps trading: writes are
retried with exponential backoff, the error is logged at most once per ``log_interval_s``, and
on the first write after a failure the writer sends its full current state again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.config import RedisConfig
from schemas.events import Model, StageHealth
from schemas.redis_keys import LiveKeys, RunMeta, WriterBeat, encode, history_score

log = logging.getLogger("alpha_panda.redis")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def connect(cfg: RedisConfig) -> redis.Redis:
    """A client that fails fast: the writer (or the status command) owns retries."""
    return redis.Redis.from_url(
        cfg.resolved_url(),
        socket_connect_timeout=cfg.timeout_s,
        socket_timeout=cfg.timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class _History:
    """One (broker, stage) health history as this writer knows it: window score → member.
    Each key has one writer (the worker judging that stage), so it owns the whole key."""

    windows: dict[float, bytes] = field(default_factory=dict)
    new: dict[bytes, float] = field(default_factory=dict)


class StateWriter:
    """Desired state in memory; ``flush`` writes what changed, or everything after a failure."""

    def __init__(self, cfg: RedisConfig, worker: int, meta: RunMeta | None = None) -> None:
        self.cfg = cfg
        self.keys = LiveKeys(cfg.key_prefix)
        self.worker = worker
        self.where = redact(cfg.resolved_url())
        self.client = connect(cfg)
        self._lock = threading.Lock()
        self._values: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._history: dict[str, _History] = {}
        self._full = True
        self._state: Literal["running", "finished"] = "running"
        self._next_try = 0.0
        self._backoff = 0.0
        self._down_since: float | None = None
        self._last_log = float("-inf")
        self._failures = 0
        self._last_beat = float("-inf")
        self._flow_at: datetime | None = None
        # worker 0 starts by clearing what an earlier run left under the prefix
        self._clear = self.keys.run_keys(meta) if meta is not None else []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if meta is not None:
            with self._lock:
                self._set([meta])

    def put(self, items: Iterable[Model]) -> None:
        """Take new values (called from the flow; never touches the network)."""
        with self._lock:
            self._flow_at = datetime.now(timezone.utc)
            self._set(items)

    def _set(self, items: Iterable[Model]) -> None:
        for item in items:
            if isinstance(item, StageHealth):
                self._remember(item)
            for key, value in self.keys.values_of(item):
                self._values[key] = value
                self._dirty.add(key)

    def _remember(self, h: StageHealth) -> None:
        hist = self._history.setdefault(self.keys.health_history(h.broker, h.stage), _History())
        score, member = history_score(h), encode(h)
        hist.windows[score] = member
        hist.new[member] = score
        while len(hist.windows) > self.cfg.history_windows:
            hist.new.pop(hist.windows.pop(min(hist.windows)), None)

    def pending(self) -> bool:
        with self._lock:
            return self._full or bool(self._dirty) or any(h.new for h in self._history.values())

    def _take(
        self,
    ) -> tuple[bool, list[str], list[tuple[str, bytes]], list[tuple[str, dict[bytes, float]]]]:
        """What to write now: changed values and new history members, or all of them."""
        with self._lock:
            clear = [k for k in self._clear if k not in self._values and k not in self._history]
            self._clear = []  # first attempt only: later, other workers' values live there
            full, self._full = self._full, False
            keys = sorted(self._values) if full else sorted(self._dirty)
            values = [(k, self._values[k]) for k in keys]
            members: list[tuple[str, dict[bytes, float]]] = []
            for key, hist in sorted(self._history.items()):
                add = {m: s for s, m in hist.windows.items()} if full else hist.new
                if add:
                    members.append((key, add))
                hist.new = {}
            self._dirty = set()
            return full, clear, values, members

    def flush(self) -> bool:
        """One write attempt of everything pending plus this writer's heartbeat."""
        full, clear, values, members = self._take()
        beat = WriterBeat(
            worker=self.worker,
            state=self._state,
            updated_at=datetime.now(timezone.utc),
            flow_at=self._flow_at,
        )
        try:
            pipe = self.client.pipeline(transaction=True)
            if clear:
                pipe.delete(*clear)
            for key, value in values:
                pipe.set(key, value)
            for key, mapping in members:
                if full:
                    pipe.delete(key)  # whatever an earlier run left there
                pipe.zadd(key, mapping)
                pipe.zremrangebyrank(key, 0, -self.cfg.history_windows - 1)
            for key, value in self.keys.values_of(beat):
                pipe.set(key, value)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                self._full = True  # whatever Redis lost, the next write restores everything
            self._failed(exc)
            return False
        now = time.monotonic()
        if self._down_since is not None:
            log.warning(
                "live state: redis %s reachable again after %.1f s; wrote the full state (%d keys)",
                self.where,
                now - self._down_since,
                len(values) + len(members),
            )
        self._down_since, self._backoff, self._failures = None, 0.0, 0
        self._last_beat = now
        return True

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._down_since is None:
            self._down_since = now
        self._backoff = min(max(2 * self._backoff, self.cfg.flush_interval_s), self.cfg.retry_max_s)
        self._next_try = now + self._backoff
        if now - self._last_log >= self.cfg.log_interval_s:
            self._last_log = now
            log.warning(
                "live state: redis %s unreachable (%s: %s); trading continues, %d failed "
                "writes so far, retrying with backoff up to %.0f s",
                self.where,
                type(exc).__name__,
                exc,
                self._failures,
                self.cfg.retry_max_s,
            )

    def step(self) -> None:
        """What the writer thread does on each tick: write if due."""
        now = time.monotonic()
        if now < self._next_try:
            return
        if self.pending() or now - self._last_beat >= self.cfg.heartbeat_s:
            self.flush()

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.cfg.flush_interval_s):
                self.step()

        self._thread = threading.Thread(target=loop, name=f"redis-state-{self.worker}", daemon=True)
        self._thread.start()

    def close(self) -> bool:
        """End of run: mark this writer finished and write, trying until ``close_timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._state = "finished"
        deadline = time.monotonic() + self.cfg.close_timeout_s
        while not self.flush():
            if time.monotonic() >= deadline:
                log.warning(
                    "live state: redis %s unreachable at end of run; the final state was not "
                    "written",
                    self.where,
                )
                return False
            time.sleep(min(self.cfg.flush_interval_s, max(deadline - time.monotonic(), 0)))
        self.client.close()
        return True


class _Partition(StatelessSinkPartition[Model]):
    def __init__(self, writer: StateWriter) -> None:
        self.writer = writer
        writer.flush()  # meta (and clearing) before this worker handles any item
        writer.start()

    def write_batch(self, items: list[Model]) -> None:
        self.writer.put(items)

    def close(self) -> None:
        self.writer.close()


class RedisStateSink(DynamicSink[Model]):
    """Each worker writes the values that reach it; worker 0 also writes the run's meta."""

    def __init__(self, cfg: RedisConfig, meta: RunMeta) -> None:
        self.cfg = cfg
        self.meta = meta

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        meta = self.meta.model_copy(update={"workers": worker_count})
        return _Partition(StateWriter(self.cfg, worker_index, meta if worker_index == 0 else None))
