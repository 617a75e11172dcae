from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.config import DEFAULT_CONFIG, load_config, parse_config
from schemas.config import ConfigError, ReplaySourceConfig
from schemas.enums import Broker
from tests.support import TOKENS, config_dict, flow_env


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


# --- the reported cases, as YAML a user would write ---------------------------------------

BREAKOUT = "operators.strategies.example_user:Breakout"


def _yaml_config(tmp: Path, edit: str) -> Path:
    """The default-like test config with one YAML fragment merged in (``edit`` is YAML)."""
    raw = config_dict(tmp / "ticks")
    change = yaml.safe_load(edit)
    for key, value in change.items():
        if key == "strategy":  # the first strategy's fields
            raw["strategies"][0] = {**raw["strategies"][0], **value}
        elif key == "params":
            raw["strategies"][0]["params"] = {**raw["strategies"][0]["params"], **value}
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


YAML_CASES = [
    (
        "brokers: {paper: {starting_cash: .inf}}",
        "brokers.paper.starting_cash: Input should be a finite number",
    ),
    (
        "brokers: {paper: {starting_cash: true}}",
        "brokers.paper.starting_cash: Input should be a valid number",
    ),
    (
        "brokers: {paper: {starting_cash: '1000000'}}",
        "brokers.paper.starting_cash: Input should be a valid number",
    ),
    (
        "params: {lookback: '300'}",
        "strategies[mom].params.lookback: Input should be a valid integer",
    ),
    (
        "params: {lookback: 1e18}",
        "strategies[mom].params.lookback: Input should be a valid integer",
    ),
    (
        "params: {lookback: 1.0e+18}",
        "strategies[mom].params.lookback: Input should be a valid integer",
    ),
    (
        "params: {lookback: 1000000000000000000}",
        "strategies[mom].params.lookback: Input should be less than or equal to 1000000",
    ),
    ("params: {quantity: 2.5}", "strategies[mom].params.quantity: Input should be a valid integer"),
    ("params: {threshold: .nan}", "strategies[mom].params.threshold: must be a finite number"),
    ("params: {lookbak: 3}", "strategies[mom].params.lookbak: unknown parameter"),
    (
        f"strategy: {{type: null, class: '{BREAKOUT}', params: {{quantity: 2.5}}}}",
        "strategies[mom].params.quantity: Input should be a valid integer (annotated int, got 2.5)",
    ),
    (
        f"strategy: {{type: null, class: '{BREAKOUT}', params: {{window: '80'}}}}",
        "strategies[mom].params.window: Input should be a valid integer (annotated int, got '80')",
    ),
    (
        f"strategy: {{type: null, class: '{BREAKOUT}', params: {{window: 1}}}}",
        "strategies[mom].params: Breakout() refused them: ValueError: window must be >= 2",
    ),
    (
        f"strategy: {{type: null, class: '{BREAKOUT}', params: {{window: 99999999999999999999}}}}",
        "strategies[mom].params.window: 99999999999999999999 does not fit in 64 bits",
    ),
    ("strategy: {type: momentumm}", "strategies[mom].type: unknown strategy 'momentumm'"),
    ("strategy: {id: 'my strategy'}", "strategies[my strategy].id: String should match pattern"),
    ("strategy: {brokers: [paper, paper]}", "strategies[mom].brokers: listed twice"),
    ("strategies: []", "strategies: an empty list"),
    ("session: {weekdays: [9]}", "session.weekdays: days are 0 (Monday) to 6 (Sunday), not [9]"),
    ("session: {weekdays: []}", "session.weekdays: List should have at least 1 item"),
    ("session: {weekdays: [0, 0]}", "session.weekdays: a day listed twice"),
    ("session: {timezone: Asia/Kolkatta}", "session.timezone: unknown timezone 'Asia/Kolkatta'"),
    ("session: {open: 9:15}", "session.open: expected a time as text (YAML read 555)"),
    ("session: {open: '15:30', close: '09:15'}", "session.close: must be after open (15:30:00)"),
    (
        "session: {mis_cutoff: '16:00'}",
        "session.mis_cutoff: must be between open (09:15:00) and close (15:30:00)",
    ),
    (
        "session: {special_sessions: [{date: 2026-11-08, open: '19:00', close: '18:00'}]}",
        "session.special_sessions[0].close: must be after open",
    ),
    (
        "health: {latency_warning_s: 20}",
        "health.latency_critical_s: must be at least latency_warning_s (20.0)",
    ),
    (
        "health: {stall_warning_windows: 90}",
        "health.stall_critical_windows: must be at least stall_warning_windows (90)",
    ),
    (
        "brokers: {paper: {risk: {max_position_qty: 10.0}}}",
        "brokers.paper.risk.max_position_qty: Input should be a valid integer",
    ),
    ("brokers: {paper: 5}", "brokers.paper: Input should be a valid dictionary"),
    ("brokers: {icici: {}}", "brokers.icici: Input should be 'paper' or 'zerodha'"),
    ("brokers: {paper: {riskk: {}}}", "brokers.paper.riskk: unknown field"),
    ("brokers: {paper: {max_daily_loss: 10}}", "brokers.paper.max_daily_loss: unknown field"),
    ("source: {kind: ftp}", "source.kind: unknown kind"),
    (
        "source: {timestamp_unit: minutes}",
        "source.timestamp_unit: Input should be 's', 'ms', 'us' or 'ns'",
    ),
    ("source: {batch_size: 0}", "source.batch_size: Input should be greater than 0"),
    (
        "instruments: [{instrument_token: 1, tradingsymbol: A}, {instrument_token: 1, tradingsymbol: B}]",  # noqa: E501
        "instruments: duplicate instrument_token",
    ),
    ("instruments: []", "instruments: List should have at least 1 item"),
    ("sinks: [ledger, ledger]", "sinks: listed twice"),
    ("kafka: {brokers: ['']}", "kafka.brokers: an empty broker address"),
]


