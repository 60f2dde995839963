"""HTML fragments of the report that need no script: galleries, tables, an item's evaluation and analysis notes, and
the run-level summary of a run directory (evaluation scores, layer statistics, the analyses' summary, dataset
figures, failed items). Every value from a model or a dataset goes through :func:`evolens.report.escape.text`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evolens.report.blocks import gallery
from evolens.report.escape import short_paths, text

if TYPE_CHECKING:
    from evolens.report.runs import RunContext


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def evaluation_block(evaluation: Mapping[str, Any] | None, annotations: Mapping[str, Any] | None) -> str:
    """An item's judgement (the benchmark's verdict and every judged word) and its dataset annotations."""
    parts = []
    if evaluation is not None:
        verdict = evaluation.get("hallucinated")
        facts = [f"task {evaluation.get('task') or '—'}"]
        if verdict is not None:
            facts.append("hallucinated" if verdict else "no hallucination found")
        if evaluation.get("answer") is not None or evaluation.get("truth") is not None:
            facts.append(
                f"answer {evaluation.get('answer') or 'unparsed'}, truth {evaluation.get('truth') or '—'}"
            )
        words = [
            f'<li class="judged-{text(m.get("label", ""))}"><span class="chip">{text(m.get("word", ""))}</span> → '
            f'{text(m.get("object", ""))} <span class="note">({text(m.get("label", ""))})</span></li>'
            for m in evaluation.get("mentions", [])
        ]
        parts.append(f'<p class="verdict">{text(" · ".join(facts))}</p>')
        if words:
            parts.append(f'<ul class="judged">{"".join(words)}</ul>')
        else:
            parts.append('<p class="note">no object word was judged in this response</p>')
    if annotations:
        rows = "".join(f"<dt>{text(k)}</dt><dd>{text(_plain(v))}</dd>" for k, v in annotations.items())
        parts.append(
            f'<details class="annotations"><summary>dataset annotations</summary><dl class="meta">{rows}</dl></details>'
        )
    if not parts:
        return ""
    return f'<section class="evaluation"><h3>Evaluation</h3>{"".join(parts)}</section>'


def analysis_block(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    body = "".join(f'<p class="note">{text(line)}</p>' for line in lines)
    return f'<div class="analysis-facts">{body}</div>'


# --------------------------------------------------------------------------------------- run summary
def _pct(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _interval(value: float | None, low: float | None, high: float | None, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
        return format(value, fmt)
    return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def _rows(rows: Sequence[Sequence[Any]], head: Sequence[str], css: str = "extra") -> str:
    th = "".join(f"<th>{text(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _scores(summary: Mapping[str, Any]) -> str:
    """The benchmarks' scores as one table: benchmark, score (as its paper names it), value, unit."""
    from evolens.data.evaluation import Evaluation

    lines = summary.get("evaluation_lines") or []
    scores = summary.get("evaluation") or {}
    parts = [f'<p class="score-line">{text(line)}</p>' for line in lines]
    rows = (
        Evaluation.from_dict(dict(scores)).score_rows()
        if isinstance(scores, Mapping) and "method" in scores
        else []
    )
    if rows:
        body = [
            [
                text(row.benchmark),
                text(row.name),
                _pct(row.value).removesuffix("%") if row.unit == "%" else _count(row.value),
                text("%" if row.unit == "%" else ""),
            ]
            for row in rows
        ]
        parts.append(_rows(body, ["benchmark", "score", "value", "unit"], "scores"))
    method = (scores.get("method") or {}) if isinstance(scores, Mapping) else {}
    verdicts = {k: v for k, v in method.items() if k in ("amber", "chair") and isinstance(v, str)}
    if verdicts:
        parts.append(
            '<p class="note">text tools: ' + text(", ".join(f"{k} {v}" for k, v in verdicts.items())) + "</p>"
        )
    protocol = summary.get("evaluation_protocol")
    if parts and isinstance(protocol, str):
        parts.append(
            f'<p class="note">scored under the {text(protocol)} protocol (README: Benchmark protocols)</p>'
        )
    if not parts:
        return '<p class="note">no benchmark annotations: nothing was evaluated</p>'
    return "".join(parts)


