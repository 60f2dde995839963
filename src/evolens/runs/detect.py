"""``evolens detect RUN_DIR``: score hallucination detectors on a finished run and write ``results/detect.json``
(:class:`~evolens.hallucination.detect.DetectResult`, atomically) and its figures (``results/figures/detect_roc``,
``detect_probe_layers``).

What it reads: ``results/tokens.parquet`` (labels, critical and mutation layers), each judged item's long metric
table (``items/<id>/metrics.parquet``) and, for the hidden-state probe, its stored hidden states
(``items/<id>/tensors.safetensors``; only in runs made with ``--hidden-states``). Error groups: when items carry a
``prior`` annotation (the answer a language prior suggests, as the built-in toy's questions do), a hallucinated
token whose item was answered with that prior is ``"prior-driven"``, every other one ``"other"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.errors import SettingsError, StoreError
from evolens.hallucination.detect import detect, select_tokens
from evolens.hallucination.detect_results import DETECT_JSON, DetectOptions, DetectResult
from evolens.hallucination.signals import PROFILE_COLUMNS, token_profiles
from evolens.store.results import FIGURES, RunResults
from evolens.trace.fileformat import METRICS, TENSORS

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

PRIOR_DRIVEN, OTHER = "prior-driven", "other"
FIGURE_NAMES = ("detect_roc", "detect_probe_layers")


def error_groups(
    selected: pd.DataFrame, answers: Mapping[str, Any], annotations: Mapping[str, Mapping[str, Any]]
) -> np.ndarray | None:
    """Each selected token's error group (``None`` for grounded tokens), or ``None`` when no item has a ``prior``.

    Args:
        selected: The judged tokens (``item``, ``label``).
        answers: ``item_id ->`` the evaluator's answer (``items.parquet → answer``).
        annotations: ``item_id -> `` the item's annotations (``dataset/items.jsonl``).
    """
    priors = {k: str(a["prior"]).lower() for k, a in annotations.items() if isinstance(a.get("prior"), str)}
    if not priors:
        return None
    groups = []
    for item, label in zip(selected["item"].astype(str), selected["label"], strict=True):
        answer = answers.get(item)
        driven = item in priors and isinstance(answer, str) and answer.lower() == priors[item]
        groups.append(None if label != "hallucinated" else PRIOR_DRIVEN if driven else OTHER)
    return np.array(groups, dtype=object)


def _metrics(results: RunResults, selected: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    for item, steps in selected.groupby("item", sort=False)["step"]:
        path = results.run.item_dir(str(item)) / METRICS
        try:
            frame = pq.read_table(path, columns=list(PROFILE_COLUMNS)).to_pandas()
        except (OSError, ValueError) as err:
            raise StoreError(f"cannot read {path}: {err}") from None
        frames.append(frame[frame["step"].isin(set(steps))])
    return pd.concat(frames, ignore_index=True)


def _hidden(results: RunResults, selected: pd.DataFrame) -> np.ndarray:
    """``[n_tokens, L + 1, d]`` hidden states of the selected tokens, in their order."""
    from safetensors import SafetensorError, safe_open

    if not results.manifest.get("config", {}).get("save", {}).get("hidden_states"):
        raise SettingsError(
            f"{results.root} was saved without hidden states, which the hidden-state probe needs; run it again "
            "with --hidden-states, or leave that probe out (--no-hidden-probe)"
        )
    out: list[np.ndarray] = [np.empty(0)] * len(selected)
    for item, rows in selected.groupby("item", sort=False):
        path = results.run.item_dir(str(item)) / TENSORS
        steps = rows["step"].astype(int).tolist()
        try:
            with safe_open(str(path), framework="pt") as fh:
                if "hidden_states" not in fh.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                    raise StoreError(f"{path} holds no hidden states, though the run was saved with them")
                # [L + 1, n_steps, d] -> only the judged steps, as float32: [L + 1, n_judged, d]
                states = fh.get_tensor("hidden_states")[:, steps].float().numpy()
        except (OSError, SafetensorError) as err:
            raise StoreError(f"cannot read the hidden states of {path}: {err}") from None
        for k, position in enumerate(rows.index):
            out[position] = states[:, k]
    return np.stack(out)


def detect_run(
    run_dir: str | Path, options: DetectOptions | None = None, *, figures: bool = True
) -> DetectResult:
    """Score every hallucination detector on a finished run (see the module docstring).

    Args:
        run_dir: A merged run directory whose evaluation labelled tokens.
        options: Unit, bootstrap, folds and which probes to fit (default :class:`DetectOptions`).
        figures: Also draw ``results/figures/detect_roc`` and ``detect_probe_layers`` (PNG and SVG).

    Returns:
        The result, also written to ``results/detect.json``.

    Raises:
        StoreError: Not a merged run directory, or unreadable files.
        SettingsError: No labelled tokens, too few to cross-validate a probe, or the hidden-state probe on a run
            saved without hidden states.
    """
    options = options or DetectOptions()
    results = RunResults(run_dir)
    n_layers = int(results.manifest["config"]["model"]["n_layers"])
    selected = select_tokens(results.tokens(), options.unit)
    items = results.items()
    answers = dict(zip(items["item"].astype(str), items["answer"], strict=True))
    annotations = {str(r["item_id"]): r.get("annotations") or {} for r in results.run.items()}
    groups = error_groups(selected, answers, annotations)
    if groups is not None:
        selected = selected.assign(error_group=groups)
    hidden = _hidden(results, selected) if options.hidden_probe else None
    result = detect(
        selected, token_profiles(selected, _metrics(results, selected), n_layers), options, hidden=hidden
    )
    result.save(results.run.results_dir / DETECT_JSON)
    if figures:
        write_detect_figures(result, results.run.results_dir / FIGURES)
    logger.info("wrote %s", results.run.results_dir / DETECT_JSON)
    return result


def write_detect_figures(result: DetectResult, folder: Path) -> list[Path]:
    """The ROC curves and (with the hidden-state probe) the per-layer probe curve, as PNG and SVG in ``folder``."""
    from evolens.report.figures import deterministic_svg
    from evolens.viz.detect import probe_layer_figure, roc_figure
    from evolens.viz.save import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with deterministic_svg():
        written += save_figure(roc_figure(result), folder / FIGURE_NAMES[0])
        if result.hidden_curve is not None:
            written += save_figure(probe_layer_figure(result), folder / FIGURE_NAMES[1])
    return written
