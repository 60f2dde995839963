"""What later stages may add to a report, per item and per run, and how it is checked.

Per item (a mapping keyed by the item's ``item_id``; every key optional):

``token_values``
    ``{name: [value per generated token]}`` — numbers (layers: coloured on a 0..L scale) or strings (categories,
    e.g. stages); ``None`` where there is no value. The first series given becomes the default colouring.
``token_flags``
    ``{name: [bool per generated token]}`` — e.g. ``"hallucinated"``, ``"mutation"``; flagged tokens are marked.
``analysis``
    The item's :class:`~evolens.analysis.TraceAnalysis` (or its dict, or a path to its JSON): colours the tokens by
    critical layer or by stage, flags tokens with a mutation layer, and shows each token's critical layers,
    mutations and stage bar on click. Read from ``analysis.json`` beside a trace directory when not given.
``labels``
    Per-token evaluation labels: a :class:`~evolens.hallucination.TokenLabels` or ``{"labels": [...], "objects": [...]}``
    (``"hallucinated"``, ``"grounded"``, ``"exempt"`` or ``None``); flags hallucinated and grounded tokens. Read
    from the run's ``results/tokens.parquet`` for run items.
``evaluation``
    The item's judgement: an :class:`~evolens.data.scores.ItemEvaluation` or its dict (``task``,
    ``hallucinated``, ``answer``, ``truth``, ``mentions``: ``[{word, object, label}]``).
``annotations``
    The dataset's annotations of the item (``{name: value}``), shown folded.
``image``
    The item's image (a path, a PIL image or encoded PNG/JPEG bytes), when the trace's own image file is not at
    hand.
``skip``
    ``[{"name": "skip.1", "tokens": [...], "flags": ["hallucinated" | "corrected" | None, ...], "note": "..."}]``
    — layer-skipping variants shown under the original output — or a
    :class:`~evolens.experiments.skip.SkipResult` (also drawn as the paper's Fig. 5 table; read from ``skip.json``
    beside a trace directory when not given).
``geometry`` / ``figures``
    ``[{"title": "...", "figure": Figure | PNG/JPEG/SVG bytes | path}]`` — feature-geometry plots / other figures.
    ``geometry`` may also be a :class:`~evolens.geometry.FeatureMap` (drawn with ``embedding_figure``; read from
    ``geometry.json`` beside a trace directory when not given).
``tables``
    ``[{"title": "...", "columns": [...], "rows": [[...], ...]}]`` — small tables of numbers or strings.
``notes``
    ``[str]`` — short remarks shown under the item's heading.

Per run (``summary``): ``statistics`` (``{name: value}``), ``figures``, ``geometry``, ``tables``, ``notes``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from evolens.errors import SettingsError

ITEM_KEYS = (
    "token_values",
    "token_flags",
    "analysis",
    "labels",
    "evaluation",
    "annotations",
    "image",
    "skip",
    "geometry",
    "figures",
    "tables",
    "notes",
)
SUMMARY_KEYS = ("statistics", "figures", "geometry", "tables", "notes")
SKIP_FLAGS = ("hallucinated", "corrected")


def check_keys(data: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(f"unknown key(s) {unknown} in {where}; known: {', '.join(known)}")


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SettingsError(f"{where} must be a list, got {type(value).__name__}")
    return list(value)


def _entries(
    data: Any, where: str, keys: Sequence[str], shape: str, required: Sequence[str] = ()
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each entry of the list ``data`` with where it is (``where[i]``): a mapping holding ``required`` and no key
    outside ``keys`` (``shape`` says what it should be)."""
    for i, entry in enumerate(_list(data, where)):
        here = f"{where}[{i}]"
        if not isinstance(entry, Mapping) or any(key not in entry for key in required):
            raise SettingsError(f"{here} must be a mapping with {shape}")
        check_keys(entry, keys, here)
        yield here, entry


