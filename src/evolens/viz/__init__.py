"""The paper's figures from stored results (traces, result dataclasses, plain arrays) — never from a model.

Every function returns a :class:`matplotlib.figure.Figure` on an Agg canvas (no ``pyplot``, nothing global is
changed); :func:`save_figure` writes it atomically as PNG, SVG and/or PDF.

==========================================  ==============================================================
paper figure                                 function
==========================================  ==============================================================
Fig. 2 candidate token probabilities         :func:`token_probability_figure`, :func:`token_probability_trace_figure`,
                                             :func:`token_probability_grid`
Fig. 3 hallucinated vs correct token         :func:`hallucination_figure`, :func:`hallucination_grid`
Fig. 4 adjacent-layer JSD heatmap            :func:`jsd_heatmap_figure`, :func:`jsd_trace_figure`
Fig. 5 layer-skipping table                  :func:`skip_table_figure`
Fig. 6 / 7 feature encodings (t-SNE...)      :func:`embedding_figure`, :func:`embedding_grid`
dataset summaries                            :func:`dataset_summary_figure`, :func:`layer_histogram_figure`,
                                             :func:`jsd_profile_figure`
==========================================  ==============================================================

Adapters from the result dataclasses (:mod:`evolens.viz.results`): :func:`skip_report_figure` (``SkipReport``),
:func:`token_comparison_figure` (``TokenComparison``), :func:`feature_map_figure` (``FeatureMap``),
:func:`profile_comparison_figure` (``ProfileComparison``), :func:`analysis_summary_figure` (``AnalysisSummary``),
:func:`layer_statistics_figure` (``LayerStatistics``).
"""

from evolens.viz.embedding import LayerBand, embedding_figure, embedding_grid, paper_layer_bands
from evolens.viz.jsd import jsd_heatmap_figure, jsd_profile_figure, jsd_trace_figure, maxabs_columns
from evolens.viz.results import (
    SkipTable,
    analysis_summary_figure,
    feature_map_figure,
    layer_statistics_figure,
    profile_comparison_figure,
    skip_report_figure,
    skip_table,
    token_comparison_contrast,
    token_comparison_figure,
)
from evolens.viz.save import figure_bytes, save_figure
from evolens.viz.skip import skip_table_figure
from evolens.viz.style import figure_style, token_label
from evolens.viz.summary import dataset_summary_figure, layer_histogram_figure
from evolens.viz.tokens import (
    TokenContrast,
    hallucination_figure,
    hallucination_grid,
    token_probability_figure,
    token_probability_grid,
    token_probability_trace_figure,
)

__all__ = [
    "LayerBand",
    "SkipTable",
    "TokenContrast",
    "analysis_summary_figure",
    "dataset_summary_figure",
    "embedding_figure",
    "embedding_grid",
    "feature_map_figure",
    "figure_bytes",
    "figure_style",
    "hallucination_figure",
    "hallucination_grid",
    "jsd_heatmap_figure",
    "jsd_profile_figure",
    "jsd_trace_figure",
    "layer_histogram_figure",
    "layer_statistics_figure",
    "maxabs_columns",
    "paper_layer_bands",
    "profile_comparison_figure",
    "save_figure",
    "skip_report_figure",
    "skip_table",
    "skip_table_figure",
    "token_comparison_contrast",
    "token_comparison_figure",
    "token_label",
    "token_probability_figure",
    "token_probability_grid",
    "token_probability_trace_figure",
]
