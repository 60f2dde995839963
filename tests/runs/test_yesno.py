"""Logit-based yes/no scoring in a run: a POPE run on the tiny model tracks the yes/no tokens and its merge writes
``results/yesno.json``, the figure, the summary lines and the report section; set yes/no probabilities give known
answers; a run directory made before resumes as it was; a tokenizer without "yes" is refused through the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import evolens
from evolens.cli import main
from evolens.data import Pope
from evolens.data.pope import pope_scores
from evolens.data.scores import ItemEvaluation
from evolens.store.run import RunDirectory, config_hash
from tests.data.fixtures import POPE_QUESTIONS, write_pope
from tests.run_options import run_options

FAST = {"max_new_tokens": 2, "batch_size": 3, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def pope_run(tmp_path_factory: pytest.TempPathFactory, tiny_llava) -> tuple[Path, Pope]:
    root = tmp_path_factory.mktemp("pope")
    images, questions = write_pope(root)
    data = Pope(images, questions)
    evolens.run(tiny_llava, data, root / "run", **run_options(**FAST))
    return root / "run", data


def test_a_pope_run_tracks_the_yes_no_tokens_and_scores_from_logits(
    pope_run: tuple[Path, Pope], tiny_llava
) -> None:
    run_dir, _ = pope_run
    config = RunDirectory(run_dir).read_manifest()["config"]
    tok = tiny_llava.tokenizer
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    assert config["yesno"] == {
        "yes": [yes],
        "no": [no],
        "spellings": {"yes": yes, " yes": yes, "no": no, " no": no},
    }
    assert config["trace"]["track"] == [yes, no]
    result = json.loads((run_dir / "results" / "yesno.json").read_text())
    assert len(result["items"]) == len(POPE_QUESTIONS)
    for item in result["items"]:
        trace = evolens.RunResults(run_dir).trace(item["item_id"])
        probs = trace.token_probs([yes, no])[:, 0, :]
        assert item["p_yes"] == pytest.approx(float(probs[-1, 0]), rel=1e-5)
        assert item["logit_answer"] == ("yes" if item["p_yes"] > item["p_no"] else "no")
        margins = torch.log(probs[:, 0]) - torch.log(probs[:, 1])
        assert item["margin"] == pytest.approx(margins.tolist(), rel=1e-4, abs=1e-5)
        assert len(item["margin"]) == trace.n_layers + 1
    totals = result["totals"]
    judged = [ItemEvaluation(i["item_id"], "pope", "", (), False, answer=i["logit_answer"], truth=i["truth"])
              for i in result["items"]]  # fmt: skip
    assert totals["scores"]["pope"] == pope_scores(judged).to_dict()
    summary = json.loads((run_dir / "results" / "summary.json").read_text())
    assert totals["text_scores"]["pope"] == summary["evaluation"]["pope"]
    assert summary["yesno"]["scores"] == totals["scores"]
    assert any(line.startswith("POPE (6 questions, logits)") for line in summary["evaluation_lines"])
    assert "figures/yes_no.png" in summary["figures"] and "yesno.json" in summary["files"]
    html = evolens.report.write_report(run_dir.parent / "report.html", run_dir).read_text()
    assert "Yes/no answers from the logits" in html and "decided by here" in html


def _set_margins(run_dir: Path, margins: dict[str, list[float]], tokens: tuple[int, int]) -> None:
    """Write each item's step-0 yes/no log-probabilities so that its margin per layer is the given one."""
    run = RunDirectory(run_dir)
    for item_id, wanted in margins.items():
        path = run.item_dir(item_id) / "tensors.safetensors"
        tensors = load_file(str(path))
        ids = tensors["tracked_ids"].tolist()
        logprobs = tensors["tracked_logprobs"].clone()
        for layer, margin in enumerate(wanted):
            logprobs[layer, 0, ids.index(tokens[0])] = math.log(0.4) + margin / 2
            logprobs[layer, 0, ids.index(tokens[1])] = math.log(0.4) - margin / 2
        tensors["tracked_logprobs"] = logprobs
        save_file(tensors, str(path))


