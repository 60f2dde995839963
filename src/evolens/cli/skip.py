"""``evolens skip``: the layer-skipping experiment (paper §4.2, Fig. 5) on images or on a dataset's items."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, err_console, examples, out, quiet_transformers
from evolens.cli.dataset import (
    CaptionsOpt,
    DataOptionOpt,
    IdsOpt,
    ImagesOpt,
    InstancesOpt,
    JsonlOpt,
    QueriesOpt,
    QuestionsOpt,
    SynonymsOpt,
    TemplateOpt,
    parse_dataset_options,
)
from evolens.cli.options import (
    FigureOutput,
    cells,
    experiment_options,
    figure_options,
    new_table,
    parse_layers,
    parse_words,
    progress_bar,
    say,
    spinner,
)
from evolens.data import READERS
from evolens.data.protocols import DEFAULT_PROTOCOL, check_protocol
from evolens.errors import EvolensError, SettingsError
from evolens.files import check_writable, make_directory

if TYPE_CHECKING:
    from evolens.data import AnnotatedItems, Dataset
    from evolens.experiments.skip import SkipOptions, SkipReport, SkipResult
    from evolens.hallucination.skip_judged import JudgeOptions, SkipJudged

ALL_PRESETS = ("skip1", "skip2", "skip3")
CHUNKS_DIR = "chunks"

ImageOpt = Annotated[
    list[Path] | None, typer.Option("--image", "-i", help="Image file (repeat for several; omit: text only)")
]
PromptsOpt = Annotated[
    list[str] | None,
    typer.Option("--prompt", "-p", help="Prompt: one for every image, or one per image (repeat)"),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        help="Paper presets, comma-separated: skip1 (critical->mutation), skip2 (mutation layers), skip3 "
        "(critical->last few); 'none' for none [default: all three, none with --layers]"
    ),
]
SkipSetsOpt = Annotated[
    list[str] | None,
    typer.Option(help="An explicit skip set of 1-based decoder layers, e.g. 18-31 or mid=10-12,14 (repeat)"),
]
CriticalOpt = Annotated[
    int | None, typer.Option(help="Critical layer (state index) for the presets instead of detecting it")
]
MutationOpt = Annotated[
    str | None, typer.Option(help="Mutation layers for the presets instead of detecting them, e.g. 27,28")
]
KeepLastOpt = Annotated[
    int | None, typer.Option(help="Layers skip3 keeps at the end [default: round(5/32 * L)]", min=1)
]
SkipMethodOpt = Annotated[
    Literal["hook", "rebuild"],
    typer.Option(help="hook (identity hooks, every family) or rebuild (a shorter stack, faster; checked)"),
]
TruthOpt = Annotated[
    list[str] | None, typer.Option(help="Words of objects in the image (comma-separated; repeat)")
]
HalluOpt = Annotated[
    list[str] | None, typer.Option(help="Words that would be hallucinations (comma-separated; repeat)")
]
ShowOpt = Annotated[int, typer.Option(help="Items printed and drawn in the figure (0: all)", min=0)]
MaxCharsOpt = Annotated[int, typer.Option(help="Characters of each printed text (0: all)", min=0)]
MaxTokensOpt = Annotated[int, typer.Option(help="Tokens of each text in the figure (0: all)", min=0)]
MarkChangesOpt = Annotated[bool, typer.Option(help="Mark in blue where a variant departs from the original")]
FigureImagesOpt = Annotated[bool, typer.Option(help="Show the images in the figure")]
ProtocolOpt = Annotated[
    str,
    typer.Option(
        help="With --dataset: judge every variant's answers under official (the benchmarks' own scripts) or "
        "evolens scoring (README: Benchmark protocols)"
    ),
]


def parse_presets(spec: str | None, *, have_layers: bool) -> tuple[str, ...]:
    """``"skip1,skip3"`` -> presets; ``"none"`` -> none; default: all three unless ``--layers`` sets are given."""
    if spec is None:
        return () if have_layers else ALL_PRESETS
    if spec.strip().lower() in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(p.strip() for p in spec.split(",") if p.strip()))
    unknown = [n for n in names if n not in ALL_PRESETS]
    if unknown:
        raise SettingsError(f"--preset: unknown preset(s) {unknown}; use skip1, skip2, skip3 or none")
    return names


def parse_skip_sets(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    """``["18-31", "mid=10-12"]`` -> ``{"layers 18–31": (...), "mid": (...)}`` (named skip sets, 1-based)."""
    sets: dict[str, tuple[int, ...]] = {}
    for spec in specs or ():
        name, eq, body = spec.partition("=")
        if not eq:
            name, body = "", spec
        layers = parse_layers(body, "--layers")
        name = name.strip() or f"layers {body.strip()}"
        if name in sets or name == "original" or name in ALL_PRESETS:
            raise SettingsError(f"--layers: the name {name!r} is taken; name the set with NAME=LAYERS")
        sets[name] = layers
    return sets


def skip_plan(
    preset: str | None, layers: Sequence[str] | None, critical: int | None, mutation: str | None
) -> SkipOptions:
    """``--preset``, ``--layers``, ``--critical`` and ``--mutation`` as :class:`~evolens.experiments.skip.SkipOptions`
    (the other options at their defaults)."""
    from evolens.experiments.skip import SkipOptions

    presets = parse_presets(preset, have_layers=bool(layers))
    skip_sets = parse_skip_sets(layers)
    if not presets and not skip_sets:
        raise SettingsError("nothing to run: give --preset and/or --layers")
    mutation_layers = parse_layers(mutation, "--mutation") if mutation else None
    if mutation_layers is not None and critical is None:
        raise SettingsError("--mutation needs --critical too")
    if critical is not None and not presets:
        raise SettingsError("--critical/--mutation set the presets' layers; give --preset too")
    return SkipOptions(presets=presets, layers=skip_sets or None, critical=critical, mutation=mutation_layers)


def image_items(
    image: Sequence[Path] | None,
    prompt: Sequence[str] | None,
    truth: Sequence[str] | None,
    hallu: Sequence[str] | None,
) -> AnnotatedItems:
    """``--image``/``--prompt`` items (one prompt for every image, or one per image), annotated with ``--truth``
    and ``--hallu``; the prompts and images are checked before the model loads."""
    from evolens.analysis import Annotations
    from evolens.data import AnnotatedItems
    from evolens.models.inputs import check_prompt, load_image

    if not prompt:
        raise SettingsError("give --prompt (and --image), or --dataset")
    for p in prompt:
        check_prompt(p)
    for path in image or ():
        load_image(path)
    images: list[Path | None] = list(image) if image else [None] * len(prompt)
    if len(prompt) not in (1, len(images)):
        raise SettingsError(f"give one --prompt, or one per --image: got {len(prompt)} for {len(images)}")
    prompts = list(prompt) * (len(images) if len(prompt) == 1 else 1)
    truth_words, hallu_words = parse_words(truth), parse_words(hallu)
    given = Annotations.of(truth_words, hallu_words) if truth_words or hallu_words else None
    return AnnotatedItems(images, prompts, [str(i) for i in range(len(prompts))], [given] * len(prompts))


def dataset_root(
    image: Sequence[Path] | None,
    prompt: Sequence[str] | None,
    truth: Sequence[str] | None,
    hallu: Sequence[str] | None,
    root: Path | None,
) -> Path:
    """``--root``, after refusing the options that do not go with ``--dataset``."""
    if image or (prompt and len(prompt) > 1):
        raise SettingsError(
            "--dataset brings its own images; leave out --image (one --prompt may replace theirs)"
        )
    if parse_words(truth) or parse_words(hallu):
        raise SettingsError("--truth/--hallu are for --image items; a dataset brings its own annotations")
    if root is None:
        raise SettingsError("--dataset needs --root")
    return root


def dataset_items(data: Dataset, root: Path, limit: int | None) -> tuple[AnnotatedItems, dict[str, Any]]:
    """The first ``limit`` items of ``data`` with a readable image (the others named on stderr), annotated, and
    the dataset's description for the report's settings."""
    from evolens.data import annotated_items

    def unreadable(item: Any, err: EvolensError) -> None:
        err_console.print(f"skipped item {item.item_id}: {err}", markup=False, highlight=False)

    items = list(itertools.islice(data, limit))
    if not items:
        raise SettingsError(f"the dataset under {root} has no items")
    inputs = annotated_items(items, data.resources(), on_unreadable=unreadable)
    return inputs, {"dataset": data.describe(), "items": len(inputs.prompts)}


def _fmt_layers(layers: Sequence[int]) -> str:
    from evolens.viz.results import layer_ranges

    return layer_ranges(layers) if layers else "–"


def print_result(result: SkipResult, max_chars: int) -> None:
    """One item's Fig. 5 row: a table of the variants (skipped layers, similarity, hallucinations), then each text."""
    layers = result.layers
    found = (
        f"critical {layers.critical_layer}, mutation {list(layers.mutation_layers) or 'none'} ({layers.source})"
        if layers is not None
        else "explicit skip sets"
    )
    columns = ["variant", "skipped", "similarity", "prefix"]
    annotated = result.annotations is not None
    if annotated:
        columns += ["hallucinated", "corrected", "introduced"]
    table = new_table(f"item {result.item_id}: {found}", columns)
    for v in result.variants:
        row = [
            v.name,
            _fmt_layers(v.skipped) if v.ran else "none",
            f"{v.similarity:.2f}",
            str(v.common_prefix),
        ]
        if annotated:
            h = v.hallucination
            row += (
                [
                    ", ".join(h.hallucinated) or "–",
                    ", ".join(h.corrected) or "–",
                    ", ".join(h.introduced) or "–",
                ]
                if h is not None
                else ["", "", ""]
            )
        table.add_row(*cells(*row))
    out.print(table)
    for v in result.variants:
        text = v.text if v.ran else "(nothing to skip: the original is reused)"
        if max_chars and len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        say(f"  {v.name}: {text}")


