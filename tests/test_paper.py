"""The paper fill model: never at the tick that signalled, the next tick (or the first at or
after the latency), slippage on that tick's price; resting orders cancelled when no tick
executes them; the account's own orders (flattens) filled at the next mark."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.account.account import Account, AccountSetup
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, RiskConfig, SessionConfig
from schemas.enums import Broker
from schemas.events import OrderFailed, OrderFilled, TradingSignal, ValidatedSignal
from schemas.ids import tick_id
from schemas.ticks import US, ExecTick, MarkSet, from_us, to_us
from tests.support import INSTRUMENTS, make_config, run_graph, small_ticks

OPEN = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)  # Fri 10:30 IST


def _tape(ticks: Path) -> dict[int, list[tuple[int, float]]]:
    """Each instrument's ticks in order (clean data: every row is a valid tick)."""
    rows = ds.dataset(ticks).to_table().to_pylist()
    tape: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for r in rows:
        tape[r["instrument_token"]].append((to_us(r["timestamp"]), r["last_price"]))
    return tape


def _slipped(price: float, side: str, bps: float, tick: float) -> float:
    """Against the order by ``bps``, outward to the tick grid (worked independently)."""
    raw = price * (1 + bps / 1e4) if side == "BUY" else price * (1 - bps / 1e4)
    n = math.ceil(raw / tick - 1e-9) if side == "BUY" else math.floor(raw / tick + 1e-9)
    return round(n * tick, 2)


def _expected_fills(
    signals: list[Any], tape: dict[int, list[tuple[int, float]]], latency_us: int
) -> dict[str, tuple[int, float]]:
    """signal id → (time, price) of the tick that must execute it."""
    out = {}
    for s in signals:
        ticks, ts = tape[s.instrument_token], to_us(s.timestamp)
        if s.reason.startswith(("AUTO_SQUARE_OFF", "FLATTEN")):
            continue  # the account's own: no tick caused it
        seq = next(
            i
            for i, (t, _) in enumerate(ticks)
            if tick_id(s.instrument_token, t, i) == s.correlation_id
        )
        assert ticks[seq] == (ts, s.price)
        nxt = next((i for i in range(seq + 1, len(ticks)) if ticks[i][0] >= ts + latency_us), None)
        if nxt is not None:
            out[s.signal_id] = ticks[nxt]
    return out


@pytest.mark.parametrize("latency_ms", [0, 1500])
def test_paper_fills_at_the_tick_after_the_signal_never_the_one_that_signalled(
    tmp_path: Path, latency_ms: int
) -> None:
    ticks = small_ticks(tmp_path, bad_rows=False)
    ex = {"latency_ms": latency_ms, "max_participation": None}  # fills in full
    cfg = make_config(ticks, execution=ex)
    rows, _ = run_graph(cfg, tmp_path / "out")
    signals = {s.signal_id: s for s in rows["signals"]}
    fills = rows["fills"]
    assert len(fills) > 50
    want = _expected_fills(list(signals.values()), _tape(ticks), latency_ms * 1000)
    sizes = {t: tick for t, _, tick in INSTRUMENTS}
    for f in fills:
        s = signals[f.signal_id]
        if f.auto_square_off:  # the account's own order: filled at a mark, not an ExecTick
            assert s.reason.startswith("AUTO_SQUARE_OFF") and f.signal_id not in want
            continue
        at, price = want[f.signal_id]
        assert to_us(f.timestamp) == at and at >= to_us(s.timestamp) + latency_ms * 1000
        assert f.fill_price == _slipped(price, f.side, 2.0, sizes[f.instrument_token])
    placed = {o.order_id: o for o in rows["orders"]}
    ended = {f.order_id for f in rows["order_failures"]}
    assert {f.order_id for f in fills} | ended == set(placed)  # every order ends, once
    for f in rows["order_failures"]:  # only when no tick executes it in its session
        s, close = signals[f.signal_id], datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
        assert f.status == "CANCELLED" and s.timestamp.date() == close.date()
        assert f.signal_id not in want or want[f.signal_id][0] >= to_us(close)


def test_fills_do_not_depend_on_batch_cuts_with_a_latency(tmp_path: Path) -> None:
    ticks = small_ticks(tmp_path)
    got = []
    for batch, parts in ((700, 3), (37, 1)):
        cfg = make_config(
            ticks,
            execution={"latency_ms": 700},
            source={"path": str(ticks), "batch_size": batch, "partitions": parts},
        )
        rows, _ = run_graph(cfg, tmp_path / f"out{batch}")
        got.append([f.model_dump() for f in rows["fills"]])
    assert got[0] == got[1] and got[0]


