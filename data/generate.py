"""Deterministic (seeded) generator of SYNTHETIC NSE-like ticks. Not market data.

    python -m data.generate                       # the bundled sample (20 instruments, 1 day)
    python -m data.generate --instruments 200 --days 5 --out bench_data   # benchmark set

Prices follow a random walk with slow drifting trends, rounded to the tick size; ticks
arrive at random intervals from 09:00 to 15:30 IST. The sample also carries a few
deliberately bad rows (labelled in BAD_ROWS) that the flow must send to dead letters.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import TICK_SCHEMA

HERE = Path(__file__).resolve().parent
SAMPLE_FILE = HERE / "sample_ticks.parquet"
INSTRUMENTS_FILE = HERE / "instruments.csv"
IST = timezone(timedelta(hours=5, minutes=30))
SAMPLE_DAY = date(2026, 11, 20)  # a Friday
BASE_PRICES = {
    "RELIANCE": 2900, "INFY": 1500, "TCS": 3900, "HDFCBANK": 1650, "ICICIBANK": 1250,
    "SBIN": 800, "ITC": 450, "AXISBANK": 1150, "KOTAKBANK": 1800, "LT": 3600,
    "BHARTIARTL": 1600, "HINDUNILVR": 2400, "BAJFINANCE": 7000, "MARUTI": 12000,
    "ASIANPAINT": 2900, "TATAMOTORS": 900, "SUNPHARMA": 1750, "WIPRO": 550,
    "TATASTEEL": 150, "ONGC": 260,
}  # fmt: skip
BAD_ROWS = (
    "missing instrument_token",
    "NaN last_price",
    "negative last_price",
    "missing timestamp",
    "instrument not in the instrument list (token 999999)",
    "timestamp older than the instrument's previous tick",
)


def sample_instruments() -> list[tuple[int, str, float]]:
    with INSTRUMENTS_FILE.open() as fh:
        return [
            (int(r["instrument_token"]), r["tradingsymbol"], float(r["tick_size"]))
            for r in csv.DictReader(fh)
        ]


def synthetic_instruments(n: int) -> list[tuple[int, str, float]]:
    return [(100_001 + 17 * i, f"SYN{i:04d}", 0.05) for i in range(n)]


def _day(
    rng: np.random.Generator, day: date, token: int, base: float, tick: float, mean_gap_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start = datetime.combine(day, datetime.min.time(), IST).replace(hour=9)
    span_us = int(6.5 * 3600 * 1e6)
    n = int(span_us / (mean_gap_s * 1e6) * rng.uniform(0.8, 1.2))
    offs = np.sort(rng.integers(0, span_us, size=n))
    trend = np.cumsum(rng.normal(0, 2e-6, size=n))  # slowly drifting drift
    rets = rng.normal(0, 3.5e-4, size=n) + trend * 0.05
    price = base * np.exp(np.cumsum(rets))
    price = np.maximum(np.round(price / tick) * tick, tick)
    volume = np.cumsum(rng.integers(1, 500, size=n))
    ts = int(start.timestamp() * 1e6) + offs
    return ts.astype(np.int64), np.round(price, 2), volume.astype(np.int64)


def generate(
    out: Path,
    instruments: list[tuple[int, str, float]],
    days: list[date],
    seed: int = 7,
    mean_gap_s: float = 1.5,
    bad_rows: bool = False,
) -> list[Path]:
    """Write one time-ordered Parquet file per day (or ``out`` itself for a single .parquet)."""
    rng = np.random.default_rng(seed)
    files = []
    last = {tok: float(BASE_PRICES.get(sym, rng.uniform(100, 3000))) for tok, sym, _ in instruments}
    for day in days:
        cols: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for tok, _sym, tick in instruments:
            ts, price, vol = _day(rng, day, tok, last[tok], tick, mean_gap_s)
            last[tok] = float(price[-1])
            cols.append((np.full(len(ts), tok, dtype=np.int64), ts, price, vol))
        token = np.concatenate([c[0] for c in cols])
        ts = np.concatenate([c[1] for c in cols])
        price = np.concatenate([c[2] for c in cols])
        vol = np.concatenate([c[3] for c in cols])
        order = np.lexsort((token, ts))
        table = pa.table(
            {
                "instrument_token": pa.array(token[order]),
                "timestamp": pa.array(ts[order], type=pa.int64()).cast(
                    TICK_SCHEMA.field("timestamp").type
                ),
                "last_price": pa.array(price[order]),
                "volume": pa.array(vol[order]),
            },
            schema=TICK_SCHEMA,
        )
        if bad_rows:
            table = _with_bad_rows(table)
        path = out if out.suffix == ".parquet" else out / f"ticks-{day.isoformat()}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)
        files.append(path)
    return files


def _with_bad_rows(table: pa.Table) -> pa.Table:
    """Insert the BAD_ROWS, one each, near the middle of the session."""
    rows = table.to_pylist()
    mid = len(rows) // 2
    good = rows[mid]
    bad = [
        {**good, "instrument_token": None},
        {**good, "last_price": float("nan")},
        {**good, "last_price": -12.5},
        {**good, "timestamp": None},
        {**good, "instrument_token": 999999},
        {**good, "timestamp": good["timestamp"] - timedelta(minutes=30)},
    ]
    assert len(bad) == len(BAD_ROWS)
    rows[mid + 1 : mid + 1] = bad
    return pa.Table.from_pylist(rows, schema=table.schema)


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``least`` (else one usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = least - 1
        if n < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {least}")
        return n

    return parse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--instruments", type=_count(0), default=0, help="synthetic (0 = sample)")
    ap.add_argument("--days", type=_count(1), default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=SAMPLE_FILE)
    args = ap.parse_args()
    if args.instruments:
        instruments = synthetic_instruments(args.instruments)
        days = trading_days(SAMPLE_DAY, args.days)
        files = generate(args.out, instruments, days, seed=args.seed)
        write_instruments(args.out / "instruments.csv", instruments)
    else:
        files = generate(
            args.out, sample_instruments(), [SAMPLE_DAY], seed=args.seed, bad_rows=True
        )
    for f in files:
        print(f"{f}: {pq.read_metadata(f).num_rows} rows, {f.stat().st_size / 1e6:.2f} MB")


def trading_days(first: date, n: int) -> list[date]:
    """``n`` NSE trading days from ``first`` (the session calendar's, holidays skipped)."""
    from operators.session import MarketSession
    from schemas.config import SessionConfig

    session = MarketSession(SessionConfig())
    out: list[date] = []
    d = first
    while len(out) < n:
        if session.hours(d) is not None:
            out.append(d)
        d += timedelta(days=1)
    return out


def write_instruments(path: Path, instruments: list[tuple[int, str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instrument_token", "tradingsymbol", "exchange", "tick_size", "lot_size"])
        for tok, sym, tick in instruments:
            w.writerow([tok, sym, "NSE", tick, 1])


if __name__ == "__main__":
    main()
