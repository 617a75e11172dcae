from __future__ import annotations

from pathlib import Path

import pytest

from flows.config import DEFAULT_CONFIG, load_config, parse_config
from schemas.config import ConfigError, ReplaySourceConfig
from schemas.enums import Broker
from tests.support import TOKENS, config_dict


def test_default_config_loads_and_trades_only_paper() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    assert isinstance(cfg.source, ReplaySourceConfig)
    assert Path(cfg.source.path).exists()
    assert cfg.routes_brokers() == {Broker.PAPER}
    assert Broker.ZERODHA in cfg.brokers


def _strategy_error(tmp_path: Path, **change: object) -> str:
    raw = config_dict(tmp_path)
    raw["strategies"][0].update(change)
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp_path)
    return str(err.value)


def test_unknown_strategy_type_names_strategy_and_field(tmp_path: Path) -> None:
    msg = _strategy_error(tmp_path, type="momentumm")
    assert msg.startswith("strategies[mom].type:") and "momentumm" in msg


def test_unknown_param_names_it(tmp_path: Path) -> None:
    msg = _strategy_error(tmp_path, params={"lookback": 10, "lookbak": 3})
    assert msg == "strategies[mom].params.lookbak: unknown parameter"


def test_wrong_param_value_names_it(tmp_path: Path) -> None:
    msg = _strategy_error(tmp_path, params={"lookback": 0})
    assert msg.startswith("strategies[mom].params.lookback:")


def test_unknown_instrument_and_broker(tmp_path: Path) -> None:
    assert "strategies[mom].instruments" in _strategy_error(tmp_path, instruments=[1, TOKENS[0]])
    assert "strategies[mom].brokers" in _strategy_error(tmp_path, brokers=["kite"])


def test_unknown_top_level_field_and_bad_nested_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^sourcee: unknown field"):
        parse_config({**config_dict(tmp_path), "sourcee": {}}, tmp_path)
    raw = config_dict(tmp_path)
    raw["brokers"]["paper"]["risk"] = {"max_order_value": -5}
    with pytest.raises(ConfigError, match=r"^brokers\.paper\.risk\.max_order_value:"):
        parse_config(raw, tmp_path)


def test_user_class_errors(tmp_path: Path) -> None:
    base = {"type": None, "class": "operators.strategies.example_user:Breakout"}
    assert "params.nope: unknown parameter" in _strategy_error(tmp_path, **base, params={"nope": 1})
    assert "cannot load" in _strategy_error(tmp_path, **{**base, "class": "no.such:Thing"})


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_zerodha_orders_need_a_live_source(tmp_path: Path) -> None:
    msg = _strategy_error(tmp_path, brokers=["paper", "zerodha"])
    assert msg.startswith("source.kind: a strategy trades on zerodha")
    raw = config_dict(tmp_path, source={"kind": "kite", "capture": "cap"})
    raw["strategies"][0]["brokers"] = ["zerodha"]
    cfg = parse_config(raw, tmp_path)
    assert cfg.source.capture == str((tmp_path / "cap").resolve())  # type: ignore[union-attr]


def test_missing_kite_credentials_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.kite.client import CredentialsMissing, credentials

    monkeypatch.setenv("KITE_API_KEY", "k")
    monkeypatch.delenv("KITE_ACCESS_TOKEN", raising=False)
    with pytest.raises(CredentialsMissing, match="set KITE_ACCESS_TOKEN in the environment"):
        credentials()


@pytest.mark.parametrize("name", ["kite_sim.yaml", "kite_sim_live.yaml"])
def test_bundled_kite_configs_load(name: str) -> None:
    cfg = load_config(DEFAULT_CONFIG.parent / name)
    assert cfg.source.kind == "kite" and cfg.kite.ws_root == "ws://127.0.0.1:8765"
    assert (Broker.ZERODHA in cfg.routes_brokers()) == name.endswith("_live.yaml")


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"paper": {"starting_cash": float("inf")}},
            "brokers.paper.starting_cash: Input should be a finite number",
        ),
        (
            {"paper": {"risk": {"mark_interval_s": float("nan")}}},
            "brokers.paper.risk.mark_interval_s: Input should be a finite number",
        ),
        (
            {"paper": {"risk": {"mark_interval_s": 7}}},
            "brokers.paper.risk.mark_interval_s: must divide portfolio.snapshot_interval_s",
        ),
        (
            {"paper": {"risk": {"max_orders_per_minute": 0}}},
            "brokers.paper.risk.max_orders_per_minute: Input should be greater than 0",
        ),
    ],
)
def test_account_settings_are_finite_and_consistent(
    tmp_path: Path, over: dict, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config_dict(tmp_path, brokers=over), tmp_path)
    assert str(err.value) == message


def test_a_control_file_is_checked_before_the_flow_starts(tmp_path: Path) -> None:
    from flows.plan import prepare

    ctl = tmp_path / "ops.jsonl"
    ctl.write_text('{"ts": "2026-11-20T11:00:00", "broker": "paper", "command": "halt"}\n')
    cfg = parse_config(config_dict(tmp_path, control={"path": "ops.jsonl"}), tmp_path)
    with pytest.raises(ConfigError, match=r"control.path: .*ops.jsonl line 1: ts: "):
        prepare(cfg, source=object(), source_parts=["replay-0"])  # type: ignore[arg-type]