def _account(**risk: Any) -> tuple[Account, PaperVenue]:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2))
    cfg = BrokerConfig(starting_cash=1e6, slippage_bps=0, risk=RiskConfig(**risk))
    return Account(Broker.PAPER, cfg, setup, lambda _s: venue, None), venue


def _signal(qty: int, at: datetime, tok: int = 1, sid: str = "s1") -> TradingSignal:
    return TradingSignal(
        signal_id=sid, correlation_id=f"c-{sid}", strategy_id="t", broker="paper",
        instrument_token=tok, target_quantity=qty, price=100.0, timestamp=at, reason="",
    )  # fmt: skip


def test_an_order_rests_until_its_tick_and_counts_as_open_meanwhile() -> None:
    a, _ = _account()
    out = a.on_item(_signal(10, OPEN))
    assert not [e for e in out if isinstance(e, OrderFilled)]
    assert a.state.book.position(1) == 0 and a.state.book.pending(1) == 10
    again = a.on_item(_signal(10, OPEN + timedelta(milliseconds=1), sid="s2"))
    assert not [e for e in again if isinstance(e, ValidatedSignal)]  # already ordered
    assert a.on_item(ExecTick(to_us(OPEN) + 5, 1, 101.5, ("other",))) == []
    done = a.on_item(ExecTick(to_us(OPEN) + 5, 1, 101.5, ("s1",)))
    [f] = [e for e in done if isinstance(e, OrderFilled)]
    assert (f.quantity, f.fill_price, to_us(f.timestamp)) == (10, 101.5, to_us(OPEN) + 5)
    assert a.state.book.position(1) == 10 and a.state.book.pending(1) == 0


def test_an_order_with_no_tick_before_the_close_is_cancelled_not_filled_next_day() -> None:
    a, _ = _account()
    late = OPEN.replace(hour=9, minute=49, second=59)  # 15:19:59 IST, before the MIS cut-off
    a.on_item(_signal(10, late))
    monday = to_us(OPEN + timedelta(days=3))
    out = a.on_item(ExecTick(monday, 1, 99.0, ("s1",)))
    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 10)
    ]
    assert a.state.book.position(1) == 0 and not a.state.book.open


def test_orders_still_resting_at_the_end_of_the_data_are_cancelled() -> None:
    a, _ = _account()
    a.on_item(_signal(10, OPEN))
    out = a.on_eof()
    assert [(e.status, e.signal_id) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", "s1")
    ]


def test_a_flatten_fills_at_the_next_mark_not_at_the_mark_that_breached() -> None:
    a, _ = _account(max_daily_loss=50)
    a.on_item(_signal(10, OPEN))
    a.on_item(ExecTick(to_us(OPEN) + 1, 1, 100.0, ("s1",)))
    out = a.on_item(MarkSet.of(to_us(OPEN) + US, ((1, 94.0),)))  # -60: breach, flatten
    assert not [e for e in out if isinstance(e, OrderFilled)]
    assert a.state.book.pending(1) == -10
    out = a.on_item(MarkSet.of(to_us(OPEN) + 2 * US, ((1, 93.0), (2, 50.0))))
    assert [(e.side, e.quantity, e.fill_price) for e in out if isinstance(e, OrderFilled)] == [
        ("SELL", 10, 93.0)
    ]
    assert a.state.book.position(1) == 0 and not a.state.book.open


def _limit_account(timeout_s: float = 0) -> Account:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes, None, round(timeout_s * US))
    setup = AccountSetup(CostModel(), session, {}, {"t": "LIMIT"}, (1, 2))
    cfg = BrokerConfig(starting_cash=1e6, slippage_bps=0)
    return Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)


def _fills(out: list[Any]) -> list[tuple[float, int]]:
    return [(e.fill_price, to_us(e.timestamp)) for e in out if isinstance(e, OrderFilled)]