def token_series(data: Any, n_steps: int, where: str, *, flags: bool) -> dict[str, list[Any]]:
    """Check a ``{name: [one entry per token]}`` mapping; values become floats/strings/None (or bools for flags)."""
    if not isinstance(data, Mapping):
        raise SettingsError(f"{where} must map a name to one value per token, got {type(data).__name__}")
    series: dict[str, list[Any]] = {}
    for name, values in data.items():
        entries = _list(values, f"{where}[{name!r}]")
        if len(entries) != n_steps:
            raise SettingsError(
                f"{where}[{name!r}] has {len(entries)} values but the item has {n_steps} tokens"
            )
        if flags:
            series[str(name)] = [bool(v) for v in entries]
            continue
        clean: list[Any] = []
        for v in entries:
            if v is None or isinstance(v, str):
                clean.append(v)
            elif isinstance(v, bool):
                raise SettingsError(
                    f"{where}[{name!r}]: use numbers or strings, not booleans (flags go in token_flags)"
                )
            else:
                try:
                    clean.append(float(v))
                except (TypeError, ValueError):
                    raise SettingsError(
                        f"{where}[{name!r}] holds {v!r}; use numbers, strings or None"
                    ) from None
        kinds = {type(v) for v in clean if v is not None}
        if len(kinds) > 1:
            raise SettingsError(f"{where}[{name!r}] mixes numbers and strings")
        series[str(name)] = [None if isinstance(v, float) and v != v else v for v in clean]
    return series


def skip_variants(data: Any, where: str) -> list[dict[str, Any]]:
    """Check the layer-skipping variants of an item."""
    variants = []
    for here, entry in _entries(data, where, ("name", "tokens", "flags", "note"), "'name' and 'tokens'"):
        if "name" not in entry or "tokens" not in entry:
            raise SettingsError(f"{here} needs 'name' and 'tokens'")
        tokens = [str(t) for t in _list(entry["tokens"], f"{here}.tokens")]
        flags = entry.get("flags")
        flag_list = [None] * len(tokens) if flags is None else _list(flags, f"{here}.flags")
        if len(flag_list) != len(tokens):
            raise SettingsError(f"{here} has {len(tokens)} tokens but {len(flag_list)} flags")
        bad = {f for f in flag_list if f not in (None, *SKIP_FLAGS)}
        if bad:
            raise SettingsError(
                f"{here} flags must be 'hallucinated', 'corrected' or None, got {sorted(bad)}"
            )
        variants.append(
            {
                "name": str(entry["name"]),
                "tokens": tokens,
                "flags": flag_list,
                "note": str(entry.get("note", "")),
            }
        )
    return variants


def figure_entries(data: Any, where: str) -> list[tuple[str, Any]]:
    """``(title, figure)`` pairs from ``[{"title": ..., "figure": ...}]``."""
    shape = "a 'figure' (and a 'title')"
    return [
        (str(entry.get("title", "")), entry["figure"])
        for _, entry in _entries(data, where, ("title", "figure"), shape, required=("figure",))
    ]


def tables(data: Any, where: str) -> list[dict[str, Any]]:
    """Check ``[{"title", "columns", "rows"}]``; cells are kept as numbers or strings."""
    checked = []
    for here, entry in _entries(data, where, ("title", "columns", "rows"), "'columns' and 'rows'"):
        columns = [str(c) for c in _list(entry.get("columns", []), f"{here}.columns")]
        rows = []
        for r, row in enumerate(_list(entry.get("rows", []), f"{here}.rows")):
            cells = _list(row, f"{here}.rows[{r}]")
            if columns and len(cells) != len(columns):
                raise SettingsError(f"{here}.rows[{r}] has {len(cells)} cells for {len(columns)} columns")
            rows.append(cells)
        checked.append({"title": str(entry.get("title", "")), "columns": columns, "rows": rows})
    return checked


def notes(data: Any, where: str) -> list[str]:
    return [str(n) for n in _list(data, where)]


def evaluation(data: Any, where: str) -> dict[str, Any]:
    """Check an item's judgement (an ``ItemEvaluation`` or its dict) for display."""
    if hasattr(data, "to_dict") and not isinstance(data, Mapping):
        data = data.to_dict()
    if not isinstance(data, Mapping):
        raise SettingsError(f"{where} must be an ItemEvaluation or a mapping, got {type(data).__name__}")
    mentions = []
    for i, m in enumerate(_list(data.get("mentions", []), f"{where}.mentions")):
        if hasattr(m, "to_dict") and not isinstance(m, Mapping):
            m = m.to_dict()
        if not isinstance(m, Mapping):
            raise SettingsError(f"{where}.mentions[{i}] must map 'word', 'object' and 'label'")
        mentions.append({k: str(m.get(k, "")) for k in ("word", "object", "label")})
    verdict = data.get("hallucinated")
    return {
        "task": None if data.get("task") is None else str(data["task"]),
        "hallucinated": None if verdict is None else bool(verdict),
        "answer": None if data.get("answer") is None else str(data["answer"]),
        "truth": None if data.get("truth") is None else str(data["truth"]),
        "mentions": mentions,
    }


def annotation_map(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise SettingsError(f"{where} must map a name to a value, got {type(data).__name__}")
    return {str(k): v for k, v in data.items()}
