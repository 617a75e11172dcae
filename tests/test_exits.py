"""Per-strategy exits on every mark: stop loss, take profit, trailing stop; the exit fills at
the next mark and the strategy's target is not ordered again until it changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from operators.account.account import Account, AccountSetup
from operators.account.exits import ExitRule
from operators.account.paper import PaperVenue
from operators.session import MarketSession
from schemas.config import BrokerConfig, CostModel, SessionConfig
from schemas.enums import Broker, Product
from schemas.events import OrderFilled, TradingSignal, ValidatedSignal
from schemas.ticks import US, ExecTick, MarkEntries, MarkSet, to_us

OPEN = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)  # Fri 10:30 IST
T0 = to_us(OPEN)


def _account(rule: ExitRule, slippage_bps: float = 0.0) -> Account:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(slippage_bps, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), exits={"t": rule})
    cfg = BrokerConfig(starting_cash=1e6, slippage_bps=0)
    return Account(Broker.PAPER, cfg, setup, lambda _s: venue, None)


def _target(a: Account, qty: int, sec: int, sid: str, price: float = 100.0) -> list[Any]:
    s = TradingSignal(
        signal_id=sid, correlation_id=f"c{sid}", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=qty, price=price,
        timestamp=OPEN + timedelta(seconds=sec), reason="",
    )  # fmt: skip
    out = a.on_item(s)
    return out + a.on_item(ExecTick(to_us(s.timestamp) + 1, 1, price, (sid,)))


def _run(marks: list[tuple[int, float]]) -> MarkSet:
    """One run of instrument 1's marks at seconds ``marks`` (as the ordering stage sends)."""
    import numpy as np

    times = np.array([T0 + s * US for s, _ in marks], dtype=np.int64)
    px = np.array([p for _, p in marks])
    toks = np.ones(len(marks), dtype=np.int64)
    one = np.array([1], dtype=np.int64)
    last, high, low = px[-1:], px.max(keepdims=True), px.min(keepdims=True)
    return MarkSet(
        int(times[0]), int(times[-1]), one, last, high, low, MarkEntries(times, toks, px)
    )


