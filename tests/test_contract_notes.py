"""Live fees from Kite's virtual contract note: the simulator serves it (POST /charges/orders,
through the real ``kiteconnect`` client), the zerodha venue asks for it when an order
completes, and the account's fees for the order become Kite's; the report shows both when
they differ."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from connectors.kite.intents import IntentStore
from connectors.kite.orders import KiteOrders
from connectors.kite.placement import PlacementWorker
from operators.account.book import AccountBook
from operators.account.portfolio import summary
from operators.account.zerodha import ZerodhaVenue
from operators.report import RunReport, render
from schemas.config import CostModel, Instrument, KiteConfig
from schemas.enums import Broker
from schemas.events import FeesSettled, OrderFilled, OrderPlaced, ValidatedSignal
from schemas.kite import OrderUpdate, PlacementOutcome, order_tag
from schemas.redis_keys import LiveKeys, OrderIntent
from tests.redis_server import shared_url
from tests.support import INFY, StubPlacer, StubWorker, advance, client, zerodha_validated

T = datetime(2026, 11, 20, 4, 0, tzinfo=timezone.utc)


def _validated(n: int, qty: int, side: str) -> ValidatedSignal:
    return zerodha_validated(n, qty, side, prefix="note")


def _paise(x: Decimal, unit: str = "0.01") -> Decimal:
    return x.quantize(Decimal(unit), rounding=ROUND_HALF_UP)


def note_total(side: str, qty: int, price: float) -> float:
    """Zerodha's intraday schedule as a contract note rounds it: STT to the rupee, every
    other head to the paisa, GST on the rounded heads."""
    t = Decimal(qty) * Decimal(str(price))
    brokerage = min(_paise(t * Decimal("0.0003")), Decimal(20))
    stt = _paise(t * Decimal("0.00025"), "1") if side == "SELL" else Decimal(0)
    stamp = Decimal(0) if side == "SELL" else _paise(t * Decimal("0.00003"))
    exchange, sebi = _paise(t * Decimal("0.0000297")), _paise(t / Decimal(1_000_000))
    gst = _paise((brokerage + exchange + sebi) * Decimal("0.18"))
    return float(brokerage + stt + stamp + exchange + sebi + gst)


def test_the_simulator_serves_notes_by_the_published_schedule(sim) -> None:
    """Two orders asked at once come back in the order asked; numbers worked by hand:
    BUY 10 @ 1563.15 (turnover 15,631.50): brokerage 4.69, stamp 0.47, NSE 0.46, SEBI 0.02,
    GST 0.18 × 5.17 = 0.93 → 6.57; the SELL: STT 3.91 → ₹4 → 4.69 + 4 + 0.46 + 0.02 + 0.93."""
    api, root = sim
    kite = client(root)
    buy = kite.place_order(variety="regular", exchange="NSE", tradingsymbol="INFY",
                           transaction_type="BUY", quantity=10, product="MIS",
                           order_type="MARKET", market_protection=-1)  # fmt: skip
    advance(root, 3000)
    assert api.ex.orders[buy].status == "COMPLETE"
    ask = dict(order_id=buy, exchange="NSE", tradingsymbol="INFY", variety="regular",
               product="MIS", order_type="MARKET", quantity=10, average_price=1563.15)  # fmt: skip
    got = kite.get_virtual_contract_note([{**ask, "transaction_type": "BUY"},
                                          {**ask, "transaction_type": "SELL"}])  # fmt: skip
    assert [g["transaction_type"] for g in got] == ["BUY", "SELL"]
    b, s = got[0]["charges"], got[1]["charges"]
    assert (b["brokerage"], b["stamp_duty"], b["exchange_turnover_charge"]) == (4.69, 0.47, 0.46)
    assert (b["sebi_turnover_charge"], b["gst"]["total"], b["transaction_tax"]) == (0.02, 0.93, 0)
    assert b["total"] == pytest.approx(6.57) and s["total"] == pytest.approx(10.10)
    assert s["transaction_tax"] == 4.0 and s["stamp_duty"] == 0.0
    with pytest.raises(Exception, match="order_id"):  # an order Kite does not know
        kite.get_virtual_contract_note([{**ask, "order_id": "999", "transaction_type": "BUY"}])


def test_a_completed_order_books_kite_s_note_through_the_real_client(sim) -> None:
    api, root = sim
    r = redis.Redis.from_url(shared_url())
    keys = LiveKeys(f"test-{uuid.uuid4().hex[:8]}:")
    cfg = KiteConfig(api_root=root, timeout_s=1, attempts=2, backoff_max_s=0.05)
    inst = {INFY: Instrument(instrument_token=INFY, tradingsymbol="INFY")}
    placer = KiteOrders(client(root, timeout=1), IntentStore(r, keys, 60), cfg, inst)
    venue = ZerodhaVenue(CostModel(), placer, {"mom": "MARKET"})
    book = AccountBook.new(1_000_000.0)
    try:
        for n, side in ((1, "BUY"), (2, "SELL")):
            v = _validated(n, 7, side)
            [p] = venue.send(v, "MARKET")
            assert isinstance(p, OrderPlaced) and p.broker_order_id is not None
            advance(root, 3000)
            [f] = venue.update(OrderUpdate.from_kite(api.ex.orders[p.broker_order_id].view()))
            assert isinstance(f, OrderFilled) and f.quantity == 7
            book.opened(p)
            book.fill(f)
            [n_] = venue.collect()
            assert isinstance(n_, FeesSettled) and n_.broker_order_id == p.broker_order_id
            assert n_.note_fees == pytest.approx(note_total(side, 7, f.fill_price))
            assert n_.model_fees == pytest.approx(f.fees)
            assert n_.adjustment == pytest.approx(n_.note_fees - f.fees)
            assert n_.timestamp == f.timestamp  # event time: when the order completed
            book.settle(n_)
            assert venue.collect() == []  # one note per order
    finally:
        for k in r.scan_iter(f"{keys.prefix}*"):
            r.delete(k)
    done = api.ex.orders.values()
    fills = [(s, o.average_price) for s, o in zip(("BUY", "SELL"), done, strict=True)]
    kite_fees = sum(note_total(s, 7, p) for s, p in fills)
    b = book.total.book
    assert b.fees == pytest.approx(kite_fees)
    flows = sum((-7 if s == "BUY" else 7) * p for s, p in fills)
    assert b.cash == pytest.approx(1_000_000.0 + flows - kite_fees)  # cash pays Kite's fees
    assert b.realized - b.fees == pytest.approx(flows - kite_fees)


def test_the_worker_path_and_the_report_showing_both() -> None:
    worker = StubWorker()
    venue = ZerodhaVenue(CostModel(), StubPlacer(), {}, None, worker)
    book = AccountBook.new(100_000.0)
    v = _validated(3, 10, "SELL")
    tag = order_tag(v.signal.signal_id)
    assert venue.send(v, "MARKET") == [] and worker.offered
    worker.answers.append(PlacementOutcome(tag, "PLACED", "K1", sent_us=1))
    [p] = venue.collect()
    assert isinstance(p, OrderPlaced)
    book.opened(p)
    row = dict(order_id="K1", status="COMPLETE", tag=tag, filled_quantity=10, quantity=10,
               average_price=1000.0, instrument_token=INFY, transaction_type="SELL",
               exchange_timestamp="2026-11-20 09:31:00", order_timestamp="2026-11-20 09:31:00",
               status_message=None, pending_quantity=0, cancelled_quantity=0)  # fmt: skip
    [f] = venue.update(OrderUpdate.from_kite(row))
    assert isinstance(f, OrderFilled)
    book.fill(f)
    [(asked_tag, asked)] = worker.notes
    assert asked_tag == tag
    assert (asked["order_id"], asked["quantity"], asked["average_price"]) == ("K1", 10, 1000.0)
    assert (asked["transaction_type"], asked["product"]) == ("SELL", "MIS")
    worker.answers.append(PlacementOutcome(tag, "NOTE", "K1", charges={
        "brokerage": 3.0, "transaction_tax": 3.0, "exchange_turnover_charge": 0.3,
        "sebi_turnover_charge": 0.01, "stamp_duty": 0.0, "gst": {"total": 0.6}, "total": 6.91,
    }))  # fmt: skip
    [n] = venue.collect()
    assert isinstance(n, FeesSettled) and n.note_fees == 6.91 and n.model_fees == f.fees
    book.settle(n)
    s = summary(Broker.ZERODHA, book, {}, [], [])
    assert (s.fees_noted, s.fees_model) == (6.91, f.fees) and s.total.fees == 6.91
    text = render(RunReport(output_dir="x", rows_read=0, ticks_processed=0, dead_letters=0,
                            dead_letters_by_reason={}, strategy_errors=[], elapsed_s=1.0,
                            ticks_per_s=0.0, brokers=[s]))  # fmt: skip
    assert f"contract notes 6.91, per the cost model {f.fees:,.2f}" in text
    worker.answers.append(PlacementOutcome(tag, "NOTE", "K1", charges=dict(total=1.0)))
    assert venue.collect() == []  # one note per order, whatever comes again


def _completed(worker: StubWorker, n: int, filled: int = 10, status: str = "COMPLETE") -> Any:
    venue = ZerodhaVenue(CostModel(), StubPlacer(), {}, None, worker)
    v = _validated(n, 10, "BUY")
    tag = order_tag(v.signal.signal_id)
    venue.send(v, "MARKET")
    worker.answers.append(PlacementOutcome(tag, "PLACED", f"K{n}", sent_us=1))
    venue.collect()
    row = dict(order_id=f"K{n}", status=status, tag=tag, filled_quantity=filled, quantity=10,
               average_price=1000.0, instrument_token=INFY, transaction_type="BUY",
               exchange_timestamp="2026-11-20 09:31:00", order_timestamp="2026-11-20 09:31:00",
               status_message=None, pending_quantity=0, cancelled_quantity=10 - filled)  # fmt: skip
    venue.update(OrderUpdate.from_kite(row))
    return venue, tag


HEADS = {"brokerage": 3.0, "transaction_tax": 0.0, "exchange_turnover_charge": 0.3,
         "sebi_turnover_charge": 0.01, "stamp_duty": 0.3, "gst": 0.6}  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {**HEADS, "total": 9.99e8},  # far beyond any charge on ₹10,000: not believed
        {**HEADS, "total": 0.0},  # not the sum of its heads (4.21)
        {**HEADS, "brokerage": True, "total": 2.21},  # a bool is not an amount
        {**HEADS, "brokerage": "3.0", "total": 4.21},  # nor is text
        {**HEADS, "brokerage": 10**400, "total": 4.21},  # beyond a float
        {**HEADS, "transaction_tax": -1.0, "total": 3.21},  # negative
        {**HEADS, "total": float("nan")},
    ],
)
def test_a_note_that_is_not_one_leaves_the_cost_model_s_fees(bad: dict[str, Any]) -> None:
    worker = StubWorker()
    venue, tag = _completed(worker, 4)
    worker.answers.append(PlacementOutcome(tag, "NOTE", "K4", charges=bad))
    assert venue.collect() == []
    worker.answers.append(PlacementOutcome(tag, "NOTE", "K4", charges={**HEADS, "total": 4.21}))
    assert venue.collect() == []  # its one chance is spent: never a second booking


def test_a_part_fill_then_cancel_is_noted_and_a_resume_asks_again() -> None:
    worker = StubWorker()
    venue, tag = _completed(worker, 5, filled=6, status="CANCELLED")
    [(asked, order)] = worker.notes
    assert asked == tag and order["quantity"] == 6  # charged on what traded
    again = StubWorker()  # a resume from a snapshot taken while the note was on its way
    resumed = ZerodhaVenue(CostModel(), StubPlacer(), {}, venue.venue_state(), again)
    assert resumed.collect() == [] and [t for t, _ in again.notes] == [tag]
    again.answers.append(PlacementOutcome(tag, "NOTE", "K5", charges={**HEADS, "total": 4.21}))
    [n] = resumed.collect()
    assert isinstance(n, FeesSettled) and n.quantity == 6 and n.note_fees == 4.21


def test_notes_never_hold_up_or_crowd_out_orders() -> None:
    """A slow contract-note endpoint: orders still go out, and a queue of one order slot
    takes an order while notes wait."""
    release = threading.Event()

    class SlowNotes:
        def submit(self, intent: Any, order_type: str) -> Any:
            return SimpleNamespace(order_id="K9")

        def contract_note(self, order: dict[str, Any]) -> dict[str, Any]:
            release.wait(30)
            return {**HEADS, "total": 4.21}

    worker = PlacementWorker(SlowNotes(), capacity=1)
    for k in range(20):
        assert worker.offer_note(f"t{k}", {"order_id": str(k)})
    v = _validated(9, 10, "BUY")
    assert worker.offer(OrderIntent(tag=order_tag(v.signal.signal_id), validated=v), "MARKET")
    deadline = time.monotonic() + 30
    got: list[PlacementOutcome] = []
    while not got and time.monotonic() < deadline:
        got = worker.outcomes()
        time.sleep(0.01)
    assert [o.kind for o in got] == ["PLACED"] and worker.backlog() == 0
    release.set()
    worker.finish(30)
    assert sorted(o.tag for o in worker.outcomes()) == sorted(f"t{k}" for k in range(20))