def print_summary(report: SkipReport) -> None:
    """The variants over every item: runs, mean similarity and shared prefix, hallucination totals."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"summary over {len(report.results)} items", title_justify="left")
    for column in (
        "variant",
        "items",
        "similarity",
        "prefix",
        "halluc.",
        "correct",
        "corrected",
        "introduced",
    ):
        table.add_column(column, overflow="fold")
    for s in report.summary:
        cells = (
            s.name,
            str(s.n_items),
            f"{s.mean_similarity:.3f}" if s.mean_similarity == s.mean_similarity else "–",
            f"{s.mean_common_prefix:.1f}" if s.mean_common_prefix == s.mean_common_prefix else "–",
            str(s.n_hallucinated),
            str(s.n_correct),
            str(s.n_corrected),
            str(s.n_introduced),
        )
        table.add_row(*(Text(c) for c in cells))
    out.print(table)
    say(
        "similarity and prefix: means over the items where the variant ran; the rest: totals over annotated items"
    )


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def judged_rows(judged: SkipJudged) -> list[list[str]]:
    """The judged table's rows: variant, task, items (ran), accuracy %, Δ vs original in points [interval],
    corrected, broken, prior-driven corrected/broken, McNemar p (``–`` for the original's comparison columns)."""
    rows = []
    for r in judged.rows:
        q, c = r.quality, r.comparison
        row = [r.variant, r.task, f"{q.n_judged} ({r.n_ran})", _pct(q.accuracy)]
        if c is None or c.difference is None:
            row += ["–"] * 5
        else:
            ci = "" if c.low is None or c.high is None else f" [{100 * c.low:+.1f}, {100 * c.high:+.1f}]"
            row += [f"{100 * c.difference:+.1f}{ci}", str(c.corrected), str(c.broken)]
            row += [f"{c.prior_corrected}/{c.prior_broken}", f"{c.mcnemar_p:.3g}"]
        rows.append(row)
    return rows


def print_judged(judged: SkipJudged, saved: Path) -> None:
    """Every variant judged on every task against the truth, compared with the original item by item."""
    settings = judged.settings
    level = round(100 * float(settings["level"]))
    columns = ["variant", "task", "items (ran)", "accuracy %", f"Δ vs original, points [{level}% CI]"]
    columns += ["corrected", "broken", "prior corr./broken", "McNemar p"]
    table = new_table(
        f"judged against the truth ({settings['n_judged']} items, {settings['protocol']} protocol)", columns
    )
    for row in judged_rows(judged):
        table.add_row(*cells(*row))
    out.print(table)
    say(
        "corrected: wrong in the original, right in the variant; broken: the reverse; prior: of those, the ones "
        "whose wrong answer was the prior's; items (ran): judged items (where the variant generated, not reused)"
    )
    say(f"wrote {saved}")


def run_items(
    lvlm: Any,
    inputs: AnnotatedItems,
    dataset_info: dict[str, Any],
    skip: SkipOptions,
    chunks_dir: Path | None = None,
) -> SkipReport:
    """:func:`~evolens.experiments.run_skip_chunked` over ``inputs`` in chunks of the trace's ``batch_size`` items,
    with a progress bar (a spinner for a single item); ``dataset_info`` joins the report's settings, and with
    ``chunks_dir`` finished chunks are kept there and reused (the run resumes)."""
    from evolens.experiments import run_skip_chunked

    n_items = len(inputs.prompts)
    with (
        progress_bar("skip experiment (items)", n_items) as advance,
        spinner("skip experiment") if n_items < 2 else nullcontext(),
    ):
        return run_skip_chunked(
            lvlm,
            inputs.images,
            inputs.prompts,
            skip,
            annotations=inputs.annotations,
            item_ids=inputs.item_ids,
            chunk_size=skip.trace_options.batch_size,
            extra_settings=dataset_info,
            on_chunk=advance,
            chunks_dir=chunks_dir,
        )


def print_report(report: SkipReport, saved: Path, show: int, max_chars: int) -> list[SkipResult]:
    """Print the first ``show`` items (0: all) and, over several items, the summary; returns the items shown."""
    shown = report.results if show == 0 else report.results[:show]
    for result in shown:
        print_result(result, max_chars)
    if len(shown) < len(report.results):
        say(f"… {len(report.results) - len(shown)} more items in {saved} (--show 0 prints all)")
    if len(report.results) > 1:
        print_summary(report)
    say(f"wrote {saved}")
    return shown


@app.command(
    "skip",
    epilog=examples(
        "evolens skip llava-hf/llava-1.5-7b-hf -i dog.jpg -p 'Please describe this image in detail.' -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe the image.' --layers 18-31 --layers mid=10-12 -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe.' --preset skip2 --critical 18 --mutation 27,28 -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe.' --truth dog,beach --hallu water,frisbee -o runs/skip",
        "evolens skip MODEL -d amber -r AMBER/data --images AMBER/image --limit 50 -o runs/amber_skip",
        "evolens skip MODEL -d toy -r toy_set --protocol official -o runs/toy_skip   # every task judged",
    ),
)
@experiment_options
@figure_options
def skip(
    model: Annotated[str, typer.Argument(help="Local model directory or hub id")],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Output directory (skip.json, the figure; chunks/ of a resumable run)"
        ),
    ],
    image: ImageOpt = None,
    prompt: PromptsOpt = None,
    preset: PresetOpt = None,
    layers: SkipSetsOpt = None,
    critical: CriticalOpt = None,
    mutation: MutationOpt = None,
    keep_last: KeepLastOpt = None,
    method: SkipMethodOpt = "hook",
    truth: TruthOpt = None,
    hallu: HalluOpt = None,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help=f"Run on a dataset's items instead: {' | '.join(READERS)}"),
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", "-r", help="Dataset root (with --dataset)")] = None,
    jsonl: JsonlOpt = None,
    queries: QueriesOpt = None,
    images: ImagesOpt = None,
    questions: QuestionsOpt = None,
    template: TemplateOpt = None,
    captions: CaptionsOpt = None,
    instances: InstancesOpt = None,
    synonyms: SynonymsOpt = None,
    data_option: DataOptionOpt = None,
    ids: IdsOpt = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N dataset items", min=1)] = None,
    protocol: ProtocolOpt = DEFAULT_PROTOCOL,
    show: ShowOpt = 4,
    max_chars: MaxCharsOpt = 160,
    max_tokens: MaxTokensOpt = 0,
    mark_changes: MarkChangesOpt = False,
    figure_images: FigureImagesOpt = True,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
    trace: TraceOptions,
    load: LoadOptions,
) -> None:
    """Generate with decoder layers replaced by the identity (paper §4.2, Fig. 5): the original output next to each variant, a token-level diff, a similarity score and, with annotations, the hallucinations corrected.

    Presets come from each item's detected critical and mutation layers (or --critical/--mutation). Writes
    OUT/skip.json (SkipReport) and the Fig. 5 table as OUT/skip.png and .svg. With --dataset the items (and their
    annotations: AMBER truth/hallu, COCO instance categories, JSON Lines truth/hallu fields) come from a dataset,
    and every variant's answers are judged against its truth on every task (AMBER, POPE, CHAIR, VQA; --protocol)
    and compared with the original item by item: OUT/skip_judged.json and the figure OUT/skip_judged.png/.svg.
    A dataset run (or items over several --batch-size batches) keeps each finished batch in OUT/chunks/ and
    resumes: a rerun into the same OUT computes only the missing batches, and refuses other settings.
    """
    from evolens.hallucination.skip_judged import JudgeOptions
    from evolens.viz import skip_report_figure

    check_writable(out_dir, directory=True)  # before the model loads and the variants run
    plan = skip_plan(preset, layers, critical, mutation)
    judge = JudgeOptions(protocol=check_protocol(protocol))
    data: Dataset | None = None
    if dataset is None:
        inputs, dataset_info = image_items(image, prompt, truth, hallu), dict[str, Any]()
    else:
        root = dataset_root(image, prompt, truth, hallu, root)
        flags: dict[str, Any] = {"jsonl": jsonl, "queries": queries, "images": images, "questions": questions}
        flags |= {"template": template, "captions": captions, "instances": instances, "synonyms": synonyms}
        prompt_flag = prompt[0] if prompt else None
        data = parse_dataset_options(
            dataset, root, data_option=data_option, ids=ids, prompt=prompt_flag, **flags
        ).open()
        inputs, dataset_info = dataset_items(data, root, limit)
    quiet_transformers()
    lvlm = load.open(model)
    skip_options = replace(
        plan,
        params=params,
        method=method,
        keep_last=keep_last,
        trace=replace(trace, keep_hidden_states=False),
    )
    report = run_items(lvlm, inputs, dataset_info, skip_options, chunks_path(out_dir, data, inputs, trace))
    make_directory(out_dir)
    saved = report.save(out_dir / "skip.json")
    shown = print_report(report, saved, show, max_chars)
    fig = skip_report_figure(
        report,
        items=[r.item_id for r in shown],
        max_tokens=max_tokens or None,
        mark_changes=mark_changes,
        images=figure_images,
        title=f"layer skipping: {lvlm.loaded.source}",
    )
    figure_output.write(fig, out_dir / "skip")
    if data is not None:
        judge_report(report, data, judge, out_dir, figure_output)


