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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evolens.data.scores import ItemEvaluation
    from evolens.toy.world import Scene

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


def hallucination_lines(run_dir: Path, data_dir: Path) -> list[str]:
    """Hallucinations found against the truth, by task and scene group, and the prior-driven answers, from a toy
    run's evaluation (``data_dir``: the exported held-out set)."""
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
    line = prior_answer_line(evaluation.items, items, _scenes_by_image(data_dir / "scenes.json"))
    if line is not None:
        lines.append(line)
    return lines


def _scenes_by_image(path: Path) -> dict[str, Scene]:
    from evolens.toy.world import Scene

    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(s["image"]): Scene.from_dict(s) for s in data}


def prior_answer_line(
    judged: Iterable[ItemEvaluation], items: Mapping[str, Mapping[str, Any]], scenes: Mapping[str, Scene]
) -> str | None:
    """How often an atypically coloured heart or moon was given its prior colour, per task (``None``: no probes).

    One-word colour questions and yes/no colour questions count where their annotation carries ``prior`` (the
    answer the prior suggests, where it differs from the truth); captions count every atypical object they name
    with a colour (``scenes``: the truth by image file name).
    """
    from evolens.toy.world import caption_prior_colors

    counts = {"colour questions": [0, 0], "yes/no": [0, 0], "captions": [0, 0]}
    for item in judged:
        record = items.get(item.item_id, {})
        prior = record.get("annotations", {}).get("prior")
        if isinstance(prior, str) and item.task in ("vqa", "amber-discriminative"):
            entry = counts["colour questions" if item.task == "vqa" else "yes/no"]
            entry[0] += int(item.answer == prior)
            entry[1] += 1
        elif (
            item.task == "amber-generative"
            and (scene := scenes.get(Path(str(record.get("image", ""))).name)) is not None
        ):
            named = caption_prior_colors(scene, item.text)
            counts["captions"][0] += sum(named)
            counts["captions"][1] += len(named)
    if not any(n for _, n in counts.values()):
        return None
    return (
        "prior-driven answers (an atypical heart or moon given its prior colour): "
        + ", ".join(f"{name} {k}/{n}" for name, (k, n) in counts.items() if n)
        + (" (captions: of the atypical objects they name with a colour)" if counts["captions"][1] else "")
    )


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
    from evolens import toy
    from evolens.api import LoadOptions, TraceOptions
    from evolens.report import write_report
    from evolens.runs import run

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
    done = run(
        model,
        dataset,
        run_dir,
        trace=TraceOptions.from_flat(max_new_tokens=48, batch_size=16),
        load=LoadOptions(device="cpu"),
        progress=progress,
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
        *hallucination_lines(run_dir, data_dir),
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
