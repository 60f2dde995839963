"""The shipped toy model: safetensors within budget, a model card that shows eval.json's numbers, loads as llava,
and reaches the quality its card and the issue promise on a small fixed held-out set, in agreement with eval.json
(a test of the artifact; kept to about a minute)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import evolens
from evolens import toy
from evolens.toy.evaluate import ToyEvaluation

MAX_BYTES = 20 * 1024 * 1024


def test_weights_are_safetensors_within_budget_with_a_card() -> None:
    directory = toy.model_dir()
    weights = directory / "model.safetensors"
    assert weights.stat().st_size <= MAX_BYTES
    assert not [p for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    card = (directory / "README.md").read_text(encoding="utf-8")
    for heading in ("## Data", "## Architecture", "## Training", "## Measured quality"):
        assert heading in card


def _recorded() -> dict[str, Any]:
    return json.loads((toy.model_dir() / "eval.json").read_text(encoding="utf-8"))


def test_the_card_shows_the_numbers_of_eval_json() -> None:
    card = (toy.model_dir() / "README.md").read_text(encoding="utf-8").splitlines()
    recorded = _recorded()
    rows = {
        "| VQA accuracy, typical items": recorded["vqa"]["typical"]["all"],
        "| VQA accuracy, atypical items": recorded["vqa"]["atypical"]["all"],
        "| caption object recall, typical": recorded["captions"]["typical"]["object_recall"],
        "| **prior-driven colour errors**": recorded["prior_color_errors"],
    }
    for label, rate in rows.items():
        assert rate["value"] == rate["hits"] / rate["n"]
        (line,) = [row for row in card if row.startswith(label)]
        assert f"| {100 * rate['value']:.1f}% ({rate['hits']}/{rate['n']}) |" in line, line
    assert any(f"{recorded['n_typical']} typical + {recorded['n_atypical']} atypical" in row for row in card)


def test_loads_as_llava_with_enough_layers() -> None:
    lvlm = evolens.load(
        evolens.toy.model_dir(), device="cpu"
    )  # as the README writes it  # verifies the lens reproduces the logits
    assert lvlm.family == "llava" and lvlm.n_layers >= 8


@pytest.fixture(scope="module")
def quality() -> ToyEvaluation:
    return toy.evaluate(toy.model_dir(), n_typical=40, n_atypical=60, progress=False)


def test_vqa_accuracy_on_typical_items(quality: ToyEvaluation) -> None:
    rate = quality.vqa["typical"]["all"].value
    assert rate is not None and rate >= 0.95, quality.summary_lines()


def test_eval_json_agrees_with_a_recomputation(quality: ToyEvaluation) -> None:
    # The fixture's 40 typical scenes and their questions are the first of eval.json's 200 (same seeds, typical
    # scenes drawn first), so its accuracy is a sample drawn without replacement from the recorded items:
    # it lies within 3 standard deviations of that sample (and a count) of the recorded accuracy.
    recorded = _recorded()["vqa"]["typical"]["all"]
    sample = quality.vqa["typical"]["all"]
    assert 0 < sample.n < recorded["n"] and sample.value is not None
    p = recorded["hits"] / recorded["n"]
    sd = math.sqrt(p * (1 - p) / sample.n * (recorded["n"] - sample.n) / (recorded["n"] - 1))
    assert abs(sample.value - p) <= 3 * sd + 1 / sample.n, (sample.hits, sample.n, recorded)


def test_caption_precision_and_recall_on_typical_items(quality: ToyEvaluation) -> None:
    captions = quality.captions["typical"]
    assert (captions.object_precision.value or 0) >= 0.95, quality.summary_lines()
    assert (captions.object_recall.value or 0) >= 0.95, quality.summary_lines()


def test_prior_driven_errors_exist_on_atypical_items(quality: ToyEvaluation) -> None:
    # the hallucinations the analyses study: an atypical heart/moon answered with its prior colour
    assert quality.prior_color_errors.hits > 0, quality.summary_lines()
