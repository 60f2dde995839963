"""Logit-based yes/no scoring in a run (README "Benchmark protocols"): which tokens a run tracks for it, and what
the merge writes (``results/yesno.json`` and the ``yes_no`` figure).

A run whose items include yes/no questions (POPE, AMBER discriminative) tracks the tokenizer's single-token spellings
of "yes" and "no" (:func:`evolens.data.yesno.yes_no_tokens`) at every (layer, step): their ids are added to
``TraceOptions.track`` and recorded in ``run.json → config.yesno``. A run directory created before this, or without
such items, has no ``config.yesno``: it resumes as it was, and its merge writes no logit scores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evolens.api import TraceOptions
from evolens.data.evaluation import Evaluation
from evolens.data.items import DataItem
from evolens.data.yesno import (
    YESNO_JSON,
    YesNoItem,
    YesNoTokens,
    is_yes_no,
    truth_of,
    yes_no_curve,
    yes_no_lines,
    yes_no_tokens,
    yes_no_totals,
)
from evolens.store.results import ResultsWriter
from evolens.trace.core import Trace

logger = logging.getLogger(__name__)

CONFIG_KEY = "yesno"
FIGURE_NAME = "yes_no"


def run_tokens(
    items: Iterable[DataItem], stored_config: Mapping[str, Any] | None, tokenizer: Any | None
) -> YesNoTokens | None:
    """The yes/no tokens a run tracks: a resumed run's recorded ones (none when it recorded none); for a new run,
    the tokenizer's when some item is a yes/no question (``tokenizer=None``: not known yet).

    Raises:
        SettingsError: A new run with yes/no items, and a tokenizer without a single token for "yes" or "no".
    """
    if stored_config is not None:
        recorded = stored_config.get(CONFIG_KEY)
        return YesNoTokens.from_dict(recorded) if recorded else None
    if tokenizer is None or not any(is_yes_no(item.annotations) for item in items):
        return None
    return yes_no_tokens(tokenizer)


def with_tokens(trace: TraceOptions, config: dict[str, Any], tokens: YesNoTokens | None) -> TraceOptions:
    """``trace`` with the yes/no ids added to its tracked tokens; ``config`` (the run's) records both."""
    if tokens is None:
        return trace
    tracked = list(trace.track or ())
    trace = replace(trace, track=(*tracked, *(i for i in tokens.ids if i not in tracked)))
    config["trace"] = trace.run_config()
    config[CONFIG_KEY] = tokens.to_dict()
    return trace


@dataclass
class YesNoMerge:
    """Collects the yes/no items of a merge, then writes ``results/yesno.json`` and its figure."""

    tokens: YesNoTokens
    items: list[YesNoItem] = field(default_factory=list)
    n_skipped: int = 0

    @classmethod
    def of_run(cls, config: Mapping[str, Any]) -> YesNoMerge | None:
        """The collector of a run that tracked yes/no tokens, else ``None``."""
        recorded = config.get(CONFIG_KEY)
        return cls(YesNoTokens.from_dict(recorded)) if recorded else None

    def add(
        self, item_id: str, annotations: Mapping[str, Any], trace: Trace, text_answer: str | None
    ) -> None:
        """Score one finished item from its logits at the first answer position (a no-op for other items)."""
        if not is_yes_no(annotations):
            return
        metrics = trace.metrics
        known = set(metrics.tracked_ids.tolist())
        if trace.n_steps == 0 or not set(self.tokens.ids) <= known:
            self.n_skipped += 1
            return
        curve = yes_no_curve(metrics.tracked_ids.tolist(), metrics.tracked_logprobs, self.tokens)
        task = str(annotations["task"])
        kind = str(annotations.get("type", ""))
        self.items.append(YesNoItem(item_id, task, truth_of(annotations), text_answer, curve, kind))

    def write(self, writer: ResultsWriter, evaluation: Evaluation) -> dict[str, Any] | None:
        """Write ``yesno.json`` into the results directory; returns what ``summary.json`` says of it (its
        ``lines`` are printed), or ``None`` when no yes/no item was scored."""
        if self.n_skipped:
            logger.warning(
                "%d yes/no items have no tracked yes/no tokens; not scored from logits", self.n_skipped
            )
        if not self.items:
            return None
        totals = yes_no_totals(self.items)
        text_scores = {
            "pope": evaluation.pope.to_dict() if evaluation.pope is not None else None,
            "amber_discriminative": evaluation.amber_discriminative.to_dict()
            if evaluation.amber_discriminative is not None
            else None,
        }
        data = {
            "tokens": self.tokens.to_dict(),
            "totals": {**totals, "text_scores": text_scores},
            "items": [it.to_dict() for it in self.items],
        }
        writer.write_json(YESNO_JSON, data)
        return {"scores": totals["scores"], "lines": yes_no_lines(totals)}


def write_yes_no_figure(directory: Path) -> list[Path]:
    """Draw ``<directory>/figures/yes_no.{png,svg}`` from ``<directory>/yesno.json`` when it exists."""
    from evolens.report.figures import FIGURES_DIR, FORMATS, deterministic_svg
    from evolens.viz import save_figure
    from evolens.viz.yesno import yes_no_figure

    source = directory / YESNO_JSON
    if not source.is_file():
        return []
    totals = json.loads(source.read_text(encoding="utf-8"))["totals"]
    with deterministic_svg():
        return save_figure(yes_no_figure(totals), directory / FIGURES_DIR / FIGURE_NAME, list(FORMATS))


__all__ = ["CONFIG_KEY", "YesNoMerge", "run_tokens", "with_tokens", "write_yes_no_figure"]
