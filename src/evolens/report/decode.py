"""The report of ``evolens decode``: the baseline strategy's run report (its items, traced like any run) with the
mitigation table, the benchmark's scores per strategy, the figure and examples of changed tokens at the top, and
under each item every strategy's answer to it. Built with :func:`evolens.report.build.write_report`'s run-level
and per-item additions (tables, figures, notes), so every model and dataset string is escaped by the report's
blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evolens.analysis.compare import similarity
from evolens.hallucination.decode_results import DecodeResult, mitigation_table, scores_table
from evolens.report.build import write_report
from evolens.report.escape import short_source
from evolens.store.results import RunResults, generated_ids
from evolens.store.run import RunDirectory
from evolens.trace.fileformat import read_manifest


def _verdict(correct: bool | None) -> str:
    return "not judged" if correct is None else "correct" if correct else "hallucinated"


def decode_summary(result: DecodeResult) -> dict[str, Any]:
    """The run-level additions of the decode report: the two tables, the examples, the figure and notes."""
    from evolens.viz.decode import decode_figure

    columns, rows = mitigation_table(result)
    score_columns, score_rows = scores_table(result)
    examples = [
        [
            s.name,
            e.item_id,
            e.prompt,
            e.base_text,
            e.text,
            f"{e.similarity:.3f}",
            _verdict(e.base_correct),
            _verdict(e.correct),
        ]
        for s in result.strategies
        for e in s.examples
    ]
    tables = [
        {
            "title": f"Mitigation table (paired against {result.baseline})",
            "columns": list(columns),
            "rows": rows,
        },
        {
            "title": "Benchmark scores per strategy (% unless a count)",
            "columns": list(score_columns),
            "rows": score_rows,
        },
        {
            "title": "Examples of changed tokens",
            "columns": [
                "strategy",
                "item",
                "prompt",
                result.baseline,
                "strategy's text",
                "similarity",
                f"{result.baseline} judged",
                "strategy judged",
            ],
            "rows": examples,
        },
    ]
    level = result.settings.get("level", 0.95)
    notes = [
        f"{len(result.strategies)} decoding strategies over the same {result.dataset.get('n_items')} items of "
        f"{result.dataset.get('name')}; each compared with {result.baseline} on the items judged in both: corrected = "
        f"wrong under {result.baseline} and right under the strategy, broken = the reverse; prior-driven = the wrong "
        "answer was the item's prior. Δ accuracy in points with a paired item-bootstrap interval "
        f"({100 * level:.0f}%, {result.settings.get('n_bootstrap')} draws); exact two-sided McNemar p.",
        f"Time per token: {result.cost_includes}.",
        f"The items below are {result.baseline}'s; each strategy's own run report is reports/<strategy>.html beside "
        "this file.",
    ]
    figures = [
        {
            "title": "corrected and broken answers, accuracy difference, accuracy vs cost",
            "figure": decode_figure(result),
        }
    ]
    return {"tables": tables, "notes": notes, "figures": figures}


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
    base = answers[result.baseline]
    extras: dict[str, dict[str, Any]] = {}
    for item_id, (_, base_ids) in base.items():
        rows = []
        for name in names:
            if item_id not in answers[name]:
                rows.append([name, "failed", "—", "—"])
                continue
            text, ids = answers[name][item_id]
            rows.append([name, _verdict(judged[name].get(item_id)), f"{similarity(base_ids, ids):.3f}", text])
        extras[item_id] = {
            "tables": [
                {
                    "title": "Every decoding strategy",
                    "columns": ["strategy", "judged", "similarity", "text"],
                    "rows": rows,
                }
            ]
        }
    return extras


def write_decode_report(path: str | Path, result: DecodeResult, runs_root: Path) -> Path:
    """Write the decode report (see the module docstring) to ``path``, atomically; ``runs_root`` holds the
    strategies' run directories (``runs_root/<name>``)."""
    model = short_source(str(result.model.get("source") or "model"))
    return write_report(
        path,
        runs_root / result.baseline,
        extras=decode_extras(result, runs_root),
        summary=decode_summary(result),
        title=f"evolens decode: {len(result.strategies)} strategies, {model}",
    )


__all__ = ["decode_extras", "decode_summary", "write_decode_report"]
