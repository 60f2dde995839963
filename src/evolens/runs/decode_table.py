"""The mitigation table of ``evolens decode`` computed from the stored runs only (never the model): each strategy's
evaluation, the quality of its judged answers, the paired comparison with the baseline, its measured cost per token
and the tokens that changed (:class:`~evolens.hallucination.decode_results.DecodeResult`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evolens.analysis.compare import similarity, token_diff
from evolens.errors import StoreError
from evolens.files import atomic_write_text
from evolens.hallucination.decode_results import (
    ChangeExample,
    Cost,
    DecodeResult,
    StrategyResult,
    TokenChanges,
)
from evolens.hallucination.outcomes import ItemOutcome, Quality, compare_outcomes, item_outcomes
from evolens.runs.decode_cost import SAMPLE, CostSample
from evolens.store.results import RunResults, generated_ids
from evolens.trace.fileformat import read_manifest

if TYPE_CHECKING:
    from evolens.runs.options import DecodeOptions

TIMING = "timing"


def timing_path(root: Path, name: str) -> Path:
    """Where the measured tracing time of strategy ``name`` is kept: ``DIR/timing/<name>.json``."""
    return root / TIMING / f"{name}.json"


@dataclass(frozen=True)
class RunTiming:
    """The tracing time of one strategy, summed over the calls that completed (an interrupted call's items are in
    neither sum).

    Attributes:
        seconds: Seconds the run pipeline spent tracing (``RunSummary.elapsed_s``).
        n_items: Items those calls traced.
        n_tokens: Tokens those items generated (EOS included).
    """

    seconds: float = 0.0
    n_items: int = 0
    n_tokens: int = 0

    def plus(self, seconds: float, n_items: int, n_tokens: int) -> RunTiming:
        return RunTiming(self.seconds + seconds, self.n_items + n_items, self.n_tokens + n_tokens)

    @property
    def s_per_token(self) -> float | None:
        return self.seconds / self.n_tokens if self.n_tokens else None

    @classmethod
    def read(cls, path: Path) -> RunTiming:
        """The timing at ``path``; zero when no call has completed yet."""
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(float(data["seconds"]), int(data["n_items"]), int(data["n_tokens"]))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise StoreError(f"cannot read the timing {path}: {err}") from None

    def write(self, path: Path) -> None:
        data = {"seconds": self.seconds, "n_items": self.n_items, "n_tokens": self.n_tokens}
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")


@dataclass(frozen=True)
class _Answer:
    """A finished item's generation."""

    prompt: str
    text: str
    ids: list[int]
    tokens: list[str]


@dataclass(frozen=True)
class _Run:
    """What the table needs of one strategy's run."""

    results: RunResults
    outcomes: dict[str, ItemOutcome]
    answers: dict[str, _Answer]


def _read_run(run_dir: Path) -> _Run:
    results = RunResults(run_dir)
    records = {str(r["item_id"]): r for r in results.run.items()}
    annotations = {k: r.get("annotations") or {} for k, r in records.items()}
    outcomes = item_outcomes(results.evaluation(), annotations)
    answers = {}
    for record, directory in results.run.iter_done():
        manifest = read_manifest(directory)
        answers[str(record["item_id"])] = _Answer(
            str(record.get("prompt", "")),
            str(manifest["text"]),
            generated_ids(directory),
            [str(t) for t in manifest["tokens"]],
        )
    return _Run(results, outcomes, answers)


