"""``evolens decode``: decoding strategies over the same items, each traced as a run and compared with greedy — the
mitigation table (README, "Mitigation decoding: evolens decode")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.dataset import dataset_options
from evolens.cli.options import (
    OptionSpec,
    RichProgress,
    cells,
    load_options,
    new_table,
    option_group,
    say,
    trace_options,
)
from evolens.cli.run import MergeChoices, merge_options
from evolens.data import DatasetOptions
from evolens.runs.options import DecodeOptions

if TYPE_CHECKING:
    from evolens.hallucination.decode_results import DecodeResult


def _comparison(
    bootstrap: int = 2000, level: float = 0.95, examples: int = 5, reports: bool = True, cost_rounds: int = 5
) -> DecodeOptions:
    return DecodeOptions(
        n_bootstrap=bootstrap, level=level, n_examples=examples, reports=reports, cost_rounds=cost_rounds
    )


#: ``--bootstrap``, ``--level``, ``--examples``, ``--reports``, ``--cost-rounds``: how the strategies are compared, into ``comparison``.
comparison_options = option_group(
    [
        OptionSpec("bootstrap", int, 2000, "Paired item-bootstrap draws of each accuracy difference", min=1),
        OptionSpec("level", float, 0.95, "Confidence level of the intervals"),
        OptionSpec(
            "examples", int, 5, "Items with changed tokens kept per strategy (decode.json, report)", min=0
        ),
        OptionSpec(
            "reports",
            bool,
            True,
            "Also write each strategy's run report, DIR/reports/<name>.html",
            negatable=True,
        ),
        OptionSpec(
            "cost_rounds",
            int,
            5,
            "Rounds of the interleaved cost sample (every strategy on the first batch, in turn; 0: none)",
            min=0,
        ),
    ],
    "comparison",
    "Comparison",
    _comparison,
)


@app.command(
    "decode",
    epilog=examples(
        'evolens decode "$(evolens toy path)" -d toy -r toy_test -o runs/decode --strategies mutation-skip,dola,vcd',
        "evolens decode MODEL -d pope -r val2014 --questions pope.jsonl -o runs/pope-decode "
        "--strategies greedy,critical-contrast,icd --decoding-param icd.alpha=0.5",
    ),
)
@dataset_options(required=True, limit=True)
@comparison_options
@merge_options
@trace_options("max_new_tokens", "lens", "lens_dtype", "metrics_dtype", "topk", "batch_size", "compile")
@load_options
def decode_command(
    model: Annotated[str, typer.Argument(help="Local model directory or hub id")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Comparison directory (resumed if it exists)")],
    strategies: Annotated[
        str,
        typer.Option(
            help="Decoding strategies, comma-separated: greedy, mutation-skip, mutation-recompute, "
            "critical-contrast, dola, vcd, icd (greedy, the baseline, is added when not named)"
        ),
    ],
    decoding_param: Annotated[
        list[str] | None,
        typer.Option(help="A strategy's hyper-parameter, NAME.KEY=VALUE (repeat; e.g. vcd.alpha=0.5)"),
    ] = None,
    config: ConfigOption = None,
    *,
    comparison: DecodeOptions,
    merge: MergeChoices,
    trace: TraceOptions,
    load: LoadOptions,
    data: DatasetOptions,
) -> None:
    """Run decoding strategies over the same items — each an ordinary traced run in DIR/runs/<strategy> — and compare
    each with greedy: the benchmark's scores, accuracy and prior-driven answers, corrected and broken answers with a
    paired interval and McNemar's test, the time per token and the tokens that changed. Writes DIR/decode.json, the
    figure DIR/figures/decode and DIR/report.html; resumable.
    """
    from dataclasses import replace

    from evolens.files import check_writable
    from evolens.runs.decode import decode, decode_strategies

    chosen = decode_strategies(strategies, tuple(decoding_param or ()), trace=trace)
    check_writable(out_dir, directory=True)
    finalize = merge.options()
    quiet_transformers()
    result = decode(
        model,
        data.open(),
        out_dir,
        chosen,
        load=load,
        finalize=finalize,
        options=replace(comparison, figures=finalize.figures),
        limit=data.limit,
        progress=_BarPerStrategy(),
    )
    print_result(result)
    say(
        f"wrote {out_dir / 'decode.json'}"
        + (f", {out_dir / 'figures' / 'decode'}.png/.svg" if finalize.figures else "")
        + f" and {out_dir / 'report.html'}; each strategy's run is in {out_dir / 'runs'}"
    )


class _BarPerStrategy:
    """A fresh progress bar for each strategy's run (each shows its own rate and time remaining)."""

    def __init__(self) -> None:
        self.bar: RichProgress | None = None

    def start(self, total: int, completed: int, description: str) -> None:
        self.bar = RichProgress()
        self.bar.start(total, completed, description)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_result(result: DecodeResult) -> None:
    """The mitigation table (answers, then cost and changed tokens, so that each fits a terminal) and the
    benchmark's scores per strategy."""
    from evolens.hallucination.decode_results import mitigation_table, scores_table

    columns, rows = mitigation_table(result)
    cut = columns.index("ms/token")
    parts = (
        (
            f"Mitigation table: each strategy against {result.baseline} on the same items",
            columns[:cut],
            [r[:cut] for r in rows],
        ),
        (
            f"Cost and changed tokens against {result.baseline}",
            (columns[0], *columns[cut:]),
            [[r[0], *r[cut:]] for r in rows],
        ),
        ("Benchmark scores per strategy (% unless a count)", *scores_table(result)),
    )
    for title, heads, cells_ in parts:
        table = new_table(title, heads)
        for row in cells_:
            table.add_row(*cells(*row))
        out.print(table)
    say(f"time per token: {result.cost_includes}")