def _fills(out: list[Any]) -> list[tuple[str, int, float, int]]:
    return [
        (f.side, f.quantity, f.fill_price, (to_us(f.timestamp) - T0) // US)
        for f in out
        if isinstance(f, OrderFilled)
    ]


def _exit_reasons(out: list[Any]) -> list[str]:
    return [x.reason.split(":")[0] for x in out if isinstance(x, TradingSignal)]


def test_a_stop_loss_exits_at_the_next_mark_and_latches_the_target() -> None:
    a = _account(ExitRule(stop_loss_pct=2))
    _target(a, 10, 0, "s1")  # long 10 at 100
    out = a.on_item(_run([(1, 99.5), (2, 97.9), (3, 97.5), (4, 97.0)]))  # -2.1% at 2 s
    assert _exit_reasons(out) == ["STOP_LOSS"] and _fills(out) == [("SELL", 10, 97.5, 3)]
    assert a.state.book.position(1) == 0
    again = _target(a, 10, 10, "s2", 97.0)  # the same target: held back
    assert not [x for x in again if isinstance(x, ValidatedSignal)]
    flip = _target(a, -10, 20, "s3", 97.0)  # a new one trades
    assert [(v.side, v.quantity) for v in flip if isinstance(v, ValidatedSignal)] == [("SELL", 10)]


def test_take_profit_and_trailing_stop() -> None:
    a = _account(ExitRule(take_profit_pct=3))
    _target(a, -10, 0, "s1")  # short 10 at 100: profit when the price falls
    out = a.on_item(_run([(1, 98.0), (2, 96.9), (3, 97.2)]))
    assert _exit_reasons(out) == ["TAKE_PROFIT"] and _fills(out) == [("BUY", 10, 97.2, 3)]
    b = _account(ExitRule(trailing_stop_pct=2))
    _target(b, 10, 0, "s1")
    out = b.on_item(_run([(1, 103.0), (2, 105.0), (3, 103.5), (4, 102.8), (5, 102.0)]))
    assert _exit_reasons(out) == ["TRAILING_STOP"] and _fills(out) == [("SELL", 10, 102.0, 5)]


def test_exits_do_not_depend_on_how_marks_are_grouped_into_runs() -> None:
    marks = [(1, 101.0), (2, 104.0), (3, 103.0), (4, 101.9), (5, 101.0), (6, 100.0), (7, 99.0)]
    outs = []
    for groups in ([marks], [[m] for m in marks], [marks[:3], marks[3:5], marks[5:]]):
        a = _account(ExitRule(stop_loss_pct=5, trailing_stop_pct=2))
        _target(a, 10, 0, "s1")
        got = [x for g in groups for x in a.on_item(_run(g))] + a.on_eof()
        outs.append([x.model_dump() if hasattr(x, "model_dump") else x for x in got])
    assert outs[0] == outs[1] == outs[2]
    sells = [(d["side"], d["quantity"], d["fill_price"]) for d in outs[0] if "fill_price" in d]
    assert sells == [("SELL", 10, 101.0)]  # 2% off 104 at 101.9 (4 s), filled at 5 s


def test_a_short_trailing_stop_fires_whatever_the_grouping() -> None:
    marks = [(1, 95.0), (2, 97.5), (3, 97.6)]  # best 95, then 2.7% off it
    for groups in ([marks], [[m] for m in marks]):
        a = _account(ExitRule(trailing_stop_pct=2))
        _target(a, -10, 0, "s1")
        out = [x for g in groups for x in a.on_item(_run(g))]
        assert _exit_reasons(out) == ["TRAILING_STOP"] and _fills(out) == [("BUY", 10, 97.6, 3)]


def test_the_trailing_stop_starts_at_the_first_mark_not_at_the_slipped_fill() -> None:
    flat = [(s, 100.0) for s in range(1, 9)]  # 0.2% worse than the fill (20 bps): no move
    long = [(9, 100.5), (10, 100.45), (11, 100.3), (12, 100.2)]  # 0.2% off 100.5 at 11 s
    short = [(9, 99.5), (10, 99.55), (11, 99.7), (12, 99.8)]  # 0.2% over 99.5 at 11 s
    cases = ((10, long, "SELL", 100.2, 99.95), (-10, short, "BUY", 99.8, 100.0))
    for qty, moves, side, paid, got in cases:  # got: the next mark's 100.2 / 99.8, slipped
        marks = flat + moves
        for groups in ([flat], [[m] for m in flat]):  # a flat tape never fires, however sent
            a = _account(ExitRule(trailing_stop_pct=0.1), slippage_bps=20)
            assert _fills(_target(a, qty, 0, "s1"))[0][2] == paid
            assert _exit_reasons([x for g in groups for x in a.on_item(_run(g))]) == []
        for groups in ([marks], [[m] for m in marks], [flat, moves[:2], moves[2:]]):
            a = _account(ExitRule(trailing_stop_pct=0.1), slippage_bps=20)
            _target(a, qty, 0, "s1")
            out = [x for g in groups for x in a.on_item(_run(g))]
            assert _exit_reasons(out) == ["TRAILING_STOP"], groups
            assert _fills(out) == [(side, 10, got, 12)]  # filled at the next mark


def test_an_exit_that_does_not_fill_is_judged_again() -> None:
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), products={"t": Product.CNC},
                         exits={"t": ExitRule(stop_loss_pct=2)})  # fmt: skip
    a = Account(Broker.PAPER, BrokerConfig(starting_cash=1e6, slippage_bps=0), setup,
                lambda _s: venue, None)  # fmt: skip
    _target(a, 10, 0, "s1")  # CNC long 10 at 100, carried overnight
    close = 5 * 3600  # 15:30 IST, seconds after OPEN
    out = a.on_item(_run([(close - 1, 97.0)]))  # the stop, at the day's last mark
    monday = 3 * 86_400 - 5 * 3600
    out += a.on_item(_run([(monday + 60, 90.0)]))  # its close never filled: cancelled
    assert _exit_reasons(out) == ["STOP_LOSS"] and a.state.book.position(1) == 10
    out = a.on_item(_run([(monday + 120, 89.0), (monday + 121, 88.0)]))
    assert _exit_reasons(out) == ["STOP_LOSS"] and _fills(out)[-1][:2] == ("SELL", 10)
    assert a.state.book.position(1) == 0