def chunks_path(
    out_dir: Path, data: Dataset | None, inputs: AnnotatedItems, trace: TraceOptions
) -> Path | None:
    """Where a resumable run keeps its finished chunks: ``OUT/chunks`` for a dataset, or items over more than one
    batch (``None``: a single batch of ``--image`` items runs whole)."""
    if data is None and len(inputs.prompts) <= trace.batch_size:
        return None
    return out_dir / CHUNKS_DIR


def judge_report(
    report: SkipReport, data: Dataset, options: JudgeOptions, out_dir: Path, figure_output: FigureOutput
) -> None:
    """Judge every variant of ``report`` against ``data``'s truth; write, print and draw it (or say that no item
    has an evaluator)."""
    from evolens.hallucination.skip_judged import judge_skip, variant_names
    from evolens.viz.skip import skip_judged_figure

    with progress_bar("judging the variants against the truth", len(variant_names(report))) as advance:
        judged = judge_skip(report, data, options, on_variant=lambda _: advance(1))
    if not judged.rows:
        say("not judged: no item of the dataset has an evaluator (a task annotation)")
        return
    saved = judged.save(out_dir / "skip_judged.json")
    print_judged(judged, saved)
    figure_output.write(skip_judged_figure(judged), out_dir / "skip_judged")
