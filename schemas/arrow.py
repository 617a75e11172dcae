"""Arrow schemas: the replay tick format and the ledger schema of every event model."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel

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