def test_a_limit_rests_until_the_tape_reaches_it_and_never_fills_beyond_it() -> None:
    a, t0 = _limit_account(), to_us(OPEN)
    a.on_item(_signal(10, OPEN))  # BUY 10, limit 100.0
    assert _fills(a.on_item(ExecTick(t0 + 5, 1, 100.5, ("s1",), seq=1))) == []  # above: rests
    assert _fills(a.on_item(MarkSet.of(t0 + US, ((1, 99.0),)))) == []  # marks never fill it
    assert (
        _fills(a.on_item(ExecTick(t0 + US + 7, 1, 100.1, ("s1",), "SELL", seq=2))) == []
    )  # not its side
    got = a.on_item(
        ExecTick(t0 + 2 * US, 1, 99.9, ("s1",), "BUY", seq=3)
    )  # the tick that reaches it
    assert _fills(got) == [(100.0, t0 + 2 * US)]
    b = _limit_account()
    b.on_item(_signal(10, OPEN))
    assert _fills(b.on_item(ExecTick(t0 + 5, 1, 99.0, ("s1",)))) == [(99.0, t0 + 5)]  # better
    c = _limit_account()
    c.on_item(_signal(-10, OPEN))  # SELL 10, limit 100.0
    assert _fills(c.on_item(ExecTick(t0 + 3, 1, 100.4, ("s1",), "SELL", seq=1))) == []  # before its
    assert (
        _fills(c.on_item(ExecTick(t0 + US + 5, 1, 99.5, ("s1",), seq=2))) == []
    )  # next tick: rests
    got = c.on_item(ExecTick(t0 + 2 * US, 1, 100.0, ("s1",), "SELL", seq=3))
    assert _fills(got) == [(100.0, t0 + 2 * US)]


def test_a_limit_is_cancelled_after_its_timeout_at_the_time_it_expired() -> None:
    a, t0 = _limit_account(timeout_s=5), to_us(OPEN)
    a.on_item(_signal(10, OPEN))
    a.on_item(ExecTick(t0 + 5, 1, 101.0, ("s1",)))
    out = a.on_item(MarkSet.of(t0 + 10 * US, ((1, 99.0),)))
    assert _fills(out) == []
    [end] = [e for e in out if isinstance(e, OrderFailed)]
    assert (end.status, to_us(end.timestamp), end.quantity) == ("CANCELLED", t0 + 5 * US, 10)
    assert a.state.book.pending(1) == 0


def test_a_resting_order_asks_for_the_marks_only_of_runs_that_reach_its_end() -> None:
    """Marks end a seen order only at the session's close or its timeout: runs before
    that skip the one-by-one scan; the account's own orders take any run."""
    session, t0 = MarketSession(SessionConfig()), to_us(OPEN)
    close = session.closes(t0)
    for timeout_s, end in ((5, t0 + 5 * US + 1), (0, close)):
        a = _limit_account(timeout_s)
        a.on_item(_signal(10, OPEN))
        venue = a.venue
        assert venue.waiting(close + US) is False  # not seen yet: no mark ends it
        a.on_item(ExecTick(t0 + 5, 1, 101.0, ("s1",)))  # seen, resting above its limit
        assert (venue.waiting(end - 1), venue.waiting(end)) == (False, True)
    b, _ = _account(max_daily_loss=50)
    b.on_item(_signal(10, OPEN))
    b.on_item(ExecTick(t0 + 1, 1, 100.0, ("s1",)))
    b.on_item(MarkSet.of(t0 + US, ((1, 94.0),)))  # a breach: the account's own flatten
    assert b.venue.waiting(t0 + US) is True


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([0, 5, 3600]),
    st.lists(st.tuples(st.integers(1, 900), st.integers(95, 105), st.booleans()), max_size=25),
)
def test_runs_no_waiting_order_can_take_give_what_the_mark_by_mark_scan_gives(
    timeout_s: int, steps: list[tuple[int, int, bool]]
) -> None:
    """Resting LIMIT orders (one seen, one not), then marks every few seconds to minutes
    across the MIS cut-off (its square-off fills at marks) and the close, now and then a new
    target and its tick: the account that scans only the runs an order may take gives the
    very events and book of one that scans every run."""
    t0, outs = to_us(OPEN.replace(hour=9, minute=30)), []  # 15:00 IST, the close at 15:30
    for scan_all in (False, True):
        a = _limit_account(timeout_s)
        if scan_all:
            a.venue.waiting = lambda until: True
        out = a.on_item(_signal(10, from_us(t0)))  # BUY 10, limit 100
        out += a.on_item(ExecTick(t0 + 5, 1, 101.0, ("s1",), seq=1))  # seen: rests
        out += a.on_item(_signal(-10, from_us(t0 + 7), tok=2, sid="s2"))  # never ticked
        at = t0 + US
        for n, (gap_s, price, again) in enumerate(steps):
            at += gap_s * US
            if again:  # a new target, and the next tick: fills it if at its limit or better
                out += a.on_item(_signal(10 * (n % 3 - 1), from_us(at), sid=f"t{n}"))
                out += a.on_item(ExecTick(at + 1, 1, float(price), (f"t{n}",), seq=n + 2))
            out += a.on_item(MarkSet.of(at + 2, ((1, float(price)), (2, float(200 - price)))))
        out += a.on_eof()
        outs.append((list(map(repr, out)), a.state.book.position(1), a.state.book.position(2)))
    assert outs[0] == outs[1]