@pytest.mark.parametrize(("edit", "message"), YAML_CASES)
def test_reported_bad_configs_are_refused_naming_the_field(
    tmp_path: Path, edit: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_yaml_config(tmp_path, edit))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ("session: {timezone: Mars/Olympus}", "session.timezone: unknown timezone"),
        ("brokers: {paper: {starting_cash: true}}", "brokers.paper.starting_cash:"),
    ],
)
def test_the_entry_point_exits_2_in_one_line(tmp_path: Path, edit: str, field: str) -> None:
    cfg = _yaml_config(tmp_path, edit)
    proc = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "flows.main"],
        cwd=tmp_path,
        env=flow_env(cfg),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and field in lines[0], proc.stderr


def test_instrument_csv_numbers_are_read_as_numbers_and_text_refused(tmp_path: Path) -> None:
    csv_path = tmp_path / "instruments.csv"
    csv_path.write_text(
        "instrument_token,tradingsymbol,tick_size,lot_size\n7,A,0.05,1\n8,B,auto,\n"
    )
    strategy = {**config_dict(tmp_path)["strategies"][0], "instruments": "all"}
    raw = config_dict(tmp_path, instruments="instruments.csv", strategies=[strategy])
    cfg = parse_config(raw, tmp_path)
    got = [(i.instrument_token, i.tick_size, i.lot_size) for i in cfg.instruments]
    assert got == [(7, 0.05, 1), (8, "auto", 1)]
    csv_path.write_text("instrument_token,tradingsymbol\nx7,A\n")
    bad_token = r"^instruments: .* line 2: instrument_token: Input should be a valid integer"
    with pytest.raises(ConfigError, match=bad_token):
        parse_config(raw, tmp_path)
    csv_path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"^instruments: .* is not a CSV text file"):
        parse_config(raw, tmp_path)


@pytest.mark.parametrize(
    "doc",
    [
        "source: " + "[" * 1_000 + "]" * 1_000,  # nested beyond the parser's recursion
        "session: {holidays: [2026-02-30]}",  # a date YAML matches but Python refuses
        "a: !!python/object:os.system {}",
        "? [a, b]\n: 1",  # a list as a key
        "{",
    ],
    ids=["deep", "feb-30", "python-tag", "list-key", "unclosed"],
)
def test_unreadable_yaml_is_a_config_error(tmp_path: Path, doc: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(doc)
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(cfg)


def test_a_key_given_twice_is_refused_naming_it_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    body = yaml.safe_dump(config_dict(tmp_path / "ticks"))
    path.write_text(body + "brokers:\n  paper: {starting_cash: 1}\n")  # YAML keeps the last
    with pytest.raises(ConfigError, match=r"'brokers' given twice \(line \d+\)"):
        load_config(path)


def test_files_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    """A FIFO would block the load, a device would be read without end, a folder fails
    oddly: the instruments file and the config file must be regular files."""
    fifo = tmp_path / "instruments.csv"
    os.mkfifo(fifo)
    raw = config_dict(tmp_path / "ticks")
    raw["instruments"] = str(fifo)
    with pytest.raises(ConfigError, match=r"instruments: .* is not a regular file"):
        parse_config(raw, tmp_path)
    raw["instruments"] = "/dev/zero"
    with pytest.raises(ConfigError, match="instruments: /dev/zero is not a regular file"):
        parse_config(raw, tmp_path)
    with pytest.raises(ConfigError, match=r"config: .* is not a regular file"):
        load_config(tmp_path)
