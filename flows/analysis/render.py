"""The report as text (for a terminal) and as JSON."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from flows.analysis.model import BrokerReport, Metrics, Report, SideStats, Trade

TRADES_SHOWN = 5


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x * 100:,.{digits}f}%"


def num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def span(seconds: float | None) -> str:
    """A duration as days, hours, minutes and seconds (the two largest parts)."""
    if seconds is None:
        return "-"
    s = round(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    shown = [f"{v}{u}" for v, u in parts if v]
    return " ".join(shown[:2]) or "0s"


def when(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"


def _side(label: str, s: SideStats) -> str:
    return (
        f"{label} {s.trips} trips, win {pct(s.win_rate, 1)}, net {num(s.net_pnl)}, "
        f"PF {num(s.profit_factor)}, expectancy {num(s.expectancy)}"
    )


def headline(m: Metrics, capital: float) -> list[str]:
    """The block every scope shares: returns, drawdown, exposure, trades, costs, benchmark."""
    heads = ", ".join(f"{k} {num(v)}" for k, v in m.costs.items() if k != "total")
    b = m.benchmark
    beat = None if b.total_return is None else m.total_return - b.total_return
    dd_state = "recovered" if m.drawdown_recovered else "not recovered"
    return [
        f"  returns    total {pct(m.total_return)}, CAGR {pct(m.cagr)}, volatility "
        f"{pct(m.volatility)}, Sharpe {num(m.sharpe)}, Sortino {num(m.sortino)}, "
        f"Calmar {num(m.calmar)}",
        f"  drawdown   max {num(m.max_drawdown)} ({pct(m.max_drawdown_pct)}), longest under "
        f"water {span(m.max_drawdown_duration_s)} ({dd_state}); peak {when(m.drawdown_peak)}"
        f" → trough {when(m.drawdown_trough)} UTC",
        f"  exposure   time in market {pct(m.time_in_market, 1)}, gross {pct(m.avg_exposure, 1)}"
        f" of equity on average (max {pct(m.max_exposure, 1)}), turnover {num(m.turnover)} "
        f"({num(m.turnover_ratio, 1)}× capital {num(capital)})",
        f"  trades     {m.trips} closed, {m.open_trips} open; win {pct(m.win_rate, 1)} net of "
        f"fees; profit factor {num(m.profit_factor)}; expectancy {num(m.expectancy)}; avg win "
        f"{num(m.avg_win)}, avg loss {num(m.avg_loss)}; best {num(m.best_trade)}, worst "
        f"{num(m.worst_trade)}; avg holding {span(m.avg_holding_s)}",
        f"  days       best {m.best_day or '-'} {num(m.best_day_pnl)}, worst "
        f"{m.worst_day or '-'} {num(m.worst_day_pnl)}",
        "  " + _side("long      ", m.long),
        "  " + _side("short     ", m.short),
        f"  costs      fees {num(m.costs.get('total', 0.0))} ({heads or 'none'}); slippage "
        f"{num(m.slippage)} ({num(m.slippage_bps, 1)} bps of turnover); gross "
        f"{num(m.gross_pnl)} → net {num(m.net_pnl)}",
        f"  benchmark  buy and hold of {len(b.instruments)} instrument(s): "
        f"{pct(b.total_return)} ({num(b.net_pnl)}), max drawdown {pct(b.max_drawdown_pct)}, "
        f"Sharpe {num(b.sharpe)}; the run {'-' if beat is None else pct(beat)} against it",
    ]


Column = tuple[str, int, Callable[[Metrics], str]]
GROUP_COLUMNS: list[Column] = [
    ("fills", 7, lambda m: str(m.fills)),
    ("trips", 7, lambda m: str(m.trips)),
    ("win%", 7, lambda m: pct(m.win_rate, 1)),
    ("PF", 6, lambda m: num(m.profit_factor)),
    ("expect.", 9, lambda m: num(m.expectancy)),
    ("fees", 13, lambda m: num(m.fees)),
    ("net", 14, lambda m: num(m.net_pnl)),
    ("return", 9, lambda m: pct(m.total_return)),
    ("Sharpe", 8, lambda m: num(m.sharpe)),
    ("max dd", 13, lambda m: num(m.max_drawdown)),
    ("in mkt", 7, lambda m: pct(m.time_in_market, 1)),
    ("B&H", 9, lambda m: pct(m.benchmark.total_return)),
]


def group_table(title: str, rows: Sequence[Metrics]) -> list[str]:
    head = f"  {title:<16}" + "".join(f"{h:>{w}}" for h, w, _ in GROUP_COLUMNS)
    body = [
        f"  {m.name[:16]:<16}" + "".join(f"{f(m):>{w}}" for _, w, f in GROUP_COLUMNS) for m in rows
    ]
    return [head, *body]


def day_table(m: Metrics) -> list[str]:
    out = [
        f"  {'day':<10} {'fills':>6} {'trips':>6} {'turnover':>15} {'fees':>10} {'gross':>11} "
        f"{'net':>11} {'return':>8} {'equity':>15} {'drawdown':>10}"
    ]
    for d in m.days:
        out.append(
            f"  {d.date!s:<10} {d.fills:>6} {d.trips:>6} {num(d.turnover):>15} {num(d.fees):>10} "
            f"{num(d.gross_pnl):>11} {num(d.net_pnl):>11} {pct(d.ret):>8} {num(d.equity):>15} "
            f"{num(d.drawdown):>10}"
        )
    return out


def trade_line(t: Trade) -> str:
    exit_ = when(t.exit_time) if t.exit_time else "open"
    return (
        f"  {t.strategy[:14]:<14} {(t.symbol or str(t.instrument_token))[:11]:<11} "
        f"{t.direction:<5} {t.quantity:>5} {when(t.entry_time)} → {exit_:<19} "
        f"{span(t.holding_s):>7} {num(t.entry_price):>10} {num(t.exit_price):>10} "
        f"{num(t.net_pnl):>10} {num(t.mae):>9} {num(t.mfe):>9}"
    )


def trades_block(b: BrokerReport) -> list[str]:
    ranked = sorted(b.trades, key=lambda t: t.net_pnl)
    head = (
        f"  {'strategy':<14} {'instrument':<11} {'side':<5} {'qty':>5} {'entry (UTC)':<19} "
        f"  {'exit':<19} {'held':>7} {'entry px':>10} {'exit px':>10} {'net':>10} {'MAE':>9} "
        f"{'MFE':>9}"
    )
    out = [f"  round trips: {len(b.trades)} (all in analysis.json, report.html); best and worst:"]
    out.append(head)
    picked = ranked[::-1][:TRADES_SHOWN] + ranked[:TRADES_SHOWN][::-1]
    seen: set[int] = set()
    for t in picked:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(trade_line(t))
    return out


def render_broker(b: BrokerReport) -> list[str]:
    m = b.total
    check = (
        ""
        if b.ledger_net_pnl is None
        else f"; the ledger's final snapshot says {num(b.ledger_net_pnl)}"
    )
    lines = [
        "",
        f"broker {b.broker}: capital {num(b.starting_cash)} → equity {num(b.final_equity)}, "
        f"net {num(m.net_pnl)} ({pct(m.total_return)}){check}",
        *headline(m, b.starting_cash),
        "",
        *group_table("strategy", b.strategies),
        "",
        *group_table("instrument", b.instruments),
        "",
        *day_table(m),
    ]
    if b.trades:
        lines += ["", *trades_block(b)]
    return lines


def render_text(r: Report) -> str:
    """The report for a terminal."""
    c = r.conventions
    lines = [
        f"=== Alpha Panda run analysis: {r.run_dir} ===",
        f"period: {when(r.start)} → {when(r.end)} UTC, {r.trading_days} trading day(s); "
        f"{c.periods_per_year} days a year, risk-free {pct(c.risk_free_rate)}",
        f"marks: {c.marks}",
    ]
    run = r.run or {}
    if "rows_read" in run:
        lines.append(
            f"ticks: {run.get('rows_read', 0):,} read, {run.get('ticks_processed', 0):,} "
            f"processed, {run.get('dead_letters', 0):,} dead letters"
        )
    if not r.brokers:
        lines.append("no broker traded or had a strategy in this run")
    for b in r.brokers:
        lines += render_broker(b)
    return "\n".join(lines) + "\n"


def render_json(r: Report) -> str:
    return r.model_dump_json(indent=2)