def test_limit_orders_in_the_flow_fill_only_at_or_better_than_their_price(tmp_path: Path) -> None:
    ticks = small_ticks(tmp_path, bad_rows=False)
    raw = make_config(ticks).model_dump(mode="json", by_alias=True)
    for s in raw["strategies"]:
        s["order_type"] = "LIMIT"
    cfg = make_config(ticks, strategies=raw["strategies"])
    rows, _ = run_graph(cfg, tmp_path / "out")
    market, _ = run_graph(make_config(ticks), tmp_path / "market")
    signals = {s.signal_id: s for s in rows["signals"]}
    fills = rows["fills"]
    assert fills and [f.model_dump() for f in fills] != [f.model_dump() for f in market["fills"]]
    own = {f.order_id for f in fills if f.auto_square_off}  # the account's: MARKET
    for f in fills:
        limit = signals[f.signal_id].price
        assert f.order_id in own or (
            f.fill_price <= limit if f.side == "BUY" else f.fill_price >= limit
        )
    assert {o.order_type for o in rows["orders"] if o.order_id not in own} == {"LIMIT"}


def test_auto_tick_sizes_follow_nse_price_bands_in_fills() -> None:
    from operators.market import nse_tick_size

    # NSE cash market from 15 April 2025: <=250 0.01, <=1000 0.05, <=5000 0.10,
    # <=10000 0.50, <=20000 1.00, above 5.00
    table = {120.0: 0.01, 250.0: 0.01, 250.5: 0.05, 999.0: 0.05, 1500.0: 0.10,
             7500.0: 0.50, 15000.0: 1.00, 30000.0: 5.00}  # fmt: skip
    assert {p: nse_tick_size(p) for p in table} == table
    session = MarketSession(SessionConfig())
    venue = PaperVenue(2.0, CostModel(), {1: "auto", 2: 0.05}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2))
    cfg = BrokerConfig(starting_cash=1e7, slippage_bps=2.0)
    a = Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)
    got = []
    for tok, sid in ((1, "a1"), (2, "a2")):
        s = _signal(10, OPEN, tok=tok, sid=sid)
        a.on_item(s)
        out = a.on_item(ExecTick(to_us(OPEN) + 1, tok, 1500.0, (sid,)))
        got += [e.fill_price for e in out if isinstance(e, OrderFilled)]
    # 1500 x 1.0002 = 1500.30: on the 0.10 grid (auto) and on the 0.05 grid (fixed)
    assert got == [1500.3, 1500.3]
    a2 = [e for e in a.on_item(_signal(0, OPEN + timedelta(seconds=1), tok=1, sid="b1"))]
    out = a.on_item(ExecTick(to_us(OPEN) + US + 1, 1, 1500.07, ("b1",)))
    assert a2 and [e.fill_price for e in out if isinstance(e, OrderFilled)] == [1499.7]


def test_circuit_bands_refuse_orders_outside_and_no_fill_lands_outside() -> None:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), circuits={1: 5.0})
    cfg = BrokerConfig(starting_cash=1e6, slippage_bps=0)
    a = Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)
    a.on_item(_signal(10, OPEN))  # Friday: no previous close known, no band
    a.on_item(ExecTick(to_us(OPEN) + 1, 1, 100.0, ("s1",)))
    a.on_item(MarkSet.of(to_us(OPEN) + 60 * US, ((1, 100.0),)))  # Friday's last price: 100
    monday = OPEN + timedelta(days=3)
    out = a.on_item(_signal(20, monday, sid="s2").model_copy(update={"price": 106.0}))
    assert [str(r) for e in out if hasattr(e, "reasons") for r in e.reasons] == ["CIRCUIT_LIMIT"]
    a.on_item(_signal(20, monday, sid="s3").model_copy(update={"price": 104.0}))
    got = a.on_item(ExecTick(to_us(monday) + 1, 1, 105.0, ("s3",)))  # locked at the upper
    assert not [e for e in got if isinstance(e, OrderFilled)]  # circuit: no seller, no fill
    a.on_item(_signal(30, monday + timedelta(seconds=5), sid="s4").model_copy(
        update={"price": 104.0}))  # fmt: skip
    got = a.on_item(ExecTick(to_us(monday) + 5 * US + 1, 1, 106.5, ("s4",)))  # beyond the band
    assert not [e for e in got if isinstance(e, OrderFilled)]  # a bad print, never a price
    a.on_item(_signal(40, monday + timedelta(seconds=9), sid="s5").model_copy(
        update={"price": 104.0}))  # fmt: skip
    got = a.on_item(ExecTick(to_us(monday) + 9 * US + 1, 1, 104.5, ("s5",)))  # inside
    assert [e.fill_price for e in got if isinstance(e, OrderFilled)] == [104.5]
