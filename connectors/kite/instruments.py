"""``python -m connectors.kite.instruments --out FILE``: Kite's instrument master
(``kite.instruments(exchange)``, or ``--from`` a copy saved as CSV) written as the project's
instrument file.

Kept: the exchange's equity cash instruments, i.e. Kite's rows with ``instrument_type`` EQ
in the cash segment (``segment`` NSE for NSE): stocks, ETFs and the other trading series
Kite lists there (e.g. ``-BE``). Indices (segment INDICES), futures and options are left
out. ``--symbols`` / ``--tokens`` / ``--keep-symbols`` narrow it further.

Credentials come from the environment as for the flow (``KITE_API_KEY``,
``KITE_ACCESS_TOKEN``); ``kite.api_root`` from the ``kite:`` section of the config
(``$ALPHA_PANDA_CONFIG``, else the default; only that section is read, so a stale or missing
instrument file does not stop its own refresh), or ``--api-root``. The file is written
atomically and compared with the one it replaces. Errors exit 2 with one line.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import requests
import yaml
from kiteconnect import exceptions as kex
from pydantic import ValidationError

from connectors.kite.client import CredentialsMissing, http_client
from flows.config import CONFIG_ENV, DEFAULT_CONFIG
from schemas.config import KiteConfig
from schemas.kite import ACCESS_TOKEN_ENV

COLUMNS = ("instrument_token", "tradingsymbol", "exchange", "tick_size", "lot_size")
MIN_TIMEOUT_S = 30.0  # the master is a few MB: more than an order call's timeout


class Refused(Exception):
    """The command cannot go on; the message is its one line (never a credential)."""


@dataclass(frozen=True)
class Row:
    """One line of the instrument file."""

    token: int
    symbol: str
    exchange: str
    tick: float
    lot: int

    def line(self) -> dict[str, Any]:
        return dict(zip(COLUMNS, (self.token, self.symbol, self.exchange,
                                  format(self.tick, "g"), self.lot), strict=True))  # fmt: skip


def kite_config(api_root: str | None) -> KiteConfig:
    """``--api-root``, else the ``kite:`` section of the config file."""
    if api_root:
        return KiteConfig(api_root=api_root)
    path = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise Refused(f"{CONFIG_ENV}: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError:
        raise Refused(f"{path}: invalid YAML") from None
    section = raw.get("kite") if isinstance(raw, dict) else None
    try:
        return KiteConfig.model_validate(section or {})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in ("kite", *err["loc"]))
        raise Refused(f"{path}: {where}: {err['msg']}") from None


def download(cfg: KiteConfig, exchange: str) -> list[dict[str, Any]]:
    """Check the session (``profile``), then fetch ``instruments(exchange)``."""
    cfg = cfg.model_copy(update={"timeout_s": max(cfg.timeout_s, MIN_TIMEOUT_S)})
    try:
        client = http_client(cfg)
        client.profile()
        rows: list[dict[str, Any]] = client.instruments(exchange)
    except CredentialsMissing as e:
        raise Refused(str(e)) from None
    except (kex.TokenException, kex.PermissionException) as e:
        raise Refused(
            f"Kite refused the access token ({type(e).__name__}: {e}); log in again "
            f"(python -m connectors.kite.login) and set {ACCESS_TOKEN_ENV}"
        ) from None
    except requests.RequestException as e:
        raise Refused(
            f"kite.api_root: {cfg.api_root} did not answer ({type(e).__name__})"
        ) from None
    except kex.KiteException as e:
        raise Refused(f"Kite: {type(e).__name__}: {str(e)[:200]}") from None
    except (ValueError, KeyError) as e:
        raise Refused(f"Kite's instrument master is malformed ({type(e).__name__}: {e})") from None
    return rows


def read_master(path: Path, exchange: str) -> list[dict[str, Any]]:
    """The ``exchange`` rows of Kite's instrument master saved as CSV (all exchanges)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("exchange") == exchange]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Refused(f"--from: cannot read {path} ({type(e).__name__}: {e})") from None
    return rows


def equity(rows: Iterable[dict[str, Any]], segment: str) -> list[Row]:
    """Kite's EQ rows of the cash ``segment`` (indices, futures and options left out)."""
    try:
        return [
            Row(int(r["instrument_token"]), str(r["tradingsymbol"]), str(r["exchange"]),
                float(r["tick_size"]), int(r["lot_size"]))
            for r in rows
            if r.get("instrument_type") == "EQ" and r.get("segment") == segment
        ]  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise Refused(f"Kite's instrument master is malformed ({type(e).__name__}: {e})") from None


