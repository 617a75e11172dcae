"""Load and validate the YAML config; errors name the offending field."""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from operators.strategies.registry import StrategyImpl, build_strategy
from schemas.config import AppConfig, ConfigError, Instrument
from schemas.files import regular_file

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"
CONFIG_ENV = "ALPHA_PANDA_CONFIG"


_UNION_TAG = re.compile(
    r"^(list|dict|set|literal|function-\w+|nullable|union|json)\[|^(float|int|str|bool|none)$"
)


def _where(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """A pydantic error location as the config path: ``strategies[mom].params.lookback``."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if isinstance(item, int):
            label: Any = item
            if isinstance(node, list) and item < len(node):
                node = node[item]
                if isinstance(node, dict) and isinstance(node.get("id"), str | int):
                    label = node["id"]
            parts[-1:] = [f"{parts[-1]}[{label}]"] if parts else [f"[{label}]"]
            continue
        if item == "[key]":
            continue  # a dict key's own error: the path already ends with the key
        in_node = isinstance(node, dict) and item in node
        if not in_node and isinstance(node, dict) and node.get("kind", "replay") == item:
            continue  # the tag of a tagged union (source kinds), not a field
        if not in_node and isinstance(item, str) and _UNION_TAG.match(item):
            continue  # which member of a union (float | "auto") failed, not a field
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "text"}


def _message(err: Any, where: str) -> tuple[str, str]:
    """(path, message) of the first pydantic error."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind = str(err["type"])
    if kind == "extra_forbidden":
        return where, "unknown field"
    if kind == "union_tag_invalid":
        return f"{where}.kind", f"unknown kind; expected one of {err['ctx']['expected_tags']}"
    if kind.endswith("_type") and kind.removesuffix("_type") in _KINDS:
        got = type(err.get("input")).__name__
        return where, f"{msg} (got {got} {_short(err.get('input'))})"
    field, sep, rest = msg.partition(": ")  # "close: must be after open" from a section's check
    if sep and where and re.fullmatch(r"[a-z_]+", field):
        return f"{where}.{field}", rest
    return where, msg


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_CSV_INTS = ("instrument_token", "lot_size")
_CSV_FLOATS = ("tick_size", "circuit_pct")
KITE_MASTER_COLUMNS = frozenset({"exchange_token", "instrument_type", "segment", "expiry"})


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row's numbers as numbers (text that is not one stays text, and is refused by
    name); empty cells are left out (defaults)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v == "":
            continue
        try:
            if k in _CSV_INTS:
                v = int(v)
            elif k in _CSV_FLOATS and v != "auto":
                v = float(v)
        except ValueError:
            pass
        out[k] = v
    return out


def _instruments(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value
    path = _resolve(base, value, "instruments")
    regular_file(path, "instruments")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's BOM too
            return _csv_instruments(path, csv.reader(fh))
    except OSError as exc:
        raise ConfigError(f"instruments: cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"instruments: {path} is not a CSV text file: {exc}") from None


def _csv_instruments(path: Path, reader: Any) -> list[dict[str, Any]]:
    """The rows of an instruments CSV as mappings, each checked as an Instrument: a column
    named twice, a row of more or fewer fields than the header or a bad value is refused
    naming the file, line and field. A column absent from the header takes its default."""
    header: list[str] = next(reader, [])
    if KITE_MASTER_COLUMNS <= set(header):
        raise ConfigError(
            f"instruments: {path} is Kite's instrument master as downloaded; write "
            f"the instrument file from it: alpha-panda instruments --from {path} "
            "--out instruments.csv"
        )
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ConfigError(f"instruments: {path} line 1: column {name!r} given twice")
        seen.add(name)
    rows = []
    for fields in reader:
        if not fields:
            continue  # a blank line
        line = f"instruments: {path} line {reader.line_num}"
        if len(fields) != len(header):
            raise ConfigError(f"{line}: {len(fields)} fields, the header has {len(header)}")
        row = _csv_row(dict(zip(header, fields, strict=True)))
        try:
            Instrument.model_validate(row)
        except ValidationError as exc:
            err = exc.errors()[0]
            where, msg = _message(err, _where(tuple(err["loc"]), row))
            raise ConfigError(f"{line}: {where}: {msg}" if where else f"{line}: {msg}") from None
        rows.append(row)
    return rows


def _resolve(base: Path, value: str, where: str) -> Path:
    try:
        return (base / value).resolve()
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{where}: not a usable path: {exc}") from None


def parse_config(raw: dict[str, Any], base: Path) -> AppConfig:
    """Validate a config mapping; relative paths resolve against ``base``."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping at the top level")
    raw = dict(raw)
    src = raw.get("source")
    for name in ("path", "capture"):  # file settings of the replay and kite sources
        if isinstance(src, dict) and isinstance(src.get(name), str):
            path = _resolve(base, src[name], f"source.{name}")
            src = raw["source"] = {**src, name: str(path)}
    ctl = raw.get("control")
    if isinstance(ctl, dict) and isinstance(ctl.get("path"), str):
        raw["control"] = {**ctl, "path": str(_resolve(base, ctl["path"], "control.path"))}
    out = raw.get("output")
    if isinstance(out, dict) and isinstance(out.get("dir"), str):
        raw["output"] = {**out, "dir": str(_resolve(base, out["dir"], "output.dir"))}
    if "instruments" in raw:
        raw["instruments"] = _instruments(raw["instruments"], base)
    try:
        cfg = AppConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where, msg = _message(err, _where(tuple(err["loc"]), raw))
        raise ConfigError(f"{where}: {msg}" if where else msg) from None
    if any(s.class_path for s in cfg.strategies) and str(base) not in sys.path:
        sys.path.append(str(base))  # a user strategy module may sit beside its config
    build_strategies(cfg)  # unknown type / params fail here, before the flow starts
    return cfg


def build_strategies(cfg: AppConfig) -> dict[str, StrategyImpl]:
    return {s.id: build_strategy(s) for s in cfg.strategies if s.enabled}


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"config: {key!r} given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep)


MAX_CONFIG_VALUES = 100_000
"""Values (keys, scalars, lists, mappings) a config may hold with every YAML alias counted as
the copy it stands for: nested aliases grow tenfold a level, a billion values in 1 KB."""


def _expanded(raw: Any) -> Any:
    """``raw``, refused once it holds more than MAX_CONFIG_VALUES values with aliases expanded;
    counting stops there, so a huge or self-referencing tree costs no more than that."""
    todo, count = [raw], 0
    while todo:
        node = todo.pop()
        count += 1 + (len(node) if isinstance(node, dict) else 0)
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                "config: too large once YAML aliases are expanded "
                f"(over {MAX_CONFIG_VALUES:,} values)"
            )
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return raw


def load_config(path: str | Path | None = None) -> AppConfig:
    """Config from ``path``, else ``$ALPHA_PANDA_CONFIG``, else the bundled default."""
    p = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    regular_file(p, "config")
    try:
        raw = _expanded(yaml.load(p.read_text(), Loader=_UniqueKeys))
    except OSError as exc:
        raise ConfigError(f"{CONFIG_ENV}: cannot read {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{CONFIG_ENV}: {p} is not UTF-8 text") from None
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(raw, p.resolve().parent)
