"""Figures from result dataclasses (viz.results): the data each adapter hands to the figure functions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from evolens import viz
from evolens.analysis import Annotations, DetectorParams, ProfileComparison, ProfileSummary, summarize
from evolens.analysis.compare import (
    common_prefix,
    count_hallucinations,
    similarity,
    token_diff,
)
from evolens.analysis.detectors import HierarchyScore
from evolens.analysis.trace_analysis import analyze_metrics
from evolens.errors import SettingsError
from evolens.experiments import SkipReport, TokenComparison
from evolens.experiments.skip import SkipResult, VariantOutput, summarize_variants
from evolens.geometry import ReducerSettings, single_image_map
from evolens.hallucination import layer_statistics
from evolens.viz.results import NOTHING_TO_SKIP
from evolens.viz.skip import FLAG_COLORS
from tests.analysis.synthetic import make_metrics, step_jsd, step_probs


# ----------------------------------------------------------------------------------------------- Fig. 5
def _variant(name: str, tokens: list[str], original: list[str], ann: Annotations, skipped=(), ran=True):
    ids = [hash(t) % 1000 for t in tokens]
    orig_ids = [hash(t) % 1000 for t in original]
    return VariantOutput(
        name=name,
        skipped=tuple(skipped),
        text="".join(tokens),
        tokens=tokens,
        token_ids=ids,
        stop_reason="eos",
        similarity=similarity(orig_ids, ids),
        common_prefix=common_prefix(orig_ids, ids),
        diff=[] if name == "original" else token_diff(orig_ids, ids, original, tokens),
        hallucination=count_hallucinations("".join(tokens), ann, original="".join(original)),
        ran=ran,
    )


def _report(image: str | None = None) -> SkipReport:
    ann = Annotations.of(["dog", "grass", "sand"], ["bench", "water"])
    original = ["A", " dog", " on", " a", " bench", " near", " grass", "."]
    fixed = ["A", " dog", " on", " the", " sand", " near", " grass", "."]
    variants = [
        _variant("original", original, original, ann),
        _variant("skip1", fixed, original, ann, skipped=(19, 20, 21, 27)),
        _variant("skip2", original, original, ann, ran=False),
    ]
    result = SkipResult("dog", "Describe.", image, 32, "hook", None, variants, ann)
    return SkipReport([result], summarize_variants([result]), {"method": "hook"})


def test_skip_table_flags_hallucinations_and_corrections() -> None:
    table = viz.skip_table(_report())
    assert table.columns == ["original", "skip1 (19–21, 27)", "skip2"]
    (row,) = table.rows
    (flags,) = table.flags
    original, fixed, unchanged = zip(row, flags, strict=True)
    # the original's hallucination "bench" is red; nothing else
    assert [(t, f) for t, f in zip(*original, strict=True) if f] == [(" bench", "hallucinated")]
    # the variant's "sand" replaces "a bench": green; "dog" and "grass" are where the original had them: plain
    assert [(t, f) for t, f in zip(*fixed, strict=True) if f] == [(" sand", "corrected")]
    assert "".join(unchanged[0]) == NOTHING_TO_SKIP and set(unchanged[1]) == {None}
    marked = viz.skip_table(_report(), mark_changes=True).flags[0][1]
    assert marked == [None, None, None, "changed", "corrected", None, None, None]
    cut = viz.skip_table(_report(), max_tokens=3).rows[0][0]
    assert cut == ["A", " dog", " on", " …"]


def test_a_ground_truth_word_a_variant_adds_is_not_a_correction() -> None:
    """A variant that invents an extra "star" (a ground-truth word: there is a star) replaced no hallucination:
    not green. Where it replaces the original's hallucination "moon" with "star", it is."""
    from evolens.viz.results import skip_token_flags

    ann = Annotations.of(["star", "heart"], ["moon"])
    original = ["a", " star", " and", " a", " heart"]
    extra = ["a", " star", " and", " a", " star", " and", " a", " heart"]
    fixed = ["a", " moon"]
    replaced = ["a", " star"]
    result = SkipResult(
        "1",
        "Describe.",
        None,
        8,
        "hook",
        None,
        [
            _variant("original", original, original, ann),
            _variant("extra", extra, original, ann, skipped=(3,)),
        ],
        ann,
    )
    assert set(skip_token_flags(result, result.variant("extra"))) == {None}
    result = SkipResult(
        "2",
        "Describe.",
        None,
        8,
        "hook",
        None,
        [_variant("original", fixed, fixed, ann), _variant("fix", replaced, fixed, ann, skipped=(3,))],
        ann,
    )
    assert skip_token_flags(result, result.variant("original")) == [None, "hallucinated"]
    assert skip_token_flags(result, result.variant("fix")) == [None, "corrected"]


