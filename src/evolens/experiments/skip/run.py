"""The layer-skip experiment of the paper (§4.2, Fig. 5) on one or more items: the original generation traced,
each item's skip sets planned from its critical and mutation layers, every variant generated and compared with the
original."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.analysis.compare import Annotations
from evolens.analysis.params import DetectorParams
from evolens.api import LVLM, TraceOptions
from evolens.errors import PromptError, SettingsError, check_positive_int
from evolens.experiments.items import pair_items
from evolens.experiments.skip.chunks import ChunkStore, chunk_settings, items_digest
from evolens.experiments.skip.generate import generate_variants, trace_generation
from evolens.experiments.skip.methods import SkipMethod
from evolens.experiments.skip.options import SkipOptions
from evolens.experiments.skip.plans import SkipPlanner, plan_skips
from evolens.experiments.skip.results import (
    SkipReport,
    SkipResult,
    compare_variants,
    merge_reports,
    summarize_variants,
)

if TYPE_CHECKING:
    from evolens.trace import Trace


def run_skip(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    *,
    presets: Sequence[str] = ("skip1", "skip2", "skip3"),
    layers: Mapping[str, Sequence[int]] | None = None,
    critical: int | None = None,
    mutation: Sequence[int] | None = None,
    annotations: Annotations | Sequence[Annotations | None] | None = None,
    params: DetectorParams | None = None,
    method: SkipMethod = "hook",
    keep_last: int | None = None,
    mutation_min_fraction: float = 0.1,
    item_ids: Sequence[str] | None = None,
    progress: bool = False,
    options: TraceOptions | None = None,
) -> SkipReport:
    """The layer-skip experiment of the paper (Fig. 5) on one or more items.

    For each item: the original generation (traced, so its critical and mutation layers can be detected), then
    one generation per variant with the same decoding settings. The keywords are those of
    :class:`~evolens.experiments.skip.options.SkipOptions` (``options`` is its ``trace``), which
    :func:`skip_items` takes whole.

    Args:
        lvlm: The model.
        images: One image (path, PIL image or ``None``) or a sequence, one per prompt.
        prompts: One prompt, or one per image.
        presets: Paper presets to run (``skip1`` critical->mutation, ``skip2`` mutation layers only, ``skip3``
            critical->last ``keep_last``), derived per item from its detected layers
            (:func:`~evolens.analysis.layers.item_layers`) unless ``critical``/``mutation`` are given.
        layers: Extra named skip sets (1-based layers), the same for every item, e.g. ``{"mid": [10, 11]}``.
        critical: Use this critical layer (state index) for every item instead of detecting it.
        mutation: Use these mutation layers for every item instead of detecting them.
        annotations: Ground-truth/hallucination words, one for all items or one (or ``None``) per item.
        params: Detector parameters for the detected layers.
        method: ``"hook"`` or ``"rebuild"`` (module docstring).
        keep_last: Layers ``skip3`` keeps at the end (default ``max(1, round(5 / 32 * L))``).
        mutation_min_fraction: See :func:`~evolens.analysis.layers.item_layers`.
        item_ids: Names of the items.
        progress: Show a progress bar.
        options: How the originals are traced (:class:`~evolens.api.TraceOptions`; default: the defaults without
            keeping hidden states); the variants are generated with its decoding and prompt options.

    Raises:
        SettingsError: layers out of range, a skip set with every layer, ``critical`` not before ``mutation``, an
            unknown preset or variant names that collide.
    """
    skip = SkipOptions(
        presets=presets,
        layers=layers,
        critical=critical,
        mutation=mutation,
        params=params or DetectorParams(),
        method=method,
        keep_last=keep_last,
        mutation_min_fraction=mutation_min_fraction,
        trace=options,
    )
    return skip_items(
        lvlm, images, prompts, skip, annotations=annotations, item_ids=item_ids, progress=progress
    )


def skip_items(
    lvlm: LVLM,
    images: Any,
    prompts: str | Sequence[str],
    skip: SkipOptions,
    *,
    annotations: Annotations | Sequence[Annotations | None] | None = None,
    item_ids: Sequence[str] | None = None,
    progress: bool = False,
) -> SkipReport:
    """:func:`run_skip` with its options as one :class:`~evolens.experiments.skip.options.SkipOptions`.

    Raises:
        SettingsError: As :func:`run_skip`.
    """
    planner = plan_skips(
        lvlm.n_layers,
        skip.presets,
        skip.layers,
        critical=skip.critical,
        mutation=skip.mutation,
        params=skip.params,
        keep_last=skip.keep_last,
        mutation_min_fraction=skip.mutation_min_fraction,
    )
    image_list, prompt_list, ids, ann_list = _paired(images, prompts, item_ids, annotations)
    options = skip.trace_options
    baselines = lvlm.trace(images=image_list, prompts=prompt_list, item_ids=ids, options=options)
    found = [planner.item_layers(trace) for trace in baselines]
    plans = [planner.plan(il) for il in found]
    outputs = generate_variants(
        lvlm, image_list, prompt_list, plans, skip.method, progress=progress, options=options
    )
    results = [
        SkipResult(
            item_id=ids[i],
            prompt=prompt_list[i],
            image=_image_source(trace, image_list[i]),
            n_layers=planner.n_layers,
            method=skip.method,
            layers=found[i],
            variants=compare_variants(trace_generation(trace), plans[i], outputs[i], ann_list[i]),
            annotations=ann_list[i],
        )
        for i, trace in enumerate(baselines)
    ]
    return SkipReport(
        results, summarize_variants(results), _settings(lvlm, skip.method, planner, baselines[0])
    )


def run_skip_chunked(
    lvlm: LVLM,
    images: Sequence[Any],
    prompts: Sequence[str],
    skip: SkipOptions,
    *,
    chunk_size: int,
    annotations: Sequence[Annotations | None] | None = None,
    item_ids: Sequence[str] | None = None,
    extra_settings: Mapping[str, Any] | None = None,
    on_chunk: Callable[[int], None] | None = None,
    chunks_dir: str | Path | None = None,
) -> SkipReport:
    """:func:`skip_items` over consecutive chunks of ``chunk_size`` items (one image and prompt each), merged into
    one report (:func:`~evolens.experiments.skip.merge_reports`, its settings updated with ``extra_settings``).

    Each chunk is traced and its variants generated on their own, so memory stays bounded; ``on_chunk(n)`` is
    called after each chunk of ``n`` items (a progress bar), computed or loaded.

    With ``chunks_dir``, each finished chunk is written there (:class:`~evolens.experiments.skip.chunks.ChunkStore`)
    and a rerun loads the chunks already written instead of computing them again, so a killed run resumes; the
    merged report equals that of a run never interrupted.

    Raises:
        SettingsError: ``chunks_dir`` holds the chunks of a run with other settings (model, options, chunk size,
            items or ``extra_settings``), or as :func:`run_skip`.
        StoreError: A chunk file there is not this run's.
    """
    check_positive_int("chunk_size", chunk_size)
    n_items = len(prompts)
    names = list(item_ids) if item_ids is not None else [str(i) for i in range(n_items)]
    per_item = list(annotations) if annotations is not None else [None] * n_items
    store = None
    if chunks_dir is not None:
        digest = items_digest(names, prompts, images, per_item)
        settings = chunk_settings(lvlm.loaded.source, skip, chunk_size, digest, extra_settings)
        store = ChunkStore.open(chunks_dir, settings)
    reports = []
    for index, start in enumerate(range(0, n_items, chunk_size)):
        chunk = slice(start, start + chunk_size)
        report = store.load(index, names[chunk]) if store is not None else None
        if report is None:
            report = skip_items(
                lvlm, images[chunk], prompts[chunk], skip, annotations=per_item[chunk], item_ids=names[chunk]
            )
            if store is not None:
                store.save(index, names[chunk], report)
        reports.append(report)
        if on_chunk is not None:
            on_chunk(len(prompts[chunk]))
    return merge_reports(reports, extra_settings)


def _paired(
    images: Any,
    prompts: str | Sequence[str],
    item_ids: Sequence[str] | None,
    annotations: Annotations | Sequence[Annotations | None] | None,
) -> tuple[list[Any], list[str], list[str], list[Annotations | None]]:
    """The items paired up (images, prompts, ids, annotations: one each per item)."""
    image_list, prompt_list = pair_items(images, prompts)
    n_items = len(prompt_list)
    ids = [str(i) for i in (item_ids if item_ids is not None else range(n_items))]
    if len(ids) != n_items or len(set(ids)) != n_items:
        raise PromptError("item_ids must be unique and one per item")
    if annotations is None or isinstance(annotations, Annotations):
        return image_list, prompt_list, ids, [annotations] * n_items
    per_item = list(annotations)
    if len(per_item) != n_items:
        raise SettingsError(f"got {len(per_item)} annotations for {n_items} items")
    return image_list, prompt_list, ids, per_item


def _settings(lvlm: LVLM, method: str, planner: SkipPlanner, baseline: Trace) -> dict[str, Any]:
    """How the experiment ran, for the report (the decoding settings and lens as the original was traced)."""
    return {
        "model": lvlm.loaded.source,
        "method": method,
        **planner.settings(),
        "generation": baseline.generation.to_dict(),
        "lens": baseline.lens_mode,
        "params": planner.params.to_dict(),
    }


def _image_source(trace: Trace, image: Any) -> str | None:
    """Where the item's image came from: as its trace records it, else the input given (``None``: text only)."""
    if trace.image is not None:
        return trace.image.source
    return None if image is None else str(image)
