"""``evolens compress`` as a run (issue 18): judged cells, the curve, and a run killed mid-way resumed without losing
or repeating a cell."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from evolens import toy
from evolens.api import TraceOptions
from evolens.data import open_dataset
from evolens.errors import SettingsError
from evolens.experiments.compress import Cell
from evolens.runs.compress import CompressResult, run_compress
from evolens.runs.compress_cells import CELLS_DIR, CompressOptions, prepare_compress, read_cell

TRACE = TraceOptions.from_flat(max_new_tokens=3, batch_size=4, keep_hidden_states=False)
OPTIONS = CompressOptions(stage="2-3", random_draws=2, seed=1, n_bootstrap=50)
TIMING = {"seconds", "cpu_seconds", "tokens_per_s", "speedup", "cpu_speedup"}
CURVE_TIMING = {"tokens_per_s", "tokens_per_s_sd", "speedup", "speedup_sd", "cpu_speedup", "cpu_speedup_sd"}


@pytest.fixture(scope="module")
def toy_set(tmp_path_factory: pytest.TempPathFactory):
    return open_dataset(
        "toy", toy.export_testset(tmp_path_factory.mktemp("toy") / "set", n_typical=2, n_atypical=2)
    )


class Killed(Exception):
    pass


def _judged(result: CompressResult) -> list[dict]:
    """Every cell's scores without its timings."""
    return [{k: v for k, v in c.to_dict().items() if k not in TIMING} for c in result.cells]


def test_a_killed_run_resumes_to_what_an_uninterrupted_run_gives(tiny_llava, toy_set, tmp_path: Path) -> None:
    whole = run_compress(tiny_llava, toy_set, tmp_path / "whole", options=OPTIONS, trace=TRACE)
    names = [c.cell.name for c in whole.cells]
    assert names == ["full-k1", "stage-k1", "random-k1-d0", "random-k1-d1", "last-k1",
                     "full-k2", "stage-k2", "random-k2-d0", "random-k2-d1", "last-k2"]  # fmt: skip

    done: list[str] = []

    def die_after_two(cell: Cell) -> None:
        done.append(cell.name)
        if len(done) == 2:
            raise Killed

    target = tmp_path / "killed"
    with pytest.raises(Killed):
        run_compress(tiny_llava, toy_set, target, options=OPTIONS, trace=TRACE, on_cell=die_after_two)
    assert sorted(p.stem for p in (target / CELLS_DIR).iterdir()) == ["full-k1", "stage-k1"]
    assert not (target / "compress.json").exists()

    rerun: list[str] = []
    resumed = run_compress(
        tiny_llava, toy_set, target, options=OPTIONS, trace=TRACE, on_cell=lambda c: rerun.append(c.name)
    )
    assert rerun == names[2:]  # nothing lost, nothing generated twice
    assert _judged(resumed) == _judged(whole)
    assert [asdict(p) | dict.fromkeys(CURVE_TIMING) for p in resumed.curve] == [
        asdict(p) | dict.fromkeys(CURVE_TIMING) for p in whole.curve
    ]
    job = prepare_compress(tiny_llava, toy_set, target, options=OPTIONS, trace=TRACE)
    assert job.todo() == []
    for cell in job.cells:  # the same generations, token for token
        assert (
            read_cell(job, cell).generations
            == read_cell(
                prepare_compress(tiny_llava, toy_set, tmp_path / "whole", options=OPTIONS, trace=TRACE), cell
            ).generations
        )
    assert CompressResult.load(target / "compress.json").to_dict() == resumed.to_dict()


def test_the_curve_is_judged_against_the_full_model(tiny_llava, toy_set, tmp_path: Path) -> None:
    result = run_compress(tiny_llava, toy_set, tmp_path, options=OPTIONS, trace=TRACE)
    assert result.stage.layers == (2, 3) and result.stage.source == "given" and result.method == "rebuild"
    assert result.n_items == len(list(toy_set))
    full = result.point("full", 0)
    assert full.n_cells == 2 and full.similarity == 1.0 and full.exact_match == 1.0 and full.difference == 0.0
    assert full.layers == [[], []]
    for cell in result.cells:
        q = cell.quality
        assert q.n_judged == result.n_items and q.n_typical + q.n_atypical > 0
        assert cell.versus_full.n_pairs == result.n_items
        assert 0.0 <= cell.similarity <= 1.0 and 0.0 <= cell.exact_match <= 1.0
        assert any(key.startswith("VQA: accuracy") for key in cell.scores)
    random_k2 = result.point("random", 2)
    draws = [c for c in result.cells if c.cell.rule == "random" and c.cell.k == 2]
    assert random_k2.n_cells == 2 and random_k2.layers == [list(c.cell.layers) for c in draws]
    accuracies = [c.quality.accuracy for c in draws]
    assert random_k2.accuracy == pytest.approx(sum(accuracies) / 2)
    assert random_k2.accuracy_min == min(accuracies) and random_k2.accuracy_max == max(accuracies)
    assert result.point("stage", 1).layers == [[result.stage.order[0]]]
    assert result.point("last", 2).layers == [[tiny_llava.n_layers - 1, tiny_llava.n_layers]]
    assert result.point("stage", 1).low is not None and random_k2.low is None  # intervals for single cells


def test_other_settings_are_refused_and_other_judging_reuses_the_cells(
    tiny_llava, toy_set, tmp_path: Path
) -> None:
    from dataclasses import replace

    run_compress(tiny_llava, toy_set, tmp_path, options=OPTIONS, trace=TRACE)
    with pytest.raises(SettingsError, match=r"other settings.*random_draws"):
        run_compress(tiny_llava, toy_set, tmp_path, options=replace(OPTIONS, random_draws=3), trace=TRACE)
    with pytest.raises(SettingsError, match=r"other settings.*generation"):
        run_compress(
            tiny_llava,
            toy_set,
            tmp_path,
            options=OPTIONS,
            trace=TraceOptions.from_flat(TRACE, max_new_tokens=4),
        )
    generated: list[str] = []
    again = run_compress(tiny_llava, toy_set, tmp_path, options=replace(OPTIONS, protocol="official"), trace=TRACE,
                         on_cell=lambda c: generated.append(c.name))  # fmt: skip
    assert generated == [] and again.settings["protocol"] == "official"
    with pytest.raises(SettingsError, match="out of range"):
        run_compress(tiny_llava, toy_set, tmp_path / "k", options=replace(OPTIONS, ks=(3,)), trace=TRACE)
    assert not (tmp_path / "k" / "settings.json").exists()  # nothing written for a refused run


def test_mcnemar_of_a_toy_scale_cell_does_not_overflow() -> None:
    # a broken random draw of the toy's 3,200 items had 2,300 discordant pairs; 2.0 ** n overflowed past 1,023
    from evolens.hallucination.outcomes import mcnemar_exact

    assert 0.0 < mcnemar_exact(600, 900) < 1e-10 and mcnemar_exact(1000, 1001) == 1.0
    assert mcnemar_exact(28, 2328) == 0.0  # below the smallest float: rounds to 0, no error