def _count(value: float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def _statistics(ctx: RunContext) -> str:
    s = ctx.statistics
    if s is None:
        return '<p class="note">no layer statistics (the run was merged without a layer detector)</p>'
    rows = []
    for name, group in (
        ("all tokens", s.all_tokens),
        ("hallucinated", s.hallucinated),
        ("grounded", s.grounded),
    ):
        rows.append(
            [
                text(name),
                str(group.n_tokens),
                f"{group.n_with_mutation} ({_pct(group.share_with_mutation)})",
                _num(group.critical.median, ".1f"),
                _num(group.first_mutation.median, ".1f"),
                _num(group.critical.mean, ".2f"),
            ]
        )
    head = ["tokens", "n", "with a mutation layer", "median critical layer", "median first mutation layer",
            "mean critical layer"]  # fmt: skip
    unit = s.unit.replace("_", " ")
    facts = [
        ["unit of hallucinated / grounded", text(unit)],
        ["share difference (hallucinated − grounded)", _interval(s.share_difference.value, s.share_difference.low,
                                                                 s.share_difference.high)],
        ["AUROC of “a mutation layer was detected”", _interval(s.auroc.value, s.auroc.low, s.auroc.high)],
        ["TPR / FPR", f"{_num(s.tpr)} / {_num(s.fpr)}"],
        ["Fisher's exact test: odds ratio, p", f"{_num(s.odds_ratio)}, {_num(s.fisher_p, '.3g')}"],
    ]  # fmt: skip
    if s.score_auroc is not None:
        facts.append(
            [
                "AUROC of the mutation score",
                _interval(s.score_auroc.value, s.score_auroc.low, s.score_auroc.high),
            ]
        )
    note = (
        f'<p class="note">95% intervals from {s.n_bootstrap} bootstrap replicates over items; the final EOS token is '
        "left out.</p>"
    )
    return (
        _rows(rows, head)
        + _rows([[text(k), text(v)] for k, v in facts], ["statistic", "value"], "stats")
        + note
    )


def _analysis_summary(ctx: RunContext) -> str:
    a = ctx.analysis_summary
    if a is None:
        return ""
    names = {
        "critical_layer": "critical layer (stages)",
        "critical_layer_prob": "critical layer, probability-based",
        "critical_layer_jsd": "critical layer, JSD-based",
        "mutation_layer": "first mutation layer",
        "mutation_layers": "every mutation layer",
    }
    rows = []
    for key, label in names.items():
        dist = a.distributions.get(key)
        if dist is None:
            continue
        m = dist.median
        rows.append(
            [
                text(label),
                _interval(m.value, m.ci_low, m.ci_high, ".1f"),
                _pct(dist.found_rate) if key != "mutation_layers" else str(dist.n_found),
                _num(dist.mean, ".2f"),
            ]
        )
    rates = [
        ["mutation rate (tokens with a critical layer that mutate)",
         _interval(a.mutation_rate.value, a.mutation_rate.ci_low, a.mutation_rate.ci_high, ".3f")],
        ["agreement of probability- and JSD-based critical layers",
         _interval(a.agreement_rate.value, a.agreement_rate.ci_low, a.agreement_rate.ci_high, ".3f")],
    ]  # fmt: skip
    info = (ctx.summary or {}).get("analysis") or {}
    notes = []
    if info.get("baseline_rule"):
        notes.append(
            f"Layer baseline: {info['baseline_rule']} ({info.get('n_items_with_run_baseline', 0)} item(s) used the "
            "run's)."
        )
    notes.append(
        f"Medians with {a.level:.0%} intervals from {a.n_boot} bootstrap resamples of items; {a.n_tokens} tokens "
        f"from {a.n_items} items."
    )
    return (
        "<h3>Analysis summary</h3>"
        + _rows(rows, ["quantity", "median [95% CI]", "found", "mean"])
        + _rows([[text(k), v] for k, v in rates], ["rate", "value [95% CI]"], "stats")
        + "".join(f'<p class="note">{text(n)}</p>' for n in notes)
    )


def _failures(ctx: RunContext) -> str:
    if not ctx.failures:
        return ""
    rows = [
        [
            text(item_id),
            text(f.get("stage", "")),
            text(f.get("error", "")),
            text(short_paths(str(f.get("message", "")))),
        ]
        for item_id, f in ctx.failures.items()
    ]
    return "<h3>Failed items</h3>" + _rows(rows, ["item", "stage", "error", "message"])


def run_section(ctx: RunContext, figures: Sequence[tuple[str, Any]]) -> str:
    """The run-level summary of a run directory."""
    config = ctx.config
    dataset = config.get("dataset", {})
    model = config.get("model", {})
    counts = {s: sum(v == s for v in ctx.status.values()) for s in ("done", "failed", "pending")}
    facts = [
        ("dataset", f"{dataset.get('name', '—')} ({dataset.get('n_items', len(ctx.records))} items)"),
        (
            "model",
            f"{model.get('family', '—')} / {model.get('model_type', '—')}, {model.get('n_layers', '—')} layers",
        ),
        ("items", f"{counts['done']} done, {counts['failed']} failed, {counts['pending']} pending"),
        ("layer detector", (ctx.summary or {}).get("layer_detector") or "none"),
    ]
    head = "".join(f"<tr><th>{text(k)}</th><td>{text(v)}</td></tr>" for k, v in facts)
    parts = [
        f'<section class="run" id="run-{text(ctx.name)}"><h2>Run · {text(ctx.name)}</h2>',
        f'<table class="stats"><tbody>{head}</tbody></table>',
    ]
    parts += [f'<p class="load-problem">{text(p)}</p>' for p in ctx.problems]
    if ctx.summary is None:
        parts.append('<p class="note">The run is not merged yet (no results/): per-item data only.</p>')
    else:
        if figures:  # the dataset-level picture first, the numbers behind it after
            parts.append(gallery(figures))
        parts.append("<h3>Evaluation</h3>" + _scores(ctx.summary))
        parts.append("<h3>Critical and mutation layers: hallucinated vs grounded</h3>" + _statistics(ctx))
        parts.append(_analysis_summary(ctx))
        from evolens.report.yesno import yes_no_section

        parts.append(yes_no_section(ctx.root / "results"))
        if ctx.detect is not None:
            from evolens.report.detect import detect_section

            parts.append(detect_section(ctx.detect))
    parts.append(_failures(ctx))
    parts.append("</section>")
    return "".join(parts)
