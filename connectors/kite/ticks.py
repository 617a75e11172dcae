"""Live tick source: KiteTicker (threaded, on the shared reactor) → columnar batches.

One partition, ``kite``. Ticks queue up in the ticker thread; each ``next_batch`` drains the
queue, groups rows per instrument and validates them exactly like replay rows (bad ones →
dead letters with the tick as JSON). A tick's time is Kite's ``exchange_timestamp`` (full
mode), else the time it was received. The source also carries the order feed when the
``zerodha`` broker trades, so order updates share the connection, as at Kite.

Watchdog: no ticks for ``stale_after_s`` while the market is open and the socket looks open
→ drop the connection (KiteTicker reconnects with backoff) and emit ``FeedStale``, which
the market_data stage reports as a warning. ``capture`` writes every valid tick to Parquet
in the replay format. ``idle_stop_s`` ends the run after that long without ticks.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import stop
from connectors.kite.client import OrderFeed, call_in_reactor, start_ticker, ticker
from connectors.kite.packets import BadPacket, parse_frame
from connectors.replay import RowsRead
from connectors.replay_read import group_rows
from operators.session import MarketSession
from operators.ticks import MISSING_TS, RawTicks, arrival_bounds, dead_letter, validate
from schemas.arrow import DEPTH_FIELDS, TICK_SCHEMA, depth_columns
from schemas.config import KiteConfig, KiteSourceConfig, SessionConfig
from schemas.enums import DeadLetterReason
from schemas.events import DeadLetter
from schemas.ticks import DEPTH_LEVELS, US, Depth, FeedStale, TickBatch

log = logging.getLogger("alpha_panda.kite.ticks")
PART = "kite"
Entry = dict[str, Any] | BadPacket  # one packet of a binary frame
NAP = timedelta(milliseconds=20)  # wait between polls of an empty tick queue


@dataclass
class KiteTickState:
    seq: int = 0  # ticks received so far: the dead letters' offsets
    last_ts: dict[int, int] = field(default_factory=dict)
    capture_files: int = 0


def tick_time(t: dict[str, Any], received_us: int) -> int:
    ts = t.get("exchange_timestamp")
    if isinstance(ts, datetime):  # KiteTicker makes naive local datetimes from epoch seconds
        return int(ts.timestamp()) * US
    return received_us


def book_depth(ticks: Sequence[dict[str, Any]]) -> Depth | None:
    """The ``depth`` of full-mode ticks as columns (None: no tick has one); levels that are
    not a positive price with a positive quantity are left empty."""
    if not any(isinstance(t.get("depth"), dict) for t in ticks):
        return None
    d = Depth.empty(len(ticks))
    for i, t in enumerate(ticks):
        book = t.get("depth")
        if not isinstance(book, dict):
            continue
        for side, price, qty in (("buy", d.bid_price, d.bid_qty), ("sell", d.ask_price, d.ask_qty)):
            levels = book.get(side)
            for k, level in enumerate(levels[:DEPTH_LEVELS] if isinstance(levels, list) else []):
                got = _level(level)
                if got is not None:
                    price[i, k], qty[i, k] = got
    return d


def _level(level: Any) -> tuple[float, int] | None:
    """A depth level's (price, quantity), if both are usable."""
    if not isinstance(level, dict):
        return None
    p, q = level.get("price"), level.get("quantity")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
        return None
    if isinstance(q, bool) or not isinstance(q, int) or not 0 < q < 2**62:
        return None
    return float(p), q


class _Json(Sequence[bytes]):
    """Ticks as JSON bytes, encoded only when a dead letter needs one."""

    def __init__(self, ticks: list[dict[str, Any]]) -> None:
        self.ticks = ticks

    def __len__(self) -> int:
        return len(self.ticks)

    def __getitem__(self, i: Any) -> Any:
        return json.dumps(self.ticks[int(i)], default=str, sort_keys=True).encode()


