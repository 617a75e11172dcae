"""The account's own orders and the session: exits, flattens and square-offs fill only in a
session's hours; an instrument silent after the MIS cut-off is still squared off, at its last
price, at the close; a special session's cut-off keeps its distance from its close; a CNC
sell never counts an unfilled buy as held; a crossed book or a circuit-locked print is never
a price. Expectations are worked out here from the tape and the session's hours."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.control import FileControl
from operators.account.account import Account, AccountSetup
from operators.account.exits import ExitRule
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.arrow import DEPTH_FIELDS, TICK_SCHEMA, depth_columns
from schemas.config import BrokerConfig, CostModel, SessionConfig
from schemas.control import ControlCommand
from schemas.enums import Broker, Product
from schemas.events import (
    OrderFailed,
    OrderFilled,
    RejectedSignal,
    TradingSignal,
    TradingStateChanged,
)
from schemas.ticks import US, Depth, ExecTick, MarkEntries, MarkSet, to_us
from tests.support import INSTRUMENTS, StubVenue, make_config, run_graph

IST = ZoneInfo("Asia/Kolkata")
_n = iter(range(10**6))


def _ist(d: date, hh: int, mm: int, ss: int = 0) -> int:
    return to_us(datetime.combine(d, time(hh, mm, ss), IST))


def _account(
    product: Product,
    exits: dict[str, ExitRule] | None = None,
    cfg: SessionConfig | None = None,
    venue: Any = None,
    inbox: Any = None,
) -> Account:
    session = MarketSession(cfg or SessionConfig())
    paper = PaperVenue(0.0, CostModel(), {}, session.closes, in_session=session.open_mask)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), {"t": product}, exits=exits or {})
    broker = BrokerConfig(starting_cash=1e6, slippage_bps=0)
    return Account(Broker.PAPER, broker, setup, lambda _s: venue or paper, inbox)


def _trade(a: Account, qty: int, at: int, price: float = 100.0, execute: bool = True) -> list[Any]:
    n = next(_n)
    s = TradingSignal(
        signal_id=f"s{n}", correlation_id=f"c{n}", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=qty, price=price,
        timestamp=datetime.fromtimestamp(at / US, timezone.utc), reason="",
    )  # fmt: skip
    out = a.on_item(s)
    return out + (a.on_item(ExecTick(at + 1, 1, price, (s.signal_id,))) if execute else [])


def _marks(points: list[tuple[int, int, float]]) -> MarkSet:
    """One run of marks (µs, token, price), as the ordering stage sends them."""
    points = sorted(points, key=lambda p: (p[1], p[0]))  # grouped by instrument, in time
    times = np.array([t for t, _, _ in points], dtype=np.int64)
    toks = np.array([k for _, k, _ in points], dtype=np.int64)
    px = np.array([p for _, _, p in points])
    tokens = sorted(set(toks.tolist()))
    last = np.array([px[toks == k][-1] for k in tokens])
    high = np.array([px[toks == k].max() for k in tokens])
    low = np.array([px[toks == k].min() for k in tokens])
    return MarkSet(
        int(times.min()), int(times.max()), np.array(tokens, dtype=np.int64), last, high, low,
        MarkEntries(times, toks, px),
    )  # fmt: skip


def _fills(out: list[Any]) -> list[tuple[str, int, float, int, bool]]:
    return [
        (f.side, f.quantity, f.fill_price, to_us(f.timestamp), f.auto_square_off)
        for f in out
        if isinstance(f, OrderFilled)
    ]


FRI, MON = date(2026, 11, 20), date(2026, 11, 23)


def test_a_stop_triggered_before_the_open_fills_at_the_first_mark_in_session_hours() -> None:
    a = _account(Product.CNC, {"t": ExitRule(stop_loss_pct=5.0)})
    _trade(a, 10, _ist(FRI, 11, 0))
    pre_open = [(_ist(MON, 9, 0, 1), 1, 80.0), (_ist(MON, 9, 0, 2), 1, 76.0)]
    out = a.on_item(_marks(pre_open))
    assert not _fills(out) and a.state.book.position(1) == 10  # no fill before 09:15
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 1, 99.0), (_ist(MON, 9, 15, 2), 1, 98.0)]))
    assert _fills(out) == [("SELL", 10, 99.0, _ist(MON, 9, 15, 1), False)]
    assert a.state.book.position(1) == 0


def test_an_instrument_silent_after_the_cutoff_is_squared_off_at_the_close() -> None:
    a = _account(Product.MIS)
    _trade(a, 10, _ist(FRI, 14, 0))
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0), (_ist(FRI, 15, 10), 2, 50.0)]))
    out = a.on_item(_marks([(_ist(FRI, 15, 21), 2, 50.0), (_ist(FRI, 15, 29), 2, 50.5)]))
    assert not _fills(out)  # instrument 1 has no tick after the cut-off: the order waits
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 1, 95.0)]))  # next it moves on Monday
    close = _ist(FRI, 15, 30)  # the square-off: at Friday's close, at 101, its last price
    assert _fills(out) == [("SELL", 10, 101.0, close, True)]
    assert a.state.book.position(1) == 0


def test_a_day_with_no_event_after_its_cutoff_is_squared_off_at_its_close() -> None:
    a = _account(Product.MIS)
    _trade(a, 10, _ist(FRI, 10, 0))
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0), (_ist(FRI, 15, 10), 2, 50.0)]))
    # the whole tape stops at 15:10; Monday's first event is instrument 2's mark
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 2, 51.0)]))
    assert _fills(out) == [("SELL", 10, 101.0, _ist(FRI, 15, 30), True)]
    assert a.state.book.position(1) == 0  # flat before Monday's first decision


def test_a_close_still_resting_when_the_tape_stops_is_replaced_by_the_square_off() -> None:
    a = _account(Product.MIS)
    _trade(a, 10, _ist(FRI, 10, 0))
    _trade(a, 0, _ist(FRI, 15, 9, 59), 101.0, execute=False)  # the strategy's own close rests
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0)]))  # and the whole tape stops
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 2, 51.0)]))
    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 10)  # at the cut-off, as the broker cancels pending MIS orders
    ]
    assert _fills(out) == [("SELL", 10, 101.0, _ist(FRI, 15, 30), True)]
    assert a.state.book.position(1) == 0


def test_commands_due_before_a_missed_cutoff_come_before_its_square_off() -> None:
    cmd = ControlCommand(
        ts=datetime.fromtimestamp(_ist(FRI, 15, 12) / US, timezone.utc), broker="paper",
        command="halt", origin="test",
    )  # fmt: skip
    a = _account(Product.MIS, inbox=FileControl([cmd], Broker.PAPER))
    _trade(a, 10, _ist(FRI, 10, 0))
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0)]))
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 2, 51.0)]))
    kinds = [type(e).__name__ for e in out if isinstance(e, (TradingStateChanged, OrderFilled))]
    assert kinds == ["TradingStateChanged", "OrderFilled"]  # halted at 15:12, then 15:30
    assert a.state.book.position(1) == 0


def test_a_silent_instruments_square_off_settles_at_the_next_days_first_event() -> None:
    a = _account(Product.MIS)
    _trade(a, 10, _ist(FRI, 14, 0))
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0), (_ist(FRI, 15, 21), 2, 50.0)]))
    out = a.on_item(_marks([(_ist(MON, 9, 15, 1), 2, 51.0)]))  # instrument 1 still silent
    assert _fills(out) == [("SELL", 10, 101.0, _ist(FRI, 15, 30), True)]
    assert a.state.book.position(1) == 0


def test_the_data_ending_before_the_square_off_filled_still_squares_off() -> None:
    a = _account(Product.MIS)
    _trade(a, 10, _ist(FRI, 14, 0))
    a.on_item(_marks([(_ist(FRI, 15, 10), 1, 101.0), (_ist(FRI, 15, 21), 2, 50.0)]))
    out = a.on_eof()
    assert _fills(out) == [("SELL", 10, 101.0, _ist(FRI, 15, 21), True)]


def test_a_special_session_keeps_the_cutoff_ten_minutes_before_its_close() -> None:
    muhurat = date(2026, 11, 8)  # a Sunday evening session, 18:00–19:00 IST
    cfg = SessionConfig.model_validate(
        {"special_sessions": [{"date": "2026-11-08", "open": "18:00", "close": "19:00"}]}
    )
    a = _account(Product.MIS, cfg=cfg)
    assert _fills(_trade(a, 10, _ist(muhurat, 18, 10)))  # entries allowed in the session
    late = _trade(a, 20, _ist(muhurat, 18, 51))
    assert [str(r) for e in late if isinstance(e, RejectedSignal) for r in e.reasons] == [
        "MIS_CUTOFF"
    ]
    out = a.on_item(_marks([(_ist(muhurat, 18, 52), 1, 102.0)]))
    assert _fills(out) == [("SELL", 10, 102.0, _ist(muhurat, 18, 52), True)]


def test_a_special_session_shorter_than_the_gap_has_its_cutoff_at_its_open() -> None:
    cfg = SessionConfig.model_validate(
        {"special_sessions": [{"date": "2026-11-08", "open": "18:00", "close": "18:05"}]}
    )
    session = MarketSession(cfg)
    at = _ist(date(2026, 11, 8), 18, 1)
    assert session.cutoff(at) == _ist(date(2026, 11, 8), 18, 0)  # never before the open
    assert session.closes(at) == _ist(date(2026, 11, 8), 18, 5)


def test_a_cnc_target_below_what_is_bought_cancels_the_buy_and_never_sells_naked() -> None:
    a = _account(Product.CNC)
    _trade(a, 10, _ist(FRI, 11, 0), execute=False)  # the buy rests, nothing filled
    out = _trade(a, 0, _ist(FRI, 11, 1))  # flat: the buy is cancelled, nothing is sold
    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 10)
    ]
    assert not _fills(out) and not [e for e in out if isinstance(e, RejectedSignal)]
    assert a.state.book.position(1) == 0 and a.state.book.pending(1) == 0


def test_a_cnc_target_lowered_inside_an_open_buy_ends_at_the_target() -> None:
    a = _account(Product.CNC)
    buy = _trade(a, 50, _ist(FRI, 10, 0), execute=False)
    sid = next(e.signal_id for e in buy if isinstance(e, TradingSignal))
    a.on_item(ExecTick(_ist(FRI, 10, 0) + 1, 1, 100.0, (sid,), volume=10, seq=1))
    out = _trade(a, 30, _ist(FRI, 10, 2))  # 10 held, 40 coming: the 40 go, 20 are bought
    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 40)
    ]
    assert [(f[0], f[1]) for f in _fills(out)] == [("BUY", 20)]
    assert a.state.book.position(1) == 30 and a.state.book.pending(1) == 0


def test_a_cnc_cancel_under_way_at_a_live_broker_never_brings_a_naked_sell() -> None:
    stub = StubVenue(rest=frozenset({1}))  # orders stay open; a cancel is only asked for
    a = _account(Product.CNC, venue=stub)
    _trade(a, 50, _ist(FRI, 10, 0), execute=False)
    out = _trade(a, 30, _ist(FRI, 10, 2))  # nothing held: no sell, no buy while it cancels
    assert [v.side for v in stub.sent] == ["BUY"]
    assert not [e for e in out if isinstance(e, RejectedSignal)]


def test_a_cnc_flip_while_the_buy_fills_in_parts_sells_what_was_filled() -> None:
    a = _account(Product.CNC)
    buy = _trade(a, 50, _ist(FRI, 10, 0), execute=False)
    sid = next(e.signal_id for e in buy if isinstance(e, TradingSignal))
    a.on_item(ExecTick(_ist(FRI, 10, 0) + 1, 1, 100.0, (sid,), volume=10, seq=1))
    assert a.state.book.position(1) == 10 and a.state.book.pending(1) == 40
    out = _trade(a, -50, _ist(FRI, 10, 2))  # CNC: -50 means flat
    assert [(e.status, e.quantity) for e in out if isinstance(e, OrderFailed)] == [
        ("CANCELLED", 40)
    ]
    assert [(f[0], f[1]) for f in _fills(out)] == [("SELL", 10)]
    assert not [e for e in out if isinstance(e, RejectedSignal)]
    assert a.state.book.position(1) == 0 and a.state.book.pending(1) == 0


def _depth_tape(path: Path, bid: float, ask: float) -> Path:
    """One instrument at 100.00: three ticks without a book, then three whose book is
    ``bid`` / ``ask`` on all five levels (100 shares each)."""
    tok, n = INSTRUMENTS[0][0], 6
    start = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)
    d = Depth.empty(n)
    for i in range(3, n):
        d.bid_price[i, :], d.ask_price[i, :] = bid, ask
        d.bid_qty[i, :], d.ask_qty[i, :] = 100, 100
    arrays = [
        pa.array([tok] * n, pa.int64()),
        pa.array([start + timedelta(seconds=10 * i) for i in range(n)],
                 TICK_SCHEMA.field("timestamp").type),
        pa.array([100.0] * n, pa.float64()),
        pa.array([10_000 * (i + 1) for i in range(n)], pa.int64()),
        *depth_columns(d),
    ]  # fmt: skip
    path.mkdir()
    schema = pa.schema([*TICK_SCHEMA, *DEPTH_FIELDS])
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path / "ticks.parquet")
    return path


def test_a_crossed_book_is_never_a_price(tmp_path: Path) -> None:
    strategy = {"id": "c", "class": "tests.support:CountingStrategy",
                "instruments": [INSTRUMENTS[0][0]], "brokers": ["paper"],
                "params": {"at": 3, "quantity": 10}}  # fmt: skip
    for bid, ask, want in [(99.95, 95.0, 100.05), (105.0, 100.05, 100.05), (99.9, 100.1, 100.1)]:
        ticks = _depth_tape(tmp_path / f"t{bid}-{ask}", bid, ask)
        cfg = make_config(ticks, strategies=[strategy], execution={"max_participation": None})
        rows, _ = run_graph(cfg, tmp_path / f"out{bid}-{ask}")
        # crossed (ask below bid): the last price + 2 bps up to the tick; sane: the ask
        assert [f.fill_price for f in rows["fills"]] == [want], (bid, ask)
