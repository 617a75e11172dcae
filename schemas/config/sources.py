"""Tick sources: replay Parquet, a Kafka topic, the KiteTicker websocket."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator

from schemas.config.base import WEEK_S, Section, iana_zone, seconds
from schemas.topics import TICKS_TOPIC

TimestampUnit = Literal["s", "ms", "us", "ns"]


class ReplaySourceConfig(Section):
    kind: Literal["replay"] = "replay"
    path: str = Field(
        min_length=1,
        description="Parquet file or folder of files, each checked before the run, replayed "
        "in time order",
    )
    batch_size: int = Field(
        default=20_000, gt=0, le=10_000_000, description="max ticks per columnar batch"
    )
    partitions: int = Field(
        default=4, gt=0, le=1_024, description="replay partitions (instrument buckets)"
    )
    timestamp_unit: TimestampUnit | None = Field(
        default=None,
        description="unit of a timestamp column of epoch numbers (int or float); unset: such "
        "a file is refused. Timestamp and ISO-8601 text columns carry their own.",
    )
    timezone: str = Field(
        default="UTC",
        description="IANA zone of naive times (a timestamp column without a zone, ISO-8601 "
        "text without an offset): Asia/Kolkata for exports in Indian time. Times that carry "
        "a zone or offset, and epoch numbers, are read as they are.",
    )

    _known_zone = field_validator("timezone")(iana_zone)

    @property
    def name(self) -> str:
        return Path(self.path).stem


class KafkaSourceConfig(Section):
    kind: Literal["kafka"]
    topic: str = Field(default=TICKS_TOPIC, min_length=1)
    tail: bool = Field(default=True, description="wait for new ticks; false stops at the end")
    from_start: bool = Field(default=True, description="first run reads the topic from offset 0")
    batch_size: int = Field(default=5_000, gt=0, le=1_000_000, description="max per poll")
    max_message_bytes: int = Field(
        default=16_384, gt=0, le=100 * 2**20, description="larger → dead letter"
    )
    idle_stop_s: float | None = seconds(
        None, WEEK_S, description="tail: finish the run after this long without messages"
    )
    max_delay_s: float | None = seconds(
        None,
        description="an instrument silent this long (wall clock) stops holding the others' "
        "signals back (live tailing); None keeps exact event-time order",
    )

    @property
    def name(self) -> str:
        return self.topic


class KiteSourceConfig(Section):
    """Live ticks from the KiteTicker websocket (``kite:`` section: where, and credentials)."""

    kind: Literal["kite"]
    mode: Literal["ltp", "quote", "full"] = Field(
        default="full", description="ticker mode; ltp/quote carry no exchange time (receipt time)"
    )
    stale_after_s: float = seconds(
        10.0, 3_600, description="silent this long in market hours, socket open: reconnect"
    )
    reconnect_max_delay_s: float = Field(
        default=5.0, ge=5, le=300, description="longest reconnect wait"
    )
    capture: str | None = Field(
        default=None, min_length=1, description="directory: also write ticks as Parquet"
    )
    capture_rows: int = Field(
        default=50_000, gt=0, le=10_000_000, description="ticks per capture file"
    )
    idle_stop_s: float | None = seconds(
        None, WEEK_S, description="finish the run after this long without ticks"
    )
    max_delay_s: float | None = seconds(
        2.0, description="as for kafka: quiet instruments cannot hold signals back"
    )

    @property
    def name(self) -> str:
        return "kite"


def _source_kind(v: Any) -> str:
    return str(v.get("kind", "replay") if isinstance(v, dict) else getattr(v, "kind", "replay"))


SourceConfig = Annotated[
    Annotated[ReplaySourceConfig, Tag("replay")]
    | Annotated[KafkaSourceConfig, Tag("kafka")]
    | Annotated[KiteSourceConfig, Tag("kite")],
    Discriminator(_source_kind),
]
