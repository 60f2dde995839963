from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evolens.analysis import NOT_FOUND, DetectorParams, analyze_trace
from evolens.errors import LensUnavailableError, SettingsError
from evolens.experiments.hallucination import TokenComparison, compare_hallucinations, compare_tokens
from tests.analysis.synthetic import make_metrics, make_trace, step_jsd
from tests.experiments.conftest import make_image

L = 16
DOG, SHEEP, FIELD = 7, 9, 11


def _hallucination_trace():
    """Step 0 (" dog"): the correct " sheep" leads from the critical layer 6 until the mutation at 13, where " dog"
    takes over (Fig. 3). Step 1 (" field"): decided at 6, no mutation, no competitor after layer 2."""
    rng = np.random.default_rng(0)
    dog = np.r_[rng.uniform(0, 0.01, 13), [0.6, 0.7, 0.8, 0.8]]
    sheep = np.r_[rng.uniform(0, 0.01, 6), [0.5, 0.6, 0.6, 0.7, 0.7, 0.7, 0.6], [0.2, 0.1, 0.1, 0.1]]
    field = np.r_[rng.uniform(0, 0.01, 6), np.full(11, 0.9)]
    probs = np.stack([dog, field], axis=1)
    jsd = np.stack([step_jsd(rng, L, 6, [12]).jsd, step_jsd(rng, L, 6).jsd], axis=1)
    top1 = np.stack([np.r_[[3] * 6, [SHEEP] * 7, [DOG] * 4], np.r_[[3] * 6, [FIELD] * 11]], axis=1)
    top1_probs = np.stack([np.maximum(dog, sheep), field], axis=1)
    metrics = make_metrics(
        probs, jsd, top1_ids=top1, top1_probs=top1_probs, target_ids=np.array([DOG, FIELD])
    )
    # the union of top-1 tokens per step, with their curves
    metrics.candidate_ids = torch.tensor([[3, SHEEP, DOG], [3, FIELD, -1]])
    cand = np.full((L + 1, 2, 3), -np.inf)
    cand[:, 0, 0], cand[:, 0, 1], cand[:, 0, 2] = np.log(0.01), np.log(sheep), np.log(dog)
    cand[:, 1, 0], cand[:, 1, 1] = np.log(0.01), np.log(field)
    metrics.candidate_logprobs = torch.tensor(cand, dtype=torch.float32)
    return make_trace(metrics, [" dog", " field"])


def test_fig3_pattern_from_ground_truth_ids() -> None:
    trace = _hallucination_trace()
    c = compare_tokens(trace, 0, ground_truth=[SHEEP, 3])
    assert (c.generated_id, c.alternative_id, c.alternative_source) == (DOG, SHEEP, "ground_truth")
    assert c.critical_layer == 6 and c.mutation_layers == [13] and c.mutation_detected
    assert c.crossing_layer == 13 and c.crossing_at_mutation and c.alternative_led
    assert len(c.generated_probs) == len(c.alternative_probs) == L + 1
    assert c.alternative_probs[8] == pytest.approx(0.6, rel=1e-5)
    assert (13, 1) in c.crossings
    assert TokenComparison.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_competitor_and_given_alternatives() -> None:
    trace = _hallucination_trace()
    auto = compare_tokens(trace, 0)
    assert auto.alternative_id == SHEEP and auto.alternative_source == "competitor"
    given = compare_tokens(trace, 0, alternative=3)
    assert given.alternative_source == "given" and not given.alternative_led
    # decided early, no mutation: the competitor never leads after the critical layer
    early = compare_tokens(trace, 1)
    assert early.alternative_id == 3 and not early.mutation_detected and not early.alternative_led
    assert early.crossing_layer != NOT_FOUND and not early.crossing_at_mutation


def test_compare_hallucinations_finds_the_steps() -> None:
    trace = _hallucination_trace()
    found = compare_hallucinations(trace, [DOG], [SHEEP])
    assert [c.step for c in found] == [0] and found[0].alternative_id == SHEEP
    assert compare_hallucinations(trace, [12345 % 50], [SHEEP]) == []


def test_bad_arguments() -> None:
    trace = _hallucination_trace()
    with pytest.raises(SettingsError, match="step"):
        compare_tokens(trace, 2)
    with pytest.raises(SettingsError, match="generated token itself"):
        compare_tokens(trace, 0, alternative=DOG)
    with pytest.raises(SettingsError, match="lvlm"):
        compare_tokens(trace, 0, alternative="sheep")
    with pytest.raises(SettingsError, match="other detector parameters"):
        compare_tokens(trace, 0, params=DetectorParams(first_layer=0), analysis=analyze_trace(trace))
    # a token the trace did not keep needs the lens; this synthetic trace has none
    with pytest.raises(LensUnavailableError):
        compare_tokens(trace, 0, alternative=20)


def test_words_and_untracked_tokens_on_a_model(tiny_models) -> None:
    lvlm = tiny_models("llava")
    trace = lvlm.trace(make_image(0), "describe the image", max_new_tokens=4)
    c = compare_tokens(trace, 1, alternative="dog", lvlm=lvlm)
    (dog,) = lvlm.token_ids(["dog"])
    if dog == int(trace.generated_ids[1]):
        pytest.skip("the tiny model happened to generate the alternative")
    assert c.alternative_id == dog and c.alternative_token.strip() == "dog"
    states = trace.hidden_states
    assert states is not None
    expected = torch.softmax(lvlm.lens().logits(states[:, 1:2]).double(), -1)[:, 0, dog]
    np.testing.assert_allclose(c.alternative_probs, expected.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(c.generated_probs, trace.token_probs()[:, 1].double().numpy(), rtol=1e-6)
