"""``evolens detect RUN_DIR``: token-level hallucination detectors scored against the run's labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from evolens.cli.common import ConfigOption, app, examples, out
from evolens.cli.options import cells, new_table, say
from evolens.hallucination.detect_results import estimate_text

if TYPE_CHECKING:
    from evolens.hallucination.detect_results import DetectResult


def print_result(result: DetectResult) -> None:
    """One table per set of tokens (all errors, then each error group) and the hidden-state probe per layer."""
    families = {s.name: s.family for s in result.signals}
    for chosen in result.tables:
        table = new_table(
            f"{chosen.name}: {chosen.n_hallucinated} hallucinated vs {chosen.n_grounded} grounded tokens, "
            f"{chosen.n_items} items (AUPRC of chance {chosen.prevalence:.3f})",
            ("signal", "family", "AUROC [95% CI]", "AUPRC [95% CI]"),
        )
        for score in chosen.scores:
            table.add_row(*cells(score.name, families.get(score.name, ""), estimate_text(score.auroc),
                                 estimate_text(score.auprc)))  # fmt: skip
        out.print(table)
    curve = result.hidden_curve
    if curve is not None:
        table = new_table(
            "hidden-state probe per layer (out-of-fold)", ("layer", "AUROC [95% CI]", "bal. acc.")
        )
        for layer, auroc, accuracy in zip(curve.layers, curve.auroc, curve.balanced_accuracy, strict=True):
            table.add_row(*cells(str(layer), estimate_text(auroc), f"{accuracy:.3f}"))
        out.print(table)
    say(
        "higher score = more likely hallucinated (each signal's direction: README, 'evolens detect'); intervals: "
        f"{result.options.n_bootstrap} bootstrap replicates over items; probes: {result.options.n_folds}-fold "
        "cross-validation grouped by item"
    )


@app.command(
    "detect",
    epilog=examples(
        "evolens detect runs/toy",
        "evolens detect runs/demo --no-hidden-probe",
        "evolens detect runs/amber --unit all_tokens --folds 3 --bootstrap 2000",
    ),
)
def detect(
    run_dir: Annotated[Path, typer.Argument(help="A merged run directory", show_default=False)],
    unit: Annotated[
        Literal["first_token", "all_tokens"],
        typer.Option(help="Tokens scored: each judged word's first token, or all its tokens"),
    ] = "first_token",
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap replicates over items (0: no intervals)", min=0)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the folds")] = 0,
    folds: Annotated[
        int, typer.Option(help="Folds of the probes' cross-validation, grouped by item", min=2)
    ] = 5,
    metric_probe: Annotated[bool, typer.Option(help="Fit the probe on the per-layer metric profile")] = True,
    hidden_probe: Annotated[
        bool,
        typer.Option(
            help="Fit a probe on each layer's hidden state (needs a run saved with --hidden-states)"
        ),
    ] = True,
    probes: Annotated[bool, typer.Option(help="--no-probes leaves both probes out")] = True,
    figures: Annotated[bool, typer.Option(help="Draw the ROC and probe figures into results/figures")] = True,
    config: ConfigOption = None,
) -> None:
    """Score hallucination detectors on a run's judged tokens — baselines (final probability, entropy, rank margin), the paper's layer signals and grouped cross-validated probes — with AUROC and AUPRC and item-bootstrap intervals; write results/detect.json.

    Definitions: README, "evolens detect".
    """
    from evolens.hallucination.detect_results import DetectOptions
    from evolens.runs.detect import DETECT_JSON, detect_run

    options = DetectOptions(
        unit=unit, n_bootstrap=bootstrap, seed=seed, n_folds=folds, metric_probe=metric_probe and probes,
        hidden_probe=hidden_probe and probes,
    )  # fmt: skip
    result = detect_run(run_dir, options, figures=figures)
    print_result(result)
    say(
        f"wrote {run_dir / 'results' / DETECT_JSON}"
        + (" and its figures in results/figures" if figures else "")
    )
