"""JSD profiles and stage structure of a set of traces, side by side (paper §6: LVLM vs text-only vs LLM).

Pure: reads the traces' metrics only. :func:`evolens.experiments.text_only.compare_text_only` produces the traces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evolens.analysis.detectors import HierarchyScore, hierarchy_score
from evolens.analysis.io import JsonResult, clean_json
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.stages import MUTATION, RAPID, STABLE, UNKNOWN
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_trace
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from evolens.trace import Trace

KIND = "evolens.profile_comparison"
DEFAULT_NAME = "profiles.json"


@dataclass(frozen=True)
class ProfileSummary:
    """The JSD profile and stage structure of one condition (e.g. "image", "no image", "llm").

    Attributes:
        label: Name of the condition.
        model_source: Model that produced the traces.
        has_image: Whether the traces had an image.
        n_layers: Decoder layers L.
        n_items: Traces.
        n_tokens: Tokens pooled (EOS left out).
        mean_jsd: ``[L]`` mean over tokens of the adjacent-layer JSD (transition l: state l -> l + 1).
        median_jsd: ``[L]`` median over tokens.
        hierarchy: :class:`~evolens.analysis.detectors.HierarchyScore` of ``mean_jsd``: ratio of the mean JSD
            before and after the profile's best split (about 1: no stages; >> 1: the LVLM pattern).
        relative_split: ``hierarchy.split_layer / L`` (depth-free position, for models of different depth).
        critical_found_rate: Fraction of tokens with a (stage) critical layer.
        median_critical_layer: Median critical layer of those tokens (NaN if none).
        mutation_rate: Fraction of tokens with a critical layer that have a mutation layer.
        stage_fractions: ``[L + 1][4]``: per state, fraction of tokens in rapid evolution, stabilisation, mutation,
            undetermined.
        texts: The generated texts.
    """

    label: str
    model_source: str
    has_image: bool
    n_layers: int
    n_items: int
    n_tokens: int
    mean_jsd: list[float]
    median_jsd: list[float]
    hierarchy: HierarchyScore
    relative_split: float
    critical_found_rate: float
    median_critical_layer: float
    mutation_rate: float
    stage_fractions: list[list[float]]
    texts: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; undefined numbers (NaN) are ``None``."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "hierarchy"}
        return {**clean_json(data), "hierarchy": self.hierarchy.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileSummary:
        def f(value: Any) -> float:
            return math.nan if value is None else float(value)

        return cls(
            label=str(data["label"]),
            model_source=str(data["model_source"]),
            has_image=bool(data["has_image"]),
            n_layers=int(data["n_layers"]),
            n_items=int(data["n_items"]),
            n_tokens=int(data["n_tokens"]),
            mean_jsd=[f(v) for v in data["mean_jsd"]],
            median_jsd=[f(v) for v in data["median_jsd"]],
            hierarchy=HierarchyScore.from_dict(data["hierarchy"]),
            relative_split=f(data["relative_split"]),
            critical_found_rate=f(data["critical_found_rate"]),
            median_critical_layer=f(data["median_critical_layer"]),
            mutation_rate=f(data["mutation_rate"]),
            stage_fractions=[[f(v) for v in row] for row in data["stage_fractions"]],
            texts=[str(t) for t in data["texts"]],
        )


@dataclass(frozen=True)
class ProfileComparison(JsonResult):
    """Several conditions' profiles side by side (paper §6).

    Attributes:
        profiles: One :class:`ProfileSummary` per condition, in the order given.
        params: The detector parameters.
    """

    result_kind: ClassVar[str] = KIND
    default_name: ClassVar[str] = DEFAULT_NAME

    profiles: list[ProfileSummary]
    params: DetectorParams

    def profile(self, label: str) -> ProfileSummary:
        for p in self.profiles:
            if p.label == label:
                return p
        raise KeyError(f"no profile {label!r}; have {[p.label for p in self.profiles]}")

    def hierarchy_ratios(self) -> dict[str, float]:
        """Label -> hierarchy ratio, the one number per condition."""
        return {p.label: p.hierarchy.ratio for p in self.profiles}

    def to_dict(self) -> dict[str, Any]:
        return {"profiles": [p.to_dict() for p in self.profiles], "params": self.params.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileComparison:
        return cls(
            [ProfileSummary.from_dict(p) for p in data["profiles"]], DetectorParams.from_dict(data["params"])
        )


def profile_summary(
    label: str,
    traces: Sequence[Trace],
    params: DetectorParams | None = None,
    *,
    analyses: Sequence[TraceAnalysis] | None = None,
) -> ProfileSummary:
    """Pool the tokens of ``traces`` (EOS steps left out) into one :class:`ProfileSummary`."""
    params = params or DetectorParams()
    if not traces:
        raise SettingsError(f"profile {label!r} has no traces")
    depths = {t.n_layers for t in traces}
    if len(depths) != 1:
        raise SettingsError(f"profile {label!r} mixes models of depths {sorted(depths)}")
    n_layers = depths.pop()
    if analyses is None:
        analyses = [analyze_trace(t, params) for t in traces]
    if len(analyses) != len(traces):
        raise SettingsError("give one analysis per trace")
    columns, crit, mutated, stages = [], [], [], []
    for trace, analysis in zip(traces, analyses, strict=True):
        mask = analysis.step_mask()
        jsd = trace.jsd(params.jsd_reduction).double().numpy()
        columns.append(jsd[:, mask])
        crit.append(analysis.critical_layer[mask])
        mutated.append(analysis.mutation_layer[mask] != NOT_FOUND)
        stages.append(analysis.stages[:, mask])
    jsd_all = np.concatenate(columns, axis=1)  # [L, tokens]
    crit_all = np.concatenate(crit)
    mutated_all = np.concatenate(mutated)
    stages_all = np.concatenate(stages, axis=1)
    n_tokens = jsd_all.shape[1]
    if n_tokens == 0:
        raise SettingsError(f"profile {label!r} has no tokens besides EOS")
    mean_jsd = jsd_all.mean(1)
    found = crit_all != NOT_FOUND
    hierarchy = hierarchy_score(mean_jsd, params)
    fractions = [
        [float((stages_all[layer] == s).mean()) for s in (RAPID, STABLE, MUTATION, UNKNOWN)]
        for layer in range(n_layers + 1)
    ]
    first = traces[0]
    return ProfileSummary(
        label=label,
        model_source=first.model.source,
        has_image=first.image is not None,
        n_layers=n_layers,
        n_items=len(traces),
        n_tokens=n_tokens,
        mean_jsd=mean_jsd.tolist(),
        median_jsd=np.median(jsd_all, axis=1).tolist(),
        hierarchy=hierarchy,
        relative_split=hierarchy.split_layer / n_layers if hierarchy.split_layer != NOT_FOUND else math.nan,
        critical_found_rate=float(found.mean()),
        median_critical_layer=float(np.median(crit_all[found])) if found.any() else math.nan,
        mutation_rate=float(mutated_all[found].mean()) if found.any() else math.nan,
        stage_fractions=fractions,
        texts=[t.text for t in traces],
    )


def compare_profiles(
    traces: Mapping[str, Sequence[Trace]], params: DetectorParams | None = None
) -> ProfileComparison:
    """Side-by-side profiles of labelled groups of traces (e.g. ``{"image": [...], "no image": [...]}``)."""
    params = params or DetectorParams()
    if not traces:
        raise SettingsError("give at least one labelled group of traces")
    return ProfileComparison(
        [profile_summary(label, group, params) for label, group in traces.items()], params
    )
