"""The exported held-out set: readable by the AMBER and JSONL readers and as one dataset; judged exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evolens.data import Amber, ImageFolder, evaluate
from evolens.data.evaluation import Response
from evolens.errors import DatasetError, StoreError
from evolens.toy import ToyTestSet, export_testset, world
from evolens.toy.evaluate import heldout_items, heldout_scenes


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_testset(tmp_path_factory.mktemp("toy") / "test", n_typical=3, n_atypical=4)


def test_images_and_truth_match_the_scenes(exported: Path) -> None:
    scenes = heldout_scenes(3, 4)
    truth = json.loads((exported / "scenes.json").read_text())
    assert [t["group"] for t in truth] == ["typical"] * 3 + ["atypical"] * 4
    for scene, entry in zip(scenes, truth, strict=True):
        assert world.Scene.from_dict(entry) == scene and entry["atypical"] == scene.atypical
        pixels = np.asarray(Image.open(exported / "image" / entry["image"]).convert("RGB"))
        assert np.array_equal(pixels, world.render(scene))  # PNG is lossless


def test_amber_reader_takes_the_amber_part(exported: Path) -> None:
    amber = list(Amber(exported, "query_all.json"))
    generative = [i for i in amber if i.task == "amber-generative"]
    yes_no = [i for i in amber if i.task == "amber-discriminative"]
    scenes = heldout_scenes(3, 4)
    assert len(generative) == 7 and len(yes_no) == 7 * 3
    for item, scene in zip(generative, scenes, strict=True):
        assert item.annotations["truth"] == scene.shapes
        assert set(item.annotations["hallu"]) == set(world.SHAPES) - set(scene.shapes)
    assert {i.annotations["dimension"] for i in yes_no} == {"existence", "attribute"}


def test_jsonl_reader_takes_the_vqa_part(exported: Path) -> None:
    vqa = list(ImageFolder(exported / "image", jsonl=exported / "vqa.jsonl"))
    assert len(vqa) == 7 * 4 and {i.task for i in vqa} == {"vqa"}
    expected = [
        q
        for _, q in heldout_items(heldout_scenes(3, 4))
        if q.kind in ("color", "shape", "slot_color", "count")
    ]
    assert [(i.prompt, i.annotations["answer"]) for i in vqa] == [(q.text, q.answer) for q in expected]
    priors = [i for i in vqa if "prior" in i.annotations]
    assert priors and all(i.annotations["atypical"] for i in priors)


def test_one_dataset_and_perfect_answers_score_perfectly(exported: Path) -> None:
    data = ToyTestSet(exported)
    items = list(data)
    assert len(items) == len(data) == 7 * 8 and len({i.item_id for i in items}) == len(items)
    answers = {
        "amber-generative": lambda i: " and ".join(f"a {s}" for s in i.annotations["truth"]) + " .",
        "amber-discriminative": lambda i: i.annotations["truth"],
        "vqa": lambda i: i.annotations["answer"] + ".",
    }
    result = evaluate(
        [Response(i.item_id, answers[i.task](i), i.annotations) for i in items], data.resources()
    )
    assert result.amber_discriminative is not None and result.amber_discriminative.overall.accuracy == 1.0
    assert result.vqa is not None and result.vqa.accuracy == 1.0 and result.vqa.prior_answers == 0
    assert result.amber_generative is not None and result.amber_generative.chair == 0.0
    assert not any(it.hallucinated for it in result.items)
    # answering the prior is a hallucination, and counted as prior-driven
    prior_items = [i for i in items if "prior" in i.annotations]
    judged = evaluate([Response(i.item_id, i.annotations["prior"], i.annotations) for i in prior_items])
    n_vqa = sum(i.task == "vqa" for i in prior_items)
    assert judged.vqa is not None and judged.vqa.prior_answers == judged.vqa.n_prior == n_vqa > 0
    assert all(it.hallucinated for it in judged.items)
    assert all(it.mentions[0].label == "hallucinated" for it in judged.items if it.task == "vqa")


def test_yes_no_colour_probes_carry_the_prior_answer(exported: Path) -> None:
    asked = [q for _, q in heldout_items(heldout_scenes(3, 4)) if q.kind in ("exists", "attribute")]
    yes_no = [i for i in Amber(exported, "query_all.json") if i.task == "amber-discriminative"]
    assert [i.prompt for i in yes_no] == [q.text for q in asked]
    assert [i.annotations.get("prior") for i in yes_no] == [q.prior_yes_no for q in asked]
    assert any(q.prior_yes_no is not None for q in asked)


def test_export_is_atomic_and_refuses_to_overwrite(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="already exists"):
        export_testset(exported, n_typical=1, n_atypical=1)
    with pytest.raises(DatasetError):
        ToyTestSet(tmp_path / "missing")
    with pytest.raises(DatasetError, match="tasks"):
        ToyTestSet(exported, tasks=("captions",))
