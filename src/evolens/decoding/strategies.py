"""Decoding strategies that read the lens while generating, as frozen dataclasses (each is an
:class:`evolens.api.Decoding`; pass one as ``TraceOptions(decoding=...)``). Every one chooses tokens greedily from
the scores its rule returns; README "Mitigation decoding" gives the equations and the papers' defaults.

- ``greedy``: the final layer's arg-max (the baseline every table pairs against).
- ``mutation-skip`` / ``mutation-recompute`` (:class:`MutationSkip`): the paper's observation made online.
- ``critical-contrast`` (:class:`CriticalContrast`): DoLa's contrast with evolens's critical layer as the premature
  layer.
- ``dola`` (:class:`Dola`): Chuang et al., 2024, dynamic premature layer by JSD.
- ``vcd`` (:class:`Vcd`): Leng et al., 2024, contrast with a noised image.
- ``icd`` (:class:`Icd`): Wang et al., 2024, contrast with a disturbing instruction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from evolens.analysis.params import DetectorParams
from evolens.capture.rules import StepRule
from evolens.decoding.rules import (
    ContrastRowRule,
    CriticalContrastRule,
    DolaRule,
    MutationRule,
    PassRule,
)
from evolens.errors import SettingsError
from evolens.lens.base import Lens

#: VCD's forward-diffusion schedule: 1,000 steps, betas on a sigmoid from 1e-5 to 5e-3 (its ``add_diffusion_noise``).
VCD_STEPS = 1000


def _check_weight(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise SettingsError(f"{name} must be a number >= 0, got {value!r}")


def _check_beta(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise SettingsError(f"beta (the plausibility cut-off) must be in (0, 1], got {value!r}")


class _Strategy:
    """What the strategies share: no contrast row, and their fields as their record."""

    contrast: ClassVar[bool] = False

    @property
    def name(self) -> str:
        raise NotImplementedError

    def contrast_prompt(self, prompt: str) -> str:
        return prompt

    def contrast_inputs(self, inputs: Mapping[str, Any], n_items: int) -> dict[str, Any]:
        return dict(inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class Greedy(_Strategy):
    """Plain greedy decoding, traced as a strategy (what each other strategy is paired against)."""

    @property
    def name(self) -> str:
        return "greedy"

    def rule(self, lens: Lens) -> StepRule:
        return PassRule()


@dataclass(frozen=True)
class MutationSkip(_Strategy):
    """At each step, when the token that was top-1 just before the step's first mutation layer is displaced at the
    last layer, emit it (``mode="emit"``, name ``mutation-skip``) or recompute the step with the step's mutation
    layers as the identity (``mode="recompute"``, name ``mutation-recompute``; one extra forward pass over the
    sequence without the cache, on such steps only). Critical and mutation layers as evolens's detectors define
    them (``params``)."""

    mode: str = "emit"
    params: DetectorParams = field(default_factory=DetectorParams)

    def __post_init__(self) -> None:
        if self.mode not in ("emit", "recompute"):
            raise SettingsError(f"mutation-skip mode must be 'emit' or 'recompute', got {self.mode!r}")

    @property
    def name(self) -> str:
        return "mutation-skip" if self.mode == "emit" else "mutation-recompute"

    def rule(self, lens: Lens) -> StepRule:
        return MutationRule(lens, self.params, self.mode)


@dataclass(frozen=True)
class CriticalContrast(_Strategy):
    """``log p_L(x) - log p_c(x)`` on the tokens with ``p_L(x) >= beta * max p_L``, ``c`` the step's critical layer
    (evolens's detector, ``params``); a step without one decodes greedily."""

    beta: float = 0.1
    params: DetectorParams = field(default_factory=DetectorParams)

    def __post_init__(self) -> None:
        _check_beta(self.beta)

    @property
    def name(self) -> str:
        return "critical-contrast"

    def rule(self, lens: Lens) -> StepRule:
        return CriticalContrastRule(lens, self.params, self.beta)


@dataclass(frozen=True)
class Dola(_Strategy):
    """DoLa (Chuang et al., ICLR 2024): ``log p_L(x) - log p_M(x)`` on the tokens with ``p_L(x) >= beta * max
    p_L``, ``M`` the candidate layer (``layers``: even states of the ``"low"`` or ``"high"`` half) with the largest
    JSD from the final layer at this step. Defaults: Hugging Face's ``dola_layers="high"`` and ``relative_top=0.1``
    (the paper also suggests a repetition penalty of 1.2: ``--repetition-penalty 1.2``)."""

    layers: str = "high"
    beta: float = 0.1

    def __post_init__(self) -> None:
        if self.layers not in ("low", "high"):
            raise SettingsError(f"dola layers must be 'low' or 'high', got {self.layers!r}")
        _check_beta(self.beta)

    @property
    def name(self) -> str:
        return "dola"

    def rule(self, lens: Lens) -> StepRule:
        return DolaRule(lens, self.layers, self.beta)


def vcd_noise(pixels: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
    """VCD's distorted image: the forward diffusion ``sqrt(a_t) x + sqrt(1 - a_t) eps`` at ``step`` of a 1,000-step
    sigmoid schedule (betas ``sigmoid(linspace(-6, 6)) * (5e-3 - 1e-5) + 1e-5``, ``a_t`` their cumulative product
    of ``1 - beta``), applied to the processor's (normalised) pixel values."""
    betas = torch.sigmoid(torch.linspace(-6, 6, VCD_STEPS, dtype=torch.float64)) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, dim=0)[step]
    eps = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels.device)
    noised = alpha_bar.sqrt().item() * pixels.float() + (1 - alpha_bar).sqrt().item() * eps
    return noised.to(pixels.dtype)


