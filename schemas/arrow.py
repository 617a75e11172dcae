"""Arrow schemas: the replay tick format and the ledger schema of every event model."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import AwareDatetime, BaseModel

from schemas.ticks import DEPTH_LEVELS, Depth

TS_TYPE = pa.timestamp("us", tz="UTC")

TICK_SCHEMA = pa.schema(
    [
        pa.field("instrument_token", pa.int64()),
        pa.field("timestamp", TS_TYPE),
        pa.field("last_price", pa.float64()),
        pa.field("volume", pa.int64()),
    ]
)
"""Replay format: one row per tick. ``timestamp`` may also be an ISO-8601 string column."""

REQUIRED_TICK_COLUMNS = ("instrument_token", "timestamp", "last_price")

DEPTH_FIELDS = pa.schema(
    [
        pa.field("bid_price", pa.list_(pa.float64(), DEPTH_LEVELS)),
        pa.field("bid_qty", pa.list_(pa.int64(), DEPTH_LEVELS)),
        pa.field("ask_price", pa.list_(pa.float64(), DEPTH_LEVELS)),
        pa.field("ask_qty", pa.list_(pa.int64(), DEPTH_LEVELS)),
    ]
)
"""Optional replay columns: the order book's five best levels a side at each tick (Kite
``full`` mode), best first; a null list is a tick without depth. All four or none."""


def depth_columns(depth: Depth) -> list[pa.Array]:
    """``depth`` as the arrays of DEPTH_FIELDS."""
    out = []
    for f, values in zip(
        DEPTH_FIELDS, (depth.bid_price, depth.bid_qty, depth.ask_price, depth.ask_qty), strict=True
    ):
        flat = pa.array(values.reshape(-1), f.type.value_type)
        out.append(pa.FixedSizeListArray.from_arrays(flat, DEPTH_LEVELS))
    return out


def read_depth(table: pa.Table) -> Depth | None:
    """The depth columns of a replay table (None: it has none). Raises ValueError naming a
    column of the wrong shape or type."""
    names = [f.name for f in DEPTH_FIELDS if f.name in table.column_names]
    if not names:
        return None
    if len(names) < len(DEPTH_FIELDS):
        raise ValueError(f"depth columns: {sorted(set(DEPTH_FIELDS.names) - set(names))} missing")
    parts = []
    for f in DEPTH_FIELDS:
        try:
            col = table[f.name].combine_chunks().cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise ValueError(f"column {f.name}: not {DEPTH_LEVELS} numbers a row ({e})") from None
        empty = np.nan if pa.types.is_floating(f.type.value_type) else 0
        flat = col.flatten().fill_null(empty).to_numpy(zero_copy_only=False)
        full = np.full((len(col), DEPTH_LEVELS), empty, dtype=flat.dtype)
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        full[valid] = flat.reshape(-1, DEPTH_LEVELS)[: int(valid.sum())]
        parts.append(full)
    return Depth(parts[0], parts[1].astype(np.int64), parts[2], parts[3].astype(np.int64))


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Map a model field annotation to (arrow type, nullable)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner, _ = _arrow_type(args[0])
        return inner, True
    if origin is typing.Literal:
        return _arrow_type(type(typing.get_args(annotation)[0]))
    if origin is list:
        inner, _ = _arrow_type(typing.get_args(annotation)[0])
        return pa.list_(inner), False
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return pa.struct(model_schema(annotation)), False
        if issubclass(annotation, bool):
            return pa.bool_(), False
        if issubclass(annotation, Enum) or issubclass(annotation, str):
            return pa.string(), False
        if issubclass(annotation, int):
            return pa.int64(), False
        if issubclass(annotation, float):
            return pa.float64(), False
        if issubclass(annotation, datetime):
            return TS_TYPE, False
    if annotation is AwareDatetime:
        return TS_TYPE, False
    raise TypeError(f"no Arrow type for {annotation!r}")


def model_schema(model: type[BaseModel]) -> pa.Schema:
    """Arrow schema whose columns are the model's fields, in declaration order."""
    fields = []
    for name, info in model.model_fields.items():
        typ, nullable = _arrow_type(info.annotation)
        fields.append(pa.field(name, typ, nullable=nullable))
    return pa.schema(fields)
