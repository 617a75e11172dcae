"""Order events built without validating valid values again (operators.account.built): the
same event the model's validation builds, to its field order, types and fields set, and the
same error for a value validation refuses."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from operators.account.built import SPECS, build
from schemas.enums import Broker, OrderStatus, Product, SignalType
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, TradingSignal, ValidatedSignal

TS = datetime(2026, 11, 20, 5, 0, tzinfo=timezone.utc)
SIGNAL = TradingSignal(
    signal_id="s1", correlation_id="c1", strategy_id="st", broker="paper",
    instrument_token=7, target_quantity=10, price=101.5, timestamp=TS, reason="",
)  # fmt: skip
EVENT: dict[str, Any] = dict(
    event_id="e", order_id="o", correlation_id="c1", causation_id="v", broker=Broker.PAPER,
    broker_order_id=None, status=OrderStatus.FILLED, signal_id="s1", strategy_id="st",
    instrument_token=7, side=SignalType.BUY, timestamp=TS,
)  # fmt: skip
FILL = EVENT | dict(quantity=10, fill_price=101.55, fees=1.23, product="MIS", stt=0.5)
PLACED = EVENT | dict(quantity=10, order_type="MARKET", price=101.5, trigger_price=None)
FAILED = EVENT | dict(quantity=0, reason="CANCELLED")
VALID = dict(
    event_id="v", order_id="o", correlation_id="c1", causation_id="s1", broker=Broker.PAPER,
    timestamp=TS, signal=SIGNAL, side="SELL", quantity=10, product=Product.CNC,
)  # fmt: skip


def _same(cls: type[BaseModel], kw: dict[str, Any]) -> None:
    want, got = cls(**kw), build(cls, dict(kw))
    assert type(got) is cls
    assert list(got.__dict__) == list(want.__dict__)
    assert [type(v) for v in got.__dict__.values()] == [type(v) for v in want.__dict__.values()]
    assert got == want and got.model_fields_set == want.model_fields_set
    assert got.model_dump() == want.model_dump() and got.model_dump_json() == want.model_dump_json()
    assert repr(got) == repr(want) and hash(got) == hash(want)


def test_every_model_is_built_directly() -> None:
    assert all(s is not None for s in SPECS.values())


@pytest.mark.parametrize(
    ("cls", "base"),
    [(OrderFilled, FILL), (OrderPlaced, PLACED), (OrderFailed, FAILED), (ValidatedSignal, VALID)],
)
@pytest.mark.parametrize(
    "change",
    [
        {},
        {"broker": "paper", "side": "SELL"},  # values instead of members
        {"quantity": 3},
        {"quantity": True},  # not an int as such: validated
        {"broker_order_id": "k1"},
        {"timestamp": TS.astimezone(timezone(timedelta(hours=5, minutes=30)))},  # validated
        {"trigger_price": 99.0},
        {"trigger_price": 99},  # an int for a float: validated (stored as a float)
        {"fill_price": 101},
        {"fees": -0.5, "product": Product.CNC, "auto_square_off": True, "dp": 15.93},
    ],
)
def test_built_as_validated(cls: type[BaseModel], base: dict[str, Any], change: dict) -> None:
    kw = base | {k: v for k, v in change.items() if k in cls.model_fields}
    _same(cls, kw)
    _same(cls, {k: v for k, v in kw.items() if cls.model_fields[k].is_required()})


@pytest.mark.parametrize(
    ("cls", "base"),
    [(OrderFilled, FILL), (OrderPlaced, PLACED), (OrderFailed, FAILED), (ValidatedSignal, VALID)],
)
def test_valid_values_are_not_validated_again(
    cls: type[BaseModel], base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    want = [cls(**base), cls(**(base | {"broker": "paper", "side": "SELL"}))]

    def refuse(self: BaseModel, **data: Any) -> None:
        raise AssertionError("validated")

    monkeypatch.setattr(cls, "__init__", refuse)
    assert build(cls, dict(base)) == want[0]
    assert build(cls, base | {"broker": "paper", "side": "SELL"}) == want[1]


@pytest.mark.parametrize(
    ("cls", "base", "change"),
    [
        (OrderFilled, FILL, {"quantity": 0}),
        (OrderFilled, FILL, {"fill_price": math.inf}),
        (OrderFilled, FILL, {"fill_price": -1.0}),
        (OrderFilled, FILL, {"side": "HOLD"}),
        (OrderFilled, FILL, {"timestamp": TS.replace(tzinfo=None)}),
        (OrderFilled, FILL, {"unknown": 1}),
        (OrderFailed, FAILED, {"quantity": -1}),
        (OrderPlaced, PLACED, {"order_type": None}),
        (ValidatedSignal, VALID, {"signal": None}),
    ],
)
def test_invalid_values_raise(cls: type[BaseModel], base: dict, change: dict) -> None:
    with pytest.raises(ValidationError):
        build(cls, base | change)
    missing = dict(base)
    del missing["event_id"]
    with pytest.raises(ValidationError):
        build(cls, missing)
