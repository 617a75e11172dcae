"""Post-run analysis of a run folder's ledger: the report (text, JSON, HTML) and the
comparison of runs. The stable API (the ``alpha-panda`` CLI calls only these):

- ``report(run_dir, risk_free=0.0) -> Report``: the analysis, a pydantic model;
- ``write_reports(run_dir, risk_free=0.0) -> dict[str, Path]``: writes ``report.txt``,
  ``report.json`` and ``report.html`` into the run folder and returns their paths;
- ``render_text(report) -> str``: the terminal form;
- ``compare(run_dirs, risk_free=0.0) -> str``: runs side by side (config differences and
  headline metrics), as text.
"""

from __future__ import annotations

from flows.analysis.build import report
from flows.analysis.model import Report

__all__ = ["Report", "report"]
