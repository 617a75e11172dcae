"""The instrument master: the simulator's ``GET /instruments`` through the real
``kiteconnect`` client, and ``python -m connectors.kite.instruments`` writing the project's
instrument file from it (only equity cash rows, filters, changes against the previous
file, one-line errors)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from kiteconnect import KiteConnect

from connectors.kite.instruments import main
from connectors.kite.sim.__main__ import SIM_DEFAULTS, build
from connectors.kite.sim.fills import Instrument
from connectors.kite.sim.http import SimApi, serve
from flows.config import ConfigError, parse_config
from operators.market import nse_tick_size
from tests.support import KEY, ROOT, TOKEN, config_dict, flow_env, free_ports

KITE_COLUMNS = [
    "instrument_token", "exchange_token", "tradingsymbol", "name", "last_price", "expiry",
    "strike", "tick_size", "lot_size", "instrument_type", "segment", "exchange",
]  # fmt: skip
INFY, TCS, HDFCBANK, RELIANCE = 408065, 2953217, 341249, 738561


@pytest.fixture
def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimApi, str, Path]]:
    """A simulator whose instrument file has a tick of 0.01, a lot of 5 and an ``auto`` tick;
    the command's credentials in the environment."""
    for k in SIM_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.delenv("ALPHA_PANDA_CONFIG", raising=False)
    rows = list(csv.DictReader((ROOT / "data" / "instruments.csv").open(newline="")))
    edits = {INFY: {"tick_size": "0.01"}, TCS: {"lot_size": "5"}, HDFCBANK: {"tick_size": "auto"}}
    for r in rows:
        r.update(edits.get(int(r["instrument_token"]), {}))
    path = tmp_path / "sim_instruments.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    api = build(ROOT / "data" / "sample_ticks.parquet", path)
    server = serve(api, "127.0.0.1", 0)
    monkeypatch.setenv("KITE_API_KEY", KEY)
    monkeypatch.setenv("KITE_ACCESS_TOKEN", TOKEN)
    yield api, f"http://127.0.0.1:{server.server_address[1]}", path
    server.shutdown()
    server.server_close()


def expected(api: SimApi, path: Path) -> list[tuple[int, str, str, float, int]]:
    """Our file's rows as the sim's instrument file gives them, sorted by symbol (an auto tick
    is NSE's band at the instrument's first price on the tape)."""
    out = []
    for r in csv.DictReader(path.open(newline="")):
        tok = int(r["instrument_token"])
        tick = r["tick_size"]
        if tick == "auto":
            first = int(np.flatnonzero(api.ex.tape.token == tok)[0])
            tick = str(nse_tick_size(float(api.ex.tape.price[first])))
        out.append((tok, r["tradingsymbol"], r["exchange"], float(tick), int(r["lot_size"])))
    return sorted(out, key=lambda t: (t[1], t[0]))


