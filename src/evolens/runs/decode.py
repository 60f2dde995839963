"""``evolens decode``: run several decoding strategies over the same items and compare each with greedy decoding —
the mitigation table (issue 18).

Each strategy is an ordinary traced run of the run pipeline (:func:`evolens.runs.run.run`) into
``DIR/runs/<name>/``, so it is traced, evaluated and analysed like any run, and inherits its guarantees: a killed
``decode`` resumes (a finished strategy is reused as it is, an unfinished one resumes item by item), and a run
never mixes configurations. The directory:

=============================  =====================================================================================
``DIR/decode-run.json``        the comparison's settings (strategies, dataset, evaluation); another ``decode`` into
                               ``DIR`` with other settings is refused
``DIR/runs/<name>/``           each strategy's run directory (``evolens eval``, ``evolens report`` read it as usual)
``DIR/timing/<name>.json``     the measured tracing time of each strategy (summed over completed calls)
``DIR/cost-sample.json``       the interleaved cost sample (:mod:`evolens.runs.decode_cost`)
``DIR/decode.json``            the result (:class:`~evolens.hallucination.decode_results.DecodeResult`)
``DIR/figures/decode.*``       the figure (:func:`evolens.viz.decode.decode_figure`), PNG and SVG
``DIR/report.html``            the report: the tables and figure, the baseline's items with every strategy's answer
``DIR/reports/<name>.html``    each strategy's own run report (with ``reports=True``)
=============================  =====================================================================================

The first strategy is the baseline of the paired comparisons (:func:`decode_strategies` puts greedy first); the result
is computed from the stored runs only (:mod:`evolens.runs.decode_table`). Before a strategy's run traces anything,
one untimed trace of the first item warms the model up under that strategy (so the first strategy does not pay the
set-up in its time per token) and refuses a strategy the model cannot run before anything is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Any

from evolens.analysis.params import DetectorParams
from evolens.api import LVLM, LoadOptions, TraceOptions
from evolens.data.items import DataItem, Dataset
from evolens.decoding import parse_strategies
from evolens.envelope import Envelope, config_differences
from evolens.errors import DatasetError, ImageError, SettingsError, StoreError, check_positive_int
from evolens.files import check_writable
from evolens.hallucination.decode_results import DECODE_JSON, DecodeResult
from evolens.parallel import dist_info
from evolens.runs.decode_cost import SAMPLE, CostSample, sample_costs, sample_items
from evolens.runs.decode_table import RunTiming, decode_result, timing_path
from evolens.runs.options import DecodeOptions, DecodeStrategy, FinalizeOptions
from evolens.runs.run import run
from evolens.runs.tracing import Progress, TqdmProgress
from evolens.store.results import SUMMARY
from evolens.store.run import RunDirectory, dataset_fingerprint

logger = logging.getLogger(__name__)

DECODE_RUN = "decode-run.json"
BASELINE = "greedy"
RUNS, REPORTS, FIGURES = "runs", "reports", "figures"
_SETTINGS_FILE = Envelope(what="decoding comparison's settings", schema=1, kinds=("evolens.decode-run",))


class _Labelled:
    """A progress display whose description names the strategy being traced."""

    def __init__(self, inner: Progress, name: str, index: int, total: int) -> None:
        self.inner, self.label = inner, f"{name} ({index}/{total})"

    def start(self, total: int, completed: int, description: str) -> None:
        self.inner.start(total, completed, f"{self.label}: {description}")

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def close(self) -> None:
        self.inner.close()


def decode_strategies(
    names: str | Sequence[str], params: Sequence[str] = (), *, trace: TraceOptions | None = None
) -> list[DecodeStrategy]:
    """The strategies named (comma-separated, or a list; parameters as ``"vcd.alpha=0.5"``:
    :func:`evolens.decoding.parse_strategies`), each tracing with ``trace`` and its decoding strategy, greedy first —
    added when not named, since it is the baseline of the paired comparisons.

    Raises:
        SettingsError: An unknown or repeated name, a bad parameter, or greedy alone (nothing to compare).
    """
    base = trace or TraceOptions()
    parsed = parse_strategies(names, params)
    if not any(s.name == BASELINE for s in parsed):
        parsed = [*parse_strategies(BASELINE), *parsed]
    ordered = sorted(parsed, key=lambda s: s.name != BASELINE)  # stable: greedy first, the others as named
    return check_strategies([DecodeStrategy(s.name, replace(base, decoding=s)) for s in ordered])


def check_strategies(strategies: Sequence[DecodeStrategy]) -> list[DecodeStrategy]:
    """The strategies as a list, refused when empty, alone (nothing to compare) or with a repeated name."""
    chosen = list(strategies)
    if not all(isinstance(s, DecodeStrategy) for s in chosen):
        raise SettingsError("strategies must be DecodeStrategy objects")
    if len(chosen) < 2:
        raise SettingsError(
            f"give at least one strategy besides the baseline to compare, got {[s.name for s in chosen]}"
        )
    names = [s.name for s in chosen]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SettingsError(f"each strategy may appear once; repeated: {', '.join(repeated)}")
    return chosen


def decode(
    model: str | Path | LVLM,
    dataset: Dataset | Iterable[DataItem],
    out_dir: str | Path,
    strategies: Sequence[DecodeStrategy],
    *,
    load: LoadOptions | None = None,
    finalize: FinalizeOptions | None = None,
    options: DecodeOptions | None = None,
    limit: int | None = None,
    progress: bool | Progress = True,
) -> DecodeResult:
    """Trace ``dataset`` under every strategy into ``out_dir`` and compare each with the first (see the module
    docstring for the layout and guarantees).

    Args:
        model: A model directory or hub id (loaded once, only when some strategy has items left to trace), or a
            loaded :class:`~evolens.LVLM`.
        dataset: A reader or any iterable of :class:`~evolens.data.DataItem` — the same items for every strategy.
        out_dir: The comparison's directory (created, or resumed when it holds one with the same settings).
        strategies: The strategies, the baseline (greedy) first.
        load: How the model loads when ``model`` is a path or hub id.
        finalize: How each run is merged (evaluation protocol, text tools, detector; ``figures`` of each run).
        options: How the comparison is computed and what is written (:class:`DecodeOptions`).
        limit: Only the first ``limit`` items.
        progress: Show a progress bar per strategy, or a :class:`~evolens.runs.tracing.Progress` to report to.

    Returns:
        The result, also written to ``out_dir/decode.json``.

    Raises:
        SettingsError: Fewer than two strategies, a repeated name, bad options.
        StoreError: ``out_dir`` holds a comparison with other settings, or files that are not one.
    """
    chosen = check_strategies(strategies)
    options = options or DecodeOptions()
    finalize = finalize or FinalizeOptions()
    items = _items(dataset, limit, finalize)
    root = check_writable(out_dir, directory=True)
    settings = _settings(chosen, dataset, items, limit, finalize, options)
    created = _check_decode_dir(root, settings)
    loaded: list[LVLM] = [model] if isinstance(model, LVLM) else []

    def lvlm() -> LVLM:  # loaded once, only when something is left to trace
        if not loaded:
            loaded.append((load or LoadOptions()).open(model))  # type: ignore[arg-type]
        return loaded[0]

    reporter: Progress | None = TqdmProgress() if progress is True else progress or None
    for index, strategy in enumerate(chosen, 1):
        run_dir = root / RUNS / strategy.name
        if _finished(run_dir):
            logger.info("strategy %s: finished before, reused", strategy.name)
            continue
        _warm_up(lvlm(), items[0], strategy.trace)  # also refuses a strategy this model cannot run
        if not created:  # only now: a model that does not load leaves no directory behind
            root.mkdir(parents=True, exist_ok=True)
            _SETTINGS_FILE.write(root / DECODE_RUN, "evolens.decode-run", settings)
            created = True
        label = _Labelled(reporter, strategy.name, index, len(chosen)) if reporter is not None else False
        _run_strategy(lvlm(), dataset, root, strategy, finalize, limit, label)
    _cost_sample(root, chosen, items, options.cost_rounds, lvlm)
    result = decode_result(root / RUNS, [s.name for s in chosen], settings, options)
    result.save(root / DECODE_JSON)
    _write_outputs(root, result, options)
    return result


def _items(
    dataset: Dataset | Iterable[DataItem], limit: int | None, finalize: FinalizeOptions
) -> list[DataItem]:
    """The items every strategy traces; refuses, before any work, torchrun, a bad limit or text-tools method, and an
    empty dataset."""
    if dist_info().world_size > 1:
        raise SettingsError(
            f"evolens decode runs in one process, not under torchrun ({dist_info().world_size} processes); "
            "launch it once, without torchrun"
        )
    finalize.check_method()
    if limit is not None:
        check_positive_int("limit", limit)
    items = list(islice(iter(dataset), limit))
    if not items:
        raise DatasetError(f"the dataset {dataset!r} has no items")
    return items


def _settings(
    strategies: Sequence[DecodeStrategy],
    dataset: Dataset | Iterable[DataItem],
    items: Sequence[DataItem],
    limit: int | None,
    finalize: FinalizeOptions,
    options: DecodeOptions,
) -> dict[str, Any]:
    """What ``decode-run.json`` records: what makes two comparisons the same one."""
    return {
        "strategies": [
            {"name": s.name, "trace": s.trace.run_config(), "batch_size": s.trace.batch_size}
            for s in strategies
        ],
        "dataset": {
            "name": getattr(dataset, "name", "items"),
            "n_items": len(items),
            "fingerprint": dataset_fingerprint(list(items)),
            "limit": limit,
        },
        "evaluation": {
            "method": finalize.method,
            "protocol": finalize.protocol,
            "drop_unfinished": finalize.drop_unfinished,
            "detector_params": (finalize.detector_params or DetectorParams()).to_dict(),
        },
        "comparison": options.comparison(),
    }


def _check_decode_dir(root: Path, settings: dict[str, Any]) -> bool:
    """Whether ``root`` holds the comparison of ``settings`` already; refuse one with other settings, and a
    non-empty directory that holds none."""
    path = root / DECODE_RUN
    if path.is_file():
        stored = _SETTINGS_FILE.read(path)
        differences = config_differences(stored, settings)
        if differences:
            raise StoreError(
                f"{root} holds a decoding comparison with other settings (stored -> requested): "
                f"{'; '.join(differences[:6])}{' ...' if len(differences) > 6 else ''}. Use another output directory"
            )
        return True
    if root.is_dir() and any(root.iterdir()):
        raise StoreError(
            f"{root} is not empty and holds no decoding comparison ({DECODE_RUN}); give a new directory"
        )
    return False


def _finished(run_dir: Path) -> bool:
    """Whether the strategy's run is complete and merged (then it is reused without loading the model)."""
    run_dir_ = RunDirectory(run_dir)
    if not run_dir_.exists() or not (run_dir_.results_dir / SUMMARY).is_file():
        return False
    return "pending" not in run_dir_.status().values()


