"""Order events built without validating again what is already valid.

Pydantic validates every field of an event it builds (some 58k instructions for a fill).
The account builds its events from values that are valid already: ids it hashed, a
validated signal's fields, enum members, an aware UTC timestamp, the floats and ints it
computed. ``build`` tests each value with an exact, cheap test of what validation would
store unchanged (its type, its constraint) and sets the fields directly; if any value fails
its test, or a field is missing or unknown, the model's own validation builds the event.
Either way the event is the one the model builds: the same values and types, field order
and fields set (and an invalid value still raises). A model whose fields, types,
constraints or validators are not the ones the tests were written for is always validated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from annotated_types import Ge, Gt
from pydantic import AwareDatetime, BaseModel

from schemas import events
from schemas.enums import Broker, OrderStatus, Product, SignalType
from schemas.events import OrderFailed, OrderFilled, OrderPlaced, TradingSignal, ValidatedSignal

M = TypeVar("M", bound=BaseModel)
BAD: Any = object()  # a value validation would not store as it is


class Test(NamedTuple):
    """A field of ``annotation`` with constraints ``metadata``: the types validation stores
    as they are, and ``norm``: the value it stores for a given one of them (or BAD)."""

    types: frozenset[type]
    annotation: Any
    metadata: tuple[Any, ...] = ()
    norm: Callable[[Any], Any] | None = None  # None: the value itself


def _typed(t: type) -> Test:
    return Test(frozenset((t,)), t)


def _optional(t: type) -> Test:
    return Test(frozenset((t, type(None))), t | None)


def _utc(v: datetime) -> Any:
    """An aware datetime in UTC (validation keeps the very object)."""
    return v if v.tzinfo is timezone.utc else BAD


def _finite_positive(v: float) -> Any:
    """``schemas.events``' ``_finite_positive`` check."""
    return v if math.isfinite(v) and v > 0 else BAD


def _enum(cls: type[Enum]) -> Test:
    """A member or its value: stored as the value (``use_enum_values``)."""
    values = {m.value: m.value for m in cls} | {m: m.value for m in cls}
    return Test(frozenset((str, cls)), cls, (), lambda v: values.get(v, BAD))


STR, INT, FLOAT = _typed(str), _typed(int), _typed(float)
QUANTITY = Test(INT.types, int, (Gt(gt=0),), lambda v: v if v > 0 else BAD)
UNFILLED = Test(INT.types, int, (Ge(ge=0),), lambda v: v if v >= 0 else BAD)
SIDE, PRODUCT, BROKER = _enum(SignalType), _enum(Product), _enum(Broker)
TIME = Test(frozenset((datetime,)), AwareDatetime, (), _utc)
IDS = dict.fromkeys(("event_id", "order_id", "correlation_id", "causation_id"), STR)
EVENT = {
    **IDS,
    "broker": BROKER,
    "broker_order_id": _optional(str),
    "status": _enum(OrderStatus),
    **dict.fromkeys(("signal_id", "strategy_id"), STR),
    "instrument_token": INT,
    "side": SIDE,
    "timestamp": TIME,
}
HEADS = dict.fromkeys(("brokerage", "stt", "exchange", "sebi", "stamp", "gst"), FLOAT)
TESTS: dict[type[BaseModel], dict[str, Test]] = {
    OrderPlaced: {**EVENT, "quantity": QUANTITY, "order_type": STR, "price": FLOAT}
    | {"trigger_price": _optional(float)},
    OrderFilled: {
        **EVENT,
        "quantity": QUANTITY,
        "fill_price": FLOAT._replace(norm=_finite_positive),
    }
    | {"fees": FLOAT, "product": PRODUCT, "auto_square_off": _typed(bool), **HEADS}
    | {"dp": FLOAT, "square_off": FLOAT},
    OrderFailed: {**EVENT, "quantity": UNFILLED, "reason": STR},
    ValidatedSignal: {**IDS, "broker": BROKER, "timestamp": TIME}
    | {"signal": _typed(TradingSignal), "side": SIDE, "quantity": QUANTITY}
    | {"product": PRODUCT, "trigger_price": _optional(float)},
}
VALIDATED: dict[type[BaseModel], dict[str, Any]] = {
    OrderFilled: {"fill_price": events._finite_positive}
}  # what the tests repeat
CONFIG = {"frozen": True, "extra": "forbid", "use_enum_values": True}  # what they assume