def written(path: Path) -> list[tuple[int, str, str, float, int]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [
            "instrument_token", "tradingsymbol", "exchange", "tick_size", "lot_size"
        ]  # fmt: skip
        return [(int(r["instrument_token"]), r["tradingsymbol"], r["exchange"],
                 float(r["tick_size"]), int(r["lot_size"])) for r in reader]  # fmt: skip


def run(capsys: Any, *args: str) -> tuple[int, list[str], list[str]]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_kiteconnect_reads_the_sims_csv_master(master: tuple[SimApi, str, Path]) -> None:
    api, root, path = master
    reply = requests.get(f"{root}/instruments/NSE",
                         headers={"Authorization": f"token {KEY}:{TOKEN}"}, timeout=5)  # fmt: skip
    assert reply.headers["Content-Type"] == "text/csv"
    assert reply.text.splitlines()[0].split(",") == KITE_COLUMNS
    kite = KiteConnect(KEY, access_token=TOKEN, root=root)
    nse = kite.instruments("NSE")
    eq = sorted(
        ((r["instrument_token"], r["tradingsymbol"], r["exchange"], r["tick_size"], r["lot_size"])
         for r in nse if r["segment"] == "NSE"), key=lambda t: (t[1], t[0]),
    )  # fmt: skip
    assert eq == expected(api, path)
    assert all(r["instrument_type"] == "EQ" for r in nse)
    assert {r["segment"] for r in nse} == {"NSE", "INDICES"}  # an index, as Kite lists it
    assert {r["exchange_token"] for r in nse if r["tradingsymbol"] == "INFY"} == {str(INFY // 256)}
    assert [r["instrument_type"] for r in kite.instruments("NFO")] == ["FUT"]
    assert len(kite.instruments()) == len(nse) + 1
    assert requests.get(f"{root}/instruments", timeout=5).status_code == 403


def test_download_round_trips_through_the_config_loader(
    master: tuple[SimApi, str, Path], tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, root, path = master
    cfg_file = tmp_path / "kite.yaml"
    cfg_file.write_text(yaml.safe_dump({"kite": {"api_root": root}}))
    monkeypatch.setenv("ALPHA_PANDA_CONFIG", str(cfg_file))  # kite.api_root from the config
    out = tmp_path / "cfg" / "instruments.csv"
    code, lines, err = run(capsys, "--out", str(out))
    want = expected(api, path)
    assert code == 0 and err == []
    assert written(out) == want  # only the EQ rows of segment NSE: the index is left out
    total = len(want) + 1
    assert lines == [f"wrote {len(want)} instruments to {out}, 1 of Kite's {total} NSE rows "
                     "filtered out; no previous file"]  # fmt: skip
    assert sorted(p.name for p in out.parent.iterdir()) == ["instruments.csv"]  # no temp file
    raw = config_dict(tmp_path / "ticks", instruments="instruments.csv")
    cfg = parse_config(raw, out.parent)
    got = [(i.instrument_token, i.tradingsymbol, i.exchange, i.tick_size, i.lot_size)
           for i in cfg.instruments]  # fmt: skip
    assert got == want


def test_a_saved_master_converts_offline_and_the_loader_points_to_it(
    master: tuple[SimApi, str, Path], tmp_path: Path, capsys: Any
) -> None:
    api, root, path = master
    reply = requests.get(f"{root}/instruments/NSE",
                         headers={"Authorization": f"token {KEY}:{TOKEN}"}, timeout=5)  # fmt: skip
    saved = tmp_path / "master.csv"  # as a browser or a spreadsheet saves it: with a BOM
    saved.write_bytes(b"\xef\xbb\xbf" + reply.text.encode())
    raw = config_dict(tmp_path / "ticks", instruments=str(saved))
    with pytest.raises(ConfigError, match=r"^instruments: .* Kite's instrument master .*--from"):
        parse_config(raw, tmp_path)  # never read as an instrument file
    out = tmp_path / "instruments.csv"
    code, _, err = run(capsys, "--from", str(saved), "--out", str(out))
    assert code == 0 and err == [] and written(out) == expected(api, path)
    out.write_bytes(b"\xef\xbb\xbf" + out.read_bytes())  # a BOM is read past
    got = parse_config(config_dict(tmp_path / "ticks", instruments=str(out)), tmp_path)
    assert [i.instrument_token for i in got.instruments] == [t for t, *_ in expected(api, path)]


def test_symbols_and_tokens_narrow_it_and_missing_ones_warn(
    master: tuple[SimApi, str, Path], tmp_path: Path, capsys: Any
) -> None:
    api, root, path = master
    want = {t[1]: t for t in expected(api, path)}
    out = tmp_path / "inst.csv"
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root,
                           "--symbols", "tcs, infy,NOPE")  # fmt: skip
    assert code == 0 and written(out) == [want["INFY"], want["TCS"]]
    assert err == ["warning: NOPE is not in Kite's NSE list (segment NSE, EQ)"]
    assert f", {len(want) + 1 - 2} of Kite's {len(want) + 1} NSE rows filtered out;" in lines[0]
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root,
                           "--tokens", f"{HDFCBANK},256265")  # fmt: skip
    assert code == 0 and written(out) == [want["HDFCBANK"]]  # the index token is no equity
    assert err == ["warning: 256265 is not in Kite's NSE list (segment NSE, EQ)"]
    assert lines[0].endswith("vs the previous file: 1 added, 2 removed, 0 tick/lot changed")


def test_changes_since_the_previous_file_are_reported(
    master: tuple[SimApi, str, Path], tmp_path: Path, capsys: Any
) -> None:
    """Kite's master moves on: a tick size changes, a token goes, a symbol is renamed, a
    symbol gets a new token. Each is one warning; the counts add up."""
    api, root, _ = master
    out = tmp_path / "inst.csv"
    assert run(capsys, "--out", str(out), "--api-root", root)[0] == 0
    before = {t[0]: t for t in written(out)}
    ex = api.ex.instruments
    ex[INFY].tick_size = 0.05
    gone = ex.pop(TCS)
    ex[HDFCBANK].tradingsymbol = "HDFCBANKNEW"
    old = ex.pop(RELIANCE)
    ex[9_999_001] = Instrument(9_999_001, old.tradingsymbol, old.exchange)
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root)
    assert code == 0
    assert sorted(err) == sorted([
        f"warning: INFY ({INFY}): tick_size {before[INFY][3]:g} -> 0.05",
        f"warning: token {TCS} ({gone.tradingsymbol}) is stale: not in Kite's list",
        f"warning: token {HDFCBANK} changed symbol: HDFCBANK is now HDFCBANKNEW",
        f"warning: token {RELIANCE} (RELIANCE) is stale: now token 9999001",
    ])  # fmt: skip
    assert lines[0].endswith("vs the previous file: 1 added, 2 removed, 1 tick/lot changed")
    now = {t[0]: t for t in written(out)}
    assert now.keys() == (before.keys() - {TCS, RELIANCE}) | {9_999_001}
    assert now[INFY][3] == 0.05 and now[HDFCBANK][1] == "HDFCBANKNEW"
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root, "--keep-symbols")
    assert (code, err) == (0, []) and written(out) == sorted(now.values(), key=lambda t: t[1])
    out.write_text(out.read_text().replace("lot_size\n", "lot_size,circuit_pct\n", 1))
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root)
    assert err == [f"warning: {out}: column(s) circuit_pct not in Kite's master, not kept"]


