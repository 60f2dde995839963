"""Every strategy on every tiny family, in padded batches with the KV cache (issue 18): the contrast strategies
reduce to greedy decoding where their equations say so, and mutation-recompute's uncached pass reproduces the
cached step when it skips nothing."""

from __future__ import annotations

import pytest
import torch

from evolens.api import TraceOptions
from evolens.capture.generate import eos_token_ids, generate_with_capture
from evolens.decoding import CriticalContrast, Dola, Greedy, Icd, MutationSkip, Vcd
from evolens.decoding.rules import MutationRule
from evolens.testing import TINY_BUILDERS
from tests.experiments.conftest import load_family, make_image

FAMILIES = sorted(TINY_BUILDERS)
PROMPTS = ("describe the image", "what color is the heart on the left ?")
N_NEW = 5
pytestmark = pytest.mark.usefixtures("one_thread")


def _texts(lvlm, decoding) -> list[list[int]]:
    images = [make_image(i) for i in range(2)] if lvlm.is_vlm else [None, None]
    options = TraceOptions.from_flat(max_new_tokens=N_NEW, keep_hidden_states=False, decoding=decoding)
    traces = lvlm.trace(images=images, prompts=list(PROMPTS), options=options)
    return [t.generated_ids.tolist() for t in traces]


@pytest.mark.parametrize("family", FAMILIES)
def test_strategies_that_reduce_to_greedy_equal_it(family: str, tiny_models) -> None:
    lvlm = load_family(family, tiny_models)
    greedy = _texts(lvlm, Greedy())
    assert _texts(lvlm, None) == greedy
    # beta = 1 keeps only the final arg-max plausible; alpha = 0 removes the contrast term
    assert _texts(lvlm, Dola(beta=1.0)) == greedy
    assert _texts(lvlm, CriticalContrast(beta=1.0)) == greedy
    assert _texts(lvlm, Icd(alpha=0.0)) == greedy
    if lvlm.is_vlm:
        assert _texts(lvlm, Vcd(alpha=0.0)) == greedy
    for strategy in (MutationSkip(), MutationSkip(mode="recompute"), Dola(), CriticalContrast(), Icd()):
        out = _texts(lvlm, strategy)
        assert len(out) == 2 and all(1 <= len(ids) <= N_NEW for ids in out)


class _RecomputeProbe(MutationRule):
    """Recompute every step with nothing skipped and keep the largest difference from the cached scores."""

    worst = 0.0

    def __call__(self, input_ids, scores, states):
        redone = self._recompute(input_ids, {row: [] for row in range(scores.shape[0])})
        finite = torch.isfinite(scores)
        scale = float(scores[finite].abs().max().clamp_min(1.0))
        self.worst = max(self.worst, float((redone[finite] - scores[finite].float()).abs().max()) / scale)
        return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_uncached_recompute_reproduces_the_cached_step(family: str, tiny_models) -> None:
    lvlm = load_family(family, tiny_models)
    images = [make_image(i) for i in range(2)] if lvlm.is_vlm else None
    rendered = [lvlm.render_prompt(p, image=images is not None) for p in PROMPTS]
    probe = _RecomputeProbe(lvlm.lens(), MutationSkip().params, "recompute")
    generate_with_capture(
        lvlm.model,
        lvlm.loaded.roles.decoder_layers,
        lvlm.encode(rendered, images),
        TraceOptions.from_flat(max_new_tokens=N_NEW).generation,
        eos_ids=eos_token_ids(lvlm.model, lvlm.tokenizer),
        pad_id=int(lvlm.tokenizer.pad_token_id),
        suppress_ids=lvlm.loaded.roles.suppressed_token_ids,
        rule=probe,
    )
    assert probe.worst < 1e-4
