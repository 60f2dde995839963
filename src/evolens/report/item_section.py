"""One item's section of the page: image and metadata, the generated text with its tokens marked, the analysis
and evaluation, the adjacent-layer JSD heatmap's frame, and the layer-skipping, geometry, figure and table parts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evolens.report import extras as ex
from evolens.report import items as it
from evolens.report.blocks import gallery, tables
from evolens.report.escape import short_source, text
from evolens.report.item_data import ItemData
from evolens.report.media import image_uri, trace_image
from evolens.report.patches import patch_section, trace_pixels
from evolens.report.payload import HEATMAP_TOKENS
from evolens.report.sections import analysis_block, evaluation_block
from evolens.trace import Trace

#: Flags with a fixed mark (the others take the remaining marks in turn).
FIXED_FLAG_CLASSES = {
    it.HALLUCINATED_FLAG: "flag-0",
    it.GROUNDED_FLAG: "flag-grd",
    it.MUTATION_FLAG: "flag-mut",
}
#: How each mark looks, as the legend describes it.
FLAG_STYLES = {
    "flag-0": "wavy red underline",
    "flag-1": "orange underline",
    "flag-2": "blue double underline",
    "flag-3": "purple dotted overline",
    "flag-grd": "green dotted underline",
    "flag-mut": "purple ▾ above",
}


def flag_classes(flag_names: Sequence[str]) -> dict[str, str]:
    """The CSS class that marks each flag."""
    others = [n for n in flag_names if n not in FIXED_FLAG_CLASSES]
    return {n: FIXED_FLAG_CLASSES.get(n) or f"flag-{1 + others.index(n) % 3}" for n in flag_names}


def _token_spans(tokens: Sequence[str], flags: Mapping[str, Sequence[bool]], flag_names: list[str]) -> str:
    marks = flag_classes(flag_names)
    spans = []
    for step, token in enumerate(tokens):
        classes = ["tok"] + [marks[n] for n, vals in flags.items() if vals[step]]
        spans.append(
            f'<span class="{" ".join(classes)}" data-step="{step}" tabindex="0" role="button">{text(token)}</span>'
        )
    return "".join(spans)


def _skip_section(
    tokens: Sequence[str],
    original_flags: Sequence[bool] | None,
    variants: Sequence[Mapping[str, Any]],
    *,
    original: Mapping[str, Any] | None = None,
    figure: Any = None,
    table: Mapping[str, Any] | None = None,
) -> str:
    def render(toks: Sequence[str], flags: Sequence[str | None]) -> str:
        return "".join(
            f'<span class="skip-{flag}">{text(t)}</span>' if flag else text(t)
            for t, flag in zip(toks, flags, strict=True)
        )

    if original is not None:
        tokens, first = original["tokens"], original["flags"]
    else:
        first = (
            [("hallucinated" if f else None) for f in original_flags]
            if original_flags
            else [None] * len(tokens)
        )
    rows = [f'<tr><th>original</th><td></td><td class="skip-text">{render(tokens, first)}</td></tr>']
    for v in variants:
        rows.append(
            f"<tr><th>{text(v['name'])}</th><td>{text(v['note'])}</td>"
            f'<td class="skip-text">{render(v["tokens"], v["flags"])}</td></tr>'
        )
    legend = (
        '<p class="note"><span class="skip-hallucinated">hallucinated</span> · '
        '<span class="skip-corrected">corrected</span></p>'
    )
    extra = (tables([table]) if table is not None else "") + (
        gallery([("the paper's Fig. 5 view of these outputs", figure)]) if figure is not None else ""
    )
    return (
        '<section class="skip-results"><h3>Layer skipping</h3>'
        f'<table class="skip"><thead><tr><th>variant</th><th>layers</th><th>output</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{legend}{extra}</section>"
    )


def _image_block(trace: Trace, item_extras: Mapping[str, Any], image_root: Path | None) -> str:
    uri, note = None, ""
    if "image" in item_extras:
        uri = image_uri(item_extras["image"])
    elif trace.image is not None:
        uri, note = trace_image(trace.image.source, trace.image.sha256, image_root)
    if trace.image is None and uri is None:
        return '<div class="no-image">text-only input (no image)</div>'
    info = trace.image
    caption = text(short_source(info.source) if info else "image")
    if info:
        caption += f" · {info.width}×{info.height}"
    if note:
        caption += f" · {text(note)}"
    if uri is None:
        return f'<div class="no-image">{caption}</div>'
    return f'<figure class="item-image"><img alt="input image" src="{uri}"><figcaption>{caption}</figcaption></figure>'


def decoding_line(trace: Trace, shown: int = 8) -> str:
    """What a decoding strategy changed in ``trace``: its name and the steps whose token is not the final layer's
    arg-max, with the token it replaced (plain text; the caller escapes it)."""
    record = trace.decoding or {}
    name = str(record.get("strategy", {}).get("name", "?"))
    changed = record.get("overridden", [])
    if not changed:
        return f"{name}: every token is the final layer's arg-max"
    pieces = [
        f"step {step}: {trace.tokens[step]!r} instead of {trace.vocab.get(token, f'id {token}')!r}"
        for step, token in changed[:shown]
        if 0 <= step < len(trace.tokens)
    ]
    more = f", and {len(changed) - shown} more" if len(changed) > shown else ""
    return f"{name}: {len(changed)} token(s) changed — " + "; ".join(pieces) + more


def item_section(
    index: int,
    trace: Trace,
    item_extras: Mapping[str, Any],
    data: ItemData,
    flag_names: list[str],
    image_root: Path | None,
    attributes: str = "",
) -> str:
    """The section of item ``index`` (``attributes``: what the item list's filters read, see
    :meth:`~evolens.report.summary.ItemRow.attributes`); its tokens take the marks of ``flag_names``."""
    meta = [
        ("prompt", trace.prompt),
        ("model", f"{short_source(trace.model.source)} ({trace.model.family}, {trace.n_layers} layers)"),
        ("lens", trace.lens_mode),
        ("tokens", f"{trace.n_steps} (stopped by {trace.stop_reason})"),
    ]
    if trace.decoding is not None:
        meta.append(("decoding", decoding_line(trace)))
    meta_html = "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in meta)
    notes = data.notes + ex.notes(item_extras.get("notes", []), f"extras[{trace.item_id!r}].notes")
    notes_html = "".join(f'<p class="note">{text(n)}</p>' for n in notes)
    parts = [
        f'<section class="item" id="item-{index}" data-item="{index}"{attributes}>',
        f'<header><h2>#{index + 1} · {text(trace.item_id)}</h2><a href="#summary">back to the summary</a></header>',
        notes_html,
        f'<div class="item-head">{_image_block(trace, item_extras, image_root)}<dl class="meta">{meta_html}</dl></div>',
        "<h3>Generated text</h3>",
        '<p class="hint">Each token is coloured by the series chosen at the top (critical layer or stages when the '
        "item was analysed); click a token (or focus it and press Enter) for its critical layers, mutations and stage "
        "bar, its candidates, its JSD column and the logit-lens grid.</p>",
        f'<div class="text" data-item="{index}">{_token_spans(trace.tokens, data.flags, flag_names)}</div>',
        analysis_block(data.analysis_lines),
        '<div class="detail" hidden></div>',
        evaluation_block(data.evaluation, data.annotations),
        "<h3>Adjacent-layer JSD</h3>",
        '<p class="hint">Rows: generated tokens; columns: decoder layers (divergence between a layer\'s input and '
        "output). Click a row to inspect that token.</p>",
        '<div class="hm-controls"><select class="hm-view" aria-label="heatmap view">'
        '<option value="raw">JSD in bits</option>'
        '<option value="maxabs">JSD in bits, scaled per layer (MaxAbs)</option>'
        '<option value="paper">paper reduction, scaled per layer (the paper\'s Fig. 4)</option>'
        f'</select> <label><input type="checkbox" class="hm-all"> all tokens (default: first {HEATMAP_TOKENS})'
        "</label></div>",
        f'<div class="heatmap-wrap"><div class="heatmap" data-item="{index}"></div></div>',
    ]
    where = f"extras[{trace.item_id!r}]"
    if data.skip is not None:
        parts.append(
            _skip_section(
                trace.tokens,
                data.flags.get("hallucinated"),
                data.skip["variants"],
                original=data.skip.get("original"),
                figure=data.skip.get("figure"),
                table=data.skip.get("table"),
            )
        )
    if data.geometry:
        parts.append(
            f'<section class="geometry"><h3>Feature geometry</h3>{gallery(data.geometry)}'
            f"{tables(data.geometry_tables)}</section>"
        )
    if data.patches is not None:
        parts.append(patch_section(data.patches, index, trace_pixels(trace, image_root)))
    if "figures" in item_extras:
        figures = ex.figure_entries(item_extras["figures"], f"{where}.figures")
        parts.append(f'<section class="figures"><h3>Figures</h3>{gallery(figures)}</section>')
    if "tables" in item_extras:
        entries = ex.tables(item_extras["tables"], f"{where}.tables")
        parts.append(f'<section class="tables"><h3>Tables</h3>{tables(entries)}</section>')
    parts.append("</section>")
    return "".join(parts)
