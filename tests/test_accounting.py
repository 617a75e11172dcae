from __future__ import annotations

import random

import numpy as np
import pytest

from operators.account.prices import slipped_price
from operators.accounting import Book
from operators.charges import fees
from schemas.config import CostModel


def test_fees_follow_zerodha_intraday_schedule() -> None:
    c = CostModel()
    # turnover 1,00,000: brokerage 20 (cap), exchange 2.97, SEBI 0.10, GST 18% of 23.07
    assert fees(c, "BUY", 100, 1000.0) == round(20 + 2.97 + 0.10 + 3.00 + 0.18 * 23.07, 2)
    assert fees(c, "SELL", 100, 1000.0) == round(20 + 2.97 + 0.10 + 25.00 + 0.18 * 23.07, 2)
    # small order: brokerage is 0.03% of 10,000 = 3, below the cap
    assert fees(c, "BUY", 10, 1000.0) == round(3 + 0.297 + 0.01 + 0.30 + 0.18 * 3.307, 2)


def test_average_cost_long_short_and_flip() -> None:
    b = Book(10_000.0)
    b.apply(1, "BUY", 10, 100.0, 0.0)
    b.apply(1, "BUY", 10, 110.0, 0.0)
    assert b.lots[1].average_price == pytest.approx(105.0)
    assert b.apply(1, "SELL", 5, 120.0, 0.0).realized == pytest.approx(75.0)
    flip = b.apply(1, "SELL", 25, 100.0, 0.0)  # closes 15 at -5, opens a short of 10
    assert flip.realized == pytest.approx(-75.0)
    assert b.position(1) == -10 and b.lots[1].average_price == 100.0
    assert b.apply(1, "BUY", 4, 90.0, 0.0).realized == pytest.approx(40.0)  # short gains
    assert b.realized == pytest.approx(75.0 - 75.0 + 40.0)


def test_identity_holds_after_random_fills_and_marks() -> None:
    rnd = random.Random(5)
    b = Book(1_000_000.0)
    costs = CostModel()
    marks: dict[int, float] = {}  # the test's own record: last fill or mark per instrument
    for _ in range(2000):
        tok = rnd.choice([1, 2, 3])
        if rnd.random() < 0.4:
            px = round(rnd.uniform(90, 110), 2)
            if rnd.random() < 0.5:
                b.mark(tok, px)
            else:
                b.mark_many(np.array([tok, 7], dtype=np.int64), np.array([px, 1.0]))
            if tok in marks:
                marks[tok] = px
            continue
        side, qty, px = (
            rnd.choice(["BUY", "SELL"]),
            rnd.randint(1, 50),
            round(rnd.uniform(90, 110), 2),
        )
        b.apply(tok, side, qty, px, fees(costs, side, qty, px))
        marks[tok] = px
        lhs = b.cash + sum(lot.quantity * marks[t] for t, lot in b.lots.items())
        rhs = b.starting_cash + b.realized + b.unrealized() - b.fees
        assert lhs == pytest.approx(rhs, abs=1e-6)
    fresh = b.unrealized()
    b.recount()
    assert b.unrealized() == pytest.approx(fresh, abs=1e-6)


def test_market_value_follows_every_fill_mark_and_copy() -> None:
    """Against the test's own record of positions and last prices, after every step: the
    value kept between changes is never stale."""
    rnd = random.Random(11)
    books = {"a": Book(1e6, universe=(1, 2, 3)), "b": Book(1e6)}
    marks: dict[str, dict[int, float]] = {"a": {}, "b": {}}
    slots: dict[str, set[int]] = {"a": {1, 2, 3}, "b": set()}
    for _ in range(3000):
        name = rnd.choice("ab")
        b, mine, tok = books[name], marks[name], rnd.randint(1, 12)
        px, op = round(rnd.uniform(90, 110), 2), rnd.random()
        if op < 0.3:
            b.mark(tok, px)
            mine.update({tok: px} if tok in slots[name] else {})
        elif op < 0.5:
            toks = np.array(sorted({tok, rnd.randint(1, 12)}), dtype=np.int64)
            pxs = np.array([px + i for i in range(len(toks))])
            b.mark_many(toks, pxs)
            got = zip(toks.tolist(), pxs.tolist(), strict=True)
            mine.update({t: p for t, p in got if t in slots[name]})
        elif op < 0.6:
            other = "b" if name == "a" else "a"
            b.copy_marks(books[other])
            mine.update({t: p for t, p in marks[other].items() if t in slots[name]})
        else:
            b.apply(tok, rnd.choice(["BUY", "SELL"]), rnd.randint(1, 50), px, 0.0)
            slots[name].add(tok)
            mine[tok] = px
        for key, book in books.items():
            want = sum(lot.quantity * marks[key][t] for t, lot in book.lots.items())
            assert book.market_value() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize(
    ("price", "side", "bps", "tick", "want"),
    [
        (100.00, "BUY", 2, 0.05, 100.05),  # 100.02 rounds against the buyer
        (100.00, "SELL", 2, 0.05, 99.95),
        (100.00, "BUY", 0, 0.05, 100.00),
        (150.37, "SELL", 10, 0.01, 150.21),
    ],
)
def test_slippage_moves_against_the_order_on_the_tick_grid(
    price: float, side: str, bps: float, tick: float, want: float
) -> None:
    assert slipped_price(price, side, bps, tick) == want


