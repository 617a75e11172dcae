"""Market rules through the whole flow, each set from its config key: strategy exits,
circuit bands, LIMIT timeouts, lot sizes and ``tick_size: auto``. Every expectation is
computed here from the tape and the config (docs/configuration.md), never with the code's
own functions, and every test counts what it checked so that it can fail."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from operators.strategies.api import Signal, Tick
from schemas.arrow import TICK_SCHEMA
from tests.support import INSTRUMENTS, TOKENS, config_dict, make_config, run_graph, small_ticks

Rows = dict[str, list[Any]]
Tape = dict[int, list[tuple[datetime, float]]]  # by instrument, time-ordered
IST = timezone(timedelta(hours=5, minutes=30))
START = datetime(2026, 11, 20, 10, 0, tzinfo=IST)  # a Friday, inside the session
SEC = timedelta(seconds=1)
HERE = "tests.test_market_rules_flow"
EXIT_REASONS = ("STOP_LOSS", "TAKE_PROFIT", "TRAILING_STOP")
# NSE price bands from 15 April 2025, as the docs give them: (price up to, tick); above: 5.00
NSE_BANDS = ((250.0, 0.01), (1_000.0, 0.05), (5_000.0, 0.10), (10_000.0, 0.50), (20_000.0, 1.0))


class Enter:
    """A per-tick strategy that holds ``side`` ``quantity`` from its ``at``-th tick on."""

    def __init__(self, at: int = 3, quantity: int = 5, side: str = "BUY") -> None:
        self.at, self.quantity, self.side = at, quantity, side

    def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
        state["n"] = state.get("n", 0) + 1
        return Signal(self.side, self.quantity) if state["n"] == self.at else None


class Flip:
    """A per-tick strategy that holds +quantity and -quantity in turn, every ``every`` ticks."""

    def __init__(self, every: int = 3, quantity: int = 5) -> None:
        self.every, self.quantity = every, quantity

    def on_tick(self, tick: Tick, state: dict[str, Any]) -> Signal | None:
        state["n"] = n = state.get("n", 0) + 1
        if n % self.every:
            return None
        return Signal("BUY" if (n // self.every) % 2 else "SELL", self.quantity)


def band_tick(price: float) -> float:
    return next((tick for upto, tick in NSE_BANDS if price <= upto), 5.0)


def on_grid(price: float, tick: float) -> bool:
    return abs(price / tick - round(price / tick)) < 1e-6


def ist_day(t: datetime) -> date:
    return t.astimezone(IST).date()


def read_tape(ticks: Path) -> Tape:
    tape: Tape = defaultdict(list)
    for r in ds.dataset(ticks).to_table().sort_by("timestamp").to_pylist():
        tape[r["instrument_token"]].append((r["timestamp"], r["last_price"]))
    return tape


def write_tape(folder: Path, paths: dict[int, list[float]]) -> Path:
    """Two ticks a second per instrument (at .2 s and .7 s) from START; volume never caps."""
    rows = [
        (tok, (START + timedelta(seconds=0.2 + 0.5 * i)).astimezone(timezone.utc), p, 10**5 * i)
        for tok, prices in paths.items()
        for i, p in enumerate(prices)
    ]
    rows.sort(key=lambda r: (r[1], r[0]))
    cols = list(zip(*rows, strict=True))
    names = ["instrument_token", "timestamp", "last_price", "volume"]
    table = pa.table(dict(zip(names, cols, strict=True)), schema=TICK_SCHEMA)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "ticks.parquet")
    return folder


def marks_of(ticks: list[tuple[datetime, float]]) -> list[tuple[datetime, float]]:
    """The docs' marks (mark_interval_s 1): at each whole second a tick crosses, the price of
    the instrument's last tick before it."""
    out = []
    for (t0, p0), (t1, _) in pairwise(ticks):
        s0 = t0.replace(microsecond=0)
        if s0 != t1.replace(microsecond=0):
            out.append((s0 + SEC, p0))
    return out


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tape]:
    ticks = small_ticks(tmp_path_factory.mktemp("rules"), days=2, bad_rows=False)
    return ticks, read_tape(ticks)