def _run_strategy(
    lvlm: LVLM,
    dataset: Dataset | Iterable[DataItem],
    root: Path,
    strategy: DecodeStrategy,
    finalize: FinalizeOptions,
    limit: int | None,
    progress: Progress | bool,
) -> None:
    """Run (or resume) one strategy; add the time of its tracing and the tokens it generated to its timing."""
    run_dir = root / RUNS / strategy.name
    before = _done(run_dir)
    started = time.perf_counter()
    summary = run(
        lvlm, dataset, run_dir, trace=strategy.trace, finalize=finalize, limit=limit, progress=progress
    )
    logger.info("strategy %s: %.1f s in all", strategy.name, time.perf_counter() - started)
    new = _done(run_dir) - before
    timing = RunTiming.read(timing_path(root, strategy.name))
    timing = timing.plus(summary.elapsed_s, len(new), sum(_n_steps(run_dir, i) for i in new))
    timing.write(timing_path(root, strategy.name))


def _warm_up(lvlm: LVLM, item: DataItem, trace: TraceOptions) -> None:
    """One untimed trace of one item (two tokens) under the strategy's options, so that its timed run does not pay
    a first call's set-up (allocator, kernels, the strategy's buffers), and a strategy the model's family cannot
    run is refused before anything is written. An item whose image does not load is left to the run to record."""
    options = TraceOptions.from_flat(trace, max_new_tokens=2, batch_size=1, keep_hidden_states=False)
    try:
        lvlm.trace(images=[item.image], prompts=[item.prompt], item_ids=[item.item_id], options=options)
    except ImageError as err:
        logger.warning("no warm-up: the first item's image does not load (%s)", err)


