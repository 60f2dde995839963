from __future__ import annotations

import json

import numpy as np
import pytest

from evolens.analysis import DetectorParams, ProfileComparison, compare_profiles, profile_summary
from evolens.errors import SettingsError
from tests.analysis.synthetic import make_metrics, make_trace, step_jsd, step_probs

L = 24


def _traces(hierarchical: bool, n: int = 3, steps: int = 5):
    rng = np.random.default_rng(0 if hierarchical else 1)
    out = []
    for item in range(n):
        probs = np.stack([step_probs(rng, L, 14) for _ in range(steps)], axis=1)
        if hierarchical:
            jsd = np.stack([step_jsd(rng, L, 14).jsd for _ in range(steps)], axis=1)
        else:
            jsd = 0.05 * np.exp(rng.uniform(-0.3, 0.3, (L, steps)))
        out.append(make_trace(make_metrics(probs, jsd), item_id=str(item), eos=True))
    return out


def test_hierarchical_vs_flat_profiles(tmp_path) -> None:
    comparison = compare_profiles({"image": _traces(True), "llm": _traces(False)})
    image, llm = comparison.profile("image"), comparison.profile("llm")
    assert image.n_items == 3 and image.n_tokens == 12  # EOS steps left out
    assert image.hierarchy.critical_layer == 14 and image.relative_split == pytest.approx(14 / L)
    assert image.hierarchy.ratio > 10 > 2 > llm.hierarchy.ratio
    assert llm.hierarchy.critical_layer == -1
    # flat JSD: tokens get a stage critical layer only through the probability fallback
    strict = compare_profiles({"llm": _traces(False)}, DetectorParams(stage_fallback=False)).profile("llm")
    assert strict.critical_found_rate == 0.0 and llm.critical_found_rate == 1.0
    assert all(row[3] == 1.0 for row in strict.stage_fractions)  # undetermined everywhere
    assert image.median_critical_layer == 14
    assert len(image.mean_jsd) == L and len(image.stage_fractions) == L + 1
    assert all(sum(row) == pytest.approx(1.0) for row in image.stage_fractions)
    assert image.stage_fractions[0][0] == 1.0 and image.stage_fractions[L][1] == 1.0
    ratios = comparison.hierarchy_ratios()
    assert set(ratios) == {"image", "llm"}
    json.dumps(comparison.to_dict(), allow_nan=False)
    loaded = ProfileComparison.load(comparison.save(tmp_path))
    assert loaded.to_dict() == comparison.to_dict()
    with pytest.raises(KeyError):
        comparison.profile("nope")


def test_profile_errors() -> None:
    with pytest.raises(SettingsError, match="no traces"):
        profile_summary("x", [])
    with pytest.raises(SettingsError, match="at least one"):
        compare_profiles({})
    short = make_trace(
        make_metrics(step_probs(np.random.default_rng(0), 8, 4), step_jsd(np.random.default_rng(0), 8, 4).jsd)
    )
    with pytest.raises(SettingsError, match="depths"):
        profile_summary("x", [*_traces(True, 1), short])
    with pytest.raises(SettingsError, match="first_layer"):
        profile_summary("x", [short], DetectorParams(first_layer=7))
