"""Two or more runs side by side: the settings that differ between their saved configs and
their headline metrics, per broker and per strategy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flows.analysis.build import report
from flows.analysis.model import Metrics, Report
from flows.analysis.render import num, pct, span

MISSING = "—"
WIDEST = 40  # characters of a config value shown
HEADLINE: list[tuple[str, Callable[[Metrics], str]]] = [
    ("net PnL", lambda m: num(m.net_pnl)),
    ("total return", lambda m: pct(m.total_return)),
    ("CAGR", lambda m: pct(m.cagr)),
    ("volatility", lambda m: pct(m.volatility)),
    ("Sharpe", lambda m: num(m.sharpe)),
    ("Sortino", lambda m: num(m.sortino)),
    ("Calmar", lambda m: num(m.calmar)),
    ("max drawdown", lambda m: num(m.max_drawdown)),
    ("max drawdown %", lambda m: pct(m.max_drawdown_pct)),
    ("drawdown length", lambda m: span(m.max_drawdown_duration_s)),
    ("round trips", lambda m: str(m.trips)),
    ("win % (net)", lambda m: pct(m.win_rate, 1)),
    ("profit factor", lambda m: num(m.profit_factor)),
    ("expectancy", lambda m: num(m.expectancy)),
    ("fees", lambda m: num(m.fees)),
    ("slippage", lambda m: num(m.slippage)),
    ("turnover", lambda m: num(m.turnover)),
    ("time in market", lambda m: pct(m.time_in_market, 1)),
    ("buy and hold", lambda m: pct(m.benchmark.total_return)),
]


def _label(item: Any, i: int) -> str:
    if isinstance(item, dict):
        for key in ("id", "instrument_token"):
            if key in item:
                return str(item[key])
    return str(i)


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """A config as ``dotted.key[label] → value`` (list items labelled by id or token)."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and any(isinstance(x, dict | list) for x in node):
        out = {}
        for i, v in enumerate(node):
            out.update(flatten(v, f"{prefix}[{_label(v, i)}]"))
        return out
    return {prefix: str(node)}


def config_diff(configs: Sequence[dict[str, Any] | None]) -> list[tuple[str, list[str]]]:
    """Every setting whose value is not the same in all configs (absent: ``—``)."""
    flat = [flatten(c) if c is not None else {} for c in configs]
    keys = sorted(set().union(*flat))
    rows = []
    for k in keys:
        values = [f.get(k, MISSING) for f in flat]
        if len(set(values)) > 1 and not set(values) <= {"None", MISSING}:  # unset either way
            rows.append((k, values))
    return rows


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = [f"{{:<{widths[0]}}}", *(f"{{:>{w}}}" for w in widths[1:])]
    return [
        "  " + "  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)) for r in [head, *rows]
    ]


def _metrics(r: Report, broker: str, strategy: str | None) -> Metrics | None:
    for b in r.brokers:
        if b.broker == broker:
            if strategy is None:
                return b.total
            return next((s for s in b.strategies if s.name == strategy), None)
    return None


def _cell(value: str) -> str:
    return value if len(value) <= WIDEST else value[: WIDEST - 1] + "…"


def _config_lines(reports: Sequence[Report], names: Sequence[str]) -> list[str]:
    """Settings that differ, among the runs that hold their config."""
    have = [(n, r.config) for n, r in zip(names, reports, strict=True) if r.config is not None]
    absent = [n for n, r in zip(names, reports, strict=True) if r.config is None]
    lines = [f"config: no config.yaml in {', '.join(absent)}"] if absent else []
    if len(have) < 2:
        return [*lines, "config: fewer than two runs hold their config; settings not compared"]
    diff = config_diff([c for _, c in have])
    if not diff:
        return [*lines, "config: the same settings"]
    rows = [[k, *(_cell(v) for v in values)] for k, values in diff]
    return [*lines, "config differences:", *_table(["setting", *(n for n, _ in have)], rows)]


def render_compare(reports: Sequence[Report], names: Sequence[str]) -> str:
    lines = ["=== Alpha Panda runs compared ==="]
    lines += [
        f"  {n}: {r.run_dir} ({r.trading_days} day(s))" for n, r in zip(names, reports, strict=True)
    ]
    lines += ["", *_config_lines(reports, names)]
    brokers = sorted({b.broker for r in reports for b in r.brokers})
    for broker in brokers:
        strategies = sorted(
            {s.name for r in reports for b in r.brokers if b.broker == broker for s in b.strategies}
        )
        for strategy in [None, *strategies]:
            found = [_metrics(r, broker, strategy) for r in reports]
            title = f"broker {broker}" + (f", strategy {strategy}" if strategy else "")
            rows = [[label, *(f(m) if m else MISSING for m in found)] for label, f in HEADLINE]
            lines += ["", title, *_table(["", *names], rows)]
    return "\n".join(lines) + "\n"


def _names(run_dirs: Sequence[str | Path]) -> list[str]:
    names = [Path(d).name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):  # two folders of the same name: use the paths
        names = [str(d) for d in run_dirs]
    return names


def compare(run_dirs: Sequence[str | Path], risk_free: float = 0.0) -> str:
    """Runs side by side, as text: config differences, then headline metrics per broker
    and per strategy (a dash where a run has no such broker or strategy)."""
    if len(run_dirs) < 2:
        raise ValueError("compare needs two run folders or more")
    reports = [report(d, risk_free) for d in run_dirs]
    return render_compare(reports, _names(run_dirs))