def test_set_yes_no_probabilities_give_known_answers(
    pope_run: tuple[Path, Pope], tmp_path: Path, tiny_llava
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(pope_run[0], run_dir)
    tok = tiny_llava.tokenizer
    n_layers = RunDirectory(run_dir).read_manifest()["config"]["model"]["n_layers"]
    up, down = [1.0] * (n_layers + 1), [-1.0] * (n_layers + 1)
    late_no = [1.0] * n_layers + [-1.0]
    margins = {"1": up, "2": down, "3": late_no, "4": down, "5": up, "6": up}  # truths: y n n y y n
    _set_margins(run_dir, margins, (tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")))
    evolens.finalize_run(run_dir, evolens.FinalizeOptions(layer_detector=None, figures=False))
    result = json.loads((run_dir / "results" / "yesno.json").read_text())
    answers = {i["item_id"]: i["logit_answer"] for i in result["items"]}
    assert answers == {"1": "yes", "2": "no", "3": "no", "4": "no", "5": "yes", "6": "yes"}
    decided = {i["item_id"]: (i["decision_layer"], i["late_flip"]) for i in result["items"]}
    assert decided["3"] == (n_layers, True) and decided["1"] == (0, False)
    pope = result["totals"]["scores"]["pope"]
    assert (
        pope["accuracy"] == pytest.approx(4 / 6) and pope["tp"] == 2 and pope["fp"] == 1 and pope["fn"] == 1
    )
    assert result["totals"]["late_flip_rate"] == pytest.approx(1 / 6)


def test_a_run_made_before_resumes_without_logit_scores(
    pope_run: tuple[Path, Pope], tmp_path: Path, tiny_llava
) -> None:
    run_dir = tmp_path / "old"
    shutil.copytree(pope_run[0], run_dir)
    manifest_path = RunDirectory(run_dir).manifest_path
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["yesno"]
    manifest["config"]["trace"]["track"] = None
    manifest["config_sha256"] = config_hash(manifest["config"])
    manifest_path.write_text(json.dumps(manifest))
    again = evolens.run(tiny_llava, pope_run[1], run_dir, **run_options(**FAST, figures=False))
    assert (again.n_traced, again.n_skipped) == (0, 6)
    assert again.results is not None and again.results["yesno"] is None
    assert not (run_dir / "results" / "yesno.json").exists()


def test_a_tokenizer_without_yes_exits_2(
    tmp_path: Path, tiny_llava_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_llava_dir, model)
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["yep"] = vocab.pop("yes")
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    images, questions = write_pope(tmp_path / "pope")
    code = main(["run", str(model), "-d", "pope", "-r", str(images), "--questions", str(questions),
                 "-o", str(tmp_path / "run"), "--device", "cpu", "--max-new-tokens", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "no single token for 'yes'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("forced", ["yes", "no"])
def test_logit_scoring_on_a_model_whose_yes_no_logits_the_test_sets(
    tmp_path: Path, tiny_llava_dir: Path, forced: str
) -> None:
    """The head's "yes" and "no" rows are set so that, at the first answer position, the last layer gives the
    forced answer a logit of +10 and the other -10: the logit answer, its margin and the POPE score follow."""
    lvlm = evolens.load(tiny_llava_dir, device="cpu")
    images, questions = write_pope(tmp_path)
    item = next(iter(Pope(images, questions)))  # question 1: label "yes"
    tok = lvlm.tokenizer
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    first = lvlm.trace(item.image, item.prompt, max_new_tokens=1)
    assert first.hidden_states is not None
    roles = lvlm.loaded.roles
    with torch.no_grad():
        h = roles.final_norm(first.hidden_states[-1, 0].reshape(1, 1, -1)).reshape(-1).float()
        row = (10.0 * h / h.dot(h)).to(roles.lm_head.weight.dtype)  # row . h = 10
        weight = roles.lm_head.weight
        weight[yes if forced == "yes" else no] = row
        weight[no if forced == "yes" else yes] = -row
    evolens.run(lvlm, [item], tmp_path / "run", **run_options(max_new_tokens=1, batch_size=1, progress=False))
    result = json.loads((tmp_path / "run" / "results" / "yesno.json").read_text())
    (judged,) = result["items"]
    assert judged["logit_answer"] == forced
    assert judged["margin"][-1] == pytest.approx(20.0 if forced == "yes" else -20.0, abs=1e-3)
    accuracy = result["totals"]["scores"]["pope"]["accuracy"]
    assert accuracy == (1.0 if forced == item.annotations["label"] else 0.0)
