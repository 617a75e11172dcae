from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.arrow import ledger_row, model_schema
from schemas.enums import Broker, Stage
from schemas.envelope import EventEnvelope, wrap
from schemas.events import (
    EVENT_MODELS,
    DeadLetter,
    MarketTick,
    Model,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    PnlSnapshot,
    StageHealth,
)
from tests.support import EXAMPLES

REQUIRED = [
    (model, name)
    for model in EVENT_MODELS
    for name, info in model.model_fields.items()
    if info.is_required()
]


def test_every_event_model_has_an_example() -> None:
    assert set(EXAMPLES) == set(EVENT_MODELS)
    for model, data in EXAMPLES.items():
        model.model_validate(data)


@pytest.mark.parametrize(("model", "field"), REQUIRED, ids=lambda x: getattr(x, "__name__", x))
def test_missing_required_field_is_rejected(model: type[Model], field: str) -> None:
    data = dict(EXAMPLES[model])
    del data[field]
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
    assert field in str(err.value)


@pytest.mark.parametrize("model", [OrderPlaced, OrderFilled, OrderFailed, PnlSnapshot, StageHealth])
def test_broker_is_required_and_never_unknown(model: type[Model]) -> None:
    assert model.model_fields["broker"].is_required()
    with pytest.raises(ValidationError):
        model.model_validate({**EXAMPLES[model], "broker": "unknown"})


def test_order_placed_requires_status() -> None:
    assert OrderPlaced.model_fields["status"].is_required()


@pytest.mark.parametrize("price", [0.0, -1.0, float("nan"), float("inf")])
def test_tick_price_must_be_finite_and_positive(price: float) -> None:
    with pytest.raises(ValidationError, match="last_price"):
        MarketTick.model_validate({**EXAMPLES[MarketTick], "last_price": price})


def test_envelope_chains_ids_and_sets_the_real_broker() -> None:
    fill = OrderFilled.model_validate(EXAMPLES[OrderFilled])
    env = wrap(fill, Stage.ORDER_EXECUTION)
    assert env.broker == Broker.PAPER.value
    assert env.correlation_id == "corr-1" and env.causation_id == "c"
    assert env.key == "paper:738561"
    assert env.id == wrap(fill, Stage.ORDER_EXECUTION).id  # deterministic
    assert EventEnvelope.model_fields["broker"].is_required()
    with pytest.raises(ValidationError, match="broker"):
        EventEnvelope.model_validate({**env.model_dump(), "broker": None})
    # Tick dead letters precede the fan-out to brokers: no broker, keyed by source partition.
    dead = DeadLetter.model_validate(EXAMPLES[DeadLetter])
    tick_dead = wrap(dead, Stage.MARKET_DATA)
    assert tick_dead.broker is None and tick_dead.key == "replay-0"
    assert wrap(dead, Stage.MARKET_DATA, broker="paper").broker == "paper"


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_arrow_schema_holds_the_models_rows(model: type[Model]) -> None:
    import pyarrow as pa

    row = model.model_validate(EXAMPLES[model]).model_dump()
    table = pa.Table.from_pylist([row], schema=model_schema(model))
    assert table.column_names == list(model.model_fields)
    assert table.to_pylist()[0]["event_id" if "event_id" in row else next(iter(row))] is not None


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_a_ledger_row_is_the_models_dump(model: type[Model]) -> None:
    event = model.model_validate(EXAMPLES[model])
    row, dumped = ledger_row(event), event.model_dump()
    assert row == dumped and list(row) == list(dumped)
    assert [type(v) for v in row.values()] == [type(v) for v in dumped.values()]
    assert ledger_row(event) is not ledger_row(event)  # a row of its own, never the model's


def test_a_ledger_row_never_holds_private_or_nested_models() -> None:
    from pydantic import BaseModel

    from schemas.events import RejectedSignal, TradingSignal

    sig = TradingSignal.model_validate(EXAMPLES[TradingSignal]).received(123)
    assert "_received_us" not in ledger_row(sig) and "received_us" not in ledger_row(sig)
    rej = RejectedSignal.model_validate(EXAMPLES[RejectedSignal])
    assert isinstance(ledger_row(rej)["signal"], dict)
    held = dict(instrument_token=1, quantity=5, average_price=10.0, last_price=11.0,
                realized_pnl=0.0, unrealized_pnl=5.0)  # fmt: skip
    snap = PnlSnapshot.model_validate({**EXAMPLES[PnlSnapshot], "positions": [held]})
    assert ledger_row(snap) == snap.model_dump() and ledger_row(snap)["positions"] == [held]
    assert not any(isinstance(p, BaseModel) for p in ledger_row(snap)["positions"])


def test_content_ids_are_the_blake2b_of_the_parts_joined() -> None:
    from hashlib import blake2b

    from schemas.ids import content_id, tick_id

    want = blake2b(b"sig\x1fpaper\x1f738561\x1f-5\x1f2.5\x1fNone", digest_size=8).hexdigest()
    assert content_id("x", "sig", "paper", 738561, -5, 2.5, None) == f"x-{want}"
    assert tick_id(7, 11, 0) == "tick-" + blake2b(b"7\x1f11\x1f0", digest_size=8).hexdigest()
    assert content_id("y") == "y-" + blake2b(b"", digest_size=8).hexdigest()


def test_a_ledger_row_of_a_model_with_a_list_or_a_model_in_a_union_is_its_dump() -> None:
    from schemas.events import Position

    class Tagged(Model):
        tags: list[str]
        held: int | Position

    held = Position(instrument_token=1, quantity=5, average_price=10.0, last_price=11.0,
                    realized_pnl=0.0, unrealized_pnl=5.0)  # fmt: skip
    event = Tagged(tags=["a"], held=held)
    row = ledger_row(event)
    assert row == event.model_dump() and isinstance(row["held"], dict)
    row["tags"].append("b")  # a row of its own: the event is untouched
    assert event.tags == ["a"]
