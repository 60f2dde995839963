"""``make demo`` / ``evolens demo``: the main job end to end on the built-in toy LVLM.

1. Export a held-out set of the toy world (typical and atypical scenes, their truth, AMBER-format captions and
   yes/no questions, one-word VQA) into ``OUT/data``.
2. ``evolens.run`` the shipped toy model over all of it into ``OUT/run``: every token of every answer traced
   through every layer, evaluated against the truth, analysed (critical and mutation layers, stages), dataset
   statistics and figures (``OUT/run/results/figures``). Resumable: running the demo again reuses what is done.
3. Write the offline HTML report ``OUT/report.html``.
4. Print where everything is and a short summary: the critical and mutation layers found, the hallucinations
   found against the truth, and whether the detectors saw them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Demo size: held-out scenes of each kind (each scene gives 8 items: a caption, 3 yes/no and 4 VQA questions).
DEMO_TYPICAL = 10
DEMO_ATYPICAL = 40


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its results.

    Attributes:
        data_dir: The exported held-out set.
        run_dir: The run directory (``results/summary.json``, ``results/figures``, ``items/<id>/``).
        report: The HTML report.
        summary: The run's merged summary (``results/summary.json``).
        lines: The summary printed at the end.
    """

    data_dir: Path
    run_dir: Path
    report: Path
    summary: dict[str, Any]
    lines: list[str]


def hallucination_lines(run_dir: Path) -> list[str]:
    """Hallucinations found against the truth, by task and scene group, from a toy run's evaluation."""
    from evolens.store.results import RunResults
    from evolens.store.run import RunDirectory

    evaluation = RunResults(run_dir).evaluation()
    items = {r["item_id"]: r for r in RunDirectory(run_dir).items()}
    groups: dict[str, list[int]] = {}
    for judged in evaluation.items:
        ann = items.get(judged.item_id, {}).get("annotations", {})
        key = {"amber-generative": "captions", "amber-discriminative": "yes/no"}.get(judged.task, judged.task)
        if key == "vqa":
            key = "vqa about atypical hearts/moons" if ann.get("atypical") else "other vqa"
        counts = groups.setdefault(key, [0, 0])
        counts[0] += int(judged.hallucinated)
        counts[1] += 1
    lines = [
        "hallucinations found against the truth: "
        + ", ".join(f"{k} {w}/{n}" for k, (w, n) in sorted(groups.items()))
    ]
    if evaluation.vqa is not None and evaluation.vqa.n_prior:
        v = evaluation.vqa
        lines.append(
            f"prior-driven answers (an atypical heart or moon given its prior colour): {v.prior_answers}/{v.n_prior}"
        )
    return lines


def _check_same_size(data_dir: Path, n_typical: int, n_atypical: int) -> None:
    # a demo directory is resumed only with the set it was made with
    from evolens.errors import SettingsError

    groups = [s.get("group") for s in json.loads((data_dir / "scenes.json").read_text(encoding="utf-8"))]
    had = (groups.count("typical"), groups.count("atypical"))
    if had != (n_typical, n_atypical):
        raise SettingsError(
            f"{data_dir.parent} holds a demo of {had[0]} typical + {had[1]} atypical scenes, not {n_typical} + "
            f"{n_atypical}; use another --out, or the same numbers to resume it"
        )


def run_demo(
    out_dir: Path,
    *,
    console: Any,
    n_typical: int = DEMO_TYPICAL,
    n_atypical: int = DEMO_ATYPICAL,
    progress: bool = True,
) -> DemoResult:
    """Run the demo into ``out_dir`` (see the module docstring) and print its summary on ``console``."""
    import evolens
    from evolens import toy
    from evolens.report import write_report

    out_dir = Path(out_dir)
    model = toy.model_dir()
    data_dir = out_dir / "data"
    if (data_dir / "scenes.json").is_file():
        _check_same_size(data_dir, n_typical, n_atypical)
    else:
        toy.export_testset(data_dir, n_typical=n_typical, n_atypical=n_atypical)
    run_dir = out_dir / "run"
    dataset = toy.ToyTestSet(data_dir)
    console.print(f"toy model: {model}", highlight=False, markup=False)
    console.print(
        f"tracing {len(dataset)} items ({n_typical} typical + {n_atypical} atypical scenes) into {run_dir}",
        highlight=False,
        markup=False,
    )
    done = evolens.run(
        model, dataset, run_dir, max_new_tokens=48, batch_size=16, device="cpu", progress=progress
    )
    console.print(
        f"{done.n_traced} items traced now, {done.n_skipped} already done before",
        highlight=False,
        markup=False,
    )
    summary = done.results
    if summary is None:  # finished before: read the merged results
        summary = json.loads((run_dir / "results" / "summary.json").read_text(encoding="utf-8"))
    report = write_report(out_dir / "report.html", run_dir)
    analysis = summary.get("analysis") or {}
    lines = [
        f"{summary['done']} items traced ({summary.get('failed', 0)} failed), {summary['n_tokens']} tokens generated "
        "(each answer's EOS included; the analysis leaves it out)",
        *(analysis.get("summary_lines") or []),
        *hallucination_lines(run_dir),
        *(summary.get("evaluation_lines") or []),
        *(summary.get("statistics") or []),
    ]
    for line in lines:
        console.print(line, highlight=False, markup=False)
    console.print(f"run directory: {run_dir}", highlight=False, markup=False)
    console.print(f"figures: {run_dir / 'results' / 'figures'}", highlight=False, markup=False)
    console.print(
        f"report: {report}  (open it in a browser; it works offline)", highlight=False, markup=False
    )
    return DemoResult(data_dir, run_dir, Path(report), summary, lines)
