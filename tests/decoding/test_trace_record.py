"""A strategy's trace records what it changed, and keeps it through save and load (issue 18)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from evolens.api import TraceOptions
from evolens.decoding import Greedy, Icd
from evolens.decoding.strategies import _Strategy
from evolens.trace import Trace
from tests.experiments.conftest import make_image


class ForceAtStep:
    """Emit ``token`` at step ``step`` whatever the scores say."""

    contrast = False

    def __init__(self, step: int, token: int) -> None:
        self.step, self.token, self.calls = step, token, 0

    def start(self, session: Any) -> None:
        return None

    def __call__(self, input_ids, scores, states):
        out = scores
        if self.calls == self.step:
            out = scores.clone()
            out[:, self.token] = scores.max() + 1
        self.calls += 1
        return out


@dataclass(frozen=True)
class Force(_Strategy):
    step: int = 1
    token: int = 5

    @property
    def name(self) -> str:
        return "force"

    def rule(self, lens):
        return ForceAtStep(self.step, self.token)


def _trace(lvlm, decoding, n: int = 2):
    options = TraceOptions.from_flat(max_new_tokens=4, decoding=decoding)
    return lvlm.trace(
        images=[make_image(i) for i in range(n)], prompts=["describe", "what is it ?"][:n], options=options
    )


def test_the_trace_records_the_steps_a_strategy_changed(tiny_llava, tmp_path) -> None:
    greedy = _trace(tiny_llava, Greedy())
    forced = _trace(tiny_llava, Force(step=1, token=5))
    for plain, changed in zip(greedy, forced, strict=True):
        assert plain.decoding == {"strategy": {"name": "greedy"}, "overridden": []}
        assert int(changed.generated_ids[1]) == 5
        first = int(plain.generated_ids[1])
        assert changed.decoding["overridden"] == ([] if first == 5 else [[1, first]])
        assert changed.decoding["strategy"] == {"name": "force", "step": 1, "token": 5}
    forced[0].save(tmp_path / "t")
    assert Trace.load(tmp_path / "t").decoding == forced[0].decoding
    plain_trace = _trace(tiny_llava, None, n=1)[0]
    plain_trace.save(tmp_path / "p")
    assert plain_trace.decoding is None and Trace.load(tmp_path / "p").decoding is None


def test_contrast_rows_do_not_become_items(tiny_llava) -> None:
    traces = _trace(tiny_llava, Icd())
    assert len(traces) == 2 and [t.item_id for t in traces] == ["0", "1"]
    assert all(
        t.hidden_states is not None and t.hidden_states.shape[1] == len(t.generated_ids) for t in traces
    )
    assert torch.isfinite(traces[0].metrics.jsd_bits).all()


def test_the_report_says_what_a_strategy_changed(tiny_llava, tmp_path) -> None:
    from evolens.report import write_report

    forced = _trace(tiny_llava, Force(step=1, token=5), n=1)[0]
    forced.tokens[1] = "<b>x</b>"  # a model's string: escaped in the page
    page = write_report(tmp_path / "r.html", [forced]).read_text()
    expected = "force: 1 token(s) changed" if forced.decoding["overridden"] else "every token is the final"
    assert expected in page and "<b>x</b>" not in page
