"""The strategies' online detection is evolens's offline detection (issue 18: "a mutation, detected as evolens's
detectors define it"): on the toy model's greedy generations, the step detector finds the critical layer and the
mutation layers that ``analyze_trace`` finds in the trace afterwards (both without a layer baseline, the one thing
an online rule cannot see)."""

from __future__ import annotations

import json

import pytest

import evolens
from evolens.analysis import DetectorParams, analyze_trace
from evolens.api import TraceOptions
from evolens.decoding import Greedy
from evolens.decoding.rules import PassRule, StepDetector
from evolens.decoding.strategies import _Strategy

PARAMS = DetectorParams(baseline_min_tokens=10**6)  # no layer baseline on either side


class _Recorder(PassRule):
    def __init__(self, lens, found) -> None:
        self.detector, self.found = StepDetector(lens, PARAMS), found

    def __call__(self, input_ids, scores, states):
        host = self.detector.host(self.detector.curves(scores, states))
        critical = self.detector.critical_layers(host)
        for row, mutations in enumerate(self.detector.mutations(host, critical)):
            self.found.setdefault(row, []).append((int(critical[row]), [m.layer for m in mutations]))
        return scores


class Recording(_Strategy):
    def __init__(self) -> None:
        self.found: dict[int, list] = {}

    @property
    def name(self) -> str:
        return "recording"

    def to_dict(self) -> dict:
        return {"name": self.name}

    def rule(self, lens):
        return _Recorder(lens, self.found)


@pytest.fixture(scope="module")
def toy_items(tmp_path_factory: pytest.TempPathFactory):
    root = evolens.toy.export_testset(tmp_path_factory.mktemp("set") / "s", n_typical=2, n_atypical=4)
    lines = [json.loads(line) for line in (root / "vqa.jsonl").read_text().splitlines()]
    captions = [(root / "image" / f"toy_000{i}.png", "describe the image .") for i in range(1, 4)]
    return captions + [(root / "image" / it["image"], it["prompt"]) for it in lines[:13]]


def test_online_detection_equals_the_offline_detectors(toy_items) -> None:
    toy = evolens.load(evolens.toy.model_dir())
    images, prompts = [str(i) for i, _ in toy_items], [p for _, p in toy_items]
    recording = Recording()
    options = TraceOptions.from_flat(max_new_tokens=24, batch_size=len(prompts), keep_hidden_states=False)
    traces = toy.trace(
        images=images, prompts=prompts, options=TraceOptions.from_flat(options, decoding=recording)
    )
    plain = toy.trace(
        images=images, prompts=prompts, options=TraceOptions.from_flat(options, decoding=Greedy())
    )
    assert [t.text for t in traces] == [t.text for t in plain]
    n_mutations = 0
    for row, trace in enumerate(traces):
        analysis = analyze_trace(trace, PARAMS)
        online = recording.found[row][: trace.n_steps]
        assert [c for c, _ in online] == analysis.critical_layer.tolist()
        assert [m for _, m in online] == analysis.mutation_layers
        n_mutations += sum(bool(m) for _, m in online)
    assert n_mutations > 0  # the comparison covered steps with mutations
