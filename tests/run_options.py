"""Tests name run options flat, as a user reads them in a table; this builds the option objects that
:func:`evolens.run` and :func:`evolens.finalize_run` take."""

from __future__ import annotations

from typing import Any

import evolens
from evolens.api import LoadOptions

_LOAD = set(LoadOptions.__dataclass_fields__)
_FINALIZE = set(evolens.FinalizeOptions.__dataclass_fields__)
_TRACE = (
    set(evolens.TraceOptions.__dataclass_fields__) | set(evolens.GenerationSettings.__dataclass_fields__)
) - {"generation"}


def run_options(**flat: Any) -> dict[str, Any]:
    """``evolens.run`` keyword arguments from flat names (``max_new_tokens=3, device="cpu", figures=False``)."""
    out: dict[str, Any] = {}
    trace = {k: flat.pop(k) for k in list(flat) if k in _TRACE}
    load = {k: flat.pop(k) for k in list(flat) if k in _LOAD}
    finalize = {k: flat.pop(k) for k in list(flat) if k in _FINALIZE}
    if trace:
        out["trace"] = evolens.TraceOptions.from_flat(**trace)
    if load:
        out["load"] = LoadOptions(**load)
    if finalize:
        out["finalize"] = evolens.FinalizeOptions(**finalize)
    return {**out, **flat}


def finalize_options(**flat: Any) -> evolens.FinalizeOptions:
    """``evolens.finalize_run``'s options from flat names."""
    return evolens.FinalizeOptions(**flat)