@dataclass(frozen=True)
class Vcd(_Strategy):
    """VCD (Leng et al., CVPR 2024): ``(1 + alpha) log p(x | v) - alpha log p(x | v')`` on the tokens with
    ``p(x | v) >= beta * max p(. | v)``, ``v'`` the image noised to diffusion step ``noise_step`` (seeded by
    ``seed``). Defaults are the paper's: ``alpha=1``, ``beta=0.1``, ``noise_step=500``."""

    contrast: ClassVar[bool] = True
    alpha: float = 1.0
    beta: float = 0.1
    noise_step: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_weight("alpha", self.alpha)
        _check_beta(self.beta)
        if isinstance(self.noise_step, bool) or not isinstance(self.noise_step, int):
            raise SettingsError(
                f"noise_step must be an integer in [0, {VCD_STEPS - 1}], got {self.noise_step!r}"
            )
        if not 0 <= self.noise_step < VCD_STEPS:
            raise SettingsError(f"noise_step must be in [0, {VCD_STEPS - 1}], got {self.noise_step}")

    @property
    def name(self) -> str:
        return "vcd"

    def contrast_inputs(self, inputs: Mapping[str, Any], n_items: int) -> dict[str, Any]:
        """The batch with the contrast rows' images noised: the second half (along the first axis) of every
        floating ``pixel_values*`` tensor, which holds the contrast rows' copies of the items' images."""
        out = dict(inputs)
        generator = torch.Generator().manual_seed(self.seed)
        noised = False
        for key, value in inputs.items():
            if (
                key.startswith("pixel_values")
                and isinstance(value, torch.Tensor)
                and value.is_floating_point()
            ):
                half = value.shape[0] // 2
                out[key] = torch.cat([value[:half], vcd_noise(value[half:], self.noise_step, generator)])
                noised = True
        if not noised:
            raise SettingsError("vcd contrasts with a noised image; this batch has none (text-only items)")
        return out

    def rule(self, lens: Lens) -> StepRule:
        return ContrastRowRule(self.alpha, self.beta)


ICD_INSTRUCTION = "You are a confused object detector."


@dataclass(frozen=True)
class Icd(_Strategy):
    """ICD (Wang et al., Findings of ACL 2024): ``(1 + alpha) log p(x | v, q) - alpha log p(x | v, d + q)`` on the
    tokens with ``p(x | v, q) >= beta * max``, ``d`` a disturbing instruction put before the prompt. Defaults:
    ``alpha=1``, ``beta=0.1``, ``instruction="You are a confused object detector."`` (the paper's example role
    prefix)."""

    contrast: ClassVar[bool] = True
    alpha: float = 1.0
    beta: float = 0.1
    instruction: str = ICD_INSTRUCTION

    def __post_init__(self) -> None:
        _check_weight("alpha", self.alpha)
        _check_beta(self.beta)
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise SettingsError("icd's disturbing instruction must be a non-empty string")

    @property
    def name(self) -> str:
        return "icd"

    def contrast_prompt(self, prompt: str) -> str:
        return f"{self.instruction} {prompt}"

    def rule(self, lens: Lens) -> StepRule:
        return ContrastRowRule(self.alpha, self.beta)


#: Strategy name -> how to make it from its parameters.
STRATEGIES: dict[str, Any] = {
    "greedy": Greedy,
    "mutation-skip": lambda **kw: MutationSkip(mode="emit", **kw),
    "mutation-recompute": lambda **kw: MutationSkip(mode="recompute", **kw),
    "critical-contrast": CriticalContrast,
    "dola": Dola,
    "vcd": Vcd,
    "icd": Icd,
}
_PARAMS: dict[str, dict[str, type]] = {
    "greedy": {},
    "mutation-skip": {},
    "mutation-recompute": {},
    "critical-contrast": {"beta": float},
    "dola": {"layers": str, "beta": float},
    "vcd": {"alpha": float, "beta": float, "noise_step": int, "seed": int},
    "icd": {"alpha": float, "beta": float, "instruction": str},
}


def _value(text: str, kind: type, where: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"{where}: expected {kind.__name__}, got {text!r}") from None


def parse_strategies(names: str | Sequence[str], params: Sequence[str] = ()) -> list[Any]:
    """Strategies from their names (comma-separated, or a list) and ``params`` given as ``"name.key=value"``.

    Raises:
        SettingsError: An unknown or repeated name, a parameter of a strategy not named or unknown to it, or a value
            out of range.
    """
    listed = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not listed:
        raise SettingsError(f"no decoding strategy given; known: {', '.join(STRATEGIES)}")
    unknown = [n for n in listed if n not in STRATEGIES]
    if unknown:
        raise SettingsError(f"unknown decoding strategy {unknown[0]!r}; known: {', '.join(STRATEGIES)}")
    repeated = sorted({n for n in listed if listed.count(n) > 1})
    if repeated:
        raise SettingsError(f"decoding strategy {repeated[0]!r} is named twice")
    chosen: dict[str, dict[str, Any]] = {n: {} for n in listed}
    for spec in params:
        key, eq, text = spec.partition("=")
        name, dot, param = key.strip().rpartition(".")
        if not eq or not dot:
            raise SettingsError(
                f"strategy parameter {spec!r} must read NAME.KEY=VALUE (e.g. dola.layers=low)"
            )
        if name not in chosen:
            raise SettingsError(f"strategy parameter {spec!r} is for {name!r}, which is not among {listed}")
        known = _PARAMS[name]
        if param not in known:
            raise SettingsError(f"{name} has no parameter {param!r}; it has: {', '.join(known) or 'none'}")
        chosen[name][param] = _value(text.strip(), known[param], spec)
    return [STRATEGIES[n](**chosen[n]) for n in listed]