def test_round_trips_are_judged_after_entry_and_exit_fees() -> None:
    """A trip that gains 6.00 before fees but pays 7.00 of fees is a loss; a partial close
    does not end the trip; a flip ends one and opens the next with its share of the fee."""
    b = Book(100_000.0)
    assert b.apply(1, "BUY", 10, 100.0, 3.0).trip_net is None
    assert b.apply(1, "SELL", 4, 100.5, 2.0).trip_net is None  # +2.00 gross, still open
    done = b.apply(1, "SELL", 6, 100.5, 2.0)  # +3.00 gross: trip gross 5.00, fees 7.00
    assert done.trip_net == pytest.approx(5.0 - 7.0)
    b.apply(2, "BUY", 10, 50.0, 1.0)
    flip = b.apply(2, "SELL", 20, 51.0, 4.0)  # closes 10 (+10.00, half the fee), opens -10
    assert flip.trip_net == pytest.approx(10.0 - 1.0 - 2.0)
    assert b.lots[2].entry_fees == pytest.approx(2.0)
    back = b.apply(2, "BUY", 10, 50.0, 1.0)  # the short gains 10.00, fees 2.00 + 1.00
    assert back.trip_net == pytest.approx(10.0 - 3.0)


def test_book_trusts_universe_slots_only_for_its_own_unchanged_universe() -> None:
    from schemas.ticks import universe_id

    book = Book(0.0, (30, 10, 20))
    mine = universe_id(np.array([10, 20, 30], dtype=np.int64))
    other = universe_id(np.array([10, 20, 40], dtype=np.int64))
    assert book.trusts(mine) and not book.trusts(other) and not book.trusts(0)
    tokens, prices = np.array([20, 30], dtype=np.int64), np.array([5.0, 7.0])
    wrong = np.array([0, 1], dtype=np.int64)  # slots of another universe: must be ignored
    book.mark_many(tokens, prices, wrong, other)
    assert (book.last_price(10), book.last_price(20), book.last_price(30)) == (None, 5.0, 7.0)
    book.apply(99, "BUY", 1, 1.0, 0.0)  # an instrument beyond the universe takes a slot
    assert not book.trusts(mine)
    book.mark_many(np.array([10, 99], dtype=np.int64), np.array([3.0, 4.0]), wrong, mine)
    assert (book.last_price(10), book.last_price(20), book.last_price(99)) == (3.0, 5.0, 4.0)


def test_charges_follow_the_published_schedules_per_product() -> None:
    from operators.charges import charges

    costs = CostModel()
    # delivery buy of 10 at 2,500 (turnover 25,000): no brokerage, STT 0.1%, stamp 0.015%
    buy = charges(costs, "BUY", 10, 2500.0, "CNC")
    exch, sebi = 25_000 * 0.0000297, 25_000 * 10 / 1e7
    b = buy.columns()
    assert (b["brokerage"], b["stt"], b["stamp"], b["dp"]) == (0.0, 25.0, 3.75, 0.0)
    assert buy.total == round(25.0 + 3.75 + exch + sebi + 0.18 * (exch + sebi), 2) == 29.66
    # delivery sell, the scrip's first sell of the day: DP ₹13 + 18% GST
    sell = charges(costs, "SELL", 10, 2500.0, "CNC", dp=True)
    c = sell.columns()
    assert (c["stt"], c["stamp"], c["dp"]) == (25.0, 0.0, 13.0)
    assert sell.total == round(25.0 + 13.0 + exch + sebi + 0.18 * (13.0 + exch + sebi), 2)
    # the same sell intraday, squared off by the broker: ₹50 + 18% GST on top
    mis = charges(costs, "SELL", 10, 2500.0, "MIS", square_off=True)
    brokerage = min(20.0, 0.0003 * 25_000)
    want = brokerage + 0.00025 * 25_000 + exch + sebi + 50.0
    want += 0.18 * (brokerage + exch + sebi + 50.0)
    assert mis.square_off == 50.0 and mis.total == round(want, 2)
    assert buy.total / charges(costs, "BUY", 10, 2500.0, "MIS").total > 2.5  # delivery costs more


def test_snapshot_positions_carry_pnl_to_a_millionth_of_a_rupee() -> None:
    book = Book(1_000_000.0, universe=[7])
    book.apply(7, "BUY", 3, 1.1, 0.0)
    book.apply(7, "SELL", 1, 3.3, 0.0)  # the last fill marks it: 3.3
    lot = book.lots[7]
    assert lot.realized == 2.1999999999999997  # the float noise of 3.3 - 1.1
    (p,) = book.positions()
    assert (p["quantity"], p["last_price"], p["realized_pnl"], p["unrealized_pnl"]) == (
        2,
        3.3,
        2.2,
        4.4,  # 2 x (3.3 - 1.1) is 4.3999999999999995 unrounded
    )
