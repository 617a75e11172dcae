"""Read a run folder for the analysis: fills, pnl snapshots, orders, signals, the saved
config (when the run folder holds one) and the price marks used between fills.

Money stays exact: fill prices and fees are read as ``Decimal`` from the ledger's doubles
(``Decimal(repr(x))``: 1132.1 is 1132.1, not its binary neighbour), so sums of fees and
cash flows carry no float drift. Marks (prices between fills) are floats: they only ever
value a position, never book money.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import yaml

from connectors.replay_times import MISSING_TS, timestamps

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

CONFIG_FILE = "config.yaml"
FEE_HEADS = ("brokerage", "stt", "exchange", "sebi", "stamp", "gst", "dp", "square_off")
DEFAULT_TZ = "Asia/Kolkata"
BUNDLED_INSTRUMENTS = Path(__file__).resolve().parents[2] / "data" / "instruments.csv"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def money(x: float) -> Decimal:
    """A ledger double as the decimal it was written as (its shortest repr)."""
    return Decimal(repr(float(x)))


def us(ts: datetime) -> int:
    """A timestamp as integer microseconds since the epoch (UTC), exactly."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def utc(t_us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(t_us))


@dataclass(frozen=True)
class Fill:
    broker: str
    strategy: str
    token: int
    t: int  # µs since the epoch, UTC
    qty: int  # signed: + buy, - sell
    price: Decimal
    fee: Decimal
    heads: dict[str, Decimal]
    order_id: str


@dataclass(frozen=True)
class Snapshot:
    t: int
    starting_cash: Decimal
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    equity: Decimal
    marks: dict[int, float]  # instrument → last price, for every position listed
    final: bool

    @property
    def net_pnl(self) -> Decimal:
        return self.realized + self.unrealized - self.fees


@dataclass
class Marks:
    """Per instrument, prices over time (µs, sorted): ticks or snapshot marks, plus fills."""

    series: dict[int, tuple[I64, F64]]
    source: str  # what the marks are, for the report's conventions
    bench: dict[int, tuple[I64, F64]]  # the benchmark's prices (no fill prices mixed in)

    def at(self, token: int, times: I64) -> F64:
        """The last price at or before each time (NaN before the first)."""
        t, p = self.series.get(token, (np.zeros(0, np.int64), np.zeros(0)))
        idx = np.searchsorted(t, times, side="right") - 1
        out = np.full(len(times), np.nan)
        ok = idx >= 0
        out[ok] = p[idx[ok]]
        return out


@dataclass
class RunData:
    run_dir: Path
    config: dict[str, Any] | None
    run_report: dict[str, Any] | None
    fills: list[Fill]
    snapshots: dict[str, list[Snapshot]]
    order_price: dict[str, Decimal]
    signals: Counter[str]
    activity: Counter[str]  # broker → signals + orders + rejections + fills
    symbols: dict[int, str]
    tz: ZoneInfo
    marks: Marks = field(default_factory=lambda: Marks({}, "none", {}))


def _table(run_dir: Path, kind: str, columns: list[str] | None = None) -> pa.Table | None:
    folder = run_dir / kind
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return None
    files = sorted(str(f) for f in folder.glob("*.parquet"))  # shard, then file number
    return ds.dataset(files).to_table(columns=columns)


def read_run_report(run_dir: Path) -> dict[str, Any] | None:
    """The flow's run report (``report.json`` as the run wrote it), also when this analysis
    has since replaced that file (it keeps the run report under ``run``)."""
    path = run_dir / "report.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(raw, dict) and "conventions" in raw:
        raw = raw.get("run")
    return raw if isinstance(raw, dict) else None


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's saved config (``config.yaml`` in the run folder), or None."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    raw = yaml.safe_load(path.read_text())
    return raw if isinstance(raw, dict) else None


