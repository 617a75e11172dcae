"""Config and instruments files refused before they cost anything: YAML aliases that
expand without bound, instruments.csv rows and headers that do not line up, tick sizes
that are not whole paise."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flows.config import load_config, parse_config
from schemas.config import ConfigError
from tests.support import config_dict, flow_env

ANYTHING = """
class Anything:
    def __init__(self, extra=None, quantity: int = 1):
        self.quantity = quantity

    def on_tick(self, tick, state):
        return None
"""


def _alias_config(tmp: Path, depth: int) -> Path:
    """A config whose user strategy's unannotated param nests ``depth`` levels of ten
    aliases (10**depth values once expanded, in a few hundred bytes)."""
    module = f"anything_{depth}"
    (tmp / f"{module}.py").write_text(ANYTHING)
    raw = config_dict(tmp / "ticks")
    raw["strategies"] = [
        {"id": "s", "class": f"{module}:Anything", "instruments": raw["strategies"][0]
         ["instruments"], "brokers": ["paper"], "params": {"quantity": 1, "extra": "BOMB"}}
    ]  # fmt: skip
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth)
    ]
    bomb = "\n" + "\n".join(" " * 8 + line for line in lines)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw, width=10_000).replace(" BOMB", bomb))
    return path


def test_yaml_aliases_that_expand_past_the_budget_are_refused_at_once(tmp_path: Path) -> None:
    path = _alias_config(tmp_path, 6)
    assert path.stat().st_size < 2_000  # the whole config, instruments included
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: config: too large once YAML aliases are expanded (over 100,000 values)"
    )
    assert time.monotonic() - start < 2


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("source: &s [*s]\n")
    with pytest.raises(ConfigError, match="too large once YAML aliases are expanded"):
        load_config(path)


def test_the_entry_point_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    path = _alias_config(tmp_path, 9)
    cmd = [sys.executable, "-m", "bytewax.run", "flows.main"]
    done = subprocess.run(cmd, cwd=tmp_path, env=flow_env(path), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert str(path) in lines[0] and "too large once YAML aliases are expanded" in lines[0]


def test_plain_anchors_and_aliases_still_load(tmp_path: Path) -> None:
    raw = config_dict(tmp_path / "ticks")
    mom = raw["strategies"][0]
    raw["strategies"].append({**mom, "id": "mom2"})  # the same params and instruments
    text = yaml.safe_dump(raw)
    assert "&id001" in text and "*id001" in text  # written as an anchor and an alias
    path = tmp_path / "config.yaml"
    path.write_text(text)
    by_id = {s.id: s for s in load_config(path).strategies}
    assert by_id["mom2"].params == by_id["mom"].params
    assert by_id["mom2"].instruments == by_id["mom"].instruments


HEADER = "instrument_token,tradingsymbol,exchange,tick_size,lot_size\n"
TWICE = HEADER.replace("\n", ",lot_size\n")


def _csv_error(tmp: Path, text: str) -> str:
    (tmp / "instruments.csv").write_text(text)
    raw = config_dict(tmp / "ticks", instruments="instruments.csv")
    raw["strategies"] = [{**raw["strategies"][0], "instruments": "all"}]
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp)
    return str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (TWICE + "7,A,NSE,0.05,1,7\n", "line 1: column 'lot_size' given twice"),
        (HEADER + "7,A,NSE,0.05,1\n8,B\n", "line 3: 2 fields, the header has 5"),
        (HEADER + "7,A,NSE,0.05,1\n\n8,B,NSE,0.05,1,9,9\n", "line 4: 7 fields, the header has 5"),
        (HEADER + '7,"A\nB",NSE,0.05\n', "line 3: 4 fields, the header has 5"),  # a quoted newline
        (HEADER + "7,A,NSE,0.05,0\n", "line 2: lot_size: Input should be greater than 0"),
        (HEADER + "7,A,NSE,0.05,1\n8,B,NSE,0.05,1,\n", "line 3: 6 fields, the header has 5"),
    ],
    ids=["column-twice", "short-row", "long-row", "quoted-newline", "bad-value", "trailing-comma"],
)
def test_instrument_csv_rows_that_do_not_fit_the_header_are_refused(
    tmp_path: Path, text: str, problem: str
) -> None:
    msg = _csv_error(tmp_path, text)
    assert msg.startswith(f"instruments: {tmp_path / 'instruments.csv'} {problem}"), msg
    assert "\n" not in msg


def test_instrument_csv_columns_absent_from_the_header_take_their_defaults(
    tmp_path: Path,
) -> None:
    (tmp_path / "instruments.csv").write_text(
        "instrument_token,tradingsymbol\n7,A\n\n8,B\n"  # a blank line is skipped
    )
    raw = config_dict(tmp_path / "ticks", instruments="instruments.csv")
    raw["strategies"] = [{**raw["strategies"][0], "instruments": "all"}]
    got = [(i.instrument_token, i.exchange, i.tick_size, i.lot_size)
           for i in parse_config(raw, tmp_path).instruments]  # fmt: skip
    assert got == [(7, "NSE", 0.05, 1), (8, "NSE", 0.05, 1)]


@pytest.mark.parametrize("tick", ["10000", "100.01", "0.003", "1e-9", "0", "-0.05", "0.055"])
def test_tick_sizes_that_are_not_whole_paise_up_to_100_are_refused(
    tmp_path: Path, tick: str
) -> None:
    msg = _csv_error(tmp_path, HEADER + f"7,A,NSE,0.05,1\n8,B,NSE,{tick},1\n")
    assert msg.startswith(
        f"instruments: {tmp_path / 'instruments.csv'} line 3: tick_size: must be a whole "
        "number of paise from 0.01 to 100 (₹), or auto"
    ), msg
    raw = config_dict(tmp_path / "ticks")
    raw["instruments"][1]["tick_size"] = float(tick)
    with pytest.raises(ConfigError, match=r"^instruments\[1\]\.tick_size: must be a whole"):
        parse_config(raw, tmp_path)


def test_tick_sizes_in_whole_paise_are_kept_exactly(tmp_path: Path) -> None:
    ticks = ["0.01", "0.05", "0.10", "0.15", "0.3", "5", "100", "auto"]
    lines = "".join(f"{7 + k},S{k},NSE,{t},1\n" for k, t in enumerate(ticks))
    (tmp_path / "instruments.csv").write_text(HEADER + lines)
    raw = config_dict(tmp_path / "ticks", instruments="instruments.csv")
    raw["strategies"] = [{**raw["strategies"][0], "instruments": "all"}]
    got = [i.tick_size for i in parse_config(raw, tmp_path).instruments]
    assert got == [0.01, 0.05, 0.1, 0.15, 0.3, 5.0, 100.0, "auto"]
