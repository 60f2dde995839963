"""``evolens compare`` (LVLM vs text-only, §6) and ``evolens contrast`` (hallucinated vs correct token, Fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evolens.analysis import ProfileComparison
from evolens.experiments import load_comparisons
from evolens.trace import Trace
from tests.cli.helpers import assert_user_error, copy_traces, run


# ----------------------------------------------------------------------------------------------- compare
def test_compare_three_conditions(tiny_run, tiny_llama_dir: Path, tmp_path: Path, capsys) -> None:
    root, _ = tiny_run
    code, stdout, err = run(
        capsys, "compare", root / "model", "-i", root / "images" / "item0.png", "-i", root / "images" / "item1.png",
        "-p", "describe the image", "--text-model", tiny_llama_dir, "--text-prompt", "what color is the sky ?",
        "--max-new-tokens", "4", "-o", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    comparison = ProfileComparison.load(tmp_path / "profiles.json")
    assert [p.label for p in comparison.profiles] == ["image", "no image", "llm"]
    image, no_image, llm = comparison.profiles
    assert (image.n_items, no_image.n_items, llm.n_items) == (2, 1, 1)
    assert image.has_image and not no_image.has_image and llm.model_source == str(tiny_llama_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiles.json", "profiles.png", "profiles.svg"]
    assert "JSD profiles side by side" in stdout and f"{image.hierarchy.ratio:.2f}" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-i", "{image}", "-i", "{image}", "-p", "a", "-p", "b", "-p", "c"], "one per --image"),
        (["-i", "{missing}", "-p", "a"], "image file not found"),
        (["-i", "{image}", "-p", " "], "prompt is empty"),
        (["-i", "{image}", "-p", "a", "--text-prompt", "b"], "--text-prompt needs --text-model"),
    ],
)
def test_compare_user_errors(tiny_run, tmp_path: Path, capsys, argv, message) -> None:
    root, _ = tiny_run
    names = {"image": root / "images" / "item0.png", "missing": tmp_path / "x.png"}
    result = run(capsys, "compare", root / "model", *[a.format(**names) for a in argv], "-o", tmp_path / "o")
    assert_user_error(result, message)


# ----------------------------------------------------------------------------------------------- contrast
def test_contrast_one_step_next_to_the_trace(tiny_run, tmp_path: Path, capsys) -> None:
    trace_dir = copy_traces(tiny_run[0], tmp_path) / "item0"
    trace = Trace.load(trace_dir)
    candidate = int(trace.metrics.candidate_ids[1, 1])  # another top-1 token of step 1
    word = trace.vocab[candidate]
    code, stdout, err = run(capsys, "contrast", trace_dir, "--step", "1", "--alternative", word)
    assert code == 0, err
    (comparison,) = load_comparisons(trace_dir / "contrast.json")
    assert comparison.step == 1 and comparison.alternative_id == candidate
    assert comparison.alternative_source == "given"
    np.testing.assert_allclose(
        comparison.generated_probs, trace.token_probs()[:, 1].double().numpy(), rtol=1e-6
    )
    np.testing.assert_allclose(
        comparison.alternative_probs,
        trace.metrics.candidate_logprobs[:, 1, 1].double().exp().numpy(),
        rtol=1e-6,
    )
    assert (trace_dir / "contrast.png").is_file() and (trace_dir / "contrast.svg").is_file()
    assert "generated vs alternative token" in stdout and "given" in stdout


def test_contrast_automatic_choice_and_hallucinated_words(tiny_run, tmp_path: Path, capsys) -> None:
    trace_dir = tiny_run[0] / "traces" / "item0"
    trace = Trace.load(trace_dir)
    code, _, err = run(capsys, "contrast", trace_dir, "-s", "1", "-s", "2", "-o", tmp_path / "auto")
    assert code == 0, err
    auto = load_comparisons(tmp_path / "auto" / "contrast.json")
    assert [c.step for c in auto] == [1, 2] and {c.alternative_source for c in auto} == {"competitor"}
    # the token generated at step 1 plays the hallucination; step 1's second candidate the ground truth
    generated = trace.vocab[int(trace.generated_ids[1])]
    truth_id = int(trace.metrics.candidate_ids[1, 1])
    truth = trace.vocab[truth_id]
    wanted = [s for s, i in enumerate(trace.generated_ids.tolist()) if trace.vocab[i] == generated]
    # a word the trace stored somewhere, but at none of the steps that generated `generated`
    missing = next(
        trace.vocab[i]
        for i in sorted(trace.vocab)
        if trace.vocab[i] != generated
        and i not in trace.metrics.tracked_ids.tolist()
        and all(i not in trace.metrics.candidate_ids[s].tolist() for s in wanted)
    )
    argv = ["contrast", trace_dir, "--hallu", generated, "-o", tmp_path / "hallu", "-f", "png"]
    assert_user_error(run(capsys, *argv, "--truth", missing), "give --model")
    code, _, err = run(capsys, *argv, "--truth", truth, "--model", tiny_run[0] / "model", "--device", "cpu")
    assert code == 0, err
    found = load_comparisons(tmp_path / "hallu" / "contrast.json")
    assert [c.step for c in found] == wanted
    assert all(c.alternative_token == truth and c.alternative_source == "ground_truth" for c in found)
    # a stored step matches what the trace stored
    stored = next(c for c in found if c.step == 1)
    np.testing.assert_allclose(
        stored.alternative_probs, trace.metrics.candidate_logprobs[:, 1, 1].double().exp().numpy(), rtol=1e-4
    )
    assert sorted(p.name for p in (tmp_path / "hallu").iterdir()) == ["contrast.json", "contrast.png"]


def test_contrast_with_the_model_computes_tokens_the_trace_did_not_store(
    tiny_run, tmp_path: Path, capsys
) -> None:
    root, _ = tiny_run
    trace_dir = root / "traces" / "item0"
    trace = Trace.load(trace_dir)
    unstored = next(w for w in ("moon", "star", "circle", "dog", "cat") if w not in trace.vocab.values())
    assert_user_error(run(capsys, "contrast", trace_dir, "-s", "0", "--alternative", unstored), "--model")
    code, _, err = run(
        capsys, "contrast", trace_dir, "-s", "0", "--alternative", unstored, "--model", root / "model",
        "--device", "cpu", "-o", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    (comparison,) = load_comparisons(tmp_path / "contrast.json")
    assert comparison.alternative_token.strip() == unstored
    probs = np.asarray(comparison.alternative_probs)
    assert probs.shape == (trace.n_layers + 1,) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --step"),
        (["--step", "99"], "--step must be in [0, 6)"),
        (["--hallu", "boy", "--step", "1"], "leave out --step"),
        (["--hallu", "zebra"], "not among the tokens stored"),
        (["--step", "1", "--prob-min-peak", "7"], "prob_min_peak"),
    ],
)
def test_contrast_user_errors(tiny_run, tmp_path: Path, capsys, argv, message) -> None:
    trace_dir = tiny_run[0] / "traces" / "item0"
    assert_user_error(run(capsys, "contrast", trace_dir, *argv, "-o", tmp_path), message)
    assert not (tmp_path / "contrast.json").exists()


def test_contrast_refuses_the_generated_token_as_alternative(tiny_run, tmp_path: Path, capsys) -> None:
    trace_dir = tiny_run[0] / "traces" / "item0"
    trace = Trace.load(trace_dir)
    generated = trace.vocab[int(trace.generated_ids[1])].strip()
    argv = ["contrast", trace_dir, "--step", "1", "--alternative", generated, "-o", tmp_path]
    assert_user_error(run(capsys, *argv), "is the generated token itself")
    assert not (tmp_path / "contrast.json").exists()
