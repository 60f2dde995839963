"""``evolens analyze``: critical layers, mutation layers and stages of saved traces (the analysis detectors)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.analysis.aggregate import summarize
from evolens.analysis.baselines import BaselineMode, analyze_traces, by_depth
from evolens.analysis.params import DetectorParams
from evolens.cli.common import ConfigOption, app, examples, out
from evolens.cli.options import (
    FigureOutput,
    cells,
    detector_options,
    figure_options,
    new_table,
    progress_bar,
    say,
    trace_dirs,
)
from evolens.errors import SettingsError
from evolens.files import check_writable

if TYPE_CHECKING:
    from evolens.analysis.aggregate import AnalysisSummary, Estimate, ItemSummary
    from evolens.trace import Trace


def _estimate(est: Estimate, *, percent: bool = False) -> str:
    if not math.isfinite(est.value):
        return "–"
    fmt = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.1f}".removesuffix(".0"))
    if math.isfinite(est.ci_low) and math.isfinite(est.ci_high):
        return f"{fmt(est.value)} [{fmt(est.ci_low)}, {fmt(est.ci_high)}]"
    return fmt(est.value)


def _found(dist_found: int, n_tokens: int) -> str:
    return f"{dist_found}/{n_tokens}"


def _row(name: str, item: ItemSummary | AnalysisSummary, n_tokens: int) -> list[str]:
    d = item.distributions
    return [
        name,
        str(n_tokens),
        f"{_estimate(d['critical_layer_prob'].median)} ({_found(d['critical_layer_prob'].n_found, n_tokens)})",
        f"{_estimate(d['critical_layer_jsd'].median)} ({_found(d['critical_layer_jsd'].n_found, n_tokens)})",
        _estimate(item.mutation_rate, percent=True),
        _estimate(item.agreement_rate, percent=True),
    ]


def print_summary(summary: AnalysisSummary, max_rows: int) -> None:
    """The per-item table and the dataset row (medians with bootstrap intervals)."""
    level = f"{summary.level:.0%}"
    table = new_table(
        f"L = {summary.n_layers}: median layer [{level} bootstrap interval] (tokens found)",
        ("item", "tokens", "critical (prob)", "critical (JSD)", "with mutation", "agreement"),
    )
    shown = summary.items if max_rows == 0 else summary.items[:max_rows]
    for item in shown:
        table.add_row(*cells(*_row(item.item_id, item, item.n_tokens)))
    if len(shown) < len(summary.items):
        table.add_row(*cells(f"… {len(summary.items) - len(shown)} more items (--max-rows 0 shows all)"))
    if summary.n_items > 1:
        table.add_section()
        table.add_row(*cells(*_row(f"all {summary.n_items} items", summary, summary.n_tokens)))
    out.print(table)
    say(
        "critical: median state index (0 = embeddings); with mutation: share of tokens with a critical layer that "
        "have a mutation layer; agreement: probability- and JSD-based critical layers within tolerance"
        + ("; dataset intervals resample items" if summary.n_items > 1 else "")
    )


@app.command(
    "analyze",
    epilog=examples(
        "evolens analyze runs/dog",
        "evolens analyze runs/amber --summary runs/amber/analysis_summary.json --figure figs/layers",
        "evolens analyze runs/vqa --baseline dataset --mutation-rule jsd --spike-ratio 4",
        "evolens analyze runs/amber --config detectors.toml --no-write",
    ),
)
@detector_options
@figure_options
def analyze(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Trace directories, or run directories searched for traces", show_default=False),
    ],
    baseline: Annotated[
        BaselineMode,
        typer.Option(
            help="Layer baseline of the JSD spikes: trace (each trace's own), dataset (one per model over all "
            "traces given) or auto (dataset when most traces are too short for their own, e.g. one-word answers)"
        ),
    ] = "auto",
    write: Annotated[bool, typer.Option(help="Write analysis.json into each trace directory")] = True,
    summary: Annotated[
        Path | None, typer.Option(help="Also write the dataset summary (JSON) to this file")
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Also draw histograms of the detected layers (file stem or name)")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the intervals (0: none)", min=0)] = 2000,
    level: Annotated[float, typer.Option(help="Confidence level of the intervals")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap")] = 0,
    include_eos: Annotated[bool, typer.Option(help="Count the final EOS tokens in the summary")] = False,
    max_rows: Annotated[int, typer.Option(help="Items shown in the table (0: all)", min=0)] = 30,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
) -> None:
    """Detect critical layers, mutation layers and stages of every token of saved traces; write analysis.json next to each trace and print medians with bootstrap intervals per item and for the whole set.

    Definitions and defaults: README, "Detectors". The detectors read only the stored metrics (no model).
    """
    from evolens.report.runs import run_root_of
    from evolens.trace import Trace
    from evolens.viz import analysis_summary_figure

    if not 0.0 < level < 1.0:
        raise SettingsError(f"--level must be in (0, 1), got {level}")
    for output in (summary, figure):
        if output is not None:
            check_writable(output)
    dirs = trace_dirs(paths)
    traces: list[Trace] = []
    with progress_bar("loading traces", len(dirs)) as advance:
        for directory in dirs:
            trace = Trace.load(directory)
            params.check_depth(trace.n_layers)
            trace.hidden_states = trace.prompt_hidden_states = None  # only the metrics are needed
            traces.append(trace)
            advance(1)
    depths = sorted({t.n_layers for t in traces})
    if (summary is not None or figure is not None) and len(depths) > 1:
        raise SettingsError(
            f"the traces come from models of {len(depths)} depths {depths}; write summaries and figures for each "
            "model apart"
        )
    with progress_bar("analysing", len(traces)) as advance:
        analyses, lines = analyze_traces(traces, params, baseline, advance)
    # a run's items keep the analysis its merge wrote (the run's detector parameters and baseline rule, the one
    # its results/ agree with): rewriting them here would leave items/ and results/ disagreeing
    runs = {directory: run_root_of(directory) for directory in dirs}
    if write:
        for directory, analysis in zip(dirs, analyses, strict=True):
            if runs[directory] is None:
                analysis.save(directory)
    for line in lines:
        say(line)
    summaries = [
        summarize(group, n_boot=n_boot, level=level, seed=seed, include_eos=include_eos)
        for group in by_depth(analyses)
    ]
    for result in summaries:
        print_summary(result, max_rows)
    written = sum(root is None for root in runs.values())
    if write and written:
        say(f"wrote analysis.json into {written} trace director{'y' if written == 1 else 'ies'}")
    run_roots = sorted({str(root) for root in runs.values() if root is not None})
    if write and run_roots:
        say(
            f"left the analysis.json of {len(dirs) - written} run item(s) as their run wrote them (its detector "
            f"parameters and baseline rule, which its results/ follow); to re-analyse a run: evolens eval "
            f"{run_roots[0]} --detector-param KEY=VALUE"
        )
    if summary is not None:
        say(f"wrote {summaries[0].save(summary)}")
    if figure is not None:
        figure_output.write(analysis_summary_figure(summaries[0]), figure)
