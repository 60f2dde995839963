"""Feature geometry (paper §5): 2-D maps of every layer's features and the numbers behind them.

- :func:`single_image_map` — Fig. 6 / eq. (5): all generated tokens of one trace at all layers.
- :func:`multi_image_map` — Fig. 7 / eq. (6): the answer token of many images at all layers.
- :class:`ReducerSettings` — t-SNE (openTSNE, scikit-learn), UMAP (optional extra) or PCA, with preprocessing.
- :mod:`evolens.geometry.measures` — dispersion and its jump, path linearity, linear CKA, trustworthiness.
- :mod:`evolens.geometry.stages` — stage groups from critical/mutation layers, the paper's, or your own.
- :func:`detect_stage_layers` — a map's critical and mutation layer from its traces' detectors (the default).
- :mod:`evolens.geometry.embed` — the maps ``evolens embed`` makes of saved traces, and their numbers in words.

Everything runs on the pre-norm residual states of :attr:`evolens.Trace.hidden_states`.
"""

from evolens.geometry.build import MapOptions, multi_image_map, single_image_map
from evolens.geometry.detect import DetectedLayers, detect_stage_layers, median_layer
from evolens.geometry.features import UnitStates, multi_image_states, single_image_states
from evolens.geometry.maps import FeatureMap
from evolens.geometry.measures import (
    Jump,
    JumpSettings,
    adjacent_cka,
    cka_matrix,
    dispersion,
    jump_layer,
    linear_cka,
    linearity,
    relative_dispersion,
    straightness,
    trustworthiness,
)
from evolens.geometry.numbers import GeometryNumbers, geometry_numbers
from evolens.geometry.reduce import Projection, ReducerSettings, preprocess, reduce_2d
from evolens.geometry.stages import StageGroup, normalize_groups, paper_stage_groups, stage_groups

__all__ = [
    "DetectedLayers",
    "FeatureMap",
    "GeometryNumbers",
    "Jump",
    "JumpSettings",
    "MapOptions",
    "Projection",
    "ReducerSettings",
    "StageGroup",
    "UnitStates",
    "adjacent_cka",
    "cka_matrix",
    "detect_stage_layers",
    "dispersion",
    "geometry_numbers",
    "jump_layer",
    "linear_cka",
    "linearity",
    "median_layer",
    "multi_image_map",
    "multi_image_states",
    "normalize_groups",
    "paper_stage_groups",
    "preprocess",
    "reduce_2d",
    "relative_dispersion",
    "single_image_map",
    "single_image_states",
    "stage_groups",
    "straightness",
    "trustworthiness",
]
