"""Dataset summary figures of a run, drawn from its stored results (``results/tokens.parquet`` and
``statistics.json``) with the :mod:`evolens.viz` functions — never from the model or the traces.

Three figures (each written as PNG and SVG into ``results/figures`` by :func:`write_summary_figures`):

``critical_layers``
    Histogram of every generated token's critical layer (the final EOS left out): the one that delimits the
    stages, and the probability- and JSD-based ones side by side when the detector gives them.
``mutation_layers``
    Histogram of the first mutation layer of each token and of every mutation layer (pooled).
``hallucinated_vs_grounded``
    Critical and first mutation layers of hallucinated against grounded tokens (fractions of each group; the unit of
    the statistics: first token of each judged word, or all its tokens) and their counts; the title gives the shares
    with a mutation layer and the AUROC of "a mutation layer was detected". Drawn when the evaluation judged words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evolens.hallucination.stats import LayerStatistics

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FIGURES_DIR = "figures"
FORMATS = ("png", "svg")
SVG_SALT = "evolens"  # fixed ids in SVG output: the same results give the same bytes


@dataclass(frozen=True)
class SummaryFigure:
    """One dataset figure: its file stem, a caption and the figure."""

    name: str
    caption: str
    figure: Figure


@contextmanager
def deterministic_svg() -> Iterator[None]:
    """Matplotlib names SVG elements with a random salt by default; fix it so equal figures give equal files."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": SVG_SALT}):
        yield


def _layers(values: Any) -> np.ndarray:
    """A nullable integer column as floats with NaN for "none"."""
    import pandas as pd

    return np.array([np.nan if v is None or pd.isna(v) else float(v) for v in values], dtype=np.float64)


def _mutation_lists(values: Any) -> list[list[int]]:
    return [[int(x) for x in m] if m is not None and not isinstance(m, float) else [] for m in values]


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _first_mutation(mutations: Sequence[Sequence[int]]) -> np.ndarray:
    """Each token's first mutation layer, NaN for none."""
    return np.array([m[0] if m else np.nan for m in mutations], dtype=np.float64)


def summary_figures(
    tokens: pd.DataFrame, n_layers: int, statistics: LayerStatistics | None = None
) -> list[SummaryFigure]:
    """The dataset figures of a run's token table (see the module docstring); ``[]`` when it has no layers.

    Args:
        tokens: ``results/tokens.parquet`` as a DataFrame (columns ``label``, ``first``, ``is_eos``,
            ``critical_layer``, ``mutation_layers`` and optionally ``critical_layer_prob`` / ``critical_layer_jsd``).
        n_layers: Decoder layers L.
        statistics: The run's :class:`~evolens.data.LayerStatistics` (its unit selects the hallucinated and grounded
            tokens; its shares and AUROC go into the title).
    """
    if "is_eos" in tokens.columns:
        tokens = tokens[~tokens["is_eos"].fillna(False).astype(bool)]
    critical = _layers(tokens["critical_layer"])
    mutations = _mutation_lists(tokens["mutation_layers"])
    if not len(tokens) or (np.isnan(critical).all() and not any(mutations)):
        return []
    out = [_critical_figure(tokens, critical, n_layers), _mutation_figure(mutations, n_layers)]
    judged = _judged_figure(tokens, n_layers, statistics)
    if judged is not None:
        out.append(judged)
    return out


def _critical_figure(tokens: pd.DataFrame, critical: np.ndarray, n_layers: int) -> SummaryFigure:
    from evolens.viz import layer_histogram_figure

    groups: dict[str, np.ndarray] = {"critical layer": critical}
    for column, name in (("critical_layer_prob", "probability-based"), ("critical_layer_jsd", "JSD-based")):
        if column in tokens.columns and tokens[column].notna().any():
            groups[name] = _layers(tokens[column])
    if len(groups) > 1:
        groups = {"stages (used)": critical, **{k: v for k, v in groups.items() if k != "critical layer"}}
    n = len(tokens)
    found = int((~np.isnan(critical)).sum())
    return SummaryFigure(
        "critical_layers",
        f"Critical layers of {n} generated tokens ({found} with one); the final EOS token is left out",
        layer_histogram_figure(
            groups, n_layers=n_layers, xlabel="critical layer", title=f"critical layers ({n} tokens)"
        ),
    )


