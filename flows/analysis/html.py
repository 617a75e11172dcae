"""The report as one self-contained HTML file: plotly figures with plotly.js inlined (no
network needed to open it), the headline blocks and the round-trip list."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from flows.analysis.model import BrokerReport, Report
from flows.analysis.render import day_table, group_table, headline, num, span, when

PLOTS = ("Equity curve", "Drawdown", "Daily PnL")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: right; }
td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
"""


def _figures(b: BrokerReport) -> list[go.Figure]:
    c, days = b.curve, b.total.days
    equity = go.Figure(
        [
            go.Scatter(x=c.time, y=c.equity, name="equity", mode="lines"),
            go.Scatter(x=c.time, y=c.benchmark, name="buy and hold", mode="lines"),
            *(
                go.Scatter(x=c.time, y=e, name=f"strategy {s}", mode="lines", visible="legendonly")
                for s, e in c.strategies.items()
            ),
        ]
    )
    drawdown = go.Figure(
        [go.Scatter(x=c.time, y=c.drawdown, name="drawdown", fill="tozeroy", mode="lines")]
    )
    colours = ["#2a9d8f" if d.net_pnl >= 0 else "#e76f51" for d in days]
    daily = go.Figure(
        [go.Bar(x=[str(d.date) for d in days], y=[d.net_pnl for d in days], marker_color=colours)]
    )
    figs = [equity, drawdown, daily]
    units = ("₹ equity (UTC time)", "₹ below the peak", "₹ net PnL a day")
    for fig, title, unit in zip(figs, PLOTS, units, strict=True):
        fig.update_layout(
            title=f"{title} — broker {b.broker}", yaxis_title=unit, height=360,
            margin={"l": 60, "r": 20, "t": 50, "b": 40},
        )  # fmt: skip
    return figs


def _trades(b: BrokerReport) -> str:
    head = [
        "strategy", "instrument", "side", "entry (UTC)", "exit", "qty", "held", "entry px",
        "exit px", "gross", "fees", "net", "MAE", "MFE",
    ]  # fmt: skip
    rows = []
    for t in b.trades:
        cells: list[Any] = [
            t.strategy, t.symbol or t.instrument_token, t.direction, when(t.entry_time),
            when(t.exit_time) if t.exit_time else "open", t.quantity, span(t.holding_s),
            num(t.entry_price), num(t.exit_price), num(t.gross_pnl), num(t.fees),
            num(t.net_pnl), num(t.mae), num(t.mfe),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in cells) + "</tr>")
    ths = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _broker(b: BrokerReport, first: bool) -> str:
    parts = [f"<h2>Broker {html.escape(b.broker)}</h2>"]
    text = [
        f"capital {num(b.starting_cash)} → equity {num(b.final_equity)}, net "
        f"{num(b.total.net_pnl)}",
        *headline(b.total, b.starting_cash),
        "",
        *group_table("strategy", b.strategies),
        "",
        *group_table("instrument", b.instruments),
        "",
        *day_table(b.total),
    ]
    parts.append("<pre>" + html.escape("\n".join(text)) + "</pre>")
    for i, fig in enumerate(_figures(b)):
        js: bool | str = first and i == 0  # plotly.js inlined once, in the first figure
        parts.append(fig.to_html(full_html=False, include_plotlyjs=js))
    parts.append(f"<h3>Round trips ({len(b.trades)})</h3>")
    parts.append(_trades(b))
    return "\n".join(parts)


def render_html(r: Report) -> str:
    """One HTML page, openable offline."""
    c = r.conventions
    conv = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>"
        for k, v in c.model_dump().items()
    )
    body = [
        f"<h1>Alpha Panda run analysis</h1><p>{html.escape(r.run_dir)}<br>"
        f"{when(r.start)} → {when(r.end)} UTC, {r.trading_days} trading day(s)</p>",
        f"<details><summary>Conventions</summary><ul>{conv}</ul></details>",
    ]
    if not r.brokers:
        body.append("<p>No broker traded or had a strategy in this run.</p>")
    body += [_broker(b, i == 0) for i, b in enumerate(r.brokers)]
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Alpha Panda — {html.escape(r.run_dir)}</title><style>{STYLE}</style>"
        f"</head><body>{''.join(body)}</body></html>\n"
    )
