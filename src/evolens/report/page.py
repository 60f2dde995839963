"""The page around the sections: the colouring series and the data block the page's script reads, the controls and
flag legend, and the HTML shell with its Content-Security-Policy (no network; only the report's own script, by
hash)."""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from evolens.analysis.stages import STAGE_NAMES
from evolens.report import items as it
from evolens.report.escape import json_for_script, text
from evolens.report.item_section import FLAG_STYLES, flag_classes
from evolens.report.payload import HEATMAP_TOKENS, JSD_SCALE, PROB_SCALE, TOP1_DESCRIPTION, TOP1_SERIES
from evolens.viz.style import STAGE_COLOURS, cmap_hex

COMPRESS_ABOVE = 4_000_000  # characters of JSON above which the data block is gzip-compressed (compress=None)


def _asset(name: str) -> str:
    return (resources.files("evolens.report") / "assets" / name).read_text(encoding="utf-8")


@dataclass
class Series:
    """A series that colours the tokens (a layer per token, a number or a category), with its range over all
    items."""

    key: str
    label: str
    description: str
    kind: str = "layer"  # layer | number | category
    categories: list[str] = field(default_factory=list)
    min: float = float("inf")
    max: float = float("-inf")
    integral_in_range: bool = True

    def observe(self, values: Sequence[Any], n_layers: int) -> None:
        if self.kind == "stages":
            return  # drawn from each item's analysis
        for v in values:
            if v is None:
                continue
            if isinstance(v, str):
                self.kind = "category"
                if v not in self.categories:
                    self.categories.append(v)
                continue
            self.min, self.max = min(self.min, v), max(self.max, v)
            if not (float(v).is_integer() and 0 <= v <= n_layers):
                self.integral_in_range = False

    def to_json(self) -> dict[str, Any]:
        kind = (
            self.kind
            if self.kind in ("category", "stages")
            else "layer"
            if self.integral_in_range
            else "number"
        )
        finite = self.min <= self.max
        return {
            "key": self.key,
            "label": self.label,
            "description": self.description,
            "kind": kind,
            "categories": self.categories,
            "min": self.min if finite else 0.0,
            "max": self.max if finite else 1.0,
        }


def new_series(key: str) -> Series:
    """The series ``key`` with its label and description (the analysis' series and the top-1 one are known)."""
    if key == TOP1_SERIES:
        return Series(TOP1_SERIES, TOP1_SERIES, TOP1_DESCRIPTION)
    if key == it.STAGE_SERIES:
        return Series(key, "stages across layers", it.SERIES_DESCRIPTIONS[key], kind="stages")
    description = it.SERIES_DESCRIPTIONS.get(key, f"{key} (given with the report's extra data)")
    return Series(key, key, description)


def data_block(
    series: Mapping[str, Series], flag_names: list[str], payloads: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the page's script reads: scales, the colouring series (the top-1 series last), flags, stage names,
    palettes and every item's payload."""
    ordered = [s for s in series.values() if s.key != TOP1_SERIES] + [series[TOP1_SERIES]] if series else []
    default_key = next((s.key for s in ordered if s.key != TOP1_SERIES), TOP1_SERIES)
    marks = flag_classes(flag_names)
    return {
        "version": 1,
        "prob_scale": PROB_SCALE,
        "jsd_scale": JSD_SCALE,
        "heatmap_tokens": HEATMAP_TOKENS,
        "series": [s.to_json() for s in ordered],
        "default_series": default_key,
        "flags": flag_names,
        "flag_classes": marks,
        "toggle": [it.CRITICAL_SERIES, it.STAGE_SERIES],
        "stage_names": {str(code): name for code, name in STAGE_NAMES.items()},
        "palettes": {
            "values": cmap_hex("viridis", 11),
            "jsd": cmap_hex("Purples", 9),
            "candidates": cmap_hex("tab20", 20),
            "categories": cmap_hex("tab10", 10),
            "stages": {str(code): colour for code, colour in STAGE_COLOURS.items()},
        },
        "items": payloads,
    }


def _data_script(data: Mapping[str, Any], compress: bool | None) -> str:
    encoded = json_for_script(data)
    if compress is False or (compress is None and len(encoded) <= COMPRESS_ABOVE):
        return f'<script type="application/json" id="evolens-data">{encoded}</script>'
    packed = base64.b64encode(gzip.compress(encoded.encode("utf-8"), compresslevel=6, mtime=0)).decode(
        "ascii"
    )
    return f'<script type="application/octet-stream" id="evolens-data" data-encoding="gzip+base64">{packed}</script>'


def page(
    title: str,
    summary_html: str,
    items_html: str,
    data: Mapping[str, Any],
    flag_names: list[str],
    compress: bool | None,
) -> str:
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    marks = flag_classes(flag_names)
    flag_legend = " ".join(
        f'<span class="legend-flag"><span class="{marks[name]}">{text(name)}</span> <span class="note">('
        f"{FLAG_STYLES[marks[name]]}{': ' + it.FLAG_DESCRIPTIONS[name] if name in it.FLAG_DESCRIPTIONS else ''})"
        "</span></span>"
        for name in flag_names
    )
    controls = (
        '<div class="controls"><span><label for="series">Colour tokens by</label> <select id="series"></select></span>'
        '<span class="toggle" id="colour-toggle" role="group" aria-label="colour by" hidden></span>'
        '<span class="scale" id="scale"></span>'
        + (f"<span><strong>Marked:</strong> {flag_legend}</span>" if flag_names else "")
        + "</div>"
    )
    return "".join(
        [
            "<!DOCTYPE html>\n",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{text(csp)}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="evolens">',
            '<link rel="icon" href="data:,">',
            f"<title>{text(title)}</title>",
            f"<style>{_asset('report.css')}</style></head><body>",
            "<noscript><p>This report draws its charts with JavaScript; the texts and tables below are readable "
            "without it.</p></noscript>",
            controls,
            summary_html,
            items_html,
            _data_script(data, compress),
            f"<script>{script}</script>",
            "</body></html>\n",
        ]
    )