def _mutation_figure(mutations: Sequence[Sequence[int]], n_layers: int) -> SummaryFigure:
    from evolens.viz import layer_histogram_figure

    n = len(mutations)
    first = _first_mutation(mutations)
    every = np.array([x for m in mutations for x in m], dtype=np.float64)
    with_mutation = int((~np.isnan(first)).sum())
    return SummaryFigure(
        "mutation_layers",
        f"Mutation layers: {with_mutation} of {n} tokens ({with_mutation / n:.1%}) have at least one; first "
        "mutation layer per token and every mutation layer pooled",
        layer_histogram_figure(
            {"first mutation layer": first, "every mutation layer": every},
            n_layers=n_layers,
            xlabel="mutation layer",
            title=f"mutation layers ({with_mutation} of {n} tokens)",
        ),
    )


def _judged_figure(
    tokens: pd.DataFrame, n_layers: int, statistics: LayerStatistics | None
) -> SummaryFigure | None:
    """Hallucinated against grounded tokens; ``None`` when the evaluation judged no word."""
    from evolens.viz import dataset_summary_figure

    unit = statistics.unit if statistics is not None else "first_token"
    judged = tokens[tokens["label"].isin(["hallucinated", "grounded"])]
    if unit == "first_token":
        judged = judged[judged["first"].fillna(False).astype(bool)]
    hallucinated = (judged["label"] == "hallucinated").to_numpy()
    if not hallucinated.size:
        return None
    title = f"hallucinated vs grounded tokens ({unit.replace('_', ' ')})"
    caption = title
    if statistics is not None:
        s = statistics
        caption = (
            f"{title}: with a mutation layer {_num(s.hallucinated.share_with_mutation, '.1%')} of "
            f"{s.hallucinated.n_tokens} hallucinated vs {_num(s.grounded.share_with_mutation, '.1%')} of "
            f"{s.grounded.n_tokens} grounded; AUROC of 'mutation detected' {_num(s.auroc.value, '.3f')} "
            f"[{_num(s.auroc.low, '.3f')}, {_num(s.auroc.high, '.3f')}]"
        )
        title += f" · AUROC {_num(s.auroc.value, '.2f')}"
    return SummaryFigure(
        "hallucinated_vs_grounded",
        caption,
        dataset_summary_figure(
            n_layers=n_layers,
            critical_layers=_layers(judged["critical_layer"]),
            mutation_layers=_first_mutation(_mutation_lists(judged["mutation_layers"])),
            hallucinated=hallucinated,
            title=title,
        ),
    )


def read_summary_figures(results_dir: str | Path) -> list[SummaryFigure]:
    """:func:`summary_figures` of a results directory (``tokens.parquet`` and, when present, ``statistics.json``)."""
    import pyarrow.parquet as pq

    from evolens.store.results import STATISTICS, TOKENS_TABLE

    folder = Path(results_dir)
    stats_path = folder / STATISTICS
    if not stats_path.is_file() or not (folder / TOKENS_TABLE).is_file():
        return []  # no layer detector ran: nothing to draw
    statistics = LayerStatistics.from_dict(json.loads(stats_path.read_text(encoding="utf-8")))
    tokens = pq.read_table(folder / TOKENS_TABLE).to_pandas()
    return summary_figures(tokens, statistics.n_layers, statistics)


def write_summary_figures(results_dir: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw :func:`read_summary_figures` into ``<results_dir>/figures/<name>.<format>`` (atomically, byte-identical
    for identical results); returns the files written."""
    from evolens.viz import save_figure

    folder = Path(results_dir)
    written: list[Path] = []
    with deterministic_svg():
        for entry in read_summary_figures(folder):
            written.extend(save_figure(entry.figure, folder / FIGURES_DIR / entry.name, list(formats)))
    return written
