"""Dataset commands: ``evolens run`` (trace a dataset into a resumable run directory) and ``evolens eval``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, out, quiet_transformers
from evolens.cli.dataset import dataset_options
from evolens.cli.options import OptionSpec, RichProgress, load_options, option_group, trace_options
from evolens.data import DatasetOptions
from evolens.data.protocols import DEFAULT_PROTOCOL, check_protocol
from evolens.errors import DatasetError, SettingsError
from evolens.runs.options import FinalizeOptions, detector_from_spec


@dataclass(frozen=True)
class MergeChoices:
    """How to merge a run, as the command line gives it (``run`` and ``eval`` share the group); :meth:`options`
    makes the library's :class:`~evolens.runs.options.FinalizeOptions` of it."""

    method: str = "auto"
    protocol: str = DEFAULT_PROTOCOL
    drop_unfinished: bool = False
    detector: str = "auto"
    detector_param: tuple[str, ...] = ()
    unit: str = "first_token"
    merge_metrics: bool = True
    figures: bool = True

    def options(self, base: DetectorParams | None = None) -> FinalizeOptions:
        """The finalize options; ``--detector-param`` entries apply over ``base`` (default: the defaults)."""
        return FinalizeOptions(
            method=self.method,  # type: ignore[arg-type]
            protocol=check_protocol(self.protocol),
            drop_unfinished=self.drop_unfinished,
            layer_detector=detector_from_spec(self.detector),
            detector_params=_detector_params(self.detector_param, base),
            unit=self.unit,  # type: ignore[arg-type]
            merge_metrics=self.merge_metrics,
            figures=self.figures,
        )


def _merge_choices(**values: Any) -> MergeChoices:
    values["detector_param"] = tuple(values.get("detector_param") or ())
    return MergeChoices(**values)


merge_options = option_group(
    [
        OptionSpec("method", str, "auto", "Text tools for evaluation: auto, exact or fallback"),
        OptionSpec(
            "protocol",
            str,
            DEFAULT_PROTOCOL,
            "Scoring: official (the benchmarks' own scripts, exactly) or evolens (README: Benchmark protocols)",
        ),
        OptionSpec(
            "drop_unfinished",
            bool,
            False,
            "CHAIR: drop a caption's unfinished last sentence first (OPERA's practice)",
        ),
        OptionSpec(
            "detector",
            str,
            "auto",
            "Per-token layer detector: auto (evolens.analysis, writes items/<id>/analysis.json), none, or "
            "'module:function' (Trace -> TokenLayers)",
        ),
        OptionSpec(
            "detector_param",
            list[str] | None,
            None,
            "A parameter of the auto detector, KEY=VALUE (repeat; e.g. first_layer=2, mutation_rule=jsd); eval: over "
            "the run's",
        ),
        OptionSpec("unit", str, "first_token", "Statistics unit: first_token or all_tokens"),
        OptionSpec("merge_metrics", bool, True, "Write the merged long table", negatable=True),
        OptionSpec(
            "figures", bool, True, "Draw the dataset figures into results/figures (PNG, SVG)", negatable=True
        ),
    ],
    "merge",
    "Evaluation and analysis",
    _merge_choices,
)


def _detector_params(entries: Sequence[str], base: DetectorParams | None = None) -> DetectorParams | None:
    """``KEY=VALUE`` pairs over ``base``; values are read as JSON (numbers, true/false) or else kept as text."""
    if not entries:
        return None
    params: dict[str, Any] = base.to_dict() if base is not None else {}
    for entry in entries:
        key, sep, raw = entry.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--detector-param must be KEY=VALUE, got {entry!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip().replace("-", "_")] = value
    return DetectorParams.from_dict(params)  # refuses unknown keys and bad values now


