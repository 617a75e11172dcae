"""Every config field against hostile values (a walk over the schema), and a YAML fuzz:
whatever a config file holds, loading it raises nothing but ConfigError, in one line."""

from __future__ import annotations

import itertools
import types
import typing
from collections.abc import Iterator
from datetime import date, time
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from flows.config import load_config, parse_config
from schemas.config import (
    AppConfig,
    BrokerConfig,
    ConfigError,
    Instrument,
    KafkaSourceConfig,
    KiteSourceConfig,
    ReplaySourceConfig,
    SpecialSession,
    StrategyConfig,
)
from tests.support import config_dict

# --- hostile values, field by field ------------------------------------------------------

HERE = Path(__file__).parent
BASE_SOURCES: dict[str, dict[str, Any]] = {
    "replay": {},
    "kafka": {"kind": "kafka", "tail": False},
    "kite": {"kind": "kite"},
}


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(the type without Annotated / Optional, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType) and type(None) in args:
            optional = True
            rest = [a for a in args if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
        else:
            return annotation, optional


def _hostile(annotation: Any) -> list[Any]:
    """Values no field of this type may take: wrong kinds, non-finite, absurd sizes."""
    tp, optional = _strip(annotation)
    origin = typing.get_origin(tp)
    common: list[Any] = [] if optional else [None]
    if tp is bool:
        return [*common, 1, "true", "yes", 0.0]
    if tp is int:
        return [*common, True, "3", 2.5, 1e3, float("nan"), 10**30, -(10**30)]
    if tp is float or float in typing.get_args(tp):
        return [*common, True, "1.5", float("nan"), float("inf"), -float("inf"), 1e300, -1e300]
    if tp is str:
        return [*common, 5, ["a"], {"a": 1}, True]
    if origin is typing.Literal:
        return [*common, "no-such-choice", 1, True]
    if origin is list:
        return [*common, "x", {"a": 1}, [{"nested": {"deep": 1}}]]
    if origin is dict:
        return [*common, "x", [1]]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [*common, 5, "x", [1], {"no_such_field": 1}]
    if tp in (time, date):
        return [*common, 555, "25:99", "someday", True]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return [*common, "NOPE", 1, True]
    assert origin in (typing.Union, types.UnionType), tp  # a type this walk does not know
    return [*common, "no-such-choice", True, {"a": 1}, [True]]


def _fields(
    model: type[BaseModel], path: list[Any], label: str
) -> Iterator[tuple[list[Any], str, Any]]:
    """(raw path, message path, annotation) of every field below ``model``."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        yield [*path, key], f"{label}.{key}" if label else key, info.annotation
        tp, _ = _strip(info.annotation)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            yield from _fields(tp, [*path, key], f"{label}.{key}" if label else key)


def _cases() -> Iterator[tuple[str, list[Any], str, Any]]:
    skip = {"source", "brokers", "strategies", "instruments", "special_sessions"}
    sources: dict[str, type[BaseModel]] = {
        "replay": ReplaySourceConfig,
        "kafka": KafkaSourceConfig,
        "kite": KiteSourceConfig,
    }
    for kind, model in sources.items():
        for path, label, ann in _fields(model, ["source"], "source"):
            if path[-1] != "kind":
                yield kind, path, label, ann
    for path, label, ann in _fields(AppConfig, [], ""):
        if path[0] not in skip:
            yield "replay", path, label, ann
    for path, label, ann in _fields(BrokerConfig, ["brokers", "paper"], "brokers.paper"):
        yield "replay", path, label, ann
    for path, label, ann in _fields(StrategyConfig, ["strategies", 0], "strategies[mom]"):
        if path[-1] != "id":
            yield "replay", path, label, ann
    for path, label, ann in _fields(Instrument, ["instruments", 0], "instruments[0]"):
        yield "replay", path, label, ann
    special = ["session", "special_sessions", 0]
    for path, label, ann in _fields(SpecialSession, special, "session.special_sessions[0]"):
        yield "replay", path, label, ann


MUHURAT = {"date": "2026-11-08", "open": "18:00", "close": "19:00"}


def _set(raw: dict[str, Any], path: list[Any], value: Any) -> None:
    """Set ``value`` at ``path``, making the sections on the way (an earlier edit may have
    replaced one by a scalar or a list: it becomes a section again)."""
    node: Any = raw
    for key, nxt in itertools.pairwise(path):
        child = node[key] if isinstance(node, dict | list) and _has(node, key) else None
        if isinstance(nxt, int):  # a list of entries (strategies, instruments, sessions)
            if not (isinstance(child, list) and len(child) > nxt):
                if key != "special_sessions":
                    return
                child = [dict(MUHURAT)]
        elif not isinstance(child, dict):
            child = {}
        node[key] = child
        node = child
    node[path[-1]] = value


def _has(node: Any, key: Any) -> bool:
    return key in node if isinstance(node, dict) else 0 <= key < len(node)


FIELD_CASES = [(k, p, lbl, v) for k, p, lbl, ann in _cases() for v in _hostile(ann)]


def test_the_hostile_walk_covers_every_section() -> None:
    labels = {lbl for _, _, lbl, _ in FIELD_CASES}
    for section in AppConfig.model_fields:
        assert any(lbl.split(".")[0].split("[")[0] == section for lbl in labels), section
    assert len(FIELD_CASES) > 800


@pytest.mark.parametrize(("kind", "path", "label", "value"), FIELD_CASES)
def test_every_field_refuses_hostile_values_naming_its_path(
    kind: str, path: list[Any], label: str, value: Any
) -> None:
    raw = config_dict(HERE, source={"path": str(HERE), **BASE_SOURCES[kind]})
    _set(raw, path, value)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, HERE)
    msg = str(err.value)
    assert msg.startswith(f"{label}") and "\n" not in msg, (value, msg)


# --- YAML fuzz: whatever the file holds, load_config raises nothing but ConfigError ---------

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.dates() | st.sampled_from(["all", "paper", "zerodha", "MARKET", "09:15", "auto", "kafka"])
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
PATHS = sorted({tuple(p) for _, p, _, _ in _cases()})


def _load_or_config_error(path: Path) -> None:
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings(FUZZ, max_examples=100)
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_fuzz_field_values_only_ever_raise_config_error(
    tmp_path: Path, edits: list[tuple[tuple[Any, ...], Any]]
) -> None:
    raw = config_dict(tmp_path)
    for path, value in edits:
        _set(raw, list(path), value)
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True))
    _load_or_config_error(cfg)


@FUZZ
@given(doc=VALUES | st.text(max_size=200) | st.binary(max_size=200))
def test_fuzz_whole_documents_only_ever_raise_config_error(tmp_path: Path, doc: Any) -> None:
    cfg = tmp_path / "fuzz.yaml"
    if isinstance(doc, bytes):
        cfg.write_bytes(doc)
    elif isinstance(doc, str):
        cfg.write_text(doc)
    else:
        cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load_or_config_error(cfg)
