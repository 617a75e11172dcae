"""Build strategy instances from config; bad type, class or params name the strategy and field."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

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
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"strategies[{cfg.id}].class: cannot load {path!r}: {exc}") from None
    if not callable(getattr(cls, "on_tick", None)):
        raise ConfigError(f"strategies[{cfg.id}].class: {path!r} has no on_tick(tick, state)")
    return cls


def _build_user(cfg: StrategyConfig) -> TickStrategy:
    cls = _load_class(cfg)
    sig = inspect.signature(cls)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for name in cfg.params:
        if name not in sig.parameters and not accepts_any:
            raise ConfigError(f"strategies[{cfg.id}].params.{name}: unknown parameter")
    for name, p in sig.parameters.items():
        required = p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        if required and name not in cfg.params:
            raise ConfigError(f"strategies[{cfg.id}].params.{name}: missing required parameter")
    try:
        return cls(**cfg.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"strategies[{cfg.id}].params: {exc}") from None


def build_strategy(cfg: StrategyConfig) -> StrategyImpl:
    """Instantiate one configured strategy (raises ConfigError naming strategy and field)."""
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
        raise ConfigError(f"strategies[{cfg.id}].params{field}: {msg}") from None
    return ctor(params)