# -- circuit bands ------------------------------------------------------------------------
def test_circuit_bands_from_risk_and_instrument_keys_hold_through_the_flow(
    two_days: tuple[Path, Tape], tmp_path: Path
) -> None:
    ticks, tape = two_days
    wide, pct = TOKENS[1], {t: 0.5 for t in TOKENS}  # risk.circuit_pct, but INFY's own 3%
    pct[wide] = 3.0
    inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts}
            | ({"circuit_pct": 3.0} if t == wide else {}) for t, s, ts in INSTRUMENTS]  # fmt: skip
    paper = {"starting_cash": 1_000_000, "risk": {"circuit_pct": 0.5}}
    rows, _ = run_graph(make_config(ticks, instruments=inst, brokers={"paper": paper}), tmp_path)
    day1, day2 = sorted({ist_day(t) for t, _ in tape[TOKENS[0]]})
    ref = {tok: [p for t, p in ts if ist_day(t) == day1][-1] for tok, ts in tape.items()}
    band = {t: (ref[t] * (1 - pct[t] / 100), ref[t] * (1 + pct[t] / 100)) for t in TOKENS}

    def outside(tok: int, price: float, when: datetime) -> bool:
        return ist_day(when) == day2 and not band[tok][0] <= price <= band[tok][1]

    refused = 0
    for r in rows["rejections"]:  # CIRCUIT_LIMIT exactly when priced outside (day 2 only)
        s = r.signal
        assert ("CIRCUIT_LIMIT" in r.reasons) == outside(s.instrument_token, s.price, s.timestamp)
        refused += "CIRCUIT_LIMIT" in r.reasons
    signals = {s.signal_id: s for s in rows["signals"]}
    checked = [o for o in rows["orders"] if not signals[o.signal_id].reason.startswith("AUTO_")]
    assert not [o for o in checked if outside(o.instrument_token, o.price, o.timestamp)]
    infy = [o for o in checked if ist_day(o.timestamp) == day2 and o.instrument_token == wide]
    assert [o for o in infy if abs(o.price / ref[wide] - 1) > 0.005]  # only INFY's 3% allows
    at_tick = {(tok, t): p for tok, ts in tape.items() for t, p in ts}
    grid = {t: ts for t, _, ts in INSTRUMENTS}
    later = [f for f in rows["fills"] if ist_day(f.timestamp) == day2]
    clamped = 0
    for f in later:
        tok, (lo, hi) = f.instrument_token, band[f.instrument_token]
        assert lo <= f.fill_price <= hi, f
        print_ = at_tick.get((tok, f.timestamp))
        if print_ is not None and not lo <= print_ <= hi:  # a print beyond: the band's edge
            edge = math.ceil(lo / grid[tok]) if print_ < lo else math.floor(hi / grid[tok])
            assert f.fill_price == pytest.approx(edge * grid[tok]), f
            clamped += 1
    assert refused > 0 and len(later) > 0 and clamped > 0


# -- LIMIT orders: limit_timeout_s ---------------------------------------------------------
def test_an_untouched_limit_is_cancelled_exactly_limit_timeout_s_after_it_was_placed(
    two_days: tuple[Path, Tape], tmp_path: Path
) -> None:
    ticks, tape = two_days
    timeout = 5.0
    strategies = [dict(s, order_type="LIMIT") for s in config_dict(ticks)["strategies"]]
    execution = {"limit_timeout_s": timeout, "max_participation": None}
    cfg = make_config(ticks, strategies=strategies, execution=execution)
    rows, _ = run_graph(cfg, tmp_path)
    fills: dict[str, list[Any]] = defaultdict(list)
    for f in rows["fills"]:
        fills[f.order_id].append(f)
    ended = {f.order_id: f for f in rows["order_failures"]}
    limits = [o for o in rows["orders"] if o.order_type == "LIMIT"]
    timed_out = filled = 0
    for o in limits:
        buy, until = o.side == "BUY", o.timestamp + timedelta(seconds=timeout)
        window = [p for t, p in tape[o.instrument_token] if o.timestamp < t <= until]
        touched = any(p <= o.price if buy else p >= o.price for p in window)
        if touched:  # filled in the window, at or better than its limit
            assert sum(f.quantity for f in fills[o.order_id]) == o.quantity, o
            for f in fills[o.order_id]:
                assert o.timestamp < f.timestamp <= until
                assert f.fill_price <= o.price if buy else f.fill_price >= o.price
            filled += 1
            continue
        assert o.order_id not in fills, o
        end = ended[o.order_id]
        assert end.reason.startswith("CANCELLED: limit_timeout_s"), end
        assert end.timestamp == until and end.quantity == o.quantity
        timed_out += 1
    assert timed_out > 0 and filled > 0 and timed_out + filled == len(limits)