def _cost_sample(
    root: Path,
    chosen: Sequence[DecodeStrategy],
    items: Sequence[DataItem],
    rounds: int,
    lvlm: Callable[[], LVLM],
) -> None:
    """Take the interleaved cost sample on the baseline's first batch, unless the one stored matches."""
    path = root / SAMPLE
    if not rounds:
        path.unlink(missing_ok=True)
        return
    sampled = sample_items(items, chosen[0].trace.batch_size)
    stored = CostSample.read(path)
    names, ids = [s.name for s in chosen], [i.item_id for i in sampled]
    if stored is not None and (stored.strategies, stored.item_ids, stored.rounds) == (names, ids, rounds):
        return
    if sampled:
        logger.info("interleaved cost sample: %d items, %d rounds", len(sampled), rounds)
        sample_costs(lvlm(), sampled, chosen, rounds).write(path)


def _done(run_dir: Path) -> set[str]:
    directory = RunDirectory(run_dir)
    if not directory.exists():
        return set()
    return {k for k, v in directory.status().items() if v == "done"}


def _n_steps(run_dir: Path, item_id: str) -> int:
    from evolens.trace.fileformat import read_manifest

    return int(read_manifest(RunDirectory(run_dir).item_dir(item_id))["n_steps"])


def _write_outputs(root: Path, result: DecodeResult, options: DecodeOptions) -> None:
    """The figure, the report and each strategy's run report."""
    if options.figures:
        from evolens.report.figures import deterministic_svg
        from evolens.viz.decode import decode_figure
        from evolens.viz.save import save_figure

        with deterministic_svg():
            save_figure(decode_figure(result), root / FIGURES / "decode")
    if options.report:
        from evolens.report.decode import write_decode_report

        write_decode_report(root / "report.html", result, root / RUNS)
    if options.reports:
        from evolens.report import ReportOptions, write_report

        for s in result.strategies:
            write_report(
                root / REPORTS / f"{s.name}.html",
                root / RUNS / s.name,
                ReportOptions(title=f"evolens run: {s.name}"),
            )


__all__ = [
    "BASELINE",
    "DECODE_RUN",
    "DecodeOptions",
    "DecodeStrategy",
    "check_strategies",
    "decode",
    "decode_strategies",
]
