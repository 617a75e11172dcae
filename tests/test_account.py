"""The account alone: target positions, risk checks against the one book, execution
outcomes applied at once, the daily-loss limit on marks, operator commands."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from connectors.control import FileControl
from operators.account.account import Account, AccountSetup
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, RiskConfig, SessionConfig
from schemas.control import ControlCommand
from schemas.enums import Broker
from schemas.events import (
    OrderFailed,
    OrderFilled,
    RejectedSignal,
    TradingSignal,
    TradingStateChanged,
    ValidatedSignal,
)
from schemas.ticks import US, ExecTick, MarkSet, to_us
from tests.support import StubVenue

OPEN = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)  # Fri 10:30 IST
_n = iter(range(10**6))


def target(
    qty: int, tok: int = 1, price: float = 100.0, at: datetime = OPEN, sid: str = "t"
) -> TradingSignal:
    n = next(_n)
    return TradingSignal(
        signal_id=f"s{n}", correlation_id=f"c{n}", strategy_id=sid, broker="paper",
        instrument_token=tok, target_quantity=qty, price=price, timestamp=at, reason="",
    )  # fmt: skip


def make(
    venue: Any = None,
    cash: float = 1e6,
    inbox: Any = None,
    order_types: dict[str, str] | None = None,
    universe: tuple[int, ...] = (),
    products: dict[str, Any] | None = None,
    **risk: Any,
) -> Account:
    cfg = BrokerConfig(starting_cash=cash, slippage_bps=0, risk=RiskConfig(**risk))
    setup = AccountSetup(
        costs=CostModel(),
        session=MarketSession(SessionConfig()),
        lot_sizes={7: 25},
        order_types=order_types or {},
        universe=universe,
        products=products or {},
    )
    v = venue or StubVenue()  # fills at once, at the signal's price (the paper fill model:
    # tests/test_paper.py)
    return Account(Broker.PAPER, cfg, setup, lambda _state: v, inbox)


def of(items: list[Any], kind: type) -> list[Any]:
    return [i for i in items if isinstance(i, kind)]


def reasons(a: Account, s: TradingSignal) -> list[str]:
    out = a.on_item(s)
    rej = of(out, RejectedSignal)
    return list(rej[0].reasons) if rej else []


def test_each_check_has_its_reason_code() -> None:
    assert reasons(make(), target(10, at=OPEN.replace(hour=11))) == ["MARKET_CLOSED"]
    assert reasons(make(), target(10, at=OPEN + timedelta(days=1))) == ["MARKET_CLOSED"]
    assert reasons(make(allowed_instruments=[2]), target(10)) == ["INSTRUMENT_NOT_ALLOWED"]
    assert reasons(make(max_order_value=999), target(10)) == ["MAX_ORDER_VALUE_EXCEEDED"]
    assert reasons(make(max_position_qty=9), target(10)) == ["MAX_POSITION_EXCEEDED"]
    assert reasons(make(max_position_value=999), target(10)) == ["MAX_POSITION_VALUE_EXCEEDED"]
    assert reasons(make(cash=500), target(10)) == ["INSUFFICIENT_FUNDS"]
    assert reasons(make(), target(10, tok=7)) == ["LOT_SIZE_MISMATCH"]  # lot of 25
    assert reasons(make(), target(50, tok=7)) == []
    a = make(max_gross_exposure=2500)
    assert reasons(a, target(10, tok=1)) == [] and reasons(a, target(10, tok=2)) == []
    assert reasons(a, target(10, tok=3)) == ["MAX_GROSS_EXPOSURE_EXCEEDED"]  # 3,000 > 2,500
    a = make(max_open_positions=2)
    assert reasons(a, target(1, tok=1)) == [] and reasons(a, target(1, tok=2)) == []
    assert reasons(a, target(1, tok=3)) == ["MAX_OPEN_POSITIONS_EXCEEDED"]
    assert reasons(a, target(5, tok=1)) == []  # adding to a held instrument opens nothing new
    a = make(order_types={"t": "LIMIT"}, price_band_pct=5)
    a.on_item(MarkSet.of(to_us(OPEN), ((1, 100.0),)))
    assert reasons(a, target(1, price=104.0)) == []
    assert reasons(a, target(2, price=110.0)) == ["PRICE_OUTSIDE_BAND"]  # 5.8% from the fill
    # every failing check is reported
    got = reasons(make(max_order_value=1, max_position_qty=1), target(10))
    assert got == ["MAX_ORDER_VALUE_EXCEEDED", "MAX_POSITION_EXCEEDED"]


def test_the_account_orders_the_difference_from_each_strategys_position() -> None:
    a = make()
    sides = []
    for qty, sid in [(10, "a"), (-10, "a"), (-10, "a"), (0, "a"), (5, "b"), (5, "b")]:
        out = a.on_item(target(qty, sid=sid))
        sides.append([(v.side, v.quantity) for v in of(out, ValidatedSignal)])
    assert sides == [[("BUY", 10)], [("SELL", 20)], [], [("BUY", 10)], [("BUY", 5)], []]
    book = a.state.book
    assert book.strategy_position("a", 1) == 0 and book.strategy_position("b", 1) == 5
    assert book.position(1) == 5


def test_a_rejected_buy_then_a_sell_under_a_loss_breach_opens_no_short() -> None:
    a = make(StubVenue(reject=frozenset({1})), max_daily_loss=50, flatten_on_breach=False)
    out = a.on_item(target(10, tok=1))  # the broker refuses the BUY
    assert of(out, OrderFailed) and a.state.book.position(1) == 0
    a.on_item(target(10, tok=2))  # a long elsewhere, which then loses 100
    moved = a.on_item(MarkSet.of(to_us(OPEN) + US, ((2, 90.0),)))
    assert [c.state for c in of(moved, TradingStateChanged)] == ["REDUCING"]
    assert reasons(a, target(-10, tok=1, at=OPEN + timedelta(seconds=2))) == [
        "MAX_DAILY_LOSS_BREACHED"
    ]
    assert a.state.book.position(1) == 0  # no short: risk saw that the BUY never happened
    # reducing the losing long is still allowed
    assert reasons(a, target(0, tok=2, price=90.0, at=OPEN + timedelta(seconds=3))) == []
    assert a.state.book.position(2) == 0


def test_a_broker_failure_releases_its_exposure_at_once() -> None:
    a = make(StubVenue(down=frozenset({1})), max_position_qty=15)
    out = a.on_item(target(10))
    assert of(out, OrderFailed)[0].quantity == 10
    book = a.state.book
    assert book.exposure(1) == 0 and book.pending_cash() == 0 and not book.open
    # the same target is ordered again in full, and passes the position limit
    again = a.on_item(target(10))
    assert [(v.side, v.quantity) for v in of(again, ValidatedSignal)] == [("BUY", 10)]


def test_a_loss_breach_on_a_mark_flattens_and_the_next_day_trades_again() -> None:
    a = make(max_daily_loss=50)
    a.on_item(target(10, tok=1))
    a.on_item(target(-4, tok=2, price=50.0, sid="s"))
    out = a.on_item(MarkSet.of(to_us(OPEN) + US, ((1, 94.0),)))  # -60 on the long
    states = of(out, TradingStateChanged)
    assert [(c.state, c.reason) for c in states] == [("REDUCING", "DAILY_LOSS_BREACHED")]
    flat = [(f.instrument_token, f.side, f.quantity) for f in of(out, OrderFilled)]
    assert sorted(flat) == [(1, "SELL", 10), (2, "BUY", 4)]
    fill_1 = next(f for f in of(out, OrderFilled) if f.instrument_token == 1)
    assert fill_1.fill_price == 94.0  # at the mark that breached
    assert a.state.book.held_count() == 0
    monday = OPEN + timedelta(days=3)
    back = a.on_item(target(10, at=monday))
    assert [c.state for c in of(back, TradingStateChanged)] == ["ACTIVE"]
    assert of(back, ValidatedSignal)


def test_operator_commands_from_a_file_apply_at_their_event_time() -> None:
    def cmd(sec: int, what: str) -> ControlCommand:
        ts = OPEN + timedelta(seconds=sec)
        return ControlCommand(ts=ts, broker="paper", command=what, origin=f"test:{sec}")

    cmds = [cmd(10, "halt"), cmd(20, "resume"), cmd(30, "flatten")]
    a = make(inbox=FileControl(cmds, Broker.PAPER))
    assert reasons(a, target(10, at=OPEN + timedelta(seconds=5))) == []
    halted = a.on_item(target(20, at=OPEN + timedelta(seconds=11)))
    assert [c.state for c in of(halted, TradingStateChanged)] == ["HALTED"]
    assert list(of(halted, RejectedSignal)[0].reasons) == ["TRADING_HALTED"]
    assert reasons(a, target(0, at=OPEN + timedelta(seconds=12))) == ["TRADING_HALTED"]
    out = a.on_item(target(15, at=OPEN + timedelta(seconds=21)))  # still +10: buys 5
    assert [c.state for c in of(out, TradingStateChanged)] == ["ACTIVE"]
    assert [(f.side, f.quantity) for f in of(out, OrderFilled)] == [("BUY", 5)]
    out = a.on_item(MarkSet.of(to_us(OPEN + timedelta(seconds=31)), ((1, 101.0),)))
    assert [c.reason for c in of(out, TradingStateChanged)] == ["OPERATOR_FLATTEN"]
    assert [(f.side, f.quantity, f.fill_price) for f in of(out, OrderFilled)] == [
        ("SELL", 15, 100.0)  # the last price known at 30 s: the mark at 31 s comes after
    ]
    assert a.state.book.position(1) == 0 and a.trading.state == "HALTED"


def test_order_rate_caps_hold_when_signals_arrive_out_of_event_time_order() -> None:
    a = make(max_orders_per_second=3)
    t = OPEN + timedelta(seconds=1)
    late = [t + timedelta(milliseconds=m) for m in (500, 600, 700)]
    assert all(reasons(a, target(i + 1, at=x, sid=f"s{i}")) == [] for i, x in enumerate(late))
    # an earlier order arriving after them would put 4 orders into [t+0.3, t+1.3)
    assert reasons(a, target(1, at=t + timedelta(milliseconds=300), sid="x")) == [
        "MAX_ORDER_RATE_EXCEEDED"
    ]
    assert reasons(a, target(1, at=t - timedelta(milliseconds=600), sid="y")) == []


def _run(entries: list[tuple[int, int, float]], slots: bool = False) -> Any:
    """A MarkSet run from (time, token, price) entries, summarised as the ordering stage
    does: per token (ascending) its last price in time order, high and low (and, with
    ``slots``, each token's slot in the universe 1, 2, 3, as the ordering stage gives)."""
    import numpy as np

    from schemas.ticks import MarkEntries, MarkSet, universe_id

    by_token = sorted(entries, key=lambda e: (e[1], e[0]))
    times = np.array([e[0] for e in by_token], dtype=np.int64)
    toks = np.array([e[1] for e in by_token], dtype=np.int64)
    px = np.array([e[2] for e in by_token])
    tokens = sorted({e[1] for e in entries})
    per = {t: [e[2] for e in by_token if e[1] == t] for t in tokens}
    return MarkSet(
        min(times.tolist()), max(times.tolist()), np.array(tokens, dtype=np.int64),
        np.array([per[t][-1] for t in tokens]), np.array([max(per[t]) for t in tokens]),
        np.array([min(per[t]) for t in tokens]), MarkEntries(times, toks, px),
        np.array([t - 1 for t in tokens], dtype=np.int64) if slots else None,
        universe_id(np.array([1, 2, 3], dtype=np.int64)) if slots else 0,
    )  # fmt: skip


def test_grouping_marks_into_runs_never_changes_what_the_account_does() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(
        moves=st.lists(st.tuples(st.integers(1, 3), st.integers(-40, 40)), min_size=5, max_size=60),
        cuts=st.lists(st.integers(1, 59), max_size=8),
        limit=st.sampled_from([30.0, 80.0, 1e6]),
    )
    def check(moves: list[tuple[int, int]], cuts: list[int], limit: float) -> None:
        price = {1: 100.0, 2: 50.0, 3: 20.0}
        entries = []
        for k, (tok, step) in enumerate(moves):
            price[tok] = round(max(1.0, price[tok] + step * 0.05), 2)
            entries.append((to_us(OPEN) + (k + 1) * US, tok, price[tok]))
        # paper: the flatten waits for marks to fill it; down: the broker stops answering
        # after the entries, so a flatten fails and is sent again at every mark
        for kind in ("stub", "paper", "down"):
            outs = []
            variants = [([[e] for e in entries], False), (_split(entries, cuts), False)]
            variants.append((_split(entries, cuts), True))  # the slots fast path
            for groups, slots in variants:
                venue = PaperVenue(0.0, CostModel(), {}) if kind == "paper" else StubVenue()
                a = make(venue, max_daily_loss=limit, universe=(1, 2, 3) if slots else ())
                for s in (target(10, tok=1), target(-20, tok=2, price=50.0, sid="s")):
                    a.on_item(s)
                    a.on_item(
                        ExecTick(to_us(OPEN) + 1, s.instrument_token, s.price, (s.signal_id,))
                    )
                if isinstance(venue, StubVenue) and kind == "down":
                    venue.down = frozenset({2})
                got = [x for g in groups for x in a.on_item(_run(g, slots))]
                got += a.on_eof()
                outs.append([x.model_dump() if hasattr(x, "model_dump") else x for x in got])
            assert outs[0] == outs[1] == outs[2]

    check()


def test_a_fills_fees_alone_breach_the_loss_limit_at_the_fill() -> None:
    """The fees are a loss the moment the fill books them: judged at the fill, not at a
    later mark (whose time the batch cuts would decide)."""
    a = make(PaperVenue(0.0, CostModel(), {}), max_daily_loss=0.4)
    s = target(10)
    a.on_item(s)
    out = a.on_item(ExecTick(to_us(OPEN) + 1, 1, 100.0, (s.signal_id,)))
    [fill] = of(out, OrderFilled)
    assert fill.fees > 0.4 and fill.fill_price == 100.0  # no price move: fees alone
    [change] = of(out, TradingStateChanged)
    assert (change.state, change.reason) == ("REDUCING", "DAILY_LOSS_BREACHED")
    assert to_us(change.timestamp) == to_us(OPEN) + 1


def test_a_refused_square_off_is_sent_again_at_each_mark_until_the_close() -> None:
    """Every mark from the cut-off, a close per position the broker refused, stamped at that
    mark (ids from the cut-off and the round), within the broker's order caps (positions
    taking turns), none after the close; the same whatever the runs."""
    ist = timezone(timedelta(hours=5, minutes=30))
    cut = to_us(datetime(2026, 11, 20, 15, 20, tzinfo=ist))
    close = to_us(datetime(2026, 11, 20, 15, 30, tzinfo=ist))
    toks = (1, 2, 3)
    marks = [(t, tok, 100.0) for t in range(cut - 2 * US, close + 3 * US, US) for tok in toks]
    sent: list[list[tuple[int, int, str]]] = []
    by_instant = [marks[i : i + 3] for i in range(0, len(marks), 3)]
    for runs in ([marks], by_instant, _split(marks, [6, 78, 402, 1203])):  # whole instants
        venue = StubVenue()
        a = make(venue, max_orders_per_second=2, max_orders_per_minute=100)
        for tok in toks:  # a second apart: within the per-second cap
            a.on_item(target(10, tok=tok, at=OPEN + timedelta(seconds=tok)))
        venue.reject = frozenset(toks)  # every close refused from now on
        for run in runs:
            a.on_item(_run(run))
        sent.append([(to_us(v.signal.timestamp), v.signal.instrument_token, v.signal.signal_id)
                     for v in venue.sent[3:]])  # fmt: skip
    assert sent[0] == sent[1] == sent[2]
    times = [t for t, _, _ in sent[0]]
    assert times[:3] == [cut] * 3  # the square-off itself: every position at once
    later = times[3:]
    assert min(later) == cut + US and max(later) < close  # then at marks, until the close

    def most(w: int, among: list[int]) -> int:  # the most closes in any window of w µs
        return max(sum(1 for u in among if t <= u < t + w) for t in among)

    assert most(US, later) == 2 and most(60 * US, times) == 100  # the caps
    for m in range(10):  # every position is tried again every minute: they take turns
        assert {k for t, k, _ in sent[0][3:] if (t - cut) // (60 * US) == m} == set(toks)
    assert len({sid for _, _, sid in sent[0]}) == len(times)  # each round its own ids


def test_a_flatten_sent_again_gets_its_turn_beside_the_square_off() -> None:
    """Past the cut-off, a breach's flatten and the MIS square-off both send again what the
    broker refused, under one per-second cap smaller than the MIS positions: the flatten
    goes first every other round, so the CNC position is still tried every minute."""
    from schemas.enums import Product

    ist = timezone(timedelta(hours=5, minutes=30))
    start = to_us(datetime(2026, 11, 20, 15, 18, tzinfo=ist))
    cut, close = start + 120 * US, start + 720 * US
    toks = (1, 2, 3, 4, 9)  # 9: the CNC strategy's
    marks = [(t, tok, 90.0) for t in range(start, close + 2 * US, US) for tok in toks]
    sent: list[list[tuple[int, int, str]]] = []
    for runs in ([marks], _split(marks, [500, 1305, 2000])):  # whole instants
        venue = StubVenue()
        a = make(venue, products={"c": Product.CNC}, max_orders_per_second=2, max_daily_loss=100)
        for k, tok in enumerate(toks):
            a.on_item(target(10, tok=tok, sid="c" if tok == 9 else "t",
                             at=OPEN + timedelta(seconds=k)))  # fmt: skip
        venue.reject = frozenset(toks)
        for run in runs:
            a.on_item(_run(run))
        sent.append([(to_us(v.signal.timestamp), v.signal.instrument_token, v.signal.reason)
                     for v in venue.sent[len(toks):]])  # fmt: skip
    assert sent[0] == sent[1]
    cnc = [t for t, tok, why in sent[0] if tok == 9 and why.startswith("FLATTEN")]
    assert {(t - cut) // (60 * US) for t in cnc if t >= cut} == set(range(10))


def _split(entries: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = [0, *sorted({c for c in cuts if 0 < c < len(entries)}), len(entries)]
    return [entries[a:b] for a, b in itertools.pairwise(bounds)]


def test_the_session_calendar_agrees_with_local_time_at_every_instant() -> None:
    """The cached day bounds (the account asks per signal and mark) against the plain rule."""
    import random
    from datetime import date
    from zoneinfo import ZoneInfo

    cfg = SessionConfig(holidays=[date(2026, 11, 24)])
    session, tz = MarketSession(cfg), ZoneInfo("Asia/Kolkata")
    rnd = random.Random(1)
    base = to_us(datetime(2026, 11, 18, tzinfo=timezone.utc))
    ts = sorted(base + rnd.randrange(0, 10 * 86_400 * US) for _ in range(5000))
    for edge in (
        datetime(2026, 11, 20, 9, 15, tzinfo=tz),
        datetime(2026, 11, 20, 15, 30, tzinfo=tz),
    ):
        ts += [to_us(edge) + k for k in (-1, 0, 1)]
    for t in ts:
        local = (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=t)).astimezone(
            tz
        )
        want = (
            local.weekday() < 5
            and local.date() != date(2026, 11, 24)
            and cfg.open <= local.time() < cfg.close
        )
        assert session.is_open(t) == want, local
        assert session.trading_day(t) == local.date()


def test_a_flatten_closes_net_positions_at_market_whatever_the_strategies_order_type() -> None:
    venue = StubVenue()
    a = make(venue, order_types={"lim": "LIMIT", "b": "MARKET"}, max_daily_loss=50)
    a.on_item(target(10, tok=1, sid="lim"))
    a.on_item(target(-10, tok=1, sid="b"))  # offsets "lim": the account holds nothing on 1
    a.on_item(target(6, tok=2, price=50.0, sid="lim"))
    a.on_item(target(-2, tok=2, price=50.0, sid="b"))
    sent = len(venue.sent)
    out = a.on_item(MarkSet.of(to_us(OPEN) + US, ((2, 30.0),)))  # -80 on the net long of 4
    closes = [(v.signal.strategy_id, v.signal.instrument_token, v.side, v.quantity)
              for v in venue.sent[sent:]]  # fmt: skip
    assert closes == [("lim", 2, "SELL", 4)]  # the net position only, one order
    placed = [o for o in out if o.__class__.__name__ == "OrderPlaced"]
    assert [o.order_type for o in placed] == ["MARKET"]
    assert a.state.book.position(1) == 0 and a.state.book.position(2) == 0


def test_a_failed_flatten_is_retried_on_the_next_mark_and_ids_never_depend_on_when() -> None:
    venue = StubVenue()
    a = make(venue, max_daily_loss=50)
    a.on_item(target(10, tok=1))
    venue.down = frozenset({1})  # the broker stops answering
    out = a.on_item(MarkSet.of(to_us(OPEN) + US, ((1, 94.0),)))
    assert [f.reason for f in of(out, OrderFailed)] == ["KITE_UNAVAILABLE: no answer"]
    assert a.state.book.position(1) == 10
    venue.down = frozenset()
    out = a.on_item(MarkSet.of(to_us(OPEN) + 2 * US, ((1, 93.0),)))
    assert [(f.side, f.quantity, f.fill_price) for f in of(out, OrderFilled)] == [
        ("SELL", 10, 93.0)
    ]
    assert a.state.book.position(1) == 0
    # the same breach noticed at another time (a restart) gives the same order ids
    b = make(StubVenue(), max_daily_loss=50)
    b.on_item(target(10, tok=1, at=OPEN))
    first = [
        v.order_id
        for v in of(b.on_item(MarkSet.of(to_us(OPEN) + 7 * US, ((1, 94.0),))), ValidatedSignal)
    ]
    c = make(StubVenue(), max_daily_loss=50)
    c.on_item(target(10, tok=1, at=OPEN))
    c.state.book.open.clear()
    later = [
        v.order_id
        for v in of(c.on_item(MarkSet.of(to_us(OPEN) + 9 * US, ((1, 93.0),))), ValidatedSignal)
    ]
    assert first == later and first


def test_a_late_item_from_an_earlier_day_never_rolls_the_trading_day_back() -> None:
    a = make(max_daily_loss=1000)
    monday = OPEN + timedelta(days=3)
    a.on_item(target(100, tok=1, at=monday))
    a.on_item(MarkSet.of(to_us(monday) + US, ((1, 95.0),)))  # -500 today
    a.on_item(MarkSet.of(to_us(OPEN) + US, ((1, 95.0),)))  # a late Friday mark
    out = a.on_item(MarkSet.of(to_us(monday) + 2 * US, ((1, 89.5),)))  # -1,050 today
    assert [(c.state, c.reason) for c in of(out, TradingStateChanged)] == [
        ("REDUCING", "DAILY_LOSS_BREACHED")
    ]


def test_open_sell_orders_that_would_open_shorts_reserve_cash() -> None:
    a = make(StubVenue(rest=frozenset({1, 2, 3})), cash=100_000)
    got = [reasons(a, target(-900, tok=t, sid=f"s{t}")) for t in (1, 2, 3)]
    assert got == [[], ["INSUFFICIENT_FUNDS"], ["INSUFFICIENT_FUNDS"]]


def test_opposing_open_orders_on_one_instrument_net_out_in_the_cash_they_hold() -> None:
    a = make(StubVenue(rest=frozenset({1})), cash=20_000)
    assert reasons(a, target(150, tok=1, sid="a")) == []  # 15,000 held for the open buy
    assert reasons(a, target(-150, tok=1, sid="b")) == []  # nets out: nothing more held
    assert a.state.book.pending_cash() == 0
    assert reasons(a, target(100, tok=2, sid="c")) == []
