"""Figure and report commands: ``evolens report`` and ``evolens plot ...``, all reading saved traces."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evolens.cli.common import ConfigOption, app, examples, out
from evolens.cli.options import Dpi, TraceDirArg
from evolens.errors import SettingsError
from evolens.files import check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from evolens.trace import Trace

plot_app = typer.Typer(
    name="plot",
    help="Draw the paper's figures from saved traces (PNG, SVG or PDF).",
    no_args_is_help=True,
)
app.add_typer(plot_app, name="plot")

OutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Output file (.png, .svg or .pdf); without a suffix: PNG and SVG")
]
FormatOption = Annotated[
    list[str] | None,
    typer.Option("--format", "-f", help="Write these formats beside --out (repeat: -f png -f pdf)"),
]


def _check_reduction(reduction: str) -> None:
    if reduction not in ("bits", "paper"):
        raise SettingsError(f"--reduction must be bits or paper, got {reduction!r}")


def _save(fig: Figure, path: Path, formats: list[str] | None, dpi: int) -> None:
    from evolens.viz import save_figure

    for written in save_figure(fig, path, formats or None, dpi=dpi):
        out.print(f"wrote {written}", highlight=False, soft_wrap=True, markup=False)


def _load_trace(path: Path) -> Trace:
    from evolens.report import collect_trace_dirs
    from evolens.trace import Trace

    dirs = collect_trace_dirs([path])
    if len(dirs) != 1:
        raise SettingsError(f"{path} holds {len(dirs)} traces; give one trace directory, e.g. {dirs[0]}")
    return Trace.load(dirs[0])


def _read_extras(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"items": {item_id: extras}, "summary": {...}}`` from a JSON file; relative figure/image paths are
    resolved against the file's directory."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"extras file {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise SettingsError(f"cannot read extras file {path}: {err}") from None
    if not isinstance(data, dict) or set(data) - {"items", "summary"}:
        raise SettingsError(f"{path} must hold a JSON object with 'items' and/or 'summary'")
    items = data.get("items", {})
    summary = data.get("summary", {})
    if not isinstance(items, dict) or not isinstance(summary, dict):
        raise SettingsError(f"{path}: 'items' must map item ids to objects and 'summary' must be an object")

    def resolve(value: Any) -> Any:
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(path.parent / value)
        return value

    def fix(section: Mapping[str, Any]) -> dict[str, Any]:
        fixed = dict(section)
        for key in ("figures", "geometry"):
            if isinstance(fixed.get(key), list):
                fixed[key] = [
                    {**e, "figure": resolve(e.get("figure"))} if isinstance(e, dict) else e
                    for e in fixed[key]
                ]
        if isinstance(fixed.get("image"), str):
            fixed["image"] = resolve(fixed["image"])
        return fixed

    return {str(k): fix(v) if isinstance(v, dict) else v for k, v in items.items()}, fix(summary)


@app.command(
    epilog=examples(
        "evolens report runs/demo -o demo.html",
        "evolens report runs/a/traces/dog runs/b -o ab.html --title 'A vs B'",
        "evolens report runs/amber --extras analysis.json --max-items 200 -o amber.html",
        "evolens report runs/amber --config report.toml",
    )
)
def report(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Trace directories, or run directories searched for traces", show_default=False),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write")] = Path(
        "report.html"
    ),
    title: Annotated[str | None, typer.Option(help="Page title")] = None,
    topk: Annotated[int, typer.Option(help="Tokens per layer in the logit-lens grid", min=1)] = 5,
    from_layer: Annotated[
        int | None, typer.Option(help="First layer whose top-1 tokens are candidates (default: last 40%)")
    ] = None,
    max_items: Annotated[int | None, typer.Option(help="Report only the first N items", min=1)] = None,
    image_root: Annotated[
        Path | None, typer.Option(help="Where to look for images whose recorded path moved or is relative")
    ] = None,
    extras: Annotated[
        Path | None,
        typer.Option(
            help='JSON file {"items": {item_id: {...}}, "summary": {...}} of extra data (token values, flags, skip '
            "results, figures, tables)"
        ),
    ] = None,
    summary_figures: Annotated[bool, typer.Option(help="Draw the run summary figures")] = True,
    compress: Annotated[
        bool | None,
        typer.Option(help="gzip the embedded data (default: when it exceeds 4 MB); the browser unpacks it"),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Write ONE self-contained HTML report (no network; open it by double-click) for saved traces.

    Per item: the image, the generated text with every token coloured by its critical layer or stages (or another per-token value) and marked where a mutation layer was detected or the evaluation labelled it; click a token for its critical layers, mutations and stage bar, its candidates' probability curves, its JSD column and a logit-lens grid; the adjacent-layer JSD heatmap; skip and geometry results found beside a trace. A summary with the run's evaluation, layer statistics and figures links to every item.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from evolens.report import ReportOptions, collect_trace_dirs, write_report

    options = ReportOptions(
        title=title,
        topk=topk,
        from_layer=from_layer,
        max_items=max_items,
        image_root=image_root,
        summary_figures=summary_figures,
        compress=compress,
    )
    check_writable(out_file)  # before the items are read and drawn
    dirs = collect_trace_dirs(paths)
    item_extras, summary = _read_extras(extras) if extras is not None else ({}, {})
    total = len(dirs) if max_items is None else min(len(dirs), max_items)
    columns = (TextColumn("report"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True, disable=total < 3 or not out.is_terminal) as bar:
        task = bar.add_task("items", total=total)
        written = write_report(
            out_file,
            paths,  # run directories are read whole: items in run order, results, analyses
            options,
            extras=item_extras,
            summary=summary,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    size = written.stat().st_size / 1e6
    out.print(
        f"wrote {written} ({total} items, {size:.1f} MB)", highlight=False, soft_wrap=True, markup=False
    )


@plot_app.command(
    "tokens",
    epilog=examples(
        "evolens plot tokens runs/dog -o fig2.png",
        "evolens plot tokens runs/dog --step 5 --from-layer 20 -o tok5.svg",
    ),
)
def plot_tokens(
    trace_dir: TraceDirArg,
    out_path: OutOption,
    step: Annotated[
        list[int] | None, typer.Option("--step", "-s", help="Generation step(s) (default: the first 18)")
    ] = None,
    from_layer: Annotated[
        int | None, typer.Option(help="First layer whose top-1 tokens are candidates")
    ] = None,
    max_candidates: Annotated[int, typer.Option(help="Candidates drawn per step", min=1)] = 8,
    ncols: Annotated[int, typer.Option(help="Panels per row", min=1)] = 6,
    formats: FormatOption = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
) -> None:
    """Candidate token probabilities across layers (paper Fig. 2): one panel per step."""
    from evolens.viz import token_probability_grid, token_probability_trace_figure

    trace = _load_trace(trace_dir)
    if step and len(step) == 1:
        fig = token_probability_trace_figure(
            trace, step[0], from_layer=from_layer, max_candidates=max_candidates
        )
    else:
        fig = token_probability_grid(
            trace, step or None, from_layer=from_layer, ncols=ncols, max_candidates=max_candidates
        )
    _save(fig, out_path, formats, dpi)


@plot_app.command(
    "jsd",
    epilog=examples(
        "evolens plot jsd runs/dog -o fig4.png",
        "evolens plot jsd runs/dog --reduction paper -o fig4 -f png -f pdf",
    ),
)
def plot_jsd(
    trace_dir: TraceDirArg,
    out_path: OutOption,
    reduction: Annotated[
        str, typer.Option(help="bits (JSD in bits) or paper (the paper code's reduction)")
    ] = "bits",
    normalize: Annotated[
        str | None, typer.Option(help="none or maxabs (default: maxabs for paper, none for bits)")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Rows shown, the first N tokens (0: all)", min=0)] = 40,
    annotate: Annotated[bool, typer.Option(help="Write each cell's value")] = True,
    formats: FormatOption = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
) -> None:
    """Adjacent-layer JSD heatmap, tokens x layers (paper Fig. 4)."""
    from evolens.viz import jsd_trace_figure

    _check_reduction(reduction)
    if normalize not in (None, "none", "maxabs"):
        raise SettingsError(f"--normalize must be none or maxabs, got {normalize!r}")
    trace = _load_trace(trace_dir)
    fig = jsd_trace_figure(
        trace,
        reduction=reduction,  # type: ignore[arg-type]
        normalize=normalize,  # type: ignore[arg-type]
        max_tokens=max_tokens or None,
        annotate=annotate,
        title=f"{trace.item_id}: adjacent-layer JSD",
    )
    _save(fig, out_path, formats, dpi)


def _stored_probs(trace: Trace, step: int, token: str) -> tuple[Any, str]:
    """The ``[n_layers + 1]`` probabilities of ``token`` (a display string or an id) at ``step``, from the tracked
    tokens or the step's stored candidates."""
    stored: dict[int, Any] = {}
    for col, tid in enumerate(trace.metrics.tracked_ids.tolist()):
        stored[int(tid)] = trace.metrics.tracked_logprobs[:, step, col].exp()
    for col, tid in enumerate(trace.metrics.candidate_ids[step].tolist()):
        if tid >= 0:
            stored.setdefault(int(tid), trace.metrics.candidate_logprobs[:, step, col].exp())
    matches = [tid for tid in stored if token.isdigit() and tid == int(token)]
    matches = matches or [tid for tid in stored if trace.vocab.get(tid) == token]
    matches = matches or [tid for tid in stored if trace.vocab.get(tid, "").strip() == token.strip()]
    if not matches:
        known = ", ".join(repr(trace.vocab.get(t, t)) for t in stored)
        raise SettingsError(
            f"no stored probability for {token!r} at step {step}: trace with track=[{token!r}], or use one of {known}"
        )
    return stored[matches[0]], trace.vocab.get(matches[0], token)