def read_previous(path: Path) -> list[dict[str, str]] | None:
    """The rows of the file being replaced, or None when there is none (or it is unreadable)."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [r for r in rows if (r.get("instrument_token") or "").strip().isdigit()]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        warn(f"{path}: not compared, cannot read it ({type(e).__name__})")
        return None


def select(
    rows: list[Row], symbols: list[str] | None, tokens: list[int] | None
) -> tuple[list[Row], list[str]]:
    """The rows asked for (all when neither is given) and what was asked for but is missing."""
    if symbols is not None:
        kept = [r for r in rows if r.symbol in set(symbols)]
        found = {r.symbol for r in kept}
        return kept, [s for s in symbols if s not in found]
    if tokens is not None:
        kept = [r for r in rows if r.token in set(tokens)]
        got = {r.token for r in kept}
        return kept, [str(t) for t in tokens if t not in got]
    return rows, []


def changes(prev: list[dict[str, str]], new: list[Row], listed: list[Row]) -> tuple[int, ...]:
    """Compare with the previous file: warn (one line each) about tokens Kite no longer lists,
    tokens whose symbol changed and tick or lot sizes that changed. (added, removed, changed)."""
    old = {int(r["instrument_token"]): r for r in prev}
    now = {r.token: r for r in new}
    by_token = {r.token: r for r in listed}
    by_symbol = {r.symbol: r for r in listed}
    changed = 0
    for tok, r in old.items():
        sym, kite = r.get("tradingsymbol", ""), by_token.get(tok)
        if kite is None:
            moved = by_symbol.get(sym)
            why = f"now token {moved.token}" if moved else "not in Kite's list"
            warn(f"token {tok} ({sym}) is stale: {why}")
        elif kite.symbol != sym:
            warn(f"token {tok} changed symbol: {sym} is now {kite.symbol}")
        if tok in now:
            diffs = _sizes(r, now[tok])
            changed += bool(diffs)
            if diffs:
                warn(f"{now[tok].symbol} ({tok}): {', '.join(diffs)}")
    return len(now.keys() - old.keys()), len(old.keys() - now.keys()), changed


def _sizes(old: dict[str, str], new: Row) -> list[str]:
    out = []
    tick = (old.get("tick_size") or "0.05").strip()
    if tick == "auto" or _num(tick) != new.tick:
        out.append(f"tick_size {tick} -> {format(new.tick, 'g')}")
    if _num(old.get("lot_size") or "1") != new.lot:
        out.append(f"lot_size {old.get('lot_size') or 1} -> {new.lot}")
    return out


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def write_atomic(path: Path, rows: list[Row]) -> None:
    """Write a file next to ``path`` (with its mode, if it exists), then rename it over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
                w.writeheader()
                w.writerows(r.line() for r in rows)
                fh.flush()
                os.fsync(fh.fileno())
            if path.exists():
                shutil.copymode(path, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise Refused(f"--out: cannot write {path}: {e.strerror}") from None


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = Parser(prog="python -m connectors.kite.instruments",
                description=(__doc__ or "").split("\n\n")[0])  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="the instrument file to write")
    ap.add_argument("--exchange", default="NSE", help="Kite exchange to download (NSE)")
    ap.add_argument("--segment", help="Kite segment to keep (default: the exchange's cash)")
    ap.add_argument("--api-root", help="Kite HTTP API base URL (default: kite.api_root)")
    ap.add_argument("--from", dest="master", type=Path,
                    help="Kite's instrument master saved as CSV (offline)")  # fmt: skip
    pick = ap.add_mutually_exclusive_group()
    pick.add_argument("--symbols", help="comma-separated trading symbols to keep")
    pick.add_argument("--tokens", help="comma-separated instrument tokens to keep")
    pick.add_argument("--keep-symbols", action="store_true",
                      help="keep the symbols already in --out")  # fmt: skip
    args = ap.parse_args(argv)
    args.exchange = args.exchange.strip().upper()
    args.segment = (args.segment or args.exchange).strip().upper()
    if args.symbols is not None:
        args.symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    if args.tokens is not None:
        try:
            args.tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
        except ValueError:
            ap.error(f"--tokens: not a list of integers: {args.tokens}")
    if not args.exchange.isalnum():
        ap.error(f"--exchange: not an exchange: {args.exchange}")
    return args


def run(args: argparse.Namespace) -> str:
    """Download, select, compare and write; returns the summary line."""
    prev = read_previous(args.out)
    if args.keep_symbols:
        if not prev:
            raise Refused(f"--keep-symbols: {args.out} has no instruments to keep")
        args.symbols = sorted({r.get("tradingsymbol", "") for r in prev} - {""})
    if args.master is not None:
        raw = read_master(args.master, args.exchange)
    else:
        raw = download(kite_config(args.api_root), args.exchange)
    listed = equity(raw, args.segment)
    kept, missing = select(listed, args.symbols, args.tokens)
    for name in missing:
        warn(f"{name} is not in Kite's {args.exchange} list (segment {args.segment}, EQ)")
    if not kept:
        raise Refused(f"no instruments kept of Kite's {len(raw)} {args.exchange} rows "
                      f"(segment {args.segment}, EQ): {args.out} left as it was")  # fmt: skip
    kept.sort(key=lambda r: (r.symbol, r.token))
    diff = "no previous file"
    if prev is not None:
        dropped = [c for c in (prev[0] if prev else {}) if c not in COLUMNS]
        if dropped:
            warn(f"{args.out}: column(s) {', '.join(dropped)} not in Kite's master, not kept")
        added, removed, changed = changes(prev, kept, listed)
        diff = f"vs the previous file: {added} added, {removed} removed, {changed} tick/lot changed"
    write_atomic(args.out, kept)
    out = len(raw) - len(kept)
    return (f"wrote {len(kept)} instruments to {args.out}, {out} of Kite's {len(raw)} "
            f"{args.exchange} rows filtered out; {diff}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except Refused as e:
        print(f"instruments: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
