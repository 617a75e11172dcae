"""Replay files: found, checked whole and put in time order before the flow starts, then
decoded into numpy columns by the same code in the check and in the replay.

A file that cannot be used (no footer, truncated, another format, a column of the wrong type,
epoch numbers without ``source.timestamp_unit``, no rows, a required column with no value,
a row group that does not decode) raises ``ReplayFileError``: one line naming the file, the
problem and its code (``ReplayProblem``). Files are replayed in the order of their median
tick time (robust to a stray bad timestamp), ties by name, whatever their names.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.replay_kept import (
    Stamp,
    file_key,
    keep_span,
    kept_span,
    now,
    settled,
    stamp_of,
)
from connectors.replay_times import (
    I64_MAX,
    MISSING_TS,
    naive_times,
    timestamps,
    values,
    zone_hint,
)
from schemas.arrow import (
    DEPTH_FIELDS,
    REQUIRED_TICK_COLUMNS,
    ReplayProblem,
    decimal_f64,
    depth_type_error,
    read_depth,
    tick_column_problem,
)
from schemas.config import ConfigError
from schemas.ticks import BAD_VOLUME, NO_VOLUME, Depth

log = logging.getLogger("alpha_panda.replay")
CHECK_PROGRESS_S = 5.0  # a check of the replay files that long says how far it has got

YEAR_US = 365.2425 * 86_400 * 1_000_000
PLAUSIBLE_YEARS = (1990, 2100)  # an epoch column read as a whole file outside: wrong unit
SAMPLES = 4_096  # timestamps kept per row group for the file's median
HINT_SAMPLES = 200  # naive times kept per file to judge the zone they were written in


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


def int_column(
    col: pa.ChunkedArray, fill: int, null: int | None = None, least: int | None = None
) -> np.ndarray:
    """int64 values; values outside int64 (or below ``least``) and non-whole floats (NaN,
    inf) → ``fill``, nulls → ``null`` (default: ``fill`` too)."""
    vals, ok = values(col)
    present = ok.copy() if null is not None and null != fill else None
    if vals.dtype == np.float16:  # its range cannot hold the int64 bound below
        vals = vals.astype(np.float64)
    if vals.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(vals) & (np.floor(vals) == vals) & (np.abs(vals) < 2.0**63)
    elif vals.dtype == np.uint64:
        ok &= vals <= np.uint64(I64_MAX)
    if least is not None and vals.dtype.kind in "if":
        with np.errstate(invalid="ignore"):
            ok &= vals >= least
    if ok.all():
        return vals.astype(np.int64, copy=False)  # may be a read-only view of the column
    out = np.full(len(vals), fill, dtype=np.int64)
    out[ok] = vals[ok].astype(np.int64)
    if present is not None and null is not None:
        out[~present] = null
    return out


def float_column(col: pa.ChunkedArray) -> np.ndarray:
    vals, ok = values(col)
    if ok.all():
        return decimal_f64(vals)
    out = np.full(len(vals), np.nan)
    out[ok] = decimal_f64(vals[ok])
    return out


def used_columns(names: list[str]) -> list[str]:
    """The columns of a replay file that the replay reads (``names``: all of its columns)."""
    optional = ("volume", *DEPTH_FIELDS.names)
    return [*REQUIRED_TICK_COLUMNS, *(c for c in optional if c in names)]


def read_file(path: Path) -> pa.Table:
    """The columns the replay reads of one (checked) file; a wide export's other columns
    are never decoded."""
    with pq.ParquetFile(path, pre_buffer=True) as pf:
        return pf.read(columns=used_columns(pf.schema_arrow.names), use_threads=True)


def read_ticks(table: pa.Table, ts_unit: str | None, zone: str = "UTC") -> TickColumns:
    """Decode a replay table (its column types checked by ``check_file``)."""
    names = set(table.column_names)
    tok = int_column(table["instrument_token"], -1)
    ts, raw_ts = timestamps(table["timestamp"], ts_unit, zone)
    price = float_column(table["last_price"])
    if "volume" in names:  # a null is a tick without volume; a value it cannot be, refused
        vol = int_column(table["volume"], BAD_VOLUME, null=NO_VOLUME, least=0)
    else:
        vol = np.full(len(tok), NO_VOLUME, dtype=np.int64)
    return TickColumns(tok, ts, price, vol, raw_ts, read_depth(table))


@dataclass(frozen=True)
class FileSpan:
    path: Path
    median: int  # µs: the file's place in the replay
    first: int
    last: int
    naive: bool = False  # its times carry no zone (read in source.timezone)
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stamp: Stamp | None = None  # the file's, when it was checked


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
    used = used_columns(schema.names)
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


def check_file(path: Path, ts_unit: str | None, zone: str = "UTC") -> FileSpan:
    """Read every page of the columns the replay uses, one row group at a time (a damaged
    page raises here, not mid-run), decode the times; the file's time span. A file that
    passed before, unchanged since, is not read again (connectors.replay_kept)."""
    key, started = file_key(path, ts_unit, zone), now()
    st = stamp_of(key) if key is not None else None
    kept = kept_span(key) if key is not None else None
    if kept is not None:
        return FileSpan(path, *kept, stamp=st)
    with _footer(path) as pf:
        span = _check_open(path, pf, ts_unit, zone)
    if key is not None and settled(key, started) and file_key(path, ts_unit, zone) == key:
        keep_span(key, span.median, span.first, span.last, span.naive, span.sample)
    return dataclasses.replace(span, stamp=st)


def _check_open(path: Path, pf: pq.ParquetFile, ts_unit: str | None, zone: str) -> FileSpan:
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
            ts, _ = timestamps(table["timestamp"], ts_unit, zone)
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
    sample = np.concatenate(samples) if samples else np.zeros(0, dtype=np.int64)
    median = int(np.median(sample)) if samples else None
    if epoch:
        _check_epoch(path, ts_unit, median)
    assert median is not None
    naive = naive_times(typ)
    kept = sample[:: max(1, len(sample) // HINT_SAMPLES)] if naive else sample[:0]
    return FileSpan(path, median, first, last, naive, kept)


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


def list_files(
    path: str | Path,
    ts_unit: str | None = None,
    zone: str = "UTC",
    is_open: Callable[[int], bool] | None = None,
    session_zone: str = "Asia/Kolkata",
) -> list[Path]:
    """Every replay file under ``path``, checked whole, in time order (see ``checked``)."""
    return [s.path for s in checked(path, ts_unit, zone, is_open, session_zone)]


def checked(
    path: str | Path,
    ts_unit: str | None = None,
    zone: str = "UTC",
    is_open: Callable[[int], bool] | None = None,
    session_zone: str = "Asia/Kolkata",
) -> list[FileSpan]:
    """Every replay file under ``path``, checked whole, in time order (see the module).
    With ``is_open`` (the session's hours, µs UTC), naive times read as UTC that fall
    mostly outside them, but inside once read in ``session_zone``, are warned of."""
    files = find_files(path)
    spans = sorted(_check_all(files, ts_unit, zone), key=_order)
    if is_open is not None and zone == "UTC":
        hint = zone_hint(spans, is_open, session_zone)
        if hint:
            log.warning("%s", hint)
    for before, after in itertools.pairwise(spans):
        if before.last > after.first:
            log.warning(
                "replay files overlap in time: %s ends after %s begins; ticks of an "
                "instrument older than its last will be dead letters (out of order)",
                before.path.name,
                after.path.name,
            )
    return spans


def _check_all(files: list[Path], ts_unit: str | None, zone: str) -> list[FileSpan]:
    """``check_file`` on every file, a few at once (Arrow frees the GIL); the first bad file
    in file order is the one refused. A long check says how many files are done every
    ``CHECK_PROGRESS_S`` (whichever finished), then how long it took."""
    started, told = time.monotonic(), 0
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        futures = [pool.submit(check_file, f, ts_unit, zone) for f in files]
        pending: set[Future[FileSpan]] = set(futures)
        while pending:
            done, pending = wait(pending, CHECK_PROGRESS_S, FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                break
            if pending and len(files) - len(pending) > told:
                told = len(files) - len(pending)
                log.info("checking replay files: %d of %d", told, len(files))
        try:
            spans = [f.result() for f in futures]  # raises the first bad file's error
        finally:
            for f in futures:
                f.cancel()  # those not started yet
    took = time.monotonic() - started
    if took >= CHECK_PROGRESS_S:
        log.info("checked %d replay files in %.1f s", len(files), took)
    return spans


def _order(span: FileSpan) -> tuple[int, str]:
    return span.median, str(span.path)
