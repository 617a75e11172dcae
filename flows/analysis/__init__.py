"""Post-run analysis of a run folder's ledger: the report (text, JSON, HTML) and the
comparison of runs. The stable API (the ``alpha-panda`` CLI calls only these):

- ``report(run_dir, risk_free=0.0) -> Report``: the analysis, a pydantic model
  (``Report.model_dump_json()`` is the JSON form);
- ``write_reports(run_dir, risk_free=0.0, analysed=None) -> dict[str, Path]``: writes
  ``report.txt``, ``analysis.json`` and ``report.html`` into the run folder (beside the
  flow's own ``report.json``, which it also carries under ``run``) and returns
  ``{"txt": path, "json": path, "html": path}``; pass ``analysed`` (a ``Report`` of that
  folder) to skip analysing it again;
- ``render_text(report) -> str``: the terminal form of a ``Report``;
- ``compare(run_dirs, risk_free=0.0) -> str``: runs side by side (config differences and
  headline metrics), as text.

A missing run folder raises ``FileNotFoundError``; ``compare`` of fewer than two folders
raises ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path

from flows.analysis.build import report
from flows.analysis.compare import compare
from flows.analysis.html import render_html
from flows.analysis.model import Report
from flows.analysis.render import render_json, render_text

REPORT_FILES = {"txt": "report.txt", "json": "analysis.json", "html": "report.html"}


def write_reports(
    run_dir: str | Path, risk_free: float = 0.0, analysed: Report | None = None
) -> dict[str, Path]:
    """Analyse ``run_dir`` (unless ``analysed`` is given) and write its report as text,
    JSON and HTML into it; returns the paths by form."""
    r = analysed if analysed is not None else report(run_dir, risk_free)
    root = Path(run_dir)
    forms = {"txt": render_text(r), "json": render_json(r), "html": render_html(r)}
    paths = {k: root / name for k, name in REPORT_FILES.items()}
    for k, body in forms.items():
        tmp = paths[k].with_suffix(".tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(paths[k])
    return paths


__all__ = ["REPORT_FILES", "Report", "compare", "render_text", "report", "write_reports"]
