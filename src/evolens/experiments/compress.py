"""Stage-based compression (paper §6, "Potential Applications"): generation with ``k`` decoder layers removed —
``k`` layers of the stabilisation stage, ``k`` layers drawn at random, or the last ``k`` — each generation timed.

The paper observes that skipping layers of the stabilisation stage barely changes the output, which "supports the
design of compression algorithms". This module makes the plan and the timed generations; the run that judges them
against the benchmark and the full model is :mod:`evolens.runs.compress`.

**The stabilisation stage** (:func:`detect_stage`). Per token the stages are rapid evolution ``[0, c)``,
stabilisation ``[c, m)`` and mutation ``[m, L]`` (states; :mod:`evolens.analysis.stages`), the stabilisation running
to the last layer for a token without a mutation layer (:func:`~evolens.analysis.detectors.stage_of_layers`). Over a
dataset: every item is traced greedily and analysed as a run analyses it (:func:`~evolens.analysis.analyze_trace`
with the layer-baseline rule of :mod:`evolens.runs.finalize`: answers shorter than ``params.baseline_min_tokens``
are held against the dataset's baseline), and the tokens (EOS left out) are pooled: the stage starts at ``c``, the
median critical layer (as the run's summary reports it, :func:`~evolens.analysis.aggregate.summarize`), and ends at
``e``, the median over the tokens with a critical layer of where their stabilisation ends (their first mutation
layer, or ``L + 1`` without one; both medians rounded half up). The median first mutation layer of the tokens that
do mutate is recorded beside it, but does not end the stage: most tokens never mutate. The stage's removable layers
are decoder layers ``c + 1 .. e - 1`` — as the ``skip1`` preset of :mod:`evolens.analysis.layers` removes them,
state ``c`` then goes straight into layer ``e``. ``--stage A-B`` gives them instead (decoder layers ``A..B``,
1-based).

**Which k go first**: the stage's layers in ascending order of their median adjacent-layer JSD (bits) over every
token of the traced pass, EOS left out (:func:`~evolens.analysis.trace_analysis.jsd_baseline`: what layer ``l``
changes between states ``l - 1`` and ``l``), ties to the lower layer — the layers that change the distribution
least are removed first.

**Controls**: ``random`` removes ``k`` of all ``L`` decoder layers drawn uniformly without replacement, one draw per
seed ``(seed, k, draw)`` (so adding draws or values of ``k`` leaves the others unchanged); ``last`` removes layers
``L - k + 1 .. L``. ``full`` removes none; it is generated and timed once per ``k``, in the same loop as that
``k``'s variants, so every speed is held against the full model measured next to it.

Layer numbers of removed layers are 1-based decoder layers ``1..L`` (:mod:`evolens.analysis.layers`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from evolens.analysis.aggregate import summarize
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.analysis.trace_analysis import TraceAnalysis, analyze_trace, jsd_baseline
from evolens.api import TraceOptions
from evolens.errors import SettingsError, check_positive_int
from evolens.experiments.skip.generate import Generation, generate_skipped
from evolens.experiments.skip.methods import SkipMethod, check_skip_layers, rebuild_unsupported

if TYPE_CHECKING:
    from evolens.api import LVLM
    from evolens.trace import Trace

Rule = Literal["full", "stage", "random", "last"]
RULES: tuple[Rule, ...] = ("stage", "random", "last")
"""The removal rules compared, in the order each ``k``'s cells run (after the full model)."""
FULL: Rule = "full"