class Capture:
    """Valid ticks → Parquet files of ``rows`` ticks, named by the first file index."""

    def __init__(self, directory: Path, rows: int, first_file: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.rows, self.files = directory, rows, first_file
        self.buf: list[TickBatch] = []
        self.n = 0

    def add(self, batches: list[TickBatch]) -> None:
        self.buf.extend(batches)
        self.n += sum(len(b) for b in batches)
        if self.n >= self.rows:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        ts = np.concatenate([b.ts for b in self.buf])
        order = np.argsort(ts, kind="stable")
        columns = {
            "instrument_token": np.concatenate([[b.instrument_token] * len(b) for b in self.buf]),
            "timestamp": ts,
            "last_price": np.concatenate([b.price for b in self.buf]),
            "volume": np.concatenate([b.volume for b in self.buf]),
        }
        arrays = [pa.array(columns[f.name][order]).cast(f.type) for f in TICK_SCHEMA]
        schema = TICK_SCHEMA
        if any(b.depth is not None for b in self.buf):  # full mode: the book too
            parts = [b.depth or Depth.empty(len(b)) for b in self.buf]
            depth = Depth(*(np.concatenate([getattr(p, f) for p in parts])[order]
                            for f in ("bid_price", "bid_qty", "ask_price", "ask_qty")))  # fmt: skip
            arrays += depth_columns(depth)
            schema = pa.schema([*TICK_SCHEMA, *DEPTH_FIELDS])
        table = pa.Table.from_arrays(arrays, schema=schema)
        pq.write_table(table, self.dir / f"ticks-{self.files:06d}.parquet")
        self.files += 1
        self.buf, self.n = [], 0


def _bad_letter(offset: int, bad: BadPacket) -> DeadLetter:
    raw = base64.b64encode(bad.raw).decode("ascii")
    reason = DeadLetterReason.MALFORMED_PACKET
    return dead_letter(PART, PART, offset, reason, bad.detail, raw, raw_encoding="base64")


def frame_items(
    frames: list[tuple[int, list[Entry]]], state: KiteTickState, known: frozenset[int]
) -> tuple[list[Any], list[TickBatch]]:
    """Frames as received (receipt µs, packets) → RowsRead and dead letters (offset order),
    and one batch per instrument. Every packet takes the next offset (``state.seq``) and is
    processed or a dead letter; ``state.last_ts`` keeps each instrument's order."""
    entries = [(recv, e) for recv, packets in frames for e in packets]
    first = state.seq
    state.seq += len(entries)
    dead: list[DeadLetter] = []
    raw: list[dict[str, Any]] = []
    cols: list[tuple[int, int, int, float, int, int]] = []  # offset, token, ts, price, vol, recv
    for k, (received, e) in enumerate(entries):
        if isinstance(e, BadPacket):
            dead.append(_bad_letter(first + k, e))
            continue
        p = e.get("last_price")
        price = float(p) if isinstance(p, (int, float)) else float("nan")
        tok, vol = int(e.get("instrument_token") or -1), int(e.get("volume_traded") or 0)
        cols.append((first + k, tok, tick_time(e, received), price, vol, received))
        raw.append(e)
    offsets, tokens, tsa, vols, got = (
        np.array([c[i] for c in cols], dtype=np.int64) for i in (0, 1, 2, 4, 5)
    )
    prices = np.array([c[3] for c in cols], dtype=np.float64)
    depth = book_depth(raw)
    batches: list[TickBatch] = []
    for token, rows in group_rows(tokens).items() if len(tokens) else ():
        records = _Json([raw[i] for i in rows.tolist()])
        rawt = RawTicks(PART, PART, token if token > 0 else None, offsets[rows], tsa[rows],
                        prices[rows], vols[rows], raw_records=records, recv=got[rows],
                        depth=depth.take(rows) if depth is not None else None)  # fmt: skip
        last = state.last_ts.get(token, MISSING_TS)
        batch, bad, new_last = validate(rawt, known, last, None, arrival_bounds(got[rows]))
        if token in known:
            state.last_ts[token] = new_last
        dead.extend(bad)
        if batch is not None:
            batches.append(batch)
    dead.sort(key=lambda d: d.offset)
    return [RowsRead(len(entries)), *dead], batches


def guard_text(kws: Any) -> None:
    """Keep kiteconnect's reader of text messages (order updates, errors) from raising: a
    message nested too deep or not an object is logged and dropped, the connection stays
    (order states are also polled, so no update is lost for good)."""
    read = kws._parse_text_message

    def guarded(payload: Any) -> None:
        try:
            read(payload)
        except Exception as e:  # the input boundary: a message never drops the socket
            log.warning("Kite ticker: unreadable text message dropped (%s)", type(e).__name__)

    kws._parse_text_message = guarded


class _KitePartition(StatefulSourcePartition[Any, KiteTickState]):
    def __init__(
        self,
        src: KiteSourceConfig,
        kite: KiteConfig,
        session: MarketSession,
        tokens: list[int],
        feed: OrderFeed | None,
        state: KiteTickState | None,
    ) -> None:
        self.src, self.session, self.tokens = src, session, tokens
        self.known = frozenset(tokens)
        self.state = state or KiteTickState()
        self.ticks: queue.SimpleQueue[tuple[int, list[Entry]]] = queue.SimpleQueue()
        self.last_tick = time.monotonic()
        self.last_event_ts = max(self.state.last_ts.values(), default=MISSING_TS)
        self.stale_reported = False
        self.capture = (
            Capture(Path(src.capture), src.capture_rows, self.state.capture_files)
            if src.capture
            else None
        )
        self.feed = feed
        self.connected = False  # the ticker connected at least once
        self.ws_root = kite.ws_root
        self.kws = ticker(kite, src.reconnect_max_delay_s)
        self.kws.on_connect = self._on_connect
        self.kws.on_message = self._on_message  # binary frames read here, never by kiteconnect
        guard_text(self.kws)
        self.kws.on_reconnect = lambda ws, n: log.warning("Kite ticker reconnecting (try %d)", n)
        if feed is not None:
            self.kws.on_order_update = lambda ws, data: feed.on_message(data)
            feed.start()
        start_ticker(self.kws)

    def _on_connect(self, ws: Any, response: Any) -> None:
        self.connected = True
        log.info("Kite ticker connected; subscribing %d instruments", len(self.tokens))
        ws.subscribe(self.tokens)
        ws.set_mode(self.src.mode, self.tokens)

    def _on_message(self, ws: Any, payload: bytes, is_binary: bool) -> None:
        """Ticker thread: a binary frame's packets, with their receipt time (never raises)."""
        if not is_binary:
            return  # text: order updates and errors, which kiteconnect reads
        received = time.time_ns() // 1000
        try:
            entries = parse_frame(payload)
        except Exception as e:  # parse_frame is fuzzed never to raise; a frame cannot stop us
            entries = [BadPacket(payload, f"unreadable frame ({type(e).__name__})")]
        if entries:
            self.ticks.put((received, entries))

    def _drain(self) -> list[tuple[int, list[Entry]]]:
        frames: list[tuple[int, list[Entry]]] = []
        while True:
            try:
                frames.append(self.ticks.get_nowait())
            except queue.Empty:
                return frames

    def next_batch(self) -> list[Any]:
        if stop.requested():
            raise StopIteration()
        out: list[Any] = []
        if self.feed is not None:
            updates, self.state.seq = self.feed.drain(PART, self.state.seq)
            out.extend(updates)
        frames = self._drain()
        now = time.monotonic()
        if not frames:
            return out + self._watchdog(now)
        self.last_tick, self.stale_reported = now, False
        items, batches = frame_items(frames, self.state, self.known)
        for b in batches:
            self.last_event_ts = max(self.last_event_ts, b.watermark)
        if self.capture is not None and batches:
            self.capture.add(batches)
            self.state.capture_files = self.capture.files
        return out + items + batches

    def _watchdog(self, now: float) -> list[Any]:
        silent = now - self.last_tick
        idle = self.src.idle_stop_s
        if idle is not None and silent >= idle:
            if not self.connected:  # not a quiet market: there was never a feed
                stop.fail(f"the Kite ticker never connected to {self.ws_root} in {idle:g} s "
                          "(idle_stop_s): no ticks were read")  # fmt: skip
            raise StopIteration()
        if self.stale_reported or silent < self.src.stale_after_s:
            return []
        if not self.session.is_open(time.time_ns() // 1000) or not self.kws.is_connected():
            return []
        log.warning("Kite ticker silent %.1f s with the socket open: reconnecting", silent)
        self.stale_reported = True
        self.last_tick = now  # the next check waits another stale_after_s
        call_in_reactor(self.kws.ws.dropConnection, abort=True)
        if self.last_event_ts == MISSING_TS:
            return []
        return [FeedStale(self.last_event_ts, round(silent, 1))]

    def next_awake(self) -> datetime | None:
        return None if not self.ticks.empty() else datetime.now(timezone.utc) + NAP

    def snapshot(self) -> KiteTickState:
        if self.capture is not None:
            self.capture.flush()
            self.state.capture_files = self.capture.files
        return KiteTickState(self.state.seq, dict(self.state.last_ts), self.state.capture_files)

    def close(self) -> None:
        if self.capture is not None:
            self.capture.flush()
        if self.feed is not None:
            self.feed.close()
        call_in_reactor(self.kws.close)


class KiteTickSource(FixedPartitionedSource[Any, KiteTickState]):
    """Ticks of ``tokens`` from KiteTicker; order updates too when ``with_orders``."""

    def __init__(
        self,
        src: KiteSourceConfig,
        kite: KiteConfig,
        session: SessionConfig,
        tokens: list[int],
        with_orders: bool,
    ) -> None:
        self.src, self.kite, self.session = src, kite, MarketSession(session)
        self.tokens, self.with_orders = tokens, with_orders

    def list_parts(self) -> list[str]:
        return [PART]

    def build_part(
        self, step_id: str, for_part: str, resume_state: KiteTickState | None
    ) -> _KitePartition:
        feed = OrderFeed(self.kite) if self.with_orders else None
        return _KitePartition(self.src, self.kite, self.session, self.tokens, feed, resume_state)
