"""Draw the README's picture of the HTML run report (docs/report.png) from a run folder:
equity against buy-and-hold, drawdown, daily PnL, as the report's plots show them.

    pip install matplotlib          # for this picture only; not a dependency of the product
    python docs/pictures.py runs/<run> docs/report.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from flows.analysis import report


def draw(run: Path, out: Path) -> None:
    b = report(run).brokers[0]
    c, days = b.curve, b.total.days
    fig, (eq, dd, pnl) = plt.subplots(3, 1, figsize=(10, 8), height_ratios=[3, 1.5, 1.5])
    fig.suptitle(f"{run.name}: broker {b.broker}, net {b.total.net_pnl:,.2f}", fontsize=12)
    eq.plot(c.time, c.equity, label="equity", color="#1f77b4")
    eq.plot(c.time, c.benchmark, label="buy and hold", color="#999999", linestyle="--")
    eq.set_ylabel("₹")
    eq.legend(loc="lower left")
    dd.fill_between(c.time, c.drawdown, 0, color="#d62728", alpha=0.4)
    dd.set_ylabel("drawdown ₹")
    colours = ["#2ca02c" if d.net_pnl >= 0 else "#d62728" for d in days]
    pnl.bar([d.date for d in days], [d.net_pnl for d in days], color=colours)
    pnl.set_ylabel("daily net ₹")
    for ax in (eq, dd, pnl):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=8))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    fig.tight_layout()
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    draw(Path(sys.argv[1]), Path(sys.argv[2]))
