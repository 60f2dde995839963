"""Stage-based compression's curve (``evolens compress``, issue 18), drawn from the curve stored in
``compress.json`` only (:class:`evolens.runs.compress.CompressResult` → ``curve``, as plain dicts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evolens.errors import SettingsError
from evolens.viz.layout import panel_grid
from evolens.viz.style import plain_text, styled

#: Colour and label of each removal rule.
RULE_STYLES: dict[str, tuple[str, str]] = {
    "stage": ("tab:green", "stabilisation stage (lowest JSD first)"),
    "random": ("tab:grey", "random layers (mean ± SD of draws)"),
    "last": ("tab:red", "last layers"),
}
MEASURES: dict[str, str] = {
    "accuracy": "accuracy (judged items)",
    "accuracy_typical": "accuracy, typical items",
    "accuracy_atypical": "accuracy, atypical items",
    "similarity": "token similarity to the full model",
    "exact_match": "share identical to the full model",
}


def _value(point: Mapping[str, Any], key: str) -> float:
    value = point.get(key)
    return math.nan if value is None else float(value)


def _series(curve: Sequence[Mapping[str, Any]], rule: str) -> list[Mapping[str, Any]]:
    """The full model's point (``k = 0``) then ``rule``'s points by ``k``."""
    full = [p for p in curve if p["rule"] == "full"]
    return full[:1] + sorted((p for p in curve if p["rule"] == rule), key=lambda p: int(p["k"]))


def _draw(ax: Axes, curve: Sequence[Mapping[str, Any]], x_key: str, y_key: str) -> None:
    for rule, (colour, label) in RULE_STYLES.items():
        points = _series(curve, rule)
        if len(points) < 2:
            continue
        xs = [float(p["k"]) if x_key == "k" else _value(p, x_key) for p in points]
        ys = [_value(p, y_key) for p in points]
        sd_key = f"{y_key}_sd" if rule == "random" else None
        yerr = [_value(p, sd_key) if sd_key and p.get(sd_key) is not None else 0.0 for p in points]
        ax.errorbar(xs, ys, yerr=yerr, color=colour, marker="o", markersize=3.5, linewidth=1.4, capsize=2,
                    label=label)  # fmt: skip
    full = _series(curve, "full")[:1]
    if full:
        x = 0.0 if x_key == "k" else _value(full[0], x_key)
        ax.plot([x], [_value(full[0], y_key)], marker="*", markersize=10, color="black", linestyle="none",
                label="full model")  # fmt: skip


@styled
def compress_figure(
    curve: Sequence[Mapping[str, Any]], *, measure: str = "accuracy", title: str | None = None
) -> Figure:
    """Three panels, one line per removal rule, each starting at the full model: ``measure`` against the layers
    removed ``k``; the token similarity to the full model against ``k``; ``measure`` against tokens per second.

    Args:
        curve: ``compress.json → curve`` (:class:`~evolens.runs.compress.CurvePoint` dicts).
        measure: A key of :data:`MEASURES`.
        title: The figure's title (escaped: shown as plain text).

    Raises:
        SettingsError: an unknown measure, or a curve without the full model's point.
    """
    if measure not in MEASURES:
        raise SettingsError(f"unknown measure {measure!r}; use one of {sorted(MEASURES)}")
    if not any(p["rule"] == "full" for p in curve):
        raise SettingsError("the curve has no full-model point (rule 'full')")
    fig, (by_k, agreement, by_speed) = panel_grid(3, ncols=3, panel_size=(3.8, 3.2))
    _draw(by_k, curve, "k", measure)
    by_k.set_xlabel("decoder layers removed (k)")
    by_k.set_ylabel(MEASURES[measure])
    by_k.set_title(f"{MEASURES[measure]} against k", parse_math=False)
    _draw(agreement, curve, "k", "similarity")
    agreement.set_xlabel("decoder layers removed (k)")
    agreement.set_ylabel(MEASURES["similarity"])
    agreement.set_title("agreement with the full model", parse_math=False)
    _draw(by_speed, curve, "tokens_per_s", measure)
    by_speed.set_xlabel("generated tokens per second")
    by_speed.set_ylabel(MEASURES[measure])
    by_speed.set_title("quality against speed", parse_math=False)
    for ax in (by_k, agreement):
        ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    by_k.legend(frameon=False, fontsize="x-small")
    if title:
        fig.suptitle(plain_text(title), fontsize="medium")
    return fig


__all__ = ["MEASURES", "RULE_STYLES", "compress_figure"]
