"""The strategies' step rules on a lens whose layers are chosen by hand, the contrast equations, VCD's noise and the
strategies' settings (issue 18)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evolens.api import TraceOptions
from evolens.decoding import (
    CriticalContrast,
    Dola,
    Greedy,
    Icd,
    MutationSkip,
    Vcd,
    contrast_scores,
    dola_candidates,
    parse_strategies,
    vcd_noise,
)
from evolens.decoding.rules import ContrastRowRule, CriticalContrastRule, DolaRule, MutationRule, StepDetector
from evolens.errors import SettingsError

L = 8
# state -> logits over 4 tokens: a rapid stage (0..2), token 1 stable from the critical layer 3 to state 7, token 2
# taking over at the last layer (a mutation with a spike and a flip)
LAYER_LOGITS = torch.tensor(
    [[0.0, 0, 0, 0], [0, 0, 0, 3], [3, 0, 0, 0]] + [[0, 5, 0, 0]] * 5 + [[0, 0, 6, 0]], dtype=torch.float32
)


class HandLens:
    """A lens whose state ``l`` gives ``LAYER_LOGITS[l]`` for every row, whatever the state holds."""

    n_layers, mode, vocab_size = L, "hand", 4
    device = torch.device("cpu")
    matmul_dtype = None
    logits_dtype = torch.float32

    def logits(self, states, boundaries=None):
        index = torch.arange(states.shape[0]) if boundaries is None else boundaries
        return LAYER_LOGITS[index][:, None, :].expand(-1, states.shape[1], -1).clone()


class _Session:
    model = torch.nn.Linear(1, 1)  # no tied embeddings


STATES = torch.zeros(L + 1, 2, 3)
FINAL = LAYER_LOGITS[-1].expand(2, -1).clone()


def test_the_hand_made_step_has_a_critical_layer_and_a_mutation() -> None:
    detector = StepDetector(HandLens(), MutationSkip().params)
    host = detector.host(detector.curves(FINAL, STATES))
    critical = detector.critical_layers(host)
    assert critical.tolist() == [3, 3]  # both rows: every row's found at once
    for found in detector.mutations(host, critical):
        assert [m.layer for m in found] == [L] and found[0].is_flip and found[0].token_before == 1


def test_mutation_skip_emits_the_stable_token() -> None:
    rule = MutationRule(HandLens(), MutationSkip().params, "emit")
    out = rule(torch.zeros(2, 5, dtype=torch.long), FINAL, STATES)
    assert out.argmax(-1).tolist() == [1, 1]
    # the other tokens' scores are left as they were
    assert torch.equal(out[:, [0, 2, 3]], FINAL[:, [0, 2, 3]])


def test_critical_contrast_subtracts_the_critical_layer() -> None:
    rule = CriticalContrastRule(HandLens(), CriticalContrast().params, beta=0.001)
    out = rule(torch.zeros(2, 5, dtype=torch.long), FINAL, STATES)
    final = torch.log_softmax(FINAL, -1)
    expected = contrast_scores(
        final, torch.log_softmax(LAYER_LOGITS[3], -1).expand(2, -1), keep=1, alpha=1, beta=0.001
    )
    assert torch.allclose(out, expected)
    assert out.argmax(-1).tolist() == [2, 2]


def test_dola_contrasts_with_the_farthest_candidate() -> None:
    rule = DolaRule(HandLens(), "low", beta=0.001)
    rule.start(_Session())  # type: ignore[arg-type]
    assert rule.candidates == [0, 2]
    out = rule(torch.zeros(2, 5, dtype=torch.long), FINAL, STATES)
    final = torch.log_softmax(FINAL, -1)
    # state 2 (token 0 at 3 logits) is farther from the final layer than the uniform state 0? compute both
    from evolens.metrics.divergence import jsd_bits

    cands = torch.log_softmax(LAYER_LOGITS[[0, 2]], -1)
    farthest = int(jsd_bits(final[:1].expand(2, -1), cands).argmax())
    expected = contrast_scores(final, cands[farthest].expand(2, -1), keep=1, alpha=1, beta=0.001)
    assert torch.allclose(out, expected)


def test_contrast_equation_and_plausibility() -> None:
    final = torch.log(torch.tensor([[0.6, 0.33, 0.05, 0.02]]))
    other = torch.log(torch.tensor([[0.7, 0.1, 0.1, 0.1]]))
    out = contrast_scores(final, other, keep=2.0, alpha=1.0, beta=0.1)
    assert math.isinf(out[0, 3]) and out[0, 3] < 0 and math.isinf(out[0, 2])  # below 0.1 * 0.6
    assert out[0, :2].tolist() == pytest.approx(
        [2 * math.log(0.6) - math.log(0.7), 2 * math.log(0.33) - math.log(0.1)]
    )
    assert int(out.argmax()) == 1  # the contrast promotes the token the other distribution does not explain


def test_contrast_rows_follow_their_items() -> None:
    rule = ContrastRowRule(alpha=1.0, beta=0.1)
    rule.n_items = 2
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [3.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    out = rule(torch.zeros(4, 3, dtype=torch.long), scores, torch.zeros(L + 1, 4, 3))
    assert torch.equal(out[:2], out[2:])
    logp = torch.log_softmax(scores, -1)
    assert torch.allclose(out[:2], contrast_scores(logp[:2], logp[2:], keep=2.0, alpha=1.0, beta=0.1))
    assert out[1].argmax() == 2  # the same image/prompt in both rows: the contrast changes nothing


def test_dola_candidates_follow_hugging_face() -> None:
    assert dola_candidates(32, "high", tied=False) == list(range(16, 32, 2))
    assert dola_candidates(32, "low", tied=False) == list(range(0, 16, 2))
    assert dola_candidates(32, "low", tied=True) == list(range(2, 16, 2))
    assert dola_candidates(48, "high", tied=False) == list(range(28, 48, 2))
    assert dola_candidates(4, "low", tied=True) == [2]
    with pytest.raises(SettingsError):
        dola_candidates(8, "middle", tied=False)


def test_vcd_noise_follows_the_schedule_and_touches_only_contrast_rows() -> None:
    pixels = torch.ones(2000)
    near = vcd_noise(pixels, 0, torch.Generator().manual_seed(0))
    assert float((near - pixels).abs().max()) < 0.05
    mid = vcd_noise(pixels, 500, torch.Generator().manual_seed(0))
    assert torch.equal(mid, vcd_noise(pixels, 500, torch.Generator().manual_seed(0)))
    assert 0.5 < float(mid.mean()) < 1.0 and 0.2 < float(mid.std()) < 0.8
    batch = {"input_ids": torch.zeros(4, 3), "pixel_values": torch.zeros(4, 3, 2, 2)}
    out = Vcd().contrast_inputs(batch, 2)
    assert torch.equal(out["pixel_values"][:2], batch["pixel_values"][:2])
    assert not torch.equal(out["pixel_values"][2:], batch["pixel_values"][2:])
    with pytest.raises(SettingsError, match="text-only"):
        Vcd().contrast_inputs({"input_ids": torch.zeros(4, 3)}, 2)


def test_icd_prefixes_its_instruction() -> None:
    assert (
        Icd().contrast_prompt("describe the image .")
        == "You are a confused object detector. describe the image ."
    )
    assert Icd(instruction="Be wrong.").contrast_prompt("q") == "Be wrong. q"


def test_parse_strategies_and_bad_settings() -> None:
    got = parse_strategies("greedy, dola,vcd", ["dola.layers=low", "vcd.noise_step=999", "vcd.alpha=0.5"])
    assert got == [Greedy(), Dola(layers="low"), Vcd(alpha=0.5, noise_step=999)]
    assert [s.name for s in parse_strategies("mutation-skip,mutation-recompute")] == [
        "mutation-skip",
        "mutation-recompute",
    ]
    assert parse_strategies(["icd"])[0].to_dict() == {
        "name": "icd",
        "alpha": 1.0,
        "beta": 0.1,
        "instruction": "You are a confused object detector.",
    }
    for names, params, message in [
        ("greedy,beam", (), "unknown decoding strategy 'beam'"),
        ("dola,dola", (), "named twice"),
        ("", (), "no decoding strategy"),
        ("dola", ("vcd.alpha=1",), "not among"),
        ("dola", ("dola.alpha=1",), "no parameter 'alpha'"),
        ("dola", ("dola.layers",), "NAME.KEY=VALUE"),
        ("vcd", ("vcd.noise_step=1000",), r"\[0, 999\]"),
        ("vcd", ("vcd.noise_step=half",), "expected int"),
        ("icd", ("icd.beta=0",), r"\(0, 1\]"),
        ("dola", ("dola.layers=middle",), "'low' or 'high'"),
        ("icd", ("icd.alpha=-1",), ">= 0"),
    ]:
        with pytest.raises(SettingsError, match=message):
            parse_strategies(names, params)


def test_trace_options_carry_a_strategy() -> None:
    options = TraceOptions(decoding=Dola())
    assert options.run_config()["decoding"] == {"name": "dola", "layers": "high", "beta": 0.1}
    assert "decoding" not in TraceOptions().run_config()
    with pytest.raises(SettingsError, match="greedily"):
        TraceOptions.from_flat(do_sample=True, decoding=Vcd())


def test_the_running_baseline_is_the_median_of_every_earlier_step() -> None:
    """The decoding rules' layer baseline: after each step, the median of all the steps so far, position by
    position, to the last bit (odd and even counts, ties, a constant position)."""
    from evolens.decoding.rules import RunningMedian

    rng = np.random.default_rng(0)
    running, seen = RunningMedian(), []
    with pytest.raises(SettingsError, match="no values"):
        running.median()
    for step in range(40):
        values = rng.choice([0.0, 0.1, 0.5], size=(6, 3)) if step % 3 else rng.random((6, 3))
        values[0, 0] = 0.25
        running.add(values)
        seen.append(values)
        assert np.array_equal(running.median(), np.median(np.stack(seen), axis=0)), step
    assert running.count == 40
