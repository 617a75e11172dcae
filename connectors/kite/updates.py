"""Order updates as their own input, for a zerodha broker fed by a non-Kite tick source
(Kafka): a KiteTicker that subscribes to nothing (Kite sends order messages on every
connection) and the ``orders()`` poll of ``OrderFeed``. One partition; nothing to resume
(the poll re-reads Kite's view of the day's orders)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import stop
from connectors.kite.client import OrderFeed, call_in_reactor, start_ticker, ticker
from connectors.kite.ticks import NAP
from schemas.config import KiteConfig

PART = "kite-orders"


class _UpdatePartition(StatefulSourcePartition[Any, int]):
    def __init__(self, cfg: KiteConfig, seq: int) -> None:
        self.feed = OrderFeed(cfg)
        self.seq = seq
        self.kws = ticker(cfg)
        self.kws.on_order_update = lambda ws, data: self.feed.on_message(data)
        self.feed.start()
        start_ticker(self.kws)

    def next_batch(self) -> list[Any]:
        if stop.requested() or stop.ticks_ended():  # a signal, or every tick partition ended
            raise StopIteration()
        items, self.seq = self.feed.drain(PART, self.seq)
        return list(items)

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + NAP

    def snapshot(self) -> int:
        return self.seq

    def close(self) -> None:
        self.feed.close()
        call_in_reactor(self.kws.close)


class KiteOrderSource(FixedPartitionedSource[Any, int]):
    def __init__(self, cfg: KiteConfig) -> None:
        self.cfg = cfg

    def list_parts(self) -> list[str]:
        return [PART]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _UpdatePartition:
        return _UpdatePartition(self.cfg, resume_state or 0)
