"""Arrow schemas: the replay tick format and the ledger schema of every event model."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
"""Replay format: one row per tick. ``timestamp`` may also be an ISO-8601 string column, or
epoch numbers in ``source.timestamp_unit``; other integer and float types are read too."""

REQUIRED_TICK_COLUMNS = ("instrument_token", "timestamp", "last_price")

TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
"""Units of an epoch-number ``timestamp`` column (``source.timestamp_unit``)."""


class ReplayProblem(StrEnum):
    """Why a replay file is refused (the code ends the one-line error)."""

    NOT_FOUND = "NOT_FOUND"
    NO_FILES = "NO_FILES"
    UNREADABLE = "UNREADABLE"  # permissions, I/O
    NOT_PARQUET = "NOT_PARQUET"  # no readable footer: empty, truncated, another format
    CORRUPT = "CORRUPT"  # the footer reads but the data does not decode
    NO_ROWS = "NO_ROWS"
    MISSING_COLUMN = "MISSING_COLUMN"
    DUPLICATE_COLUMN = "DUPLICATE_COLUMN"
    BAD_COLUMN_TYPE = "BAD_COLUMN_TYPE"
    EPOCH_UNIT_REQUIRED = "EPOCH_UNIT_REQUIRED"  # epoch numbers, no source.timestamp_unit
    EPOCH_UNIT_IMPLAUSIBLE = "EPOCH_UNIT_IMPLAUSIBLE"  # read with that unit: no plausible year
    ALL_NULL = "ALL_NULL"  # a required column has no value in any row
    NO_VALID_TIMESTAMP = "NO_VALID_TIMESTAMP"
    CHANGED = "CHANGED"  # changed during the run, after it was checked


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _stringy(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def tick_column_problem(
    name: str, typ: pa.DataType, ts_unit: str | None
) -> tuple[ReplayProblem, str] | None:
    """Why a replay tick column of type ``typ`` cannot be read (None: it can). Epoch-number
    timestamps need ``ts_unit``; tokens are integers, prices and volumes numbers."""
    if pa.types.is_null(typ):
        return ReplayProblem.ALL_NULL, f"column {name} has no values (null type)"
    if name == "timestamp" and _numeric(typ) and ts_unit is None:
        return ReplayProblem.EPOCH_UNIT_REQUIRED, (
            f"column timestamp is {typ} (epoch numbers): set source.timestamp_unit to "
            "s, ms, us or ns to read it"
        )
    accepts = {
        "instrument_token": (pa.types.is_integer, "an integer"),
        "last_price": (
            lambda t: (_numeric(t) or pa.types.is_decimal(t)) and not pa.types.is_float16(t),
            "a number (not float16, too coarse for a price to the paisa)",
        ),
        "volume": (_numeric, "a number"),
        "timestamp": (
            lambda t: pa.types.is_timestamp(t) or _stringy(t) or _numeric(t),
            "a timestamp, an ISO-8601 string or epoch numbers",
        ),
    }
    if name in accepts and not accepts[name][0](typ):
        return ReplayProblem.BAD_COLUMN_TYPE, f"column {name} is {typ}, not {accepts[name][1]}"
    return None


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


def depth_type_error(schema: pa.Schema) -> str | None:
    """Why a replay file's depth columns cannot be read (None: they can, or there are none):
    all four or none, each a list of numbers."""
    names = [f.name for f in DEPTH_FIELDS if f.name in schema.names]
    if not names:
        return None
    if len(names) < len(DEPTH_FIELDS):
        lacks = [n for n in DEPTH_FIELDS.names if n not in names]
        return f"has depth column(s) {names} but not {lacks}"
    for name in names:
        typ = schema.field(name).type
        listy = pa.types.is_list(typ) or pa.types.is_large_list(typ)
        if not (listy or pa.types.is_fixed_size_list(typ)) or not (
            pa.types.is_integer(typ.value_type) or pa.types.is_floating(typ.value_type)
        ):
            return f"column {name} is {typ}, not a list of numbers"
        if pa.types.is_float16(typ.value_type):
            return f"column {name} is {typ}: float16 is too coarse for prices to the paisa"
    return None


def decimal_f64(values: np.ndarray) -> np.ndarray:
    """Floats as float64; a float32 value becomes the float64 of its shortest decimal
    (100.05 stays 100.05, not 100.05000305), as the recorder meant it."""
    if values.dtype.kind == "f" and values.dtype.itemsize < 8:
        return values.astype(str).astype(np.float64)
    return values.astype(np.float64, copy=False)


def read_depth(table: pa.Table) -> Depth | None:
    """The depth columns of a replay table (None: it has none). A row whose lists are not
    five finite numbers a side (whole quantities, positive prices) has no depth; the file's
    column types are checked before (``depth_type_error``)."""
    if DEPTH_FIELDS.names[0] not in table.column_names:
        return None
    n, parts, ok = table.num_rows, [], np.ones(table.num_rows, dtype=bool)
    for f in DEPTH_FIELDS:
        col = table[f.name].combine_chunks()
        lens = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
        good = lens == DEPTH_LEVELS
        flat = pc.list_flatten(col.filter(pa.array(good)))
        if not pa.types.is_floating(flat.type):
            flat = flat.cast(pa.float64(), safe=False)
        values = np.full((n, DEPTH_LEVELS), np.nan)
        raw = flat.fill_null(np.nan).to_numpy(zero_copy_only=False)
        values[good] = decimal_f64(raw).reshape(-1, DEPTH_LEVELS)
        ok &= good
        parts.append(values)
    bid_p, bid_q, ask_p, ask_q = parts
    for q in (bid_q, ask_q):  # whole, non-negative quantities (NaN: an empty level)
        bad = ~np.isnan(q) & ((q < 0) | (q != np.floor(q)) | (q > 2**62))
        ok &= ~bad.any(axis=1)
    for p in (bid_p, ask_p):
        ok &= ~(np.isinf(p) | (p <= 0)).any(axis=1)
    d = Depth.empty(n)
    d.bid_price[ok], d.ask_price[ok] = bid_p[ok], ask_p[ok]
    d.bid_qty[ok] = np.nan_to_num(bid_q[ok]).astype(np.int64)
    d.ask_qty[ok] = np.nan_to_num(ask_q[ok]).astype(np.int64)
    return d


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


_FLAT: dict[type[BaseModel], bool] = {}


def _plain(annotation: Any) -> bool:
    """A field type whose values ``model_dump`` returns as they are stored: no model, no
    container (a list is copied by model_dump), anywhere in it (unions included)."""
    if typing.get_origin(annotation) in (list, dict, tuple, set, frozenset):
        return False
    if isinstance(annotation, type):
        return not issubclass(annotation, (BaseModel, list, dict, tuple, set, frozenset))
    return all(_plain(a) for a in typing.get_args(annotation))


def ledger_row(event: BaseModel) -> dict[str, Any]:
    """``event.model_dump()``: the event's row in the ledger. An event whose fields hold no
    model and no container is the copy of its field values that model_dump gives (no
    ledger model has a serializer or an extra field), at a tenth of the cost."""
    cls = type(event)
    flat = _FLAT.get(cls)
    if flat is None:
        flat = _FLAT[cls] = all(_plain(f.annotation) for f in cls.model_fields.values())
    return dict(event.__dict__) if flat else event.model_dump()