# -- lot sizes ----------------------------------------------------------------------------
def test_orders_are_lot_multiples_and_misfit_targets_are_refused_lot_size_mismatch(
    two_days: tuple[Path, Tape], tmp_path: Path
) -> None:
    ticks, _ = two_days
    lots = dict(zip(TOKENS, [3, 2, 4, 1, 5, 2], strict=True))
    inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": ts, "lot_size": lots[t]}
            for t, s, ts in INSTRUMENTS]  # fmt: skip
    mom, mr = config_dict(ticks)["strategies"]  # mom: TOKENS[:3] x 6; mr: TOKENS[2:] x 4
    mom["params"]["quantity"], mr["params"]["quantity"] = 6, 4
    rows, _ = run_graph(make_config(ticks, instruments=inst, strategies=[mom, mr]), tmp_path)
    misfits = 0
    for r in rows["rejections"]:
        misfit = r.quantity % lots[r.signal.instrument_token] != 0
        assert ("LOT_SIZE_MISMATCH" in r.reasons) == misfit, r
        misfits += misfit
    assert not [o for o in rows["orders"] if o.quantity % lots[o.instrument_token]]
    per_order: dict[str, int] = defaultdict(int)  # volume participation may split an order
    for f in rows["fills"]:
        per_order[f.order_id] += f.quantity
    quantity = {o.order_id: (o.instrument_token, o.quantity) for o in rows["orders"]}
    for oid, done in per_order.items():
        assert done == quantity[oid][1] and done % lots[quantity[oid][0]] == 0
    refused = {(r.signal.strategy_id, r.signal.instrument_token) for r in rows["rejections"]
               if "LOT_SIZE_MISMATCH" in r.reasons}  # fmt: skip
    assert refused == {("mom", TOKENS[2]), ("mr", TOKENS[4])}  # 6 on lot 4, 4 on lot 5
    traded = {f.instrument_token for f in rows["fills"] if lots[f.instrument_token] > 1}
    assert misfits > 0 and traded == {TOKENS[0], TOKENS[1], TOKENS[2], TOKENS[5]}
    # by volume alone this tape fills parts that are not lot multiples: each fill takes
    # whole lots of what its tick traded (by hand: tests/test_fill_volume.py)
    assert not [f for f in rows["fills"] if f.quantity % lots[f.instrument_token]]


# -- strategy exits -----------------------------------------------------------------------
# strategy: (instrument, entry side, exit keys, drift per tick for the first 80 ticks, after)
EXITS: dict[str, tuple[int, str, dict[str, float], tuple[float, float]]] = {
    "sl": (TOKENS[0], "BUY", {"stop_loss_pct": 0.8}, (-2e-4, -2e-4)),
    "tp": (TOKENS[1], "BUY", {"take_profit_pct": 0.8}, (2e-4, 2e-4)),
    "trail": (TOKENS[2], "BUY", {"trailing_stop_pct": 0.6, "stop_loss_pct": 2.0}, (4e-4, -4e-4)),
    "short": (TOKENS[3], "SELL", {"stop_loss_pct": 1.0, "take_profit_pct": 1.5,
                                  "trailing_stop_pct": 0.6}, (-3e-4, 4e-4)),
}  # fmt: skip


def walk(rng: random.Random, start: float, drift: tuple[float, float], n: int = 240) -> list[float]:
    prices, p = [], start
    for i in range(n):
        p *= 1 + (drift[0] if i < 80 else drift[1]) + rng.gauss(0, 8e-4)
        prices.append(round(round(p / 0.1) * 0.1, 2))  # the instruments' 0.10 grid
    return prices


