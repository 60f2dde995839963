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
"""

from evolens.viz.embedding import LayerBand, embedding_figure, embedding_grid, paper_layer_bands
from evolens.viz.jsd import jsd_heatmap_figure, jsd_profile_figure, jsd_trace_figure, maxabs_columns
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
    "TokenContrast",
    "dataset_summary_figure",
    "embedding_figure",
    "embedding_grid",
    "figure_bytes",
    "figure_style",
    "hallucination_figure",
    "hallucination_grid",
    "jsd_heatmap_figure",
    "jsd_profile_figure",
    "jsd_trace_figure",
    "layer_histogram_figure",
    "maxabs_columns",
    "paper_layer_bands",
    "save_figure",
    "skip_table_figure",
    "token_label",
    "token_probability_figure",
    "token_probability_grid",
    "token_probability_trace_figure",
]