def test_an_exit_cancels_the_strategys_pending_entry_first() -> None:
    a = _account(ExitRule(stop_loss_pct=2))
    _target(a, 10, 0, "s1")
    more = TradingSignal(
        signal_id="s2", correlation_id="c-s2", strategy_id="t", broker="paper",
        instrument_token=1, target_quantity=20, price=100.0,
        timestamp=OPEN + timedelta(seconds=10), reason="",
    )  # fmt: skip
    a.on_item(more)  # BUY 10 more, waiting for its tick
    out = a.on_item(_run([(11, 97.0), (12, 96.9)]))  # -3%: the stop
    assert _exit_reasons(out) == ["STOP_LOSS"] and _fills(out) == [("SELL", 10, 96.9, 12)]
    late = a.on_item(ExecTick(T0 + 13 * US, 1, 96.8, ("s2",)))  # the entry's tick: too late
    assert _fills(late) == [] and a.state.book.position(1) == 0 and not a.state.book.open


def test_exits_on_two_strategies_at_one_mark_both_fire() -> None:
    import numpy as np

    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes)
    rule = ExitRule(stop_loss_pct=2, take_profit_pct=3)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), exits={"t": rule, "u": rule})
    a = Account(Broker.PAPER, BrokerConfig(starting_cash=1e6, slippage_bps=0), setup,
                lambda _s: venue, None)  # fmt: skip
    for sid, tok, sig in (("t", 1, "a"), ("u", 2, "b")):
        s = TradingSignal(signal_id=sig, correlation_id=f"c{sig}", strategy_id=sid,
                          broker="paper", instrument_token=tok, target_quantity=10, price=100.0,
                          timestamp=OPEN, reason="")  # fmt: skip
        a.on_item(s)
        a.on_item(ExecTick(T0 + 1, tok, 100.0, (sig,)))
    marks = [(2, 1, 97.0), (3, 1, 97.0), (3, 2, 104.0), (4, 1, 97.0), (4, 2, 100.0)]
    times = np.array([T0 + s * US for s, _, _ in marks], dtype=np.int64)
    toks = np.array([t for _, t, _ in marks], dtype=np.int64)
    px = np.array([p for _, _, p in marks])
    u = np.array([1, 2], dtype=np.int64)
    last = np.array([97.0, 100.0])
    high, low = np.array([97.0, 104.0]), np.array([97.0, 100.0])
    out = a.on_item(MarkSet(int(times[0]), int(times[-1]), u, last, high, low,
                            MarkEntries(times, toks, px)))  # fmt: skip
    # t's stop fills at 3 s, the very mark at which u's take-profit triggers
    assert sorted(_exit_reasons(out)) == ["STOP_LOSS", "TAKE_PROFIT"]
    assert a.state.book.position(1) == 0 and a.state.book.position(2) == 0


def test_a_resume_without_an_exit_rule_forgets_its_positions() -> None:
    import pickle

    a = _account(ExitRule(stop_loss_pct=2))
    _target(a, 10, 0, "s1")
    st = pickle.loads(pickle.dumps(a.state))
    session = MarketSession(SessionConfig())
    venue = PaperVenue(0.0, CostModel(), {}, session.closes, st.venue)
    setup = AccountSetup(CostModel(), session, {}, {}, (1, 2), exits={"t": ExitRule()})
    b = Account(Broker.PAPER, BrokerConfig(starting_cash=1e6, slippage_bps=0), setup,
                lambda _s: venue, None, st)  # fmt: skip
    assert _exit_reasons(b.on_item(_run([(1, 90.0)]))) == []  # no rule, no exit, no crash
