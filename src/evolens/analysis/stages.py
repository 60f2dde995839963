"""The paper's three stages of a token's knowledge evolution across layers (§4), with their codes and names.

Per token, with critical layer ``c`` and first mutation layer ``m`` (state indices): rapid evolution ``[0, c)``,
stabilisation ``[c, m)`` and mutation ``[m, L]``; states no detector could place are undetermined. The codes are
what :attr:`evolens.TraceAnalysis.stages` stores (``int8``); the names are only ever displayed (in figures, the
report and the geometry's stage groups), spelt as in the README. Their colours live with the figures
(:data:`evolens.viz.style.STAGE_COLOURS`).
"""

from __future__ import annotations

RAPID, STABLE, MUTATION, UNKNOWN = 0, 1, 2, -1

#: Display name of each stage code.
STAGE_NAMES: dict[int, str] = {
    RAPID: "rapid evolution",
    STABLE: "stabilisation",
    MUTATION: "mutation",
    UNKNOWN: "undetermined",
}