@dataclass(frozen=True)
class Stage:
    """The stabilisation stage whose layers are removed.

    Attributes:
        n_layers: Decoder layers L.
        layers: Its removable decoder layers (1-based), ascending.
        order: The same layers in removal order (lowest ``layer_jsd`` first, ties to the lower layer).
        layer_jsd: ``[L]`` median adjacent-layer JSD (bits, or the paper's reduction per ``params``) that decoder
            layer ``l`` makes (``layer_jsd[l - 1]``: states ``l - 1`` -> ``l``) over every traced token, EOS left
            out.
        source: ``"detected"`` or ``"given"`` (``--stage``).
        critical_layer: The median critical layer ``c`` (state index) when detected, else ``None``.
        stage_end: The median end ``e`` of the tokens' stabilisation stage (state index; ``L + 1``: past the last
            layer) when detected.
        mutation_layer: The median first mutation layer of the tokens that have one (state index; ``None``: none,
            or not detected) — for the record: the stage's end also counts the tokens without a mutation.
        n_items: Items traced.
        n_tokens: Tokens analysed (EOS left out).
        tokens_with_critical: Of them, those with a critical layer.
        tokens_with_mutation: Of them, those with a mutation layer.
    """

    n_layers: int
    layers: tuple[int, ...]
    order: tuple[int, ...]
    layer_jsd: tuple[float, ...]
    source: str
    critical_layer: int | None = None
    stage_end: int | None = None
    mutation_layer: int | None = None
    n_items: int = 0
    n_tokens: int = 0
    tokens_with_critical: int = 0
    tokens_with_mutation: int = 0

    @property
    def length(self) -> int:
        """Layers in the stage (the largest ``k``)."""
        return len(self.layers)

    def removed(self, k: int) -> tuple[int, ...]:
        """The ``k`` layers the ``stage`` rule removes, ascending."""
        return tuple(sorted(self.order[:k]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_layers": self.n_layers,
            "layers": list(self.layers),
            "order": list(self.order),
            "layer_jsd": [v if math.isfinite(v) else None for v in self.layer_jsd],
            "source": self.source,
            "critical_layer": self.critical_layer,
            "stage_end": self.stage_end,
            "mutation_layer": self.mutation_layer,
            "n_items": self.n_items,
            "n_tokens": self.n_tokens,
            "tokens_with_critical": self.tokens_with_critical,
            "tokens_with_mutation": self.tokens_with_mutation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage:
        return cls(
            n_layers=int(data["n_layers"]),
            layers=tuple(int(x) for x in data["layers"]),
            order=tuple(int(x) for x in data["order"]),
            layer_jsd=tuple(math.nan if v is None else float(v) for v in data["layer_jsd"]),
            source=str(data["source"]),
            critical_layer=None if data.get("critical_layer") is None else int(data["critical_layer"]),
            stage_end=None if data.get("stage_end") is None else int(data["stage_end"]),
            mutation_layer=None if data.get("mutation_layer") is None else int(data["mutation_layer"]),
            n_items=int(data.get("n_items", 0)),
            n_tokens=int(data.get("n_tokens", 0)),
            tokens_with_critical=int(data.get("tokens_with_critical", 0)),
            tokens_with_mutation=int(data.get("tokens_with_mutation", 0)),
        )


def parse_stage(spec: str, n_layers: int) -> tuple[int, int]:
    """``"A-B"`` (1-based decoder layers, inclusive) -> ``(A, B)``, checked against ``L = n_layers``.

    Raises:
        SettingsError: not ``A-B``, out of ``[1, L]``, ``A > B``, or every layer.
    """
    first, dash, last = spec.strip().partition("-")
    try:
        a, b = int(first), int(last) if dash else int(first)
    except ValueError:
        raise SettingsError(f"--stage must be A-B (1-based decoder layers), got {spec!r}") from None
    if not 1 <= a <= b <= n_layers:
        raise SettingsError(
            f"--stage {spec} is out of range: the model has decoder layers 1..{n_layers} (1-based), and A <= B"
        )
    if b - a + 1 >= n_layers:
        raise SettingsError(
            f"--stage {spec} holds every one of the {n_layers} decoder layers; keep at least one"
        )
    return a, b


def removal_order(layers: Sequence[int], layer_jsd: Sequence[float]) -> tuple[int, ...]:
    """``layers`` (1-based) in ascending order of ``layer_jsd[l - 1]``, ties (and NaN, last) to the lower layer."""

    def key(layer: int) -> tuple[bool, float, int]:
        value = float(layer_jsd[layer - 1])
        return (not math.isfinite(value), value if math.isfinite(value) else 0.0, layer)

    return tuple(sorted(layers, key=key))


def _half_up(value: float) -> int:
    return math.floor(value + 0.5)


def stage_ends(analyses: Sequence[TraceAnalysis]) -> np.ndarray:
    """Where each token's stabilisation stage ends (a state index; EOS left out), for the tokens with a critical
    layer: its first mutation layer, or ``L + 1`` when it has none (:func:`~evolens.analysis.detectors.
    stage_of_layers`: without a mutation the stage runs to the last layer)."""
    ends = []
    for analysis in analyses:
        mask = analysis.step_mask() & (analysis.critical_layer != NOT_FOUND)
        first = analysis.mutation_layer[mask]
        ends.append(np.where(first == NOT_FOUND, analysis.n_layers + 1, first))
    return np.concatenate(ends) if ends else np.zeros(0, dtype=np.int64)


def stage_from_traces(
    traces: Sequence[Trace], params: DetectorParams | None = None, *, given: tuple[int, int] | None = None
) -> Stage:
    """The stabilisation stage of a traced greedy pass over the items (module docstring), or the layers ``given``
    (``(A, B)``, 1-based, from :func:`parse_stage`) ordered by the same pass's JSD.

    Raises:
        SettingsError: no trace, no token with a critical layer, or a detected stage with no layer to remove.
    """
    params = params or DetectorParams()
    if not traces:
        raise SettingsError("no item to trace: the stage needs at least one")
    n_layers = traces[0].n_layers
    baseline = jsd_baseline(traces, params)
    layer_jsd = tuple(float(v) for v in baseline)
    if given is not None:
        layers = tuple(range(given[0], given[1] + 1))
        return Stage(
            n_layers, layers, removal_order(layers, layer_jsd), layer_jsd, "given", n_items=len(traces)
        )
    dataset_baseline = baseline if params.spike_layer_ratio > 0 and np.all(np.isfinite(baseline)) else None
    analyses = []
    for trace in traces:
        length = trace.n_steps - 1 if trace.stop_reason == "eos" and trace.n_steps else trace.n_steps
        short = length < params.baseline_min_tokens
        analyses.append(analyze_trace(trace, params, baseline_jsd=dataset_baseline if short else None))
    summary = summarize(analyses, n_boot=0)
    critical, mutation = summary.distributions["critical_layer"], summary.distributions["mutation_layer"]
    if critical.n_found == 0:
        raise SettingsError(
            f"no critical layer was detected in any of the {summary.n_tokens} tokens of the {len(traces)} items; "
            "give the stage's layers with --stage A-B"
        )
    c = min(_half_up(critical.median.value), n_layers - 1)
    end = max(_half_up(float(np.median(stage_ends(analyses)))), c + 1)
    layers = tuple(range(c + 1, min(end, n_layers + 1)))
    if not layers or len(layers) >= n_layers:
        raise SettingsError(
            f"the detected stabilisation stage (critical layer {c}, stage end {end}) leaves no layer to remove "
            "between them; give the stage's layers with --stage A-B"
        )
    return Stage(
        n_layers,
        layers,
        removal_order(layers, layer_jsd),
        layer_jsd,
        "detected",
        critical_layer=c,
        stage_end=end,
        mutation_layer=_half_up(mutation.median.value) if mutation.n_found else None,
        n_items=len(traces),
        n_tokens=summary.n_tokens,
        tokens_with_critical=critical.n_found,
        tokens_with_mutation=mutation.n_found,
    )


def detect_stage(
    lvlm: LVLM,
    images: Sequence[Any],
    prompts: Sequence[str],
    *,
    item_ids: Sequence[str] | None = None,
    params: DetectorParams | None = None,
    options: TraceOptions | None = None,
    given: tuple[int, int] | None = None,
    on_items: Callable[[int], None] | None = None,
) -> Stage:
    """Trace the items greedily (in ``options.batch_size`` batches, no hidden states kept) and find their
    stabilisation stage with :func:`stage_from_traces`; ``on_items(n)`` after each batch of ``n`` items."""
    options = replace(options or TraceOptions(), keep_hidden_states=False)
    ids = list(item_ids) if item_ids is not None else [str(i) for i in range(len(prompts))]
    traces: list[Trace] = []
    for start in range(0, len(prompts), options.batch_size):
        chunk = slice(start, start + options.batch_size)
        traces += lvlm.trace(images=list(images[chunk]), prompts=list(prompts[chunk]), item_ids=ids[chunk],
                             options=options)  # fmt: skip
        if on_items is not None:
            on_items(len(prompts[chunk]))
    return stage_from_traces(traces, params, given=given)


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Cell:
    """One generation of every item: a removal rule at one ``k``.

    Attributes:
        rule: ``"full"``, ``"stage"``, ``"random"`` or ``"last"``.
        k: Layers removed; for ``"full"`` the ``k`` whose loop it was timed in (it removes none).
        draw: The random draw (0-based) for ``"random"``, else ``None``.
        layers: The decoder layers removed (1-based), ascending.
    """

    rule: Rule
    k: int
    draw: int | None
    layers: tuple[int, ...]

    @property
    def name(self) -> str:
        """A file-safe name: ``full-k2``, ``stage-k2``, ``random-k2-d0``, ``last-k2``."""
        return f"{self.rule}-k{self.k}" + (f"-d{self.draw}" if self.draw is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "k": self.k, "draw": self.draw, "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        draw = data.get("draw")
        return cls(data["rule"], int(data["k"]), None if draw is None else int(draw),
                   tuple(int(x) for x in data["layers"]))  # fmt: skip


def check_ks(ks: Sequence[int] | None, layers: Sequence[int]) -> tuple[int, ...]:
    """The values of ``k`` asked (``None``: ``1 ..`` the stage's length), sorted and de-duplicated; ``layers``
    are the stage's layers.

    Raises:
        SettingsError: a ``k`` outside ``[1, len(layers)]``, or none.
    """
    n = len(layers)
    if ks is None:
        return tuple(range(1, n + 1))
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise SettingsError(
                f"--k {k!r} is out of range: the stabilisation stage (decoder layers {list(layers)}) has {n} "
                f"layer(s), so k must be in 1..{n}"
            )
    if not ks:
        raise SettingsError("--k names no value of k")
    return tuple(sorted(set(ks)))


def random_layers(n_layers: int, k: int, seed: int, draw: int) -> tuple[int, ...]:
    """``k`` of the decoder layers ``1..L`` drawn uniformly without replacement by the generator seeded with
    ``(seed, k, draw)``, ascending."""
    rng = np.random.default_rng([seed, k, draw])
    return tuple(sorted(int(x) + 1 for x in rng.choice(n_layers, size=k, replace=False)))


def plan_cells(
    stage: Stage, ks: Sequence[int] | None = None, *, n_draws: int = 5, seed: int = 0
) -> list[Cell]:
    """Every generation to run, in running order: for each ``k`` ascending, the full model, then ``stage``,
    ``n_draws`` random draws and ``last`` (module docstring).

    Raises:
        SettingsError: a ``k`` out of range (:func:`check_ks`) or ``n_draws`` < 1.
    """
    check_positive_int("random draws", n_draws)
    n_layers = stage.n_layers
    cells: list[Cell] = []
    for k in check_ks(ks, stage.layers):
        cells.append(Cell(FULL, k, None, ()))
        cells.append(Cell("stage", k, None, stage.removed(k)))
        cells += [Cell("random", k, d, random_layers(n_layers, k, seed, d)) for d in range(n_draws)]
        cells.append(Cell("last", k, None, tuple(range(n_layers - k + 1, n_layers + 1))))
    for cell in cells:
        check_skip_layers(cell.layers, n_layers)
    return cells


def choose_method(
    lvlm: LVLM, cells: Sequence[Cell], method: SkipMethod | None
) -> tuple[SkipMethod, str | None]:
    """The removal method for every cell, and a note when it falls back.

    ``None`` (default): ``"rebuild"`` (a shorter layer stack: the removed layers' compute is saved) when the family
    supports it for every cell's layers, else ``"hook"`` (identity hooks: the same outputs, no compute saved, so the
    speed shows no gain) with a note saying why. ``"rebuild"`` asked for where it cannot work is refused.

    Raises:
        SettingsError: ``"rebuild"`` asked for on a family (or layers) it cannot remove; an unknown method.
    """
    if method not in (None, "hook", "rebuild"):
        raise SettingsError(f"unknown method {method!r}; use rebuild or hook")
    if method == "hook":
        return "hook", None
    for cell in cells:
        reason = rebuild_unsupported(lvlm, cell.layers) if cell.layers else None
        if reason is None:
            continue
        message = (
            f"method rebuild cannot remove layers {list(cell.layers)} on family {lvlm.family!r}: {reason}"
        )
        if method == "rebuild":
            raise SettingsError(f"{message}; use --method hook (same outputs, no compute saved)")
        return "hook", (
            f"{message}; every variant uses method hook instead (identity hooks: the same outputs, but no compute "
            "is saved, so tokens/s shows no speed-up)"
        )
    return "rebuild", None


# ---------------------------------------------------------------------------- timed generation
@dataclass(frozen=True)
class TimedGeneration:
    """One cell's generations and how long they took.

    Attributes:
        generations: One per item, in input order (:class:`~evolens.experiments.skip.Generation`).
        seconds: Wall-clock seconds of the generation of every item (warm-up excluded).
        n_tokens: Tokens generated, final EOS tokens included (each is a forward step).
        cpu_seconds: CPU seconds this process spent in the same span (every thread; ``time.process_time``) — less
            sensitive than the wall clock to other processes sharing the CPUs, and meaningless on a GPU.
    """

    generations: list[Generation]
    seconds: float
    n_tokens: int
    cpu_seconds: float = math.nan

    @property
    def tokens_per_s(self) -> float:
        """``n_tokens / seconds`` (NaN for zero seconds)."""
        return self.n_tokens / self.seconds if self.seconds > 0 else math.nan

    @property
    def tokens_per_cpu_s(self) -> float:
        """``n_tokens / cpu_seconds`` (NaN when not measured)."""
        return self.n_tokens / self.cpu_seconds if self.cpu_seconds > 0 else math.nan


def generate_timed(
    lvlm: LVLM,
    images: Sequence[Any],
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    method: SkipMethod,
    options: TraceOptions,
) -> TimedGeneration:
    """Generate every item with decoder ``layers`` (1-based) removed (:func:`~evolens.experiments.skip.
    generate_skipped`, in ``options.batch_size`` batches), timed by the wall clock.

    An untimed warm-up first generates two tokens of the first item with an image and of the first without, so
    one-off costs (the rebuilt stack's check against the hook method, lazy initialisation) stay out of the time.
    """
    settings = options.generation
    warm = replace(options, generation=replace(settings, max_new_tokens=min(2, settings.max_new_tokens)))
    firsts = {images[i] is None: i for i in reversed(range(len(prompts)))}
    for index in sorted(firsts.values()):
        generate_skipped(lvlm, [images[index]], [prompts[index]], layers, method=method, options=warm)
    _synchronize(lvlm)
    start, cpu_start = time.perf_counter(), time.process_time()
    generations = generate_skipped(lvlm, list(images), list(prompts), layers, method=method, options=options)
    _synchronize(lvlm)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    n_tokens = sum(len(g.token_ids) + (g.stop_reason == "eos") for g in generations)
    return TimedGeneration(generations, seconds, n_tokens, cpu_seconds)


def _synchronize(lvlm: LVLM) -> None:
    """Wait for the model's device, so the clock measures finished work."""
    import torch

    device = next(lvlm.model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