def test_skip_table_checks_items() -> None:
    with pytest.raises(SettingsError, match="no item"):
        viz.skip_table(_report(), items=["cat"])
    with pytest.raises(SettingsError, match="max_tokens"):
        viz.skip_table(_report(), max_tokens=0)


def test_skip_report_figure_draws_flag_colours_and_the_image(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "dog.png"
    Image.new("RGB", (20, 10), "red").save(path)
    report = SkipReport.from_dict(_report(str(path)).to_dict())  # as loaded from skip.json
    fig = viz.skip_report_figure(report)
    (ax,) = fig.axes

    def coloured(colour: str) -> list[str]:
        return [t.get_text() for t in ax.texts if to_hex(t.get_color()) == colour]

    assert coloured(FLAG_COLORS["hallucinated"]) == ["bench"]
    assert coloured(FLAG_COLORS["corrected"]) == ["sand"]
    assert NOTHING_TO_SKIP.split()[0] in [t.get_text() for t in ax.texts]
    assert len(ax.images) == 1  # the image column
    no_image = viz.skip_report_figure(report, images=False)
    assert not no_image.axes[0].images
    moved = viz.skip_report_figure(
        SkipReport.from_dict(_report("elsewhere/dog.png").to_dict()), image_root=tmp_path
    )
    assert len(moved.axes[0].images) == 1


# ----------------------------------------------------------------------------------------------- Fig. 3
def _comparison(**overrides) -> TokenComparison:
    values = {
        "item_id": "dog",
        "step": 4,
        "generated_id": 7,
        "generated_token": " water",
        "alternative_id": 9,
        "alternative_token": " camera",
        "alternative_source": "ground_truth",
        "generated_probs": [0.0, 0.1, 0.2, 0.3, 0.9],
        "alternative_probs": [0.0, 0.3, 0.5, 0.2, 0.05],
        "crossing_layer": 3,
        "crossings": [(1, -1), (3, 1)],
        "critical_layer": 2,
        "mutation_layers": [3, 4],
        "mutation_detected": True,
        "alternative_led": True,
        "crossing_at_mutation": True,
    }
    values.update(overrides)
    return TokenComparison(**values)


def test_token_comparison_contrast_and_figure() -> None:
    contrast = viz.token_comparison_contrast(_comparison())
    assert (contrast.crossing_layer, contrast.mutation_layer, contrast.critical_layer) == (3, 3, 2)
    assert contrast.hallucinated_token == " water" and contrast.title == "dog, step 4"
    none = viz.token_comparison_contrast(
        _comparison(crossing_layer=-1, critical_layer=-1, mutation_layers=[])
    )
    assert (none.crossing_layer, none.mutation_layer, none.critical_layer) == (None, None, None)
    fig = viz.token_comparison_figure(_comparison())
    (ax,) = fig.axes
    curves = [line for line in ax.lines if len(line.get_ydata()) == 5]
    np.testing.assert_allclose(curves[0].get_ydata(), [0.0, 0.3, 0.5, 0.2, 0.05])  # correct (green) first
    np.testing.assert_allclose(curves[1].get_ydata(), [0.0, 0.1, 0.2, 0.3, 0.9])
    assert len(viz.token_comparison_figure([_comparison(), _comparison(step=5)]).axes) == 2
    with pytest.raises(SettingsError, match="no token comparisons"):
        viz.token_comparison_figure([])


# ----------------------------------------------------------------------------------------------- Fig. 6 / 7
def test_feature_map_figure_uses_the_maps_groups() -> None:
    states = np.random.default_rng(0).normal(size=(9, 5, 6))  # 8 layers + embeddings, 5 tokens
    fmap = single_image_map(
        states,
        critical_layer=3,
        mutation_layer=6,
        settings=ReducerSettings(method="pca"),
        tokens=list("abcde"),
    )
    fig = viz.feature_map_figure(fmap)
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert (
        legend
        == [g.label for g in fmap.groups]
        == ["rapid evolution (1–2)", "stabilisation (3–5)", "mutation (6–8)"]
    )
    scattered = np.concatenate([c.get_offsets() for c in ax.collections])
    assert scattered.shape == (fmap.n_points, 2)
    np.testing.assert_allclose(np.sort(scattered, axis=0), np.sort(fmap.coords, axis=0))
    assert len(ax.lines) == fmap.n_units  # one trajectory per token
    assert not ax.texts  # single-image maps are not labelled by default
    labelled = viz.feature_map_figure(fmap, label_units=True, color_by="layer")
    assert [t.get_text() for t in labelled.axes[0].texts] == fmap.unit_labels


# ----------------------------------------------------------------------------------------------- §6
def _profile(label: str, n_layers: int, ratio: float, split: int) -> ProfileSummary:
    mean = list(np.linspace(0.5, 0.01, n_layers))
    return ProfileSummary(
        label=label, model_source="m", has_image=label == "image", n_layers=n_layers, n_items=1, n_tokens=4,
        mean_jsd=mean, median_jsd=mean, hierarchy=HierarchyScore(ratio, split, split, 0.3, 0.3 / ratio),
        relative_split=split / n_layers, critical_found_rate=1.0, median_critical_layer=float(split),
        mutation_rate=0.0, stage_fractions=[[1.0, 0.0, 0.0, 0.0]] * (n_layers + 1), texts=["x"],
    )  # fmt: skip


def test_profile_comparison_figure() -> None:
    comparison = ProfileComparison(
        [_profile("image", 8, 6.0, 4), _profile("no image", 8, 1.1, 5)], DetectorParams()
    )
    fig = viz.profile_comparison_figure(comparison)
    profiles, bars = fig.axes
    lines = [line for line in profiles.lines if len(line.get_xdata()) == 8]
    np.testing.assert_allclose(lines[0].get_ydata(), comparison.profiles[0].mean_jsd)
    np.testing.assert_allclose(lines[0].get_xdata(), np.arange(1, 9))
    splits = sorted(line.get_xdata()[0] for line in profiles.lines if len(line.get_xdata()) == 2)
    assert splits == [4.5, 5.5]  # between state c's layer and the next
    assert [p.get_height() for p in bars.patches] == [6.0, 1.1]
    # models of different depths: relative depth
    mixed = ProfileComparison(
        [_profile("image", 8, 6.0, 4), _profile("llm", 4, math.nan, -1)], DetectorParams()
    )
    profiles, bars = viz.profile_comparison_figure(mixed).axes
    assert profiles.get_xlabel().startswith("relative depth")
    assert max(max(line.get_xdata()) for line in profiles.lines) == pytest.approx(1.0)
    assert [t.get_text() for t in bars.texts] == ["6.00", "n/a"]


# ----------------------------------------------------------------------------------------------- summaries
def test_analysis_summary_figure_histograms_match_the_counts() -> None:
    rng = np.random.default_rng(0)
    crits = [4, 5, 6, 6, 9]
    probs = np.stack([step_probs(rng, 16, c) for c in crits], 1)
    jsd = np.stack([step_jsd(rng, 16, c).jsd for c in crits], 1)
    summary = summarize([analyze_metrics(make_metrics(probs, jsd))], n_boot=100)
    fig = viz.analysis_summary_figure(summary)
    assert len(fig.axes) == 3
    heights = [p.get_height() for p in fig.axes[1].patches]  # critical layer (JSD)
    assert heights == summary.distributions["critical_layer_jsd"].counts
    assert "median 6" in fig.axes[1].get_title()
    with pytest.raises(SettingsError, match="unknown quantities"):
        viz.analysis_summary_figure(summary, quantities=["nope"])


def test_layer_statistics_figure() -> None:
    tokens = pd.DataFrame(
        [
            ("a", "hallucinated", True, 4, [7]),
            ("a", "grounded", True, 5, []),
            ("b", "hallucinated", True, 3, []),
            ("b", "grounded", True, 4, [6]),
            ("b", "grounded", True, 4, []),
        ],
        columns=["item", "label", "first", "critical_layer", "mutation_layers"],
    ).astype({"critical_layer": "Int64"})
    stats = layer_statistics(tokens, n_layers=8, n_bootstrap=0)
    fig = viz.layer_statistics_figure(stats)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    share = fig.axes[2]
    assert [p.get_height() for p in share.patches] == pytest.approx([0.5, 1 / 3])
    assert "AUROC" in share.get_title()
