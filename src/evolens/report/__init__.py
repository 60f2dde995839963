"""The interactive, self-contained HTML report of a run (one file, no network, opened by double-click)::

    from evolens.report import write_report

    write_report("report.html", "runs/demo")  # a run directory, trace directories or Trace objects
    write_report(
        "report.html",
        traces,
        extras={"dog": {"token_values": {"critical layer": [...]}, "token_flags": {"hallucinated": [...]}}},
    )

See :func:`build_report` for the options and :mod:`evolens.report.extras` for what later stages can add.
"""

from evolens.report.build import build_report, collect_trace_dirs, write_report
from evolens.report.escape import json_for_script
from evolens.report.payload import first_stable_top1_layer

__all__ = ["build_report", "collect_trace_dirs", "first_stable_top1_layer", "json_for_script", "write_report"]