@app.command("run")
@dataset_options(required=True, limit=True)
@merge_options
@trace_options(
    "max_new_tokens",
    "lens",
    "lens_dtype",
    "metrics_dtype",
    "topk",
    "seed",
    "batch_size",
    "compile",
    "decoding",
    "decoding_param",
)
@load_options
def run_command(
    model: Annotated[str, typer.Argument(help="Local model directory or hub id")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory (resumed if it exists)")],
    hidden_states: Annotated[bool, typer.Option(help="Store hidden states (large)")] = False,
    retry_failed: Annotated[bool, typer.Option(help="Trace items recorded as failed again")] = False,
    config: ConfigOption = None,
    *,
    merge: MergeChoices,
    trace: TraceOptions,
    load: LoadOptions,
    data: DatasetOptions,
) -> None:
    """Trace a whole dataset into a run directory: resumable, sharded under torchrun, evaluated at the end.

    Every item is analysed when the run is merged (items/<id>/analysis.json, results/statistics.json, figures).

    Examples:
      evolens run llava-hf/llava-1.5-7b-hf -d amber -r AMBER/data -o runs/amber
      evolens run MODEL -d pope -r val2014 --questions pope.json -o runs/pope --detector-param mutation_rule=jsd
      torchrun --nproc-per-node 4 --no-python evolens run MODEL -d pope -r val2014 --questions pope.json -o runs/pope
    """
    import evolens
    from evolens.files import check_writable
    from evolens.parallel import dist_info

    check_writable(out_dir, directory=True)
    dataset = data.open()
    finalize = merge.options()
    quiet_transformers()
    summary = evolens.run(
        model,
        dataset,
        out_dir,
        trace=trace,
        load=load,
        finalize=finalize,
        limit=data.limit,
        hidden_states=hidden_states,
        retry_failed=retry_failed,
        progress=RichProgress() if dist_info().is_main else False,
    )
    rate = summary.items_per_s
    head = f"rank {summary.rank}/{summary.world_size}: " if summary.world_size > 1 else ""
    out.print(
        f"{head}{summary.n_traced} traced, {summary.n_failed} failed, {summary.n_skipped} already done "
        f"of {summary.n_assigned}" + (f" ({rate:.2f} items/s)" if rate else ""),
        highlight=False,
        soft_wrap=True,
    )
    if summary.results is not None:
        _print_results(summary.results, out_dir)


def _print_results(results: dict[str, Any], out_dir: Path) -> None:
    out.print(
        f"{results['done']} of {results['n_items']} items finished, {results['failed']} failed; "
        f"results in {out_dir / 'results'}",
        highlight=False,
        soft_wrap=True,
    )
    for line in results.get("evaluation_lines") or []:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for line in results.get("statistics") or []:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for line in (results.get("analysis") or {}).get("summary_lines") or []:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _read_responses(path: Path) -> dict[str, str]:
    """Responses from AMBER's format (a JSON list of {id, response}) or JSON Lines with an id and a text field."""
    from evolens.data.items import json_lines

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    try:
        entries = (
            json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in json_lines(text)]
        )
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{path} is neither a JSON list nor JSON Lines: {err.msg} at line {err.lineno}"
        ) from None
    responses: dict[str, str] = {}
    for index, entry in enumerate(entries):
        key = next(
            (
                k
                for k in ("item_id", "id", "question_id", "image_id")
                if isinstance(entry, dict) and k in entry
            ),
            None,
        )
        value = next(
            (k for k in ("response", "text", "answer", "caption") if isinstance(entry, dict) and k in entry),
            None,
        )
        if key is None or value is None or not isinstance(entry[value], str):
            raise DatasetError(
                f"{path}, entry {index}: expected an id (id/question_id/image_id) and a text (response/text)"
            )
        responses[str(entry[key])] = entry[value]
    return responses


@app.command("eval")
@dataset_options(required=False)
@merge_options
def eval_command(
    target: Annotated[Path | None, typer.Argument(help="A run directory (omit with --responses)")] = None,
    responses: Annotated[
        Path | None, typer.Option(help="Evaluate a responses file instead ({id, response} list or JSONL)")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the evaluation as JSON here")
    ] = None,
    config: ConfigOption = None,
    *,
    merge: MergeChoices,
    data: DatasetOptions | None,
) -> None:
    """Evaluate a run directory again (new text method, detector or detector parameters), or a file of responses.

    Examples:
      evolens eval runs/amber --method exact
      evolens eval runs/pope --detector-param mutation_rule=jsd --detector-param first_layer=2
      evolens eval --responses answers.json -d amber -r AMBER/data --queries query_all.json
    """
    from evolens.files import atomic_write_text, check_writable

    if json_out is not None:
        check_writable(json_out)
    if responses is not None:
        if data is None:
            raise SettingsError("--responses needs --dataset and --root to read the annotations")
        from evolens.data import evaluate_dataset

        options = merge.options()
        evaluation = evaluate_dataset(
            data.open(),
            _read_responses(responses),
            method=options.method,
            protocol=options.protocol,
            drop_unfinished=options.drop_unfinished,
        )
        for line in evaluation.summary_lines():
            out.print(line, markup=False, highlight=False, soft_wrap=True)
        if json_out is not None:
            atomic_write_text(json_out, json.dumps(evaluation.to_dict(), indent=1, ensure_ascii=False))
        return
    if target is None:
        raise SettingsError("give a run directory, or --responses FILE with --dataset and --root")
    from evolens.runs import finalize_run
    from evolens.store.results import detector_params_of

    base = detector_params_of(target) if merge.detector_param else None  # the others stay the run's
    results = finalize_run(target, merge.options(base))
    _print_results(results, target)
    if json_out is not None:
        atomic_write_text(json_out, (target / "results" / "evaluation.json").read_text(encoding="utf-8"))