@plot_app.command(
    "contrast",
    epilog=examples(
        "evolens plot contrast runs/dog --step 12 --correct camera --mutation-layer 26 -o fig3.png"
    ),
)
def plot_contrast(
    trace_dir: TraceDirArg,
    out_path: OutOption,
    step: Annotated[int, typer.Option("--step", "-s", help="Step of the hallucinated token")],
    correct: Annotated[str, typer.Option(help="The correct token (its text or id; tracked or a candidate)")],
    crossing_layer: Annotated[int | None, typer.Option(help="Mark this layer as the crossing layer")] = None,
    mutation_layer: Annotated[int | None, typer.Option(help="Mark this layer as the mutation layer")] = None,
    critical_layer: Annotated[int | None, typer.Option(help="Mark this layer as the critical layer")] = None,
    formats: FormatOption = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
) -> None:
    """A generated (hallucinated) token against the correct one across layers (paper Fig. 3)."""
    from evolens.viz import TokenContrast, hallucination_figure

    trace = _load_trace(trace_dir)
    if not 0 <= step < trace.n_steps:
        raise SettingsError(f"--step must be in [0, {trace.n_steps}), got {step}")
    probs, correct_text = _stored_probs(trace, step, correct)
    contrast = TokenContrast(
        hallucinated_probs=trace.token_probs()[:, step],
        correct_probs=probs,
        hallucinated_token=trace.tokens[step],
        correct_token=correct_text,
        crossing_layer=crossing_layer,
        mutation_layer=mutation_layer,
        critical_layer=critical_layer,
        title=f"{trace.item_id}, step {step}",
    )
    _save(hallucination_figure(contrast), out_path, formats, dpi)


@plot_app.command(
    "profile",
    epilog=examples("evolens plot profile runs/amber -o jsd_profile.svg"),
)
def plot_profile(
    paths: Annotated[list[Path], typer.Argument(help="Trace or run directories", show_default=False)],
    out_path: OutOption,
    reduction: Annotated[str, typer.Option(help="bits or paper")] = "bits",
    formats: FormatOption = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
) -> None:
    """Mean adjacent-layer JSD per decoder layer over every token of the traces (with the interquartile range)."""
    import torch

    from evolens.report import collect_trace_dirs
    from evolens.trace import Trace
    from evolens.viz import jsd_profile_figure

    _check_reduction(reduction)
    columns = []
    depths = set()
    for directory in collect_trace_dirs(paths):
        trace = Trace.load(directory)
        depths.add(trace.n_layers)
        columns.append(trace.jsd(reduction))  # type: ignore[arg-type]
    if len(depths) > 1:
        raise SettingsError(
            f"the traces come from models of different depths {sorted(depths)}; plot them apart"
        )
    units = "bits" if reduction == "bits" else "nats / |V|"
    fig = jsd_profile_figure({f"{len(columns)} traces": torch.cat(columns, dim=1)}, units=units)
    _save(fig, out_path, formats, dpi)
