"""Which rules score the benchmarks: the official scripts' own, or evolens's documented reading of them.

* ``"official"``: what the benchmark's released script computes, quirks included — AMBER's ``inference.py`` counts a
  yes/no answer only when the response is exactly ``Yes`` or ``No``; CHAIR's ``chair.py`` reads ``synonyms.txt`` by
  splitting each line on ``", "`` (an entry after a double space keeps its leading space and never matches) and
  singularizes with pattern 3.6; POPE's ``evaluate.py`` as it is.
* ``"evolens"``: the same metrics with the answer read from the response's first word (``"Yes, there is."``,
  ``"NO"``), synonym entries stripped, and pattern's rules as TextBlob ships them.

AMBER's generative metrics and POPE are the same under both. See the README, "Benchmark protocols".
"""

from __future__ import annotations

from typing import Literal, cast

from evolens.errors import SettingsError

Protocol = Literal["official", "evolens"]

PROTOCOLS: tuple[Protocol, ...] = ("official", "evolens")

#: The protocol of an evaluation that does not name one (and of evaluations stored before protocols existed).
DEFAULT_PROTOCOL: Protocol = "evolens"


def check_protocol(protocol: str) -> Protocol:
    """``protocol`` as a :data:`Protocol`.

    Raises:
        SettingsError: It is not ``"official"`` or ``"evolens"``.
    """
    if protocol not in PROTOCOLS:
        raise SettingsError(
            f"unknown benchmark protocol {protocol!r}; use 'official' (the benchmarks' own scripts) or 'evolens' "
            "(answers read from their first word)"
        )
    return cast(Protocol, protocol)
