"""The report of ``evolens decode``: the baseline strategy's run report (its items, traced like any run) with the
comparison first — the mitigation table, the benchmark's scores per strategy, the figure and examples of changed
tokens — and under each item every strategy's answer to it. Every model and dataset string goes through the
report's blocks (:mod:`evolens.report.blocks`, :mod:`evolens.report.escape`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolens.analysis.compare import similarity
from evolens.files import atomic_write_text
from evolens.hallucination.decode_results import DecodeResult, mitigation_table, scores_table
from evolens.report.blocks import gallery, tables
from evolens.report.build import build_report
from evolens.report.escape import short_source, text
from evolens.report.options import ReportOptions, check_report_path
from evolens.store.results import RunResults, generated_ids
from evolens.store.run import RunDirectory
from evolens.trace.fileformat import read_manifest

#: Where the comparison goes: before the baseline run's own section (:func:`evolens.report.sections.run_section`).
RUN_SECTION = '<section class="run"'
#: The examples table's columns ("baseline" reads as the baseline's name).
EXAMPLE_COLUMNS = (
    "strategy", "item", "prompt", "baseline's text", "strategy's text", "similarity", "baseline judged",
    "strategy judged",
)  # fmt: skip


def _verdict(correct: bool | None) -> str:
    return "not judged" if correct is None else "correct" if correct else "hallucinated"


def _notes(result: DecodeResult) -> list[str]:
    level = float(result.settings.get("level", 0.95))
    return [
        f"{len(result.strategies)} decoding strategies over the same {result.dataset.get('n_items')} items of "
        f"{result.dataset.get('name')}, each compared with {result.baseline} on the items judged under both: corrected "
        f"= wrong under {result.baseline} and right under the strategy, broken = the reverse; prior = the wrong answer "
        "was the item's prior. Δ accuracy in points with a paired item-bootstrap interval "
        f"({100 * level:.0f}%, {result.settings.get('n_bootstrap')} draws); exact two-sided McNemar p.",
        f"Time per token: {result.cost_includes}.",
        f"The items below are {result.baseline}'s, each with every strategy's answer; each strategy's own run report is "
        "reports/<strategy>.html beside this file.",
    ]


def decode_section(result: DecodeResult) -> str:
    """The comparison as HTML: notes, the mitigation table, the figure, the benchmark's scores, examples."""
    from evolens.viz.decode import decode_figure

    columns, rows = mitigation_table(result)
    score_columns, score_rows = scores_table(result)
    examples = [
        [s.name, e.item_id, e.prompt, e.base_text, e.text, f"{e.similarity:.3f}", _verdict(e.base_correct),
         _verdict(e.correct)]
        for s in result.strategies
        for e in s.examples
    ]  # fmt: skip
    entries = [
        {"title": f"Against {result.baseline}, item by item", "columns": list(columns), "rows": rows},
        {"title": "Benchmark scores per strategy (% unless a count)", "columns": list(score_columns), "rows": score_rows},
        {"title": "Examples of changed tokens", "columns": [c.replace("baseline", result.baseline) for c in EXAMPLE_COLUMNS], "rows": examples},
    ]  # fmt: skip
    return "".join(
        [
            '<section class="run" id="decode"><h2>Decoding strategies · the mitigation table</h2>',
            "".join(f'<p class="note">{text(n)}</p>' for n in _notes(result)),
            tables(entries[:1]),
            gallery(
                [
                    (
                        "corrected and broken answers; accuracy difference; accuracy vs cost",
                        decode_figure(result),
                    )
                ]
            ),
            tables(entries[1:]),
            "</section>",
        ]
    )


def _answers(run_dir: Path) -> dict[str, tuple[str, list[int]]]:
    """``item_id -> (text, generated ids)`` of a run's finished items."""
    return {
        str(record["item_id"]): (str(read_manifest(directory)["text"]), generated_ids(directory))
        for record, directory in RunDirectory(run_dir).iter_done()
    }


def _judgements(run_dir: Path) -> dict[str, bool]:
    return {it.item_id: not it.hallucinated for it in RunResults(run_dir).evaluation().items}


def decode_extras(result: DecodeResult, runs_root: Path) -> dict[str, dict[str, Any]]:
    """Per baseline item, a table of every strategy's answer: its judgement, similarity to the baseline's tokens and
    text."""
    names = [s.name for s in result.strategies]
    answers = {name: _answers(runs_root / name) for name in names}
    judged = {name: _judgements(runs_root / name) for name in names}
    extras: dict[str, dict[str, Any]] = {}
    for item_id, (_, base_ids) in answers[result.baseline].items():
        rows = []
        for name in names:
            if item_id not in answers[name]:
                rows.append([name, "failed", "—", "—"])
                continue
            answer, ids = answers[name][item_id]
            rows.append(
                [name, _verdict(judged[name].get(item_id)), f"{similarity(base_ids, ids):.3f}", answer]
            )
        columns = ["strategy", "judged", "similarity", "text"]
        extras[item_id] = {"tables": [{"title": "Every decoding strategy", "columns": columns, "rows": rows}]}
    return extras


def write_decode_report(path: str | Path, result: DecodeResult, runs_root: Path) -> Path:
    """Write the decode report (see the module docstring) to ``path``, atomically; ``runs_root`` holds the
    strategies' run directories (``runs_root/<name>``)."""
    target = check_report_path(path)
    model = short_source(str(result.model.get("source") or "model"))
    html = build_report(
        runs_root / result.baseline,
        ReportOptions(title=f"evolens decode: {len(result.strategies)} strategies, {model}"),
        extras=decode_extras(result, runs_root),
    )
    at = html.index(RUN_SECTION)  # the baseline's run section is always there: a run directory is reported
    atomic_write_text(target, html[:at] + decode_section(result) + html[at:])
    return target


__all__ = ["decode_extras", "decode_section", "write_decode_report"]