def test_nothing_but_equity_of_the_segment_is_kept(
    master: tuple[SimApi, str, Path], tmp_path: Path, capsys: Any
) -> None:
    """NFO has only a future: nothing to keep, so nothing is written (exit 2, one line)."""
    _, root, _ = master
    out = tmp_path / "inst.csv"
    out.write_text("keep me\n")
    code, lines, err = run(capsys, "--out", str(out), "--api-root", root, "--exchange", "NFO")
    assert (code, lines) == (2, [])
    assert err == [f"instruments: no instruments kept of Kite's 1 NFO rows (segment NFO, EQ): "
                   f"{out} left as it was"]  # fmt: skip
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("bad token", "Kite refused the access token (TokenException"),
        ("no key", "set KITE_API_KEY in the environment"),
        ("unreachable", "did not answer (ConnectionError)"),
        ("bad tokens arg", "--tokens: not a list of integers"),
    ],
)
def test_errors_exit_2_with_one_line_and_no_secret(
    master: tuple[SimApi, str, Path], tmp_path: Path, case: str, needle: str
) -> None:
    _, root, _ = master
    env = flow_env(None)
    env.update({"KITE_API_KEY": KEY, "KITE_ACCESS_TOKEN": "not-the-token-7f3a"})
    args = ["--api-root", root]
    if case == "no key":
        del env["KITE_API_KEY"]
        env["KITE_ACCESS_TOKEN"] = TOKEN
    elif case == "unreachable":
        args = ["--api-root", f"http://127.0.0.1:{free_ports(1)[0]}"]
    elif case == "bad tokens arg":
        args += ["--tokens", "1,x"]
    out = tmp_path / "inst.csv"
    cmd = [sys.executable, "-m", "connectors.kite.instruments", "--out", str(out), *args]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and needle in p.stderr, p.stderr
    for secret in ("not-the-token-7f3a", TOKEN, KEY):
        assert secret not in p.stderr
    assert not out.exists()
