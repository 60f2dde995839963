from __future__ import annotations

import pytest
import torch

from evolens.errors import LensUnavailableError, SettingsError
from evolens.experiments.paper import PaperMutations, paper_mutation_layers
from evolens.metrics.divergence import jsd_bits
from evolens.trace import Trace
from tests.experiments.conftest import make_image


def test_paper_mutation_layers_on_a_model(tiny_models, tmp_path) -> None:
    lvlm = tiny_models("llava")
    trace = lvlm.trace(make_image(0), "describe the image", max_new_tokens=5)
    lensed = lvlm.attach(trace)
    result = paper_mutation_layers(lensed, critical=1, window=(2, 4), chunk_steps=2)
    logp = torch.log_softmax(lensed.logits().double(), dim=-1)
    expected = jsd_bits(logp[1:2], logp[2:5])  # [3, steps]
    torch.testing.assert_close(torch.tensor(result.divergence, dtype=torch.float64), expected)
    assert result.mutation_layer == (2 + expected.argmax(0)).tolist()
    default = paper_mutation_layers(lensed)
    assert (default.critical_layer, default.first_layer, default.last_layer) == (2, 3, 3)  # 18/32 of 4 layers
    assert PaperMutations.from_dict(result.to_dict()) == result
    assert len(paper_mutation_layers(lensed, critical=1, reduction="paper").mutation_layer) == trace.n_steps
    with pytest.raises(SettingsError):
        paper_mutation_layers(lensed, critical=3, window=(2, 4))
    with pytest.raises(SettingsError):
        paper_mutation_layers(lensed, critical=1, window=(2, 5))
    trace.save(tmp_path / "t", hidden_states=False)
    with pytest.raises(LensUnavailableError, match="hidden states"):
        paper_mutation_layers(lvlm.attach(Trace.load(tmp_path / "t")))
