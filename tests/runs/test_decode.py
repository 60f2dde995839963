"""``evolens.runs.decode``: strategies traced as runs into one directory, compared with the baseline — table values on
cases with a known answer, resume after an interruption, refusals."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from evolens import toy
from evolens.api import LVLM, TraceOptions
from evolens.decoding import Greedy
from evolens.errors import SettingsError, StoreError
from evolens.hallucination.decode_results import DecodeResult, mitigation_table, scores_table
from evolens.runs import FinalizeOptions
from evolens.runs.decode import DecodeOptions, DecodeStrategy, decode
from evolens.store.results import generated_ids
from evolens.store.run import RunDirectory
from tests.runs.helpers import assert_same_run

TRACE = TraceOptions.from_flat(max_new_tokens=3, batch_size=8)
SHORT = TraceOptions.from_flat(max_new_tokens=1, batch_size=8)
FINALIZE = FinalizeOptions(figures=False, n_bootstrap=50)
QUICK = DecodeOptions(n_bootstrap=200, figures=False, report=False, reports=False)
STRATEGIES = [
    DecodeStrategy("greedy", TRACE),
    DecodeStrategy(
        "greedy-again", replace(TRACE, decoding=Greedy())
    ),  # the strategy object: plain greedy again
    DecodeStrategy("one-token", SHORT),
]


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy.export_testset(tmp_path_factory.mktemp("toyset") / "set", n_typical=2, n_atypical=2)


@pytest.fixture(scope="module")
def decoded(tiny_llava: LVLM, toy_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted comparison of the three strategies on the 32 items of 4 toy scenes, every output written."""
    out = tmp_path_factory.mktemp("decode") / "cmp"
    decode(
        tiny_llava, toy.ToyTestSet(toy_set), out, STRATEGIES, finalize=FINALIZE,
        options=DecodeOptions(n_bootstrap=200), progress=False,
    )  # fmt: skip
    return out


def _ids(run_dir: Path) -> dict[str, list[int]]:
    return {str(r["item_id"]): generated_ids(d) for r, d in RunDirectory(run_dir).iter_done()}


def test_a_copy_of_the_baseline_changes_nothing(decoded: Path) -> None:
    result = DecodeResult.load(decoded)
    base, copy = result.strategy("greedy"), result.strategy("greedy-again")
    assert result.baseline == "greedy" and base.paired is None and base.changes is None
    p = copy.paired
    assert p is not None and p.n_pairs == base.quality.n_judged == 32
    assert (p.corrected, p.broken, p.prior_corrected, p.prior_broken) == (0, 0, 0, 0)
    assert p.difference == 0.0 and p.low == 0.0 and p.high == 0.0 and p.mcnemar_p == 1.0
    assert copy.quality == base.quality and copy.scores == base.scores
    assert copy.changes is not None and copy.changes.n_changed == 0 and copy.changes.mean_similarity == 1.0
    assert copy.examples == []


def test_token_changes_of_a_truncated_baseline(decoded: Path) -> None:
    """Greedy decoding cut after one token generates the first token of greedy's answer: an item changed exactly
    when greedy generated more than one token, with similarity 2 / (1 + n)."""
    result = DecodeResult.load(decoded)
    base = _ids(decoded / "runs" / "greedy")
    short = _ids(decoded / "runs" / "one-token")
    assert all(short[k] == ids[:1] for k, ids in base.items())
    changes = result.strategy("one-token").changes
    assert changes is not None and changes.n_pairs == len(base) == 32
    assert changes.n_changed == sum(len(ids) > 1 for ids in base.values())
    expected = sum(2 / (1 + len(ids)) for ids in base.values()) / len(base)
    assert changes.mean_similarity == pytest.approx(expected)
    assert changes.mean_tokens == 1.0
    examples = result.strategy("one-token").examples
    assert 0 < len(examples) <= 5
    for e in examples:
        assert {op["tag"] for op in e.ops} == {"delete"}  # the rest of greedy's answer, removed


