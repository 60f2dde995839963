"""The interactive, self-contained HTML report of a run (one file, no network, opened by double-click)::

    from evolens.report import ReportOptions, write_report

    write_report("report.html", "runs/demo")  # a run directory, trace directories or Trace objects
    write_report(
        "report.html",
        traces,
        ReportOptions(title="dogs", max_items=50),  # how it is rendered (title, grid, figures, compression)
        extras={"dog": {"token_values": {"critical layer": [...]}, "token_flags": {"hallucinated": [...]}}},
    )

A run directory is read whole: items in run order, its evaluation, statistics and analyses, and the ``analysis.json``
/ ``skip.json`` / ``geometry.json`` beside each trace. See :class:`ReportOptions` for the options, :func:`build_report`
for the inputs, :mod:`evolens.report.extras` for what later stages can add, and :mod:`evolens.report.figures` for a
run's dataset figures (written into ``results/figures`` by :func:`evolens.finalize_run`).
"""

from evolens.metrics.tokens import first_stable_top1_layer
from evolens.report.build import build_report, write_report
from evolens.report.escape import json_for_script
from evolens.report.figures import summary_figures, write_summary_figures
from evolens.report.inputs import collect_trace_dirs
from evolens.report.options import ReportOptions

__all__ = [
    "ReportOptions",
    "build_report",
    "collect_trace_dirs",
    "first_stable_top1_layer",
    "json_for_script",
    "summary_figures",
    "write_report",
    "write_summary_figures",
]
