"""``python -m flows.analysis RUN``: write and print one run's report;
``python -m flows.analysis RUN RUN…``: compare runs."""

from __future__ import annotations

import argparse
import sys

from flows.analysis import compare, render_text, report, write_reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.analysis", description=__doc__)
    ap.add_argument("runs", nargs="+", help="run folder(s); two or more are compared")
    ap.add_argument("--risk-free", type=float, default=0.0, help="annual rate, e.g. 0.065")
    args = ap.parse_args(argv)
    try:
        if len(args.runs) > 1:
            sys.stdout.write(compare(args.runs, args.risk_free))
            return 0
        analysed = report(args.runs[0], args.risk_free)
        paths = write_reports(args.runs[0], args.risk_free, analysed)
    except FileNotFoundError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(render_text(analysed))
    sys.stdout.write(f"written: {', '.join(str(p) for p in paths.values())}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