def test_paired_counts_match_the_runs_evaluations(decoded: Path) -> None:
    result = DecodeResult.load(decoded)

    def correct(name: str) -> dict[str, bool]:
        data = json.loads((decoded / "runs" / name / "results" / "evaluation.json").read_text())
        return {it["item_id"]: not it["hallucinated"] for it in data["items"]}

    base, short = correct("greedy"), correct("one-token")
    p = result.strategy("one-token").paired
    assert p is not None
    assert p.corrected == sum(not base[k] and short[k] for k in base)
    assert p.broken == sum(base[k] and not short[k] for k in base)
    assert p.difference == pytest.approx((p.corrected - p.broken) / 32)


def test_costs_tables_and_outputs(decoded: Path) -> None:
    result = DecodeResult.load(decoded)
    for s in result.strategies:
        assert s.cost.n_items == 32 and s.cost.seconds > 0 and s.cost.s_per_token is not None
        n_tokens = sum(len(ids) for ids in _ids(decoded / "runs" / s.name).values())
        assert s.cost.n_tokens == n_tokens
    assert result.strategy("greedy").cost.multiple == 1.0
    sample = json.loads((decoded / "cost-sample.json").read_text())
    assert sample["strategies"] == [s.name for s in STRATEGIES] and sample["rounds"] == 5
    assert len(sample["item_ids"]) == 8 and all(len(v) == 5 for v in sample["seconds"].values())
    assert sample["n_tokens"]["one-token"] == 8  # one token for each of the batch's items
    assert result.strategy("greedy").cost.sample_multiple == 1.0
    assert all(s.cost.sample_multiple is not None and s.cost.sample_multiple > 0 for s in result.strategies)
    assert result.settings["cost_sample"] == {"n_items": 8, "rounds": 5}
    columns, rows = mitigation_table(result)
    assert [r[0] for r in rows] == ["greedy", "greedy-again", "one-token"]
    assert all(len(r) == len(columns) for r in rows)
    again = dict(zip(columns, rows[1], strict=True))
    assert again["corrected"] == "0" and again["broken"] == "0" and again["McNemar p"] == "1"
    assert again["Δ acc., pts [CI]"] == "+0.0 [+0.0, +0.0]" and again["items changed"] == "0/32"
    score_columns, score_rows = scores_table(result)
    assert score_columns == ("score", "greedy", "greedy-again", "one-token")
    assert any(r[0] == "VQA: accuracy" for r in score_rows)
    assert {p.name for p in (decoded / "figures").iterdir()} == {"decode.png", "decode.svg"}
    html = (decoded / "report.html").read_text(encoding="utf-8")
    assert html.index("the mitigation table") < html.index("Run · greedy")  # the comparison first
    assert html.count("Every decoding strategy") == 32  # each item's answers under every strategy
    assert sorted(p.name for p in (decoded / "reports").iterdir()) == sorted(
        f"{s.name}.html" for s in STRATEGIES
    )


class _Interrupt(Exception):
    pass