def _fills(run_dir: Path) -> list[Fill]:
    table = _table(run_dir, "fills")
    if table is None:
        return []
    out = []
    for r in table.to_pylist():
        qty = int(r["quantity"]) if r["side"] == "BUY" else -int(r["quantity"])
        heads = {h: money(r.get(h) or 0.0) for h in FEE_HEADS}
        out.append(
            Fill(
                r["broker"], r["strategy_id"], int(r["instrument_token"]), us(r["timestamp"]),
                qty, money(r["fill_price"]), money(r["fees"]), heads, r["order_id"],
            )
        )  # fmt: skip
    out.sort(key=lambda f: (f.broker, f.t))  # stable: each broker's own order at equal times
    return _with_notes(run_dir, out)


def _with_notes(run_dir: Path, fills: list[Fill]) -> list[Fill]:
    """Kite's contract notes (``fee_notes``): each order's fee adjustment lands on its last
    fill, so trips and totals carry the fees the account booked."""
    table = _table(run_dir, "fee_notes")
    notes = {} if table is None else {
        r["order_id"]: money(r["adjustment"]) for r in table.to_pylist()
    }  # fmt: skip
    last = {f.order_id: i for i, f in enumerate(fills) if f.order_id in notes}
    for order_id, i in last.items():
        f = fills[i]
        fills[i] = replace(f, fee=f.fee + notes[order_id])
    return fills


def _snapshots(run_dir: Path) -> dict[str, list[Snapshot]]:
    table = _table(run_dir, "pnl")
    out: dict[str, list[Snapshot]] = {}
    for r in [] if table is None else table.to_pylist():
        marks = {int(p["instrument_token"]): float(p["last_price"]) for p in r["positions"]}
        snap = Snapshot(
            us(r["timestamp"]), money(r["starting_cash"]), money(r["realized_pnl"]),
            money(r["unrealized_pnl"]), money(r["fees"]), money(r["equity"]), marks, r["final"],
        )  # fmt: skip
        out.setdefault(r["broker"], []).append(snap)
    for snaps in out.values():
        snaps.sort(key=lambda s: (s.t, s.final))
    return out


def _counts(run_dir: Path, kind: str) -> Counter[str]:
    table = _table(run_dir, kind, ["broker"])
    return Counter() if table is None else Counter(table.column("broker").to_pylist())


def _symbols(config: dict[str, Any] | None, run_dir: Path) -> dict[int, str]:
    """Trading symbols from the config's instruments, else the bundled instrument file
    (names only: an instrument token names one instrument)."""
    rows: Any = (config or {}).get("instruments") or str(BUNDLED_INSTRUMENTS)
    if isinstance(rows, str):
        path = Path(rows) if Path(rows).is_absolute() else run_dir / rows
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            rows = []
    out: dict[int, str] = {}
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and "instrument_token" in row:
            out[int(row["instrument_token"])] = str(row.get("tradingsymbol", ""))
    return out


def _tz(config: dict[str, Any] | None) -> ZoneInfo:
    session = (config or {}).get("session")
    name = session.get("timezone") if isinstance(session, dict) else None
    return ZoneInfo(name if isinstance(name, str) else DEFAULT_TZ)


def replay_path(config: dict[str, Any] | None, run_dir: Path) -> Path | None:
    """The replay source file (or folder) of the run's config, when it still exists."""
    src = (config or {}).get("source")
    if not isinstance(src, dict) or src.get("kind", "replay") != "replay":
        return None
    path = src.get("path")
    if not isinstance(path, str):
        return None
    p = Path(path) if Path(path).is_absolute() else run_dir / path
    return p if p.exists() else None


MAX_TICK_ROWS = 100_000_000  # larger replay sources: snapshot marks (memory stays small)


