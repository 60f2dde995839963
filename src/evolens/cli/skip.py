"""``evolens skip``: the layer-skipping experiment (paper §4.2, Fig. 5) on images or on a dataset's items."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from evolens.analysis.params import DetectorParams
from evolens.cli.common import ConfigOption, app, err_console, examples, out, quiet_transformers
from evolens.cli.dataset import (
    CaptionsOpt,
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
    Dpi,
    FigureFormats,
    cells,
    detector_options,
    new_table,
    parse_layers,
    parse_words,
    progress_bar,
    say,
    spinner,
    write_figure,
)
from evolens.errors import EvolensError, SettingsError
from evolens.files import check_writable, make_directory

if TYPE_CHECKING:
    from evolens.analysis.compare import Annotations
    from evolens.data.items import DataItem
    from evolens.experiments.skip import SkipReport, SkipResult

ALL_PRESETS = ("skip1", "skip2", "skip3")


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


def item_annotations(item: DataItem, resources: Mapping[str, Any]) -> Annotations | None:
    """What a dataset item says is in the image and what would be a hallucination, when it says so.

    AMBER generative items: its ``truth`` and ``hallu`` objects. COCO (CHAIR) items: the image's instance
    categories, and every other category of the dataset as hallucinations. Image-folder JSON Lines: ``truth`` /
    ``hallu`` (or ``ground_truth`` / ``hallucination``) lists. Others (yes/no questions): none.
    """
    from evolens.analysis import Annotations

    ann = item.annotations
    truth: list[str] | None = None
    hallu: list[str] = []
    if item.task == "amber-generative":
        truth, hallu = list(ann.get("truth", [])), list(ann.get("hallu", []))
    elif item.task == "chair":
        truth = list(ann.get("instance_objects", []))
        hallu = [c for c in resources.get("categories") or [] if c not in truth]
    else:
        for t_key, h_key in (("truth", "hallu"), ("ground_truth", "hallucination")):
            if isinstance(ann.get(t_key), list) or isinstance(ann.get(h_key), list):
                truth, hallu = list(ann.get(t_key) or []), list(ann.get(h_key) or [])
                break
    if truth is None:
        return None
    words = {w.lower() for w in truth}
    return Annotations.of(truth, [w for w in hallu if w.lower() not in words])


def merge_reports(reports: Sequence[SkipReport], extra_settings: Mapping[str, Any]) -> SkipReport:
    """One report from the reports of consecutive chunks of items (summaries recomputed over all items)."""
    from evolens.experiments.skip import SkipReport, summarize_variants

    results = [r for report in reports for r in report.results]
    settings = {**reports[0].settings, **extra_settings}
    return SkipReport(results, summarize_variants(results), settings)


def _fmt_layers(layers: Sequence[int]) -> str:
    from evolens.viz.results import _layer_ranges

    return _layer_ranges(layers) if layers else "–"


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


@app.command(
    "skip",
    epilog=examples(
        "evolens skip llava-hf/llava-1.5-7b-hf -i dog.jpg -p 'Please describe this image in detail.' -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe the image.' --layers 18-31 --layers mid=10-12 -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe.' --preset skip2 --critical 18 --mutation 27,28 -o runs/skip",
        "evolens skip MODEL -i dog.jpg -p 'Describe.' --truth dog,beach --hallu water,frisbee -o runs/skip",
        "evolens skip MODEL -d amber -r AMBER/data --images AMBER/image --limit 50 -o runs/amber_skip",
    ),
)
@detector_options
def skip(
    model: Annotated[str, typer.Argument(help="Local model directory or hub id")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output directory (skip.json and the figure)")],
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", "-i", help="Image file (repeat for several; omit: text only)"),
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", "-p", help="Prompt: one for every image, or one per image (repeat)"),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Paper presets, comma-separated: skip1 (critical->mutation), skip2 (mutation layers), skip3 "
            "(critical->last few); 'none' for none [default: all three, none with --layers]"
        ),
    ] = None,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            help="An explicit skip set of 1-based decoder layers, e.g. 18-31 or mid=10-12,14 (repeat)"
        ),
    ] = None,
    critical: Annotated[
        int | None, typer.Option(help="Critical layer (state index) for the presets instead of detecting it")
    ] = None,
    mutation: Annotated[
        str | None, typer.Option(help="Mutation layers for the presets instead of detecting them, e.g. 27,28")
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option(help="Layers skip3 keeps at the end [default: round(5/32 * L)]", min=1)
    ] = None,
    method: Annotated[
        Literal["hook", "rebuild"],
        typer.Option(
            help="hook (identity hooks, every family) or rebuild (a shorter stack, faster; checked)"
        ),
    ] = "hook",
    truth: Annotated[
        list[str] | None, typer.Option(help="Words of objects in the image (comma-separated; repeat)")
    ] = None,
    hallu: Annotated[
        list[str] | None, typer.Option(help="Words that would be hallucinations (comma-separated; repeat)")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset", "-d", help="Run on a dataset's items instead: folder | amber | pope | coco"
        ),
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
    limit: Annotated[int | None, typer.Option(help="Only the first N dataset items", min=1)] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens to generate", min=1)] = 128,
    lens: Annotated[Literal["logit", "paper"], typer.Option(help="Lens of the traced original")] = "logit",
    seed: Annotated[int, typer.Option(help="Sampling seed")] = 0,
    batch_size: Annotated[int, typer.Option(help="Items per generate call", min=1)] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickle-only checkpoints (unsafe)")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run code shipped with the checkpoint")] = False,
    show: Annotated[int, typer.Option(help="Items printed and drawn in the figure (0: all)", min=0)] = 4,
    max_chars: Annotated[int, typer.Option(help="Characters of each printed text (0: all)", min=0)] = 160,
    max_tokens: Annotated[int, typer.Option(help="Tokens of each text in the figure (0: all)", min=0)] = 0,
    mark_changes: Annotated[
        bool, typer.Option(help="Mark in blue where a variant departs from the original")
    ] = False,
    figure_images: Annotated[bool, typer.Option(help="Show the images in the figure")] = True,
    formats: FigureFormats = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
) -> None:
    """Generate with decoder layers replaced by the identity (paper §4.2, Fig. 5): the original output next to each variant, a token-level diff, a similarity score and, with annotations, the hallucinations corrected.

    Presets come from each item's detected critical and mutation layers (or --critical/--mutation). Writes
    OUT/skip.json (SkipReport) and the Fig. 5 table as OUT/skip.png and .svg. With --dataset the items (and their
    annotations: AMBER truth/hallu, COCO instance categories, JSON Lines truth/hallu fields) come from a dataset.
    """
    import evolens
    from evolens.analysis import Annotations
    from evolens.models.inputs import check_prompt, load_image
    from evolens.viz import skip_report_figure

    check_writable(out_dir, directory=True)  # before the model loads and the variants run
    presets = parse_presets(preset, have_layers=bool(layers))
    skip_sets = parse_skip_sets(layers)
    if not presets and not skip_sets:
        raise SettingsError("nothing to run: give --preset and/or --layers")
    mutation_layers = list(parse_layers(mutation, "--mutation")) if mutation else None
    if mutation_layers is not None and critical is None:
        raise SettingsError("--mutation needs --critical too")
    if critical is not None and not presets:
        raise SettingsError("--critical/--mutation set the presets' layers; give --preset too")
    truth_words, hallu_words = parse_words(truth), parse_words(hallu)

    dataset_info: dict[str, Any] = {}
    if dataset is not None:
        if image or (prompt and len(prompt) > 1):
            raise SettingsError(
                "--dataset brings its own images; leave out --image (one --prompt may replace theirs)"
            )
        if truth_words or hallu_words:
            raise SettingsError("--truth/--hallu are for --image items; a dataset brings its own annotations")
        if root is None:
            raise SettingsError("--dataset needs --root")
        data = parse_dataset_options(
            dataset,
            root,
            prompt=prompt[0] if prompt else None,
            jsonl=jsonl,
            queries=queries,
            images=images,
            questions=questions,
            template=template,
            captions=captions,
            instances=instances,
            synonyms=synonyms,
        ).open()
        items = list(itertools.islice(data, limit))
        if not items:
            raise SettingsError(f"the dataset under {root} has no items")
        resources = data.resources()
        readable = []
        for item in items:
            try:
                if item.image is not None:
                    load_image(item.image)
            except EvolensError as err:
                err_console.print(f"skipped item {item.item_id}: {err}", markup=False, highlight=False)
                continue
            readable.append(item)
        if not readable:
            raise SettingsError("no item of the dataset has a readable image")
        item_images: list[Any] = [i.image for i in readable]
        prompts = [i.prompt for i in readable]
        ids: list[str] | None = [i.item_id for i in readable]
        annotations: list[Annotations | None] = [item_annotations(i, resources) for i in readable]
        dataset_info = {"dataset": data.describe(), "items": len(readable)}
    else:
        if not prompt:
            raise SettingsError("give --prompt (and --image), or --dataset")
        for p in prompt:
            check_prompt(p)
        for path in image or ():
            load_image(path)
        item_images = list(image) if image else [None] * len(prompt)
        if len(prompt) not in (1, len(item_images)):
            raise SettingsError(
                f"give one --prompt, or one per --image: got {len(prompt)} for {len(item_images)}"
            )
        prompts = list(prompt) * (len(item_images) if len(prompt) == 1 else 1)
        ids = None
        given = Annotations.of(truth_words, hallu_words) if truth_words or hallu_words else None
        annotations = [given] * len(prompts)

    quiet_transformers()
    lvlm = evolens.load(
        model, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    options: dict[str, Any] = {
        "presets": presets,
        "layers": skip_sets or None,
        "critical": critical,
        "mutation": mutation_layers,
        "params": params,
        "method": method,
        "keep_last": keep_last,
        "max_new_tokens": max_new_tokens,
        "lens": lens,
        "seed": seed,
        "batch_size": batch_size,
    }
    n_items = len(prompts)
    names = ids if ids is not None else [str(i) for i in range(n_items)]
    reports = []
    with (
        progress_bar("skip experiment (items)", n_items) as advance,
        spinner("skip experiment") if n_items < 2 else nullcontext(),
    ):
        for start in range(0, n_items, batch_size):
            chunk = slice(start, start + batch_size)
            reports.append(
                evolens.run_skip(
                    lvlm,
                    item_images[chunk],
                    prompts[chunk],
                    annotations=annotations[chunk],
                    item_ids=names[chunk],
                    **options,
                )
            )
            advance(len(prompts[chunk]))
    report = merge_reports(reports, dataset_info)
    make_directory(out_dir)
    saved = report.save(out_dir / "skip.json")
    shown = report.results if show == 0 else report.results[:show]
    for result in shown:
        print_result(result, max_chars)
    if len(shown) < len(report.results):
        say(f"… {len(report.results) - len(shown)} more items in {saved} (--show 0 prints all)")
    if len(report.results) > 1:
        print_summary(report)
    say(f"wrote {saved}")
    fig = skip_report_figure(
        report,
        items=[r.item_id for r in shown],
        max_tokens=max_tokens or None,
        mark_changes=mark_changes,
        images=figure_images,
        title=f"layer skipping: {lvlm.loaded.source}",
    )
    write_figure(fig, out_dir / "skip", formats, dpi)
