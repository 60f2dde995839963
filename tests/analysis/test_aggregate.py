from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolens.analysis import (
    NOT_FOUND,
    AnalysisSummary,
    analyze_metrics,
    bootstrap_median,
    median_from_counts,
    summarize,
)
from evolens.errors import SettingsError
from tests.analysis.synthetic import make_metrics, step_jsd, step_probs

L = 16


def _analysis(seed: int, criticals: list[int], item_id: str, mutate: bool = False):
    rng = np.random.default_rng(seed)
    probs = np.stack([step_probs(rng, L, c) for c in criticals], axis=1)
    spikes = lambda c: [min(L - 1, c + 4)] if mutate else []  # noqa: E731
    jsd = np.stack([step_jsd(rng, L, c, spikes(c)).jsd for c in criticals], axis=1)
    return analyze_metrics(make_metrics(probs, jsd), item_id=item_id, ends_with_eos=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=0, max_size=40))
def test_median_from_counts_matches_numpy(values: list[int]) -> None:
    counts = np.bincount(np.array(values, dtype=np.int64), minlength=13)
    got = median_from_counts(counts)
    if values:
        assert got == np.median(values)
    else:
        assert math.isnan(got)


def test_bootstrap_median_is_seeded_and_covers() -> None:
    values = [8, 9, 9, 10, 10, 10, 11, 12, -1, -1]
    a = bootstrap_median(values, n_boot=500, seed=3)
    b = bootstrap_median(values, n_boot=500, seed=3)
    assert a == b
    assert a.value == 10 and a.n == 8 and a.unit == "token"
    assert a.ci_low <= a.value <= a.ci_high and a.ci_low >= 8 and a.ci_high <= 12
    none = bootstrap_median([-1, -1])
    assert math.isnan(none.value) and none.n == 0
    no_ci = bootstrap_median(values, n_boot=0)
    assert no_ci.value == 10 and math.isnan(no_ci.ci_low)
    with pytest.raises(SettingsError):
        bootstrap_median(values, level=1.0)
    with pytest.raises(SettingsError):
        bootstrap_median(values, n_boot=-5)


def test_summarize_pools_items_and_leaves_out_eos(tmp_path) -> None:
    # item A: 4 tokens critical 5 (last one is EOS, critical 12); item B: 3 tokens critical 9 with mutations
    a = _analysis(0, [5, 5, 5, 12], "A")
    b = _analysis(1, [9, 9, 9], "B", mutate=True)
    s = summarize([a, b], n_boot=300, seed=0)
    assert s.n_items == 2 and s.n_tokens == 5 and s.n_layers == L
    crit = s.distributions["critical_layer_jsd"]
    assert crit.counts[5] == 3 and crit.counts[9] == 2 and crit.counts[12] == 0  # EOS left out
    assert crit.median.value == 5 and crit.median.unit == "item"
    assert crit.median.ci_low <= crit.median.value <= crit.median.ci_high
    mut = s.distributions["mutation_layer"]
    assert mut.counts[14] == 2 and mut.n_found == 2
    assert s.mutation_rate.value == pytest.approx(2 / 5)
    assert s.items[0].item_id == "A" and s.items[1].mutation_rate.value == 1.0
    assert s.items[0].distributions["critical_layer"].median.value == 5
    with_eos = summarize([a, b], n_boot=0, include_eos=True)
    assert with_eos.n_tokens == 7 and with_eos.distributions["critical_layer_jsd"].counts[12] == 1
    # reproducible, serialisable
    again = summarize([a, b], n_boot=300, seed=0)
    assert again.to_dict() == s.to_dict()
    json.dumps(s.to_dict(), allow_nan=False)
    path = s.save(tmp_path / "summary.json")
    loaded = AnalysisSummary.load(path)
    assert loaded.to_dict() == s.to_dict()
    rows = s.table()
    assert {"item_id", "quantity", "layer", "count"} <= set(rows[0])
    assert sum(r["count"] for r in rows if r["quantity"] == "critical_layer_jsd") == 5


def test_agreement_rate_counts_only_decided_tokens() -> None:
    a = _analysis(0, [5, 5, 9, 9], "A")
    rate = summarize([a], n_boot=0).agreement_rate
    decided = a.agreement()[~a.is_eos]
    assert rate.n == int((decided >= 0).sum())
    assert rate.value == pytest.approx(float((decided == 1).sum()) / rate.n)


def test_summarize_refuses_mixed_depths_and_empty() -> None:
    a = _analysis(0, [5, 5], "A")
    rng = np.random.default_rng(0)
    other = analyze_metrics(make_metrics(step_probs(rng, 8, 4), step_jsd(rng, 8, 4).jsd))
    with pytest.raises(SettingsError, match="different depths"):
        summarize([a, other])
    with pytest.raises(SettingsError, match="empty"):
        summarize([])


def test_mutation_layers_pooled_counts_every_layer() -> None:
    a = _analysis(2, [5, 5, 5], "A", mutate=True)
    s = summarize([a], n_boot=0)
    pooled = s.distributions["mutation_layers"]
    assert pooled.n_found == sum(
        len(m) for m, eos in zip(a.mutation_layers, a.is_eos, strict=True) if not eos
    )
    assert s.distributions["critical_layer"].found_rate == 1.0
    assert all(x == NOT_FOUND or x > 5 for x in a.mutation_layer.tolist())
