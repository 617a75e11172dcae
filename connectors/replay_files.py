"""Replay files: found, checked whole and put in time order before the flow starts, then
decoded into numpy columns by the same code in the check and in the replay.

A file that cannot be used (no footer, truncated, another format, a column of the wrong type,
epoch numbers without ``source.timestamp_unit``, no rows, a required column with no value,
a row group that does not decode) raises ``ReplayFileError``: one line naming the file, the
problem and its code (``ReplayProblem``). Files are replayed in the order of their median
tick time (robust to a stray bad timestamp), ties by name, whatever their names.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import (
    DEPTH_FIELDS,
    REQUIRED_TICK_COLUMNS,
    ReplayProblem,
    depth_type_error,
    read_depth,
    tick_column_problem,
)
from schemas.config import ConfigError
from schemas.ticks import Depth

log = logging.getLogger("alpha_panda.replay")

MISSING_TS = np.iinfo(np.int64).min  # as operators.ticks.MISSING_TS
I64_MAX = np.iinfo(np.int64).max
US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}
YEAR_US = 365.2425 * 86_400 * 1_000_000
PLAUSIBLE_YEARS = (1990, 2100)  # an epoch column read as a whole file outside: wrong unit
SAMPLES = 4_096  # timestamps kept per row group for the file's median


class ReplayFileError(ConfigError):
    """A replay file that cannot be used; ``path`` and ``problem`` are machine-readable."""

    def __init__(self, path: Path, problem: ReplayProblem, detail: str) -> None:
        self.path, self.problem = path, problem
        detail = "".join(c if c.isprintable() else "?" for c in " ".join(detail.split()))
        super().__init__(f"source.path: {path} {detail} [{problem}]")


@dataclass
class TickColumns:
    """A replay table as numpy columns; unusable values are sentinels the row check rejects."""

    tokens: np.ndarray  # int64, -1 where null or outside int64
    ts: np.ndarray  # int64 µs UTC, MISSING_TS where null or unreadable
    price: np.ndarray  # float64, NaN where null
    volume: np.ndarray  # int64, -1 where null or not a whole number
    raw_ts: list[Any] | None  # the text, when timestamps were strings
    depth: Depth | None


def _values(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """numpy values (nulls as 0) and the validity mask of a numeric column."""
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_decimal(col.type):
        col = col.cast(pa.float64(), safe=False)
    vals = col.fill_null(0).to_numpy(zero_copy_only=False) if len(col) else np.zeros(0)
    return np.asarray(vals), valid


def int_column(col: pa.ChunkedArray, fill: int) -> np.ndarray:
    """int64 values; nulls, values outside int64 and non-whole floats → ``fill``."""
    vals, ok = _values(col)
    if vals.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(vals) & (np.floor(vals) == vals) & (np.abs(vals) < 2.0**63)
    elif vals.dtype == np.uint64:
        ok &= vals <= np.uint64(I64_MAX)
    out = np.full(len(vals), fill, dtype=np.int64)
    out[ok] = vals[ok].astype(np.int64)
    return out


def float_column(col: pa.ChunkedArray) -> np.ndarray:
    vals, ok = _values(col)
    out = np.full(len(vals), np.nan)
    out[ok] = vals[ok].astype(np.float64)
    return out


def epoch_us(vals: np.ndarray, ok: np.ndarray, unit: str) -> np.ndarray:
    """Epoch numbers in ``unit`` (s, ms, us, ns) → int64 µs; out of range → MISSING_TS."""
    out = np.full(len(vals), MISSING_TS, dtype=np.int64)
    if vals.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            scaled = vals * (1e-3 if unit == "ns" else US_PER[unit])
            ok = ok & np.isfinite(scaled) & (np.abs(scaled) < 2.0**62)
        out[ok] = np.round(scaled[ok]).astype(np.int64)
        return out
    if vals.dtype == np.uint64:
        ok = ok & (vals <= np.uint64(I64_MAX))
    v = vals.astype(np.int64)
    if unit == "ns":
        out[ok] = v[ok] // 1_000
        return out
    limit = 2**62 // US_PER[unit]
    ok = ok & (v > -limit) & (v < limit)
    out[ok] = v[ok] * US_PER[unit]
    return out


def _iso(raw: list[Any]) -> np.ndarray:
    out = np.full(len(raw), MISSING_TS, dtype=np.int64)
    for i, v in enumerate(raw):
        try:
            dt = datetime.fromisoformat(str(v)) if v is not None else None
            if dt is not None:
                dt = dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
                out[i] = int(dt.timestamp()) * 1_000_000 + dt.microsecond
        except (ValueError, OverflowError):
            pass
    return out


def timestamps(col: pa.ChunkedArray, unit: str | None) -> tuple[np.ndarray, list[Any] | None]:
    """int64 µs UTC (MISSING_TS where null or unreadable), and the raw values if text.
    Naive timestamps are UTC; numbers are epoch ``unit``."""
    typ = col.type
    if pa.types.is_timestamp(typ):
        vals, ok = _values(col.cast(pa.int64()))
        return epoch_us(vals, ok, typ.unit), None
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        assert unit is not None  # the file check refuses epoch numbers without a unit
        vals, ok = _values(col)
        return epoch_us(vals, ok, unit), None
    raw = col.to_pylist()
    return _iso(raw), raw


def read_ticks(table: pa.Table, ts_unit: str | None) -> TickColumns:
    """Decode a replay table (its column types checked by ``check_file``)."""
    names = set(table.column_names)
    tok = int_column(table["instrument_token"], -1)
    ts, raw_ts = timestamps(table["timestamp"], ts_unit)
    price = float_column(table["last_price"])
    if "volume" in names:
        vol = int_column(table["volume"], -1)
    else:
        vol = np.full(len(tok), -1, dtype=np.int64)
    return TickColumns(tok, ts, price, vol, raw_ts, read_depth(table))


@dataclass(frozen=True)
class FileSpan:
    path: Path
    median: int  # µs: the file's place in the replay
    first: int
    last: int


def _footer(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except PermissionError as exc:
        raise ReplayFileError(
            path, ReplayProblem.UNREADABLE, f"cannot be read: {exc.strerror}"
        ) from None
    except Exception as exc:  # anything the footer parser raises: not a usable Parquet file
        size = path.stat().st_size if path.is_file() else 0
        detail = "is empty (0 bytes)" if size == 0 else f"is not a readable Parquet file: {exc}"
        raise ReplayFileError(path, ReplayProblem.NOT_PARQUET, detail[:300]) from None


def _check_schema(path: Path, schema: pa.Schema, ts_unit: str | None) -> list[str]:
    """The columns the replay reads; raises when one is missing or of the wrong type."""
    missing = [c for c in REQUIRED_TICK_COLUMNS if c not in schema.names]
    if missing:
        raise ReplayFileError(path, ReplayProblem.MISSING_COLUMN, f"lacks column(s) {missing}")
    used = [*REQUIRED_TICK_COLUMNS, *(c for c in ("volume",) if c in schema.names)]
    used += [c for c in DEPTH_FIELDS.names if c in schema.names]
    twice = sorted({c for c in used if schema.names.count(c) > 1})
    if twice:
        raise ReplayFileError(path, ReplayProblem.DUPLICATE_COLUMN, f"has column(s) {twice} twice")
    for name in used:
        problem = tick_column_problem(name, schema.field(name).type, ts_unit)
        if problem is not None:
            raise ReplayFileError(path, *problem)
    depth = depth_type_error(schema)
    if depth is not None:
        raise ReplayFileError(path, ReplayProblem.BAD_COLUMN_TYPE, depth)
    return used


def check_file(path: Path, ts_unit: str | None) -> FileSpan:
    """Read every page of the columns the replay uses, one row group at a time (a damaged
    page raises here, not mid-run), decode the times; the file's time span."""
    with _footer(path) as pf:
        return _check_open(path, pf, ts_unit)