def _tick_series(
    path: Path, tokens: list[int], unit: str | None = None, zone: str = "UTC"
) -> dict[int, tuple[I64, F64]] | None:
    """Ticks of ``tokens`` from a replay file or folder (bad rows dropped), or None when
    unreadable or over ``MAX_TICK_ROWS`` rows."""
    try:
        files = sorted(str(f) for f in path.rglob("*.parquet")) if path.is_dir() else [str(path)]
        cols = ["instrument_token", "timestamp", "last_price"]
        flt = pc.field("instrument_token").isin(tokens)
        dataset = ds.dataset(files)
        if dataset.count_rows() > MAX_TICK_ROWS:
            return None
        table = dataset.to_table(columns=cols, filter=flt)
        stamp = table.column("timestamp")
        if unit is None and (pa.types.is_integer(stamp.type) or pa.types.is_floating(stamp.type)):
            return None  # epoch numbers without source.timestamp_unit
        tv, _ = timestamps(stamp, unit, zone)  # as the replay reads them
    except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    tok = table.column("instrument_token").to_numpy(zero_copy_only=False)
    price = table.column("last_price").to_numpy(zero_copy_only=False).astype(np.float64)
    ok = (tv != MISSING_TS) & np.isfinite(price) & (price > 0)
    tok, tv, price = tok[ok].astype(np.int64), tv[ok].astype(np.int64), price[ok]
    order = np.lexsort((tv, tok))  # by instrument, then time (stable: file order at ties)
    tok, tv, price = tok[order], tv[order], price[order]
    out: dict[int, tuple[I64, F64]] = {}
    for token in tokens:
        a, b = np.searchsorted(tok, token, "left"), np.searchsorted(tok, token, "right")
        out[token] = (tv[a:b], price[a:b])
    return out


def _merge(a: tuple[I64, F64], b: tuple[I64, F64]) -> tuple[I64, F64]:
    t, p = np.concatenate((a[0], b[0])), np.concatenate((a[1], b[1]))
    order = np.argsort(t, kind="stable")
    return t[order], p[order]


def build_marks(data: RunData) -> Marks:
    """Ticks from the config's replay file if it is there, else the pnl snapshots' marks;
    fill prices are added to both (a fill is a trade at its price)."""
    tokens = sorted({f.token for f in data.fills})
    fills: dict[int, tuple[list[int], list[float]]] = {t: ([], []) for t in tokens}
    for f in data.fills:
        fills[f.token][0].append(f.t)
        fills[f.token][1].append(float(f.price))
    path = replay_path(data.config, data.run_dir)
    src = (data.config or {}).get("source") or {}
    unit = src.get("timestamp_unit") if isinstance(src, dict) else None
    zone = src.get("timezone", "UTC") if isinstance(src, dict) else "UTC"
    zone = zone if isinstance(zone, str) else "UTC"
    ticks = _tick_series(path, tokens, unit, zone) if path is not None and tokens else None
    if ticks is not None:
        source = f"ticks of the replay file {path}"
        base = ticks
    else:
        source = "pnl snapshot marks (every snapshot's last prices) and fill prices"
        raw: dict[int, tuple[list[int], list[float]]] = {t: ([], []) for t in tokens}
        for snaps in data.snapshots.values():
            for s in snaps:
                for token, price in s.marks.items():
                    if token in raw and math.isfinite(price) and price > 0:
                        raw[token][0].append(s.t)
                        raw[token][1].append(price)
        base = {t: _merge(_arrays(raw[t]), (np.zeros(0, np.int64), np.zeros(0))) for t in tokens}
    series = {t: _merge(base[t], _arrays(fills[t])) for t in tokens}
    bench = base if ticks is not None else series
    return Marks(series, source, bench)


def _arrays(pair: tuple[list[int], list[float]]) -> tuple[I64, F64]:
    return np.array(pair[0], dtype=np.int64), np.array(pair[1], dtype=np.float64)


def load_run(run_dir: str | Path) -> RunData:
    """Everything the analysis reads from one run folder."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run folder not found: {root}")
    config = read_config(root)
    orders = _table(root, "orders", ["order_id", "price"])
    order_price: dict[str, Decimal] = {}
    if orders is not None:
        ids, prices = orders.column("order_id").to_pylist(), orders.column("price").to_pylist()
        order_price = {o: money(p) for o, p in zip(ids, prices, strict=True)}
    signals = _counts(root, "signals")
    activity = signals + _counts(root, "orders") + _counts(root, "rejections")
    data = RunData(
        root, config, read_run_report(root), _fills(root), _snapshots(root), order_price, signals,
        activity + _counts(root, "fills"), _symbols(config, root), _tz(config),
    )  # fmt: skip
    data.marks = build_marks(data)
    return data
