"""Build strategy instances from config; bad type, class or params name the strategy and field."""

from __future__ import annotations

import importlib
import inspect
import math
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from operators.strategies.api import TickStrategy, VectorStrategy
from operators.strategies.mean_reversion import MeanReversion, MeanReversionParams
from operators.strategies.momentum import Momentum, MomentumParams
from schemas.config import ConfigError, StrategyConfig

BUILTIN: dict[str, tuple[type[BaseModel], Callable[[Any], VectorStrategy]]] = {
    "momentum": (MomentumParams, Momentum),
    "mean_reversion": (MeanReversionParams, MeanReversion),
}

StrategyImpl = VectorStrategy | TickStrategy


def _load_class(cfg: StrategyConfig) -> type:
    path = cfg.class_path or ""
    mod_name, sep, attr = path.partition(":")
    if not sep:
        mod_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod_name), attr)
    except Exception as exc:  # a missing module, or one that fails as it is imported
        where = "the config's folder and the working directory are on the import path"
        raise ConfigError(
            f"strategies[{cfg.id}].class: cannot load {path!r}: {exc} ({where})"
        ) from None
    if not callable(getattr(cls, "on_tick", None)):
        raise ConfigError(f"strategies[{cfg.id}].class: {path!r} has no on_tick(tick, state)")
    return cls


def _plain(value: Any, where: str) -> None:
    """Parameters are finite numbers, int64 integers, text, bools, lists and mappings."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, not {value}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ConfigError(f"{where}: {value} does not fit in 64 bits")
    if isinstance(value, list | tuple):
        for v in value:
            _plain(v, where)
    if isinstance(value, dict):
        for v in value.values():
            _plain(v, where)


def _annotation_check(cls: type, cfg: StrategyConfig) -> None:
    """Each parameter against the constructor's annotation, strictly (no "300" for an int,
    no 2.5 or true for an int). Unannotated parameters take anything."""
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:  # unresolvable annotations: nothing to check against
        hints = {}
    for name, value in cfg.params.items():
        hint = hints.get(name)
        if hint is None or hint is Any:
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(hint)
        except Exception:  # an annotation pydantic cannot check (an arbitrary class)
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            label = getattr(hint, "__name__", str(hint))
            raise ConfigError(
                f"strategies[{cfg.id}].params.{name}: {msg} (annotated {label}, got {value!r})"
            ) from None


def _build_user(cfg: StrategyConfig) -> TickStrategy:
    cls = _load_class(cfg)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategies[{cfg.id}].class: no readable signature: {exc}") from None
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for name in cfg.params:
        if name not in sig.parameters and not accepts_any:
            raise ConfigError(f"strategies[{cfg.id}].params.{name}: unknown parameter")
    for name, p in sig.parameters.items():
        required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and name not in cfg.params:
            raise ConfigError(f"strategies[{cfg.id}].params.{name}: missing required parameter")
    _annotation_check(cls, cfg)
    try:
        return cls(**cfg.params)
    except Exception as exc:  # the strategy's own checks (ValueError, or anything else)
        raise ConfigError(
            f"strategies[{cfg.id}].params: {cls.__name__}() refused them: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def build_strategy(cfg: StrategyConfig) -> StrategyImpl:
    """Instantiate one configured strategy (raises ConfigError naming strategy and field)."""
    for name, value in cfg.params.items():
        _plain(value, f"strategies[{cfg.id}].params.{name}")
    if cfg.class_path is not None:
        return _build_user(cfg)
    assert cfg.type is not None
    if cfg.type not in BUILTIN:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"strategies[{cfg.id}].type: unknown strategy {cfg.type!r} ({known})")
    params_model, ctor = BUILTIN[cfg.type]
    try:
        params = params_model.model_validate(cfg.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        field = f".{where}" if where else ""
        msg = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        if str(err["type"]).endswith("_type"):  # strict: say what was given instead
            msg += f" (got {type(err['input']).__name__} {err['input']!r})"
        raise ConfigError(f"strategies[{cfg.id}].params{field}: {msg}") from None
    return ctor(params)
