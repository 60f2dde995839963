"""The interleaved cost sample of ``evolens decode``: every strategy traces the same batch of items, in turn, for a few
rounds (A, B, C, A, B, C, ... after one untimed round), so that a machine whose load changes during the comparison
slows every strategy alike — the strategies' own runs are timed one after the other, and their multiples of greedy
drift with the load. Stored as ``DIR/cost-sample.json``, reused while the strategies, items and rounds are the
same."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evolens.api import LVLM
from evolens.data.items import DataItem
from evolens.errors import ImageError, StoreError
from evolens.files import atomic_write_text
from evolens.models.inputs import load_image

if TYPE_CHECKING:
    from evolens.runs.options import DecodeStrategy

SAMPLE = "cost-sample.json"


@dataclass(frozen=True)
class CostSample:
    """Seconds per round of every strategy on the same items.

    Attributes:
        strategies: The strategies' names, in the order they ran in each round.
        item_ids: The items traced by every call (one batch).
        rounds: Timed rounds (after one untimed round).
        seconds: ``name -> [seconds of each timed round]`` (the whole ``lvlm.trace`` call).
        n_tokens: ``name -> tokens the call generated`` (EOS included; the same in every round: greedy choices).
    """

    strategies: list[str]
    item_ids: list[str]
    rounds: int
    seconds: dict[str, list[float]]
    n_tokens: dict[str, int]

    def s_per_token(self, name: str) -> float | None:
        """Median seconds of ``name``'s rounds over the tokens it generated."""
        if name not in self.seconds or not self.n_tokens.get(name):
            return None
        return statistics.median(self.seconds[name]) / self.n_tokens[name]

    def multiple(self, name: str, baseline: str) -> float | None:
        """``name``'s time per token over ``baseline``'s."""
        own, base = self.s_per_token(name), self.s_per_token(baseline)
        return own / base if own is not None and base else None

    @classmethod
    def read(cls, path: Path) -> CostSample | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                [str(n) for n in data["strategies"]], [str(i) for i in data["item_ids"]], int(data["rounds"]),
                {str(k): [float(x) for x in v] for k, v in data["seconds"].items()},
                {str(k): int(v) for k, v in data["n_tokens"].items()},
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise StoreError(f"cannot read the cost sample {path}: {err}") from None

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1) + "\n")


def sample_items(items: Sequence[DataItem], n: int) -> list[DataItem]:
    """The first ``n`` items whose image loads (or that have none)."""
    chosen: list[DataItem] = []
    for item in items:
        if len(chosen) == n:
            break
        if item.image is not None:
            try:
                load_image(item.image)
            except (ImageError, OSError, ValueError):
                continue
        chosen.append(item)
    return chosen


def sample_costs(
    lvlm: LVLM, items: Sequence[DataItem], strategies: Sequence[DecodeStrategy], rounds: int
) -> CostSample:
    """Trace ``items`` (one batch) under every strategy, interleaved, ``rounds`` timed rounds after an untimed one."""
    sync: Callable[[], None] = torch.cuda.synchronize if lvlm.loaded.device.type == "cuda" else (lambda: None)
    seconds: dict[str, list[float]] = {s.name: [] for s in strategies}
    n_tokens: dict[str, int] = {}
    for round_index in range(rounds + 1):
        for s in strategies:
            options = replace(s.trace, keep_hidden_states=False, batch_size=len(items))
            sync()
            started = time.perf_counter()
            traces = lvlm.trace(
                images=[i.image for i in items],
                prompts=[i.prompt for i in items],
                item_ids=[i.item_id for i in items],
                options=options,
            )
            sync()
            if round_index:  # the first round warms up
                seconds[s.name].append(time.perf_counter() - started)
            n_tokens[s.name] = sum(t.n_steps for t in traces)
    return CostSample([s.name for s in strategies], [i.item_id for i in items], rounds, seconds, n_tokens)


__all__ = ["SAMPLE", "CostSample", "sample_costs", "sample_items"]
