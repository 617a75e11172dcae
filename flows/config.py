"""Load and validate the YAML config; errors name the offending field."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from operators.strategies.registry import StrategyImpl, build_strategy
from schemas.config import AppConfig, ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
CONFIG_ENV = "ALPHA_PANDA_CONFIG"


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label = item
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and "id" in node:
                    label = node["id"]
            parts[-1:] = [f"{parts[-1]}[{label}]"] if parts else [f"[{label}]"]
            continue
        if isinstance(node, dict) and item not in node and node.get("kind", "replay") == item:
            continue  # the tag of a tagged union (source kinds), not a field
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _instruments(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value
    path = (base / value).resolve()
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"instruments: cannot read {path}: {exc.strerror}") from None


def parse_config(raw: dict[str, Any], base: Path) -> AppConfig:
    """Validate a config mapping; relative paths resolve against ``base``."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping at the top level")
    raw = dict(raw)
    src = raw.get("source")
    for name in ("path", "capture"):  # file settings of the replay and kite sources
        if isinstance(src, dict) and isinstance(src.get(name), str):
            src = raw["source"] = {**src, name: str((base / src[name]).resolve())}
    ctl = raw.get("control")
    if isinstance(ctl, dict) and isinstance(ctl.get("path"), str):
        raw["control"] = {**ctl, "path": str((base / ctl["path"]).resolve())}
    out = raw.get("output")
    if isinstance(out, dict) and isinstance(out.get("dir"), str):
        raw["output"] = {**out, "dir": str((base / out["dir"]).resolve())}
    if "instruments" in raw:
        raw["instruments"] = _instruments(raw["instruments"], base)
    try:
        cfg = AppConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _where(tuple(err["loc"]), raw)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "union_tag_invalid":
            where, msg = (
                f"{where}.kind",
                f"unknown kind; expected one of {err['ctx']['expected_tags']}",
            )
        raise ConfigError(f"{where}: {msg}" if where else msg) from None
    build_strategies(cfg)  # unknown type / params fail here, before the flow starts
    return cfg


def build_strategies(cfg: AppConfig) -> dict[str, StrategyImpl]:
    return {s.id: build_strategy(s) for s in cfg.strategies if s.enabled}


def load_config(path: str | Path | None = None) -> AppConfig:
    """Config from ``path``, else ``$ALPHA_PANDA_CONFIG``, else the bundled default."""
    p = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"{CONFIG_ENV}: cannot read {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(raw, p.resolve().parent)