class _DiesAfter:
    """A progress display that raises after ``n`` advances of the strategy named ``name``."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n, self.current = name, n, ""

    def start(self, total: int, completed: int, description: str) -> None:
        self.current = description

    def advance(self, n: int = 1) -> None:
        if self.current.startswith(self.name):
            self.n -= n
            if self.n <= 0:
                raise _Interrupt

    def close(self) -> None:
        pass


def test_interrupted_then_resumed_equals_uninterrupted(
    decoded: Path, tiny_llava: LVLM, toy_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    data = toy.ToyTestSet(toy_set)
    options = DecodeOptions(n_bootstrap=200)
    with pytest.raises(_Interrupt):  # the first batch of the one-token strategy written, then interrupted
        decode(
            tiny_llava,
            data,
            out,
            STRATEGIES,
            finalize=FINALIZE,
            options=options,
            progress=_DiesAfter("one", 8),
        )
    done = RunDirectory(out / "runs" / "one-token").status()
    assert sum(v == "done" for v in done.values()) == 8 and not (out / "decode.json").exists()
    decode(tiny_llava, data, out, STRATEGIES, finalize=FINALIZE, options=options, progress=False)
    for s in STRATEGIES:
        assert_same_run(out / "runs" / s.name, decoded / "runs" / s.name)
    resumed, whole = DecodeResult.load(out), DecodeResult.load(decoded)
    for a, b in zip(resumed.strategies, whole.strategies, strict=True):
        assert (a.quality, a.paired, a.changes, a.scores, a.examples) == (
            b.quality,
            b.paired,
            b.changes,
            b.scores,
            b.examples,
        )
    timing = resumed.strategy("one-token").cost
    assert timing.n_items == 24  # the interrupted call's 8 items are in neither the time nor the tokens


def test_finished_strategies_are_reused_without_the_model(
    decoded: Path, toy_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    shutil.copytree(decoded, out)
    before = (out / "runs" / "greedy" / "results" / "summary.json").stat().st_mtime_ns
    result = decode(
        tmp_path / "no-model-here", toy.ToyTestSet(toy_set), out, STRATEGIES, finalize=FINALIZE,
        options=DecodeOptions(n_bootstrap=200), progress=False,
    )  # fmt: skip
    assert (out / "runs" / "greedy" / "results" / "summary.json").stat().st_mtime_ns == before
    assert result.to_dict() == DecodeResult.load(decoded).to_dict()


def test_refusals(decoded: Path, toy_set: Path, tmp_path: Path) -> None:
    data = toy.ToyTestSet(toy_set)
    with pytest.raises(SettingsError, match="repeated: greedy"):
        decode("unused", data, tmp_path / "a", [STRATEGIES[0], STRATEGIES[0]], options=QUICK)
    with pytest.raises(SettingsError, match="besides the baseline"):
        decode("unused", data, tmp_path / "a", STRATEGIES[:1], options=QUICK)
    with pytest.raises(SettingsError, match="names a directory"):
        DecodeStrategy("../up")
    with pytest.raises(StoreError, match=r"other settings .*strategies"):
        decode("unused", data, decoded, STRATEGIES[:2], finalize=FINALIZE, options=QUICK)
    with pytest.raises(StoreError, match=r"comparison\.n_bootstrap: 200 -> 300"):
        decode("unused", data, decoded, STRATEGIES, finalize=FINALIZE, options=DecodeOptions(n_bootstrap=300))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds no decoding comparison"):
        decode("unused", data, tmp_path / "full", STRATEGIES, options=QUICK)
    assert not (tmp_path / "a").exists()


def test_the_result_round_trips(decoded: Path) -> None:
    result = DecodeResult.load(decoded)
    again = DecodeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert result.model["family"] == "llava" and result.model["source"]
    assert result.dataset["n_items"] == 32 and result.dataset["name"] == "toy"


def test_unjudged_items_and_untrusted_strings(tiny_llava: LVLM, tmp_path: Path) -> None:
    """An image folder has no judged task: the paired columns are empty, not made up; the prompt and file names of
    the dataset reach the report escaped."""
    from evolens.data import ImageFolder
    from tests.data.fixtures import write_image

    for i in range(3):
        write_image(tmp_path / "images" / f"<b>pic{i}.png", seed=i)
    prompt = "<script>alert(1)</script> describe"
    out = tmp_path / "cmp"
    result = decode(
        tiny_llava, ImageFolder(tmp_path / "images", prompt=prompt), out, STRATEGIES, finalize=FINALIZE,
        options=DecodeOptions(n_bootstrap=50, reports=False), progress=False,
    )  # fmt: skip
    short = result.strategy("one-token")
    assert short.quality.n_judged == 0 and short.quality.accuracy is None and short.scores == []
    assert short.paired is not None and short.paired.n_pairs == 0 and short.paired.difference is None
    columns, rows = mitigation_table(result)
    row = dict(zip(columns, rows[2], strict=True))
    assert row["accuracy"] == "n/a" and row["Δ acc., pts [CI]"] == "n/a" and row["McNemar p"] == "1"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "<b>pic" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;pic0" in html