def first_exit(
    marks: list[tuple[datetime, float]], avg: float, long: bool, rules: dict[str, float]
) -> tuple[int, set[str]]:
    """The first mark at which an exit's % is crossed (from the average price, or from the
    best mark since the position opened), and which exits it crosses."""
    best = marks[0][1]
    for k, (_, p) in enumerate(marks):
        best = max(best, p) if long else min(best, p)
        gain = (p - avg) / avg if long else (avg - p) / avg
        fall = (best - p) / best if long else (p - best) / best
        crossed = {
            "STOP_LOSS": gain <= -rules.get("stop_loss_pct", math.inf) / 100,
            "TAKE_PROFIT": gain >= rules.get("take_profit_pct", math.inf) / 100,
            "TRAILING_STOP": fall >= rules.get("trailing_stop_pct", math.inf) / 100,
        }
        hit = {why for why, yes in crossed.items() if yes}
        if hit:
            return k, hit
    raise AssertionError("the tape never crosses an exit")


def test_strategy_exits_close_at_the_mark_after_the_first_mark_past_their_percentage(
    tmp_path: Path,
) -> None:
    rng, paths, strategies = random.Random(7), dict[int, list[float]](), list[dict[str, Any]]()
    for sid, (tok, side, rules, drift) in EXITS.items():
        paths[tok] = walk(rng, 1500.0, drift)
        params = {"at": 3, "quantity": 5, "side": side}
        strategies.append({"id": sid, "class": f"{HERE}:Enter", "instruments": [tok],
                           "brokers": ["paper"], "params": params, **rules})  # fmt: skip
    sl = paths[TOKENS[0]]
    sl[12] = round(sl[3] * 0.985, 1)  # 1.5% down at a tick that is no mark (x.2 s): ignored
    ticks = write_tape(tmp_path / "ticks", paths)
    brokers = {"paper": {"starting_cash": 1_000_000, "slippage_bps": 0}}
    rows, _ = run_graph(make_config(ticks, strategies=strategies, brokers=brokers), tmp_path)
    tape, seen = read_tape(ticks), dict[str, datetime]()
    for sid, (tok, side, rules, _) in EXITS.items():
        entry_at, avg = tape[tok][3]  # the tick after the signal's (3rd) tick
        fills = [f for f in rows["fills"] if f.strategy_id == sid]
        assert (fills[0].timestamp, fills[0].fill_price, fills[0].side) == (entry_at, avg, side)
        marks = [m for m in marks_of(tape[tok]) if m[0] > entry_at]
        k, hit = first_exit(marks, avg, side == "BUY", rules)
        mine = [s for s in rows["signals"] if s.strategy_id == sid]
        (out,) = [s for s in mine if s.reason.split(":")[0] in EXIT_REASONS]
        why = out.reason.split(":")[0]
        assert (out.timestamp, out.target_quantity) == (marks[k][0], 0) and why in hit
        assert len(fills) == 2 and fills[1].side != side and fills[1].quantity == 5
        assert (fills[1].timestamp, fills[1].fill_price) == marks[k + 1]  # a MARKET at the next
        seen[why] = out.timestamp
    assert set(seen) == set(EXIT_REASONS)
    assert tape[TOKENS[0]][12][0] < seen["STOP_LOSS"]  # the dip between marks did not trigger


def test_the_trailing_stop_trails_the_best_mark_never_the_slipped_fill(tmp_path: Path) -> None:
    # two ticks a second at one price each second: the marks are these prices
    flat = [1000.0] * 40  # never moves: a 0.01% trailing stop must never fire
    per_second = [999.9] * 3 + [999.95, 1000.0, 1000.0]  # the peak mark 1000.0 < the fill
    per_second += [round(1000.0 - 0.05 * k, 2) for k in range(1, 200)]  # then down 0.05 a mark
    peak = [p for p in per_second for _ in range(2)]
    rules = {"flat": (TOKENS[0], 0.01), "peak": (TOKENS[1], 0.5)}
    ticks = write_tape(tmp_path / "ticks", {TOKENS[0]: flat, TOKENS[1]: peak})
    strategies = [{"id": sid, "class": f"{HERE}:Enter", "instruments": [tok],
                   "brokers": ["paper"], "params": {"at": 3, "quantity": 5},
                   "trailing_stop_pct": pct} for sid, (tok, pct) in rules.items()]  # fmt: skip
    brokers = {"paper": {"starting_cash": 1_000_000, "slippage_bps": 2}}
    rows, _ = run_graph(make_config(ticks, strategies=strategies, brokers=brokers), tmp_path)
    tape = read_tape(ticks)
    exits = {s.strategy_id: s for s in rows["signals"] if s.reason.startswith("TRAILING_STOP")}
    fills = {sid: [f for f in rows["fills"] if f.strategy_id == sid] for sid in rules}
    (entry,) = fills["flat"]  # bought at 1000.20 (2 bps), held to the end: no exit
    assert entry.fill_price > 1000.0 and "flat" not in exits
    entry, out = fills["peak"]
    tok, pct = rules["peak"]
    assert (entry.timestamp, entry.fill_price) == (tape[tok][3][0], 1000.1)  # 999.9 + 2 bps
    marks = [m for m in marks_of(tape[tok]) if m[0] > entry.timestamp]
    k, hit = first_exit(marks, entry.fill_price, True, {"trailing_stop_pct": pct})
    assert hit == {"TRAILING_STOP"} and marks[k][1] == 995.0  # exactly 0.5% off the 1000.0 peak
    assert exits["peak"].timestamp == marks[k][0] and exits["peak"].target_quantity == 0
    assert (out.side, out.quantity, out.timestamp) == ("SELL", 5, marks[k + 1][0])


