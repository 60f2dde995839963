"""The directory of a stage-based compression run (``evolens compress``, issue 18): its settings, its stage and
its finished cells, so that a run killed mid-way resumes without losing or repeating a cell (the plan and the timed
generations: :mod:`evolens.experiments.compress`; the judged curve: :mod:`evolens.runs.compress`).

A compress directory holds ``settings.json`` (what was asked: the directory refuses other settings),
``stage.json`` (the stabilisation stage found by the traced pass, so a resumed run does not trace again),
``cells/<name>.json`` (one finished generation of every item per cell, written atomically when it finishes; a rerun
skips them) and ``compress.json`` (:class:`~evolens.runs.compress.CompressResult`, the judged curve, rewritten
from the cells at the end).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.analysis.params import DetectorParams
from evolens.api import TraceOptions
from evolens.data.annotations import annotated_items
from evolens.data.protocols import DEFAULT_PROTOCOL, Protocol, check_protocol
from evolens.data.text import MethodName
from evolens.envelope import Envelope
from evolens.errors import SettingsError, StoreError, check_positive_int
from evolens.experiments.compress import (
    Cell,
    Stage,
    TimedGeneration,
    check_ks,
    choose_method,
    detect_stage,
    generate_timed,
    parse_stage,
    plan_cells,
)
from evolens.experiments.skip.generate import Generation
from evolens.experiments.skip.methods import SkipMethod
from evolens.files import make_directory

if TYPE_CHECKING:
    from evolens.api import LVLM
    from evolens.data.items import DataItem, Dataset

logger = logging.getLogger(__name__)

SETTINGS_FILE, STAGE_FILE, CELLS_DIR = "settings.json", "stage.json", "cells"
SETTINGS = Envelope("compress settings file", schema=1, kinds=("evolens.compress_settings",))
STAGE = Envelope("compress stage file", schema=1, kinds=("evolens.compress_stage",))
CELL = Envelope("compress cell", schema=1, kinds=("evolens.compress_cell",))


@dataclass(frozen=True)
class CompressOptions:
    """What ``evolens compress`` runs (defaults in brackets).

    Attributes:
        ks: Values of ``k`` (layers removed) [None: ``1 ..`` the stage's length].
        random_draws: Seeded random draws per ``k``, averaged [5].
        seed: Seed of the random draws [0].
        method: ``"rebuild"``, ``"hook"`` or ``None``: rebuild where the family supports it, else hook with a
            note (:func:`~evolens.experiments.compress.choose_method`) [None].
        stage: The stage's layers as ``"A-B"`` (1-based decoder layers) instead of detecting them [None].
        params: Detector parameters of the detected stage.
        protocol: Benchmark protocol of the judging ["evolens"].
        text_method: Text tools of the judging: ``"auto"``, ``"exact"`` or ``"fallback"`` ["auto"].
        n_bootstrap: Item resamples of the paired intervals against the full model [2000].
    """

    ks: tuple[int, ...] | None = None
    random_draws: int = 5
    seed: int = 0
    method: SkipMethod | None = None
    stage: str | None = None
    params: DetectorParams = field(default_factory=DetectorParams)
    protocol: Protocol = DEFAULT_PROTOCOL
    text_method: MethodName = "auto"
    n_bootstrap: int = 2000

    def __post_init__(self) -> None:
        check_positive_int("random draws", self.random_draws)
        if self.ks is not None:
            object.__setattr__(self, "ks", tuple(self.ks))
            for k in self.ks:
                check_positive_int("k", k)
        if self.method not in (None, "hook", "rebuild"):
            raise SettingsError(f"unknown method {self.method!r}; use rebuild or hook")
        check_protocol(self.protocol)
        if (
            isinstance(self.n_bootstrap, bool)
            or not isinstance(self.n_bootstrap, int)
            or self.n_bootstrap < 0
        ):
            raise SettingsError(f"n_bootstrap must be an integer >= 0, got {self.n_bootstrap!r}")

    def generation_settings(self) -> dict[str, Any]:
        """The fields that change what is generated (the judging ones left out: a rerun may judge anew)."""
        return {
            "ks": list(self.ks) if self.ks is not None else None,
            "random_draws": self.random_draws,
            "seed": self.seed,
            "method": self.method,
            "stage": self.stage,
            "params": self.params.to_dict(),
        }


@dataclass
class CompressJob:
    """A prepared compress directory: the items, their stage, every cell to run and the method.

    Attributes:
        directory: The compress directory.
        items: The items generated (readable ones, dataset order).
        stage: The stabilisation stage.
        cells: Every cell, in running order.
        method: The removal method of every cell.
        method_note: Why the method fell back to ``"hook"`` (``None``: it did not).
        settings: What was asked (``settings.json``).
    """

    directory: Path
    items: list[DataItem]
    stage: Stage
    cells: list[Cell]
    method: SkipMethod
    method_note: str | None
    settings: dict[str, Any]

    def cell_path(self, cell: Cell) -> Path:
        return self.directory / CELLS_DIR / f"{cell.name}.json"

    def todo(self) -> list[Cell]:
        """The cells not finished yet, in running order."""
        return [c for c in self.cells if not self.cell_path(c).is_file()]


def compress_settings(
    lvlm: LVLM, dataset: Dataset, items: Sequence[DataItem], options: CompressOptions, trace: TraceOptions
) -> dict[str, Any]:
    """What the generations depend on: a directory holding other settings is refused (:func:`check_settings`)."""
    digest = hashlib.sha256("\n".join(i.item_id for i in items).encode("utf-8")).hexdigest()
    return {
        "model": lvlm.loaded.source,
        "dataset": dataset.describe(),
        "n_items": len(items),
        "item_ids_sha256": digest,
        **options.generation_settings(),
        "generation": trace.generation.to_dict(),
        "batch_size": trace.batch_size,
        "raw_prompt": trace.raw_prompt,
        "system_prompt": trace.system_prompt,
        "lens": trace.lens,
    }


def check_settings(directory: Path, settings: dict[str, Any]) -> bool:
    """Whether ``directory`` already holds a compress run with these ``settings`` (``False``: none yet).

    Raises:
        SettingsError: the directory holds a compress run with other settings (those that differ named).
        StoreError: its settings file cannot be read as one.
    """
    path = directory / SETTINGS_FILE
    if not path.is_file():
        return False
    stored = SETTINGS.read(path)
    differ = [k for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k)]
    if differ:
        raise SettingsError(
            f"{directory} holds a compress run with other settings ({', '.join(differ)} differ); rerun with the "
            "same settings to resume, or give another --out"
        )
    return True


def readable_items(dataset: Dataset, limit: int | None = None) -> list[DataItem]:
    """The first ``limit`` items of ``dataset`` whose image opens (or that have none); the others are logged.

    Raises:
        SettingsError: no item is readable.
    """
    import itertools

    items = list(itertools.islice(dataset, limit))
    if not items:
        raise SettingsError("the dataset has no items")

    def unreadable(item: Any, err: Exception) -> None:
        logger.warning("skipped item %s: %s", item.item_id, err)

    keep = set(annotated_items(items, dataset.resources(), on_unreadable=unreadable).item_ids)
    return [i for i in items if i.item_id in keep]


def prepare_compress(
    lvlm: LVLM,
    dataset: Dataset,
    directory: str | Path,
    *,
    options: CompressOptions | None = None,
    trace: TraceOptions | None = None,
    limit: int | None = None,
    items: Sequence[DataItem] | None = None,
    on_items: Callable[[int], None] | None = None,
) -> CompressJob:
    """Check the settings against ``directory``, find the stage (traced, or read from ``stage.json``) and plan the
    cells. The items are ``items`` when given (:func:`readable_items` of ``dataset``, ``limit`` applied), else
    read here; ``on_items(n)`` after each traced batch (none when the stage is read back).

    Raises:
        SettingsError: bad settings, ``--stage``/``k`` out of range, a directory with other settings, rebuild
            asked for where it cannot work.
    """
    options, trace = options or CompressOptions(), trace or TraceOptions()
    directory = Path(directory)
    given = parse_stage(options.stage, lvlm.n_layers) if options.stage is not None else None
    if given is not None:  # refuse a k out of range before tracing
        check_ks(options.ks, range(given[0], given[1] + 1))
    items = list(items) if items is not None else readable_items(dataset, limit)
    settings = compress_settings(lvlm, dataset, items, options, trace)
    resumed = check_settings(directory, settings)
    stage_path = directory / STAGE_FILE
    if resumed and stage_path.is_file():
        stage = Stage.from_dict(STAGE.read(stage_path))
    else:
        stage = detect_stage(
            lvlm,
            [i.image for i in items],
            [i.prompt for i in items],
            item_ids=[i.item_id for i in items],
            params=options.params,
            options=trace,
            given=given,
            on_items=on_items,
        )
    cells = plan_cells(stage, options.ks, n_draws=options.random_draws, seed=options.seed)
    method, note = choose_method(lvlm, cells, options.method)
    if not resumed:  # written only once everything asked is known to be valid
        make_directory(directory / CELLS_DIR)
        SETTINGS.write(directory / SETTINGS_FILE, "evolens.compress_settings", settings)
    if not stage_path.is_file():
        STAGE.write(stage_path, "evolens.compress_stage", stage.to_dict())
    return CompressJob(directory, items, stage, cells, method, note, settings)


def run_cells(
    lvlm: LVLM,
    job: CompressJob,
    *,
    trace: TraceOptions | None = None,
    on_cell: Callable[[Cell], None] | None = None,
) -> None:
    """Generate and time every unfinished cell of ``job``, each written to ``cells/<name>.json`` atomically as it
    finishes; ``on_cell(cell)`` after each (a progress bar)."""
    trace = trace or TraceOptions()
    images, prompts = [i.image for i in job.items], [i.prompt for i in job.items]
    for cell in job.todo():
        timed = generate_timed(lvlm, images, prompts, cell.layers, method=job.method, options=trace)
        CELL.write(job.cell_path(cell), "evolens.compress_cell", _cell_record(cell, job, timed))
        if on_cell is not None:
            on_cell(cell)


def _cell_record(cell: Cell, job: CompressJob, timed: TimedGeneration) -> dict[str, Any]:
    return {
        "cell": cell.to_dict(),
        "method": job.method,
        "seconds": timed.seconds,
        "cpu_seconds": timed.cpu_seconds,
        "n_tokens": timed.n_tokens,
        "outputs": [
            {
                "item_id": item.item_id,
                "text": g.text,
                "tokens": g.tokens,
                "token_ids": g.token_ids,
                "stop_reason": g.stop_reason,
            }
            for item, g in zip(job.items, timed.generations, strict=True)
        ],
    }


def read_cell(job: CompressJob, cell: Cell) -> TimedGeneration:
    """A finished cell read back (its layers and items checked against the plan).

    Raises:
        StoreError: the file is not the cell planned (other layers or items).
    """
    path = job.cell_path(cell)
    data = CELL.read(path)
    if Cell.from_dict(data["cell"]) != cell or data.get("method") != job.method:
        raise StoreError(
            f"{path} holds another cell than planned ({data['cell']}); delete it to run it again"
        )
    outputs = data["outputs"]
    if [o["item_id"] for o in outputs] != [i.item_id for i in job.items]:
        raise StoreError(f"{path} holds other items than the run's; delete it to run it again")
    generations = [
        Generation(str(o["text"]), [str(t) for t in o["tokens"]], [int(t) for t in o["token_ids"]],
                   str(o["stop_reason"]))
        for o in outputs
    ]  # fmt: skip
    cpu = data.get("cpu_seconds")
    return TimedGeneration(
        generations, float(data["seconds"]), int(data["n_tokens"]), math.nan if cpu is None else float(cpu)
    )