class Spec:
    """How ``cls`` is built: its fields in order with their tests and defaults, and the
    plans worked out so far for the value types it was given (by the keys given)."""

    def __init__(self, fields: dict[str, tuple[Test, Any]]) -> None:
        self.fields, self.names = fields, tuple(fields)
        self.plans: dict[tuple[str, ...], dict[tuple[type, ...], Plan | None]] = {}

    def plan(self, keys: tuple[str, ...], types: tuple[type, ...]) -> Plan | None:
        """For values of these types under these keys: the values to normalise and the
        defaults to add; None: validation builds the event."""
        fields = self.fields
        if set(keys) - set(fields) or len(set(keys)) != len(keys):
            return None
        if any(d is BAD and f not in keys for f, (_, d) in fields.items()):
            return None  # a required field is missing
        tests = [fields[k][0] for k in keys]
        if any(t not in test.types for t, test in zip(types, tests, strict=True)):
            return None
        norms = tuple((k, t.norm) for k, t in zip(keys, tests, strict=True) if t.norm)
        full = keys == self.names
        return Plan(
            norms, None if full else {f: d for f, (_, d) in fields.items()}, frozenset(keys)
        )

    def kept(self, keys: tuple[str, ...], types: tuple[type, ...]) -> Plan | None:
        """``plan``, worked out once (for at most MAX_PLANS combinations)."""
        by_types = self.plans.get(keys)
        if by_types is None:
            by_types = {}
            if len(self.plans) < MAX_PLANS:
                self.plans[keys] = by_types
        plan = by_types.get(types, BAD)
        if plan is BAD:
            plan = by_types[types] = self.plan(keys, types)
            if len(by_types) > MAX_PLANS:
                del by_types[types]
        return plan


class Plan(NamedTuple):
    norms: tuple[tuple[str, Callable[[Any], Any]], ...]  # the values to normalise
    defaults: dict[str, Any] | None  # every field's default; None: the keys are every field
    given: frozenset[str]  # the fields set (copied: a set from a set takes no rehashing)


def spec(cls: type[BaseModel], tests: dict[str, Test]) -> Spec | None:
    """``cls``'s Spec; None unless the tests cover exactly its fields with their types and
    constraints, and it has nothing else that validation does (other validators, default
    factories, aliases, private attributes, another config)."""
    fields, found = cls.model_fields, cls.__pydantic_decorators__
    checks = {f: d.func for d in found.field_validators.values() for f in d.info.fields}
    if (
        list(fields) != list(tests)
        or checks != VALIDATED.get(cls, {})
        or found.model_validators
        or found.root_validators
        or cls.__private_attributes__
        or dict(cls.model_config) != CONFIG
    ):
        return None
    out: dict[str, tuple[Test, Any]] = {}
    for name, f in fields.items():
        t = tests[name]
        if f.annotation != t.annotation or tuple(f.metadata) != t.metadata:
            return None
        if f.default_factory is not None or f.validate_default or f.alias is not None:
            return None
        out[name] = (t, BAD if f.is_required() else f.default)
    return Spec(out)


MAX_PLANS = 64  # per model: the key (and per keys, type) combinations kept; a few are used
SPECS = {c: spec(c, t) for c, t in TESTS.items()}
_set = object.__setattr__


def build(cls: type[M], values: dict[str, Any]) -> M:
    """``cls(**values)``, without validating again values that are valid as they are
    (``values``: a dict of the caller's own, best in the fields' order; it is normalised in
    place, to values that validate the same)."""
    s = SPECS.get(cls)
    if s is None:
        return cls(**values)
    keys, types = tuple(values), tuple(map(type, values.values()))
    by_types = s.plans.get(keys)
    plan = by_types.get(types, BAD) if by_types is not None else BAD
    if plan is BAD:
        plan = s.kept(keys, types)
    if plan is None:
        return cls(**values)
    for name, norm in plan.norms:
        v = norm(values[name])
        if v is BAD:
            return cls(**values)
        values[name] = v
    if plan.defaults is not None:
        values = {f: values.get(f, d) for f, d in plan.defaults.items()}
    m = cls.__new__(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(plan.given))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
