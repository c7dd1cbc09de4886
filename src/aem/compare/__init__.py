"""``aem compare``: every algorithm with and without AEM over seeds, resumably, and the paper's
tables and figures (Table 1, Figures 2-4, entropy drift) in ``SWEEP/report/``."""

from __future__ import annotations

from aem.compare.report import Report, write_report
from aem.compare.settings import RunSpec, SweepSettings
from aem.compare.sweep import SweepProgress, SweepResult, run_sweep

__all__ = [
    "Report",
    "RunSpec",
    "SweepProgress",
    "SweepResult",
    "SweepSettings",
    "run_sweep",
    "write_report",
]