def _check_open(path: Path, pf: pq.ParquetFile, ts_unit: str | None) -> FileSpan:
    try:
        schema = pf.schema_arrow
    except Exception as exc:
        raise ReplayFileError(
            path, ReplayProblem.NOT_PARQUET, f"has an unreadable schema: {exc}"
        ) from None
    used = _check_schema(path, schema, ts_unit)
    groups = pf.metadata.num_row_groups
    if pf.metadata.num_rows == 0:
        raise ReplayFileError(path, ReplayProblem.NO_ROWS, "has no rows")
    filled = dict.fromkeys(REQUIRED_TICK_COLUMNS, 0)
    samples: list[np.ndarray] = []
    first, last = I64_MAX, MISSING_TS
    for g in range(groups):
        try:  # every page is read (a damaged one raises); only the times are decoded
            table = pf.read_row_group(g, columns=used)
            ts, _ = timestamps(table["timestamp"], ts_unit)
        except Exception as exc:
            raise ReplayFileError(
                path, ReplayProblem.CORRUPT, f"row group {g + 1} of {groups} is unreadable: {exc}"
            ) from None
        for c in filled:
            filled[c] += len(table) - table[c].null_count
        ts = ts[ts != MISSING_TS]
        if len(ts):
            first, last = min(first, int(ts.min())), max(last, int(ts.max()))
            samples.append(ts[:: max(1, len(ts) // SAMPLES)])
    empty = [c for c, n in filled.items() if n == 0]
    if empty:
        raise ReplayFileError(path, ReplayProblem.ALL_NULL, f"has no value in column(s) {empty}")
    typ = schema.field("timestamp").type
    epoch = pa.types.is_integer(typ) or pa.types.is_floating(typ)
    if not samples and not epoch:
        raise ReplayFileError(
            path, ReplayProblem.NO_VALID_TIMESTAMP, "has no readable timestamp in any row"
        )
    median = int(np.median(np.concatenate(samples))) if samples else None
    if epoch:
        _check_epoch(path, ts_unit, median)
    assert median is not None
    return FileSpan(path, median, first, last)


def _check_epoch(path: Path, unit: str | None, median: int | None) -> None:
    """Epoch numbers read in ``unit`` must land in a plausible year (else: the wrong unit)."""
    year = 1970 + median / YEAR_US if median is not None else None
    if year is None:
        raise ReplayFileError(
            path,
            ReplayProblem.EPOCH_UNIT_IMPLAUSIBLE,
            f"column timestamp read as epoch {unit}: every value is out of range; is "
            "source.timestamp_unit right?",
        )
    if not PLAUSIBLE_YEARS[0] <= year <= PLAUSIBLE_YEARS[1]:
        raise ReplayFileError(
            path,
            ReplayProblem.EPOCH_UNIT_IMPLAUSIBLE,
            f"column timestamp read as epoch {unit} puts its ticks in the year {year:.0f}: "
            "is source.timestamp_unit right?",
        )


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith((".", "_")) for part in p.relative_to(root).parts)


def find_files(path: str | Path) -> list[Path]:
    """The .parquet files at ``path`` (a file, or a folder searched recursively; names
    starting with '.' or '_' are skipped, as Arrow datasets do), in name order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if f.is_file() and not _hidden(f, p))
        if not files:
            raise ReplayFileError(p, ReplayProblem.NO_FILES, "holds no .parquet files")
        return files
    if p.exists():
        return [p]
    raise ReplayFileError(p, ReplayProblem.NOT_FOUND, "does not exist")


def list_files(path: str | Path, ts_unit: str | None = None) -> list[Path]:
    """Every replay file under ``path``, checked whole, in time order (see the module)."""
    files = find_files(path)
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:  # Arrow frees the GIL
        spans = sorted(pool.map(lambda f: check_file(f, ts_unit), files), key=_order)
    for before, after in itertools.pairwise(spans):
        if before.last > after.first:
            log.warning(
                "replay files overlap in time: %s ends after %s begins; ticks of an "
                "instrument older than its last will be dead letters (out of order)",
                before.path.name,
                after.path.name,
            )
    return [s.path for s in spans]


def _order(span: FileSpan) -> tuple[int, str]:
    return span.median, str(span.path)