def decode_result(
    runs_root: Path, names: Sequence[str], settings: Mapping[str, Any], options: DecodeOptions
) -> DecodeResult:
    """The comparison of the runs ``runs_root/<name>`` (the first name is the baseline)."""
    runs = {name: _read_run(runs_root / name) for name in names}
    base_name = names[0]
    base = runs[base_name]
    timing_root = runs_root.parent
    base_per_token = RunTiming.read(timing_path(timing_root, base_name)).s_per_token
    sample = CostSample.read(timing_root / SAMPLE)
    if sample is not None and sample.strategies != list(names):
        sample = None  # taken for other strategies (a sample of 0 rounds was asked for since)
    rows = []
    for name, run in runs.items():
        is_base = name == base_name
        timing = RunTiming.read(timing_path(timing_root, name))
        summary = run.results.summary()
        rows.append(
            StrategyResult(
                name=name,
                config=dict(run.results.manifest["config"]["trace"]),
                n_items=int(summary["n_items"]),
                n_done=int(summary["done"]),
                n_failed=int(summary["failed"]),
                scores=[_score(r) for r in run.results.evaluation().score_rows()],
                evaluation_lines=list(summary.get("evaluation_lines") or []),
                quality=Quality.of(run.outcomes),
                paired=None
                if is_base
                else compare_outcomes(
                    base.outcomes,
                    run.outcomes,
                    n_bootstrap=options.n_bootstrap,
                    level=options.level,
                    seed=options.seed,
                ),
                cost=_cost(timing, base_per_token, sample, name, base_name),
                changes=None if is_base else token_changes(base.answers, run.answers),
                examples=[] if is_base else _examples(base, run, options.n_examples),
            )
        )
    manifest = base.results.manifest
    model = {
        "source": (manifest.get("dataset_source") or {}).get("model_source"),
        **dict(manifest["config"].get("model") or {}),
    }
    return DecodeResult(
        baseline=base_name,
        model=model,
        dataset=dict(settings["dataset"]),
        settings={
            **settings["evaluation"],
            **settings["comparison"],
            "n_examples": options.n_examples,
            "cost_sample": {"n_items": len(sample.item_ids), "rounds": sample.rounds} if sample else None,
        },
        strategies=rows,
    )


def _cost(
    timing: RunTiming, base_per_token: float | None, sample: CostSample | None, name: str, base_name: str
) -> Cost:
    """A strategy's cost: its run's time per token and multiple of the baseline's, and the interleaved sample's."""
    per_token = timing.s_per_token
    return Cost(
        seconds=timing.seconds,
        n_items=timing.n_items,
        n_tokens=timing.n_tokens,
        s_per_token=per_token,
        multiple=per_token / base_per_token if per_token is not None and base_per_token else None,
        sample_s_per_token=sample.s_per_token(name) if sample is not None else None,
        sample_multiple=sample.multiple(name, base_name) if sample is not None else None,
    )


def _score(row: Any) -> dict[str, Any]:
    return {"benchmark": row.benchmark, "name": row.name, "value": row.value, "unit": row.unit}


def token_changes(base: Mapping[str, _Answer], other: Mapping[str, _Answer]) -> TokenChanges:
    """How ``other``'s generated tokens differ from ``base``'s over the items both finished."""
    common = [k for k in base if k in other]
    changed = sum(base[k].ids != other[k].ids for k in common)
    n = len(common)
    return TokenChanges(
        n_pairs=n,
        n_changed=changed,
        changed_share=changed / n if n else None,
        mean_similarity=sum(similarity(base[k].ids, other[k].ids) for k in common) / n if n else None,
        mean_tokens_base=sum(len(base[k].ids) for k in common) / n if n else None,
        mean_tokens=sum(len(other[k].ids) for k in common) / n if n else None,
    )


def _examples(base: _Run, other: _Run, n: int) -> list[ChangeExample]:
    """Up to ``n`` items whose tokens changed, those whose judgement changed first, then in run order."""
    changed = [k for k in base.answers if k in other.answers and base.answers[k].ids != other.answers[k].ids]

    def verdict(run: _Run, item_id: str) -> bool | None:
        outcome = run.outcomes.get(item_id)
        return None if outcome is None else outcome.correct

    flipped = [k for k in changed if verdict(base, k) != verdict(other, k)]
    chosen = (flipped + [k for k in changed if k not in flipped])[:n]
    examples = []
    for item_id in chosen:
        a, b = base.answers[item_id], other.answers[item_id]
        ops = [op.to_dict() for op in token_diff(a.ids, b.ids, a.tokens, b.tokens) if op.tag != "equal"]
        examples.append(
            ChangeExample(
                item_id=item_id,
                prompt=a.prompt,
                base_text=a.text,
                text=b.text,
                similarity=similarity(a.ids, b.ids),
                ops=ops,
                base_correct=verdict(base, item_id),
                correct=verdict(other, item_id),
            )
        )
    return examples


__all__ = ["TIMING", "RunTiming", "decode_result", "timing_path", "token_changes"]