# -- tick_size: auto ----------------------------------------------------------------------
SWEEPS = dict(zip(TOKENS, [(246.0, 254.0), (992.0, 1008.0), (4970.0, 5030.0), (9950.0, 10050.0),
                           (19900.0, 20100.0), (590.0, 610.0)], strict=True))  # fmt: skip


def outward(price: float, buy: bool, bps: float, tick: float | None = None) -> float:
    """``price`` moved ``bps`` against the order, out to the NSE grid at that price (or
    to ``tick``)."""
    raw = price * (1 + bps / 1e4) if buy else price * (1 - bps / 1e4)
    tick = band_tick(raw) if tick is None else tick
    steps = math.ceil(raw / tick - 1e-9) if buy else math.floor(raw / tick + 1e-9)
    return round(steps * tick, 2)


def test_tick_size_auto_puts_fills_and_stop_triggers_on_the_nse_band_grid(tmp_path: Path) -> None:
    rng, paths = random.Random(3), dict[int, list[float]]()
    for tok, (lo, hi) in SWEEPS.items():  # across a band boundary and back
        n, noise = 120, (hi - lo) / 40
        raw = [lo + (hi - lo) * abs(1 - 2 * i / (n - 1)) + rng.gauss(0, noise) for i in range(n)]
        paths[tok] = [round(round(p / band_tick(p)) * band_tick(p), 2) for p in raw]
    ticks = write_tape(tmp_path / "ticks", paths)
    inst = [{"instrument_token": t, "tradingsymbol": s, "tick_size": "auto"}
            for t, s, _ in INSTRUMENTS]  # fmt: skip
    common = {"instruments": TOKENS, "brokers": ["paper"]}
    strategies = [
        {"id": "flip", "class": f"{HERE}:Flip", "params": {"every": 3}, **common},
        {"id": "stops", "class": f"{HERE}:Flip", "params": {"every": 4}, **common,
         "order_type": "SL-M", "stop_offset_bps": 7},
    ]  # fmt: skip
    rows, _ = run_graph(make_config(ticks, instruments=inst, strategies=strategies), tmp_path)
    at_tick = {(tok, t): p for tok, ts in read_tape(ticks).items() for t, p in ts}
    bands, sides = set(), set()
    for f in rows["fills"]:  # every fill on the grid of its price's band
        assert on_grid(f.fill_price, band_tick(f.fill_price)), f
        if f.strategy_id == "flip":  # MARKET: the next tick's price, 2 bps out to the grid
            tick = at_tick[(f.instrument_token, f.timestamp)]
            assert f.fill_price == outward(tick, f.side == "BUY", 2.0), (f, tick)
            bands.add(band_tick(tick * (1.0002 if f.side == "BUY" else 0.9998)))
            sides.add(f.side)
    stops = [o for o in rows["orders"] if o.order_type == "SL-M"]
    for o in stops:  # the trigger 7 bps beyond the signal price, out to that price's grid
        assert o.trigger_price == outward(o.price, o.side == "BUY", 7.0, band_tick(o.price)), o
    assert bands == {0.01, 0.05, 0.10, 0.50, 1.0, 5.0} and sides == {"BUY", "SELL"}
    assert stops and [f for f in rows["fills"] if f.strategy_id == "stops"]
