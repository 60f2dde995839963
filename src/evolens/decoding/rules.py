"""The step rules of evolens's decoding strategies (:class:`~evolens.capture.rules.StepRule`): what each does to the
scores of one generation step, from the final layer's scores and every layer's state seen through the lens.

Every distribution is a log-softmax in float32 of the lens's logits (the final layer's: the model's own scores, after
Hugging Face's processors). Layer numbers are state indices (0 = embeddings, ``l`` = output of decoder layer ``l``).
The per-step detectors are evolens's own (:mod:`evolens.analysis.detectors`) applied to the step's curves, with the
spike baseline of a trace replaced by the median JSD curve of the item's previous steps (once there are
``baseline_min_tokens`` of them): a strategy cannot see the steps to come.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn

from evolens.analysis.detectors import (
    Mutation,
    critical_layers_from_jsd,
    critical_layers_from_prob,
    mutation_layers_by_token,
    stage_critical_layers,
)
from evolens.analysis.params import NOT_FOUND, DetectorParams
from evolens.capture.hooks import identity_layers
from evolens.capture.rules import StepSession
from evolens.errors import SettingsError
from evolens.lens.base import Lens
from evolens.metrics.divergence import jsd_bits

NEG_INF = -math.inf


def lens_logprobs(lens: Lens, states: torch.Tensor, boundaries: Sequence[int] | None = None) -> torch.Tensor:
    """``[n, rows, vocab]`` float32 log-probabilities of ``states`` (``[L + 1, rows, d_model]``) at ``boundaries``
    (default: all), on the lens's device."""
    index = torch.arange(states.shape[0]) if boundaries is None else torch.tensor(list(boundaries))
    picked = states.to(lens.device)[index.to(lens.device)]
    return torch.log_softmax(lens.logits(picked, index).float(), dim=-1)


def contrast_scores(
    final: torch.Tensor, other: torch.Tensor, *, keep: float, alpha: float, beta: float
) -> torch.Tensor:
    """``keep * final - alpha * other`` (log-probabilities ``[rows, vocab]``) on the tokens that pass the adaptive
    plausibility constraint ``p_final(x) >= beta * max p_final``, ``-inf`` elsewhere (DoLa's and VCD's)."""
    plausible = final >= final.max(dim=-1, keepdim=True).values + math.log(beta)
    return torch.where(plausible, keep * final - alpha * other, torch.full_like(final, NEG_INF))


class PassRule:
    """Greedy decoding: the scores as given."""

    contrast = False

    def start(self, session: StepSession) -> None:
        return None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return scores


def dola_candidates(n_layers: int, bucket: str, tied: bool) -> list[int]:
    """DoLa's candidate premature layers (Chuang et al., 2024; as Hugging Face implements ``dola_layers``): even
    states of the lower (``"low"``) or upper (``"high"``) half, from state 2 when the embeddings are tied to the head
    (state 0 would contrast the head with itself), at most the 20 nearest to the middle/top for deep models."""
    start = 2 if tied and n_layers > 2 else 0
    if bucket == "low":
        if start == n_layers // 2:
            return [start]
        return list(range(start, n_layers // 2, 2)) if n_layers <= 40 else list(range(start, 20, 2))
    if bucket == "high":
        return (
            list(range(n_layers // 2, n_layers, 2))
            if n_layers <= 40
            else list(range(n_layers - 20, n_layers, 2))
        )
    raise SettingsError(f"dola layers must be 'low' or 'high', got {bucket!r}")


def _tied(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    text = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    return bool(getattr(text, "tie_word_embeddings", False) or getattr(config, "tie_word_embeddings", False))


class DolaRule:
    """DoLa: contrast the final layer with the candidate layer farthest from it in JSD, per row and step."""

    contrast = False

    def __init__(self, lens: Lens, bucket: str, beta: float) -> None:
        self.lens, self.bucket, self.beta = lens, bucket, beta
        self.candidates: list[int] = []

    def start(self, session: StepSession) -> None:
        self.candidates = dola_candidates(self.lens.n_layers, self.bucket, _tied(session.model))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        final = torch.log_softmax(scores.float(), dim=-1)
        candidates = lens_logprobs(self.lens, states, self.candidates).to(final.device)
        farthest = jsd_bits(final.expand_as(candidates), candidates).argmax(dim=0)  # [rows]
        premature = candidates[farthest, torch.arange(final.shape[0], device=final.device)]
        return contrast_scores(final, premature, keep=1.0, alpha=1.0, beta=self.beta)


class RunningMedian:
    """The median of every array added so far, position by position (``np.median`` of their stack along a new first
    axis, to the last bit), kept as a sorted buffer per position: each :meth:`add` costs time linear in the count,
    where re-stacking and taking the median of the whole history cost more at every step (quadratic over a long
    generation: ~3 ms a step after 512 steps of ``[32, 8]``)."""

    def __init__(self) -> None:
        self.count = 0
        self.sorted: np.ndarray | None = None  # [..., count] each position's values, ascending

    def add(self, values: np.ndarray) -> None:
        new = np.asarray(values, dtype=np.float64)[..., None]
        if self.sorted is None:
            self.sorted, self.count = new.copy(), 1
            return
        old = self.sorted
        at = (old < new).sum(axis=-1, keepdims=True)  # where the new value goes: after the smaller ones
        index = np.arange(old.shape[-1] + 1)
        before = np.concatenate([old, old[..., -1:]], axis=-1)  # old[i] at i
        after = np.concatenate([old[..., :1], old], axis=-1)  # old[i - 1] at i
        self.sorted = np.where(index < at, before, np.where(index == at, new, after))
        self.count += 1

    def median(self) -> np.ndarray:
        """The median of each position (the middle value, or half the sum of the two middle ones)."""
        if self.sorted is None:
            raise SettingsError("no values were added")
        low, high = self.sorted[..., (self.count - 1) // 2], self.sorted[..., self.count // 2]
        return (low + high) / 2


class StepDetector:
    """Evolens's per-token detectors applied to one generation step of every row at once, with a running spike
    baseline per row."""

    def __init__(self, lens: Lens, params: DetectorParams) -> None:
        self.lens, self.params = lens, params
        self.baseline = RunningMedian()  # of every earlier step's [L, rows] JSD curves

    def curves(self, scores: torch.Tensor, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step's lens ``logp`` ``[L + 1, rows, vocab]``, its JSD curve ``[L, rows]`` in bits, the top-1 ids
        and probabilities ``[L + 1, rows]`` and the probability at every state ``[L + 1, rows]`` of the token the
        final ``scores`` choose (the one greedy decoding would emit)."""
        logp = lens_logprobs(self.lens, states).to(scores.device)
        top = logp.max(dim=-1)
        chosen = scores.argmax(dim=-1)
        return {
            "logp": logp,
            "jsd": jsd_bits(logp[:-1], logp[1:]),
            "top1_ids": top.indices,
            "top1_probs": top.values.exp(),
            "chosen_probs": logp.gather(-1, chosen[None, :, None].expand(logp.shape[0], -1, 1))[..., 0].exp(),
        }

    @staticmethod
    def host(curves: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The ``[L(+1), rows]`` curves as numpy (float64; the ids as integers), one copy to the host per step —
        the ``[L + 1, rows, vocab]`` log-probabilities stay where they are."""
        return {
            k: v.double().cpu().numpy() if k != "top1_ids" else v.cpu().numpy()
            for k, v in curves.items()
            if k != "logp"
        }

    def critical_layers(self, host: dict[str, np.ndarray]) -> np.ndarray:
        """``[rows]``: each row's stage critical layer at this step (``-1``: none), every row's found at once."""
        params = self.params
        probs = host["chosen_probs"] if params.prob_curve == "generated" else host["top1_probs"]
        by_prob = critical_layers_from_prob(probs, params)
        by_jsd = critical_layers_from_jsd(host["jsd"], params)
        return stage_critical_layers(by_prob, by_jsd, params)

    def mutations(self, host: dict[str, np.ndarray], critical: np.ndarray) -> list[list[Mutation]]:
        """Each row's mutation layers at this step after its ``critical`` layer, over the median of the row's
        earlier steps as its layer baseline (once it has ``baseline_min_tokens`` of them)."""
        params = self.params
        baseline = self.baseline.median() if self.baseline.count >= params.baseline_min_tokens else None
        self.baseline.add(host["jsd"])
        return mutation_layers_by_token(
            host["jsd"],
            critical,
            params,
            top1_ids=host["top1_ids"],
            top1_probs=host["top1_probs"],
            baseline=baseline,
        )


class CriticalContrastRule:
    """Contrast the final layer with the step's critical layer (evolens's detector) under DoLa's plausibility
    constraint; a row whose step has no critical layer keeps its scores."""

    contrast = False

    def __init__(self, lens: Lens, params: DetectorParams, beta: float) -> None:
        self.detector, self.beta = StepDetector(lens, params), beta

    def start(self, session: StepSession) -> None:
        return None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        curves = self.detector.curves(scores, states)
        logp = curves["logp"]
        critical = self.detector.critical_layers(self.detector.host(curves))
        rows = np.flatnonzero((critical != NOT_FOUND) & (critical < logp.shape[0] - 1))
        out = scores.clone()
        if rows.size:
            at = torch.as_tensor(rows, device=scores.device)
            final = torch.log_softmax(scores[at].float(), dim=-1)
            premature = logp[torch.as_tensor(critical[rows], device=logp.device), at]
            mixed = contrast_scores(final, premature, keep=1.0, alpha=1.0, beta=self.beta)
            out[at] = mixed.to(out.dtype)
        return out


class MutationRule:
    """When the token that was top-1 through the stabilisation stage (the top-1 just before the first mutation
    layer) is displaced at the last layer, emit it (``"emit"``) or recompute the step with the step's mutation
    layers acting as the identity (``"recompute"``)."""

    contrast = False

    def __init__(self, lens: Lens, params: DetectorParams, mode: str) -> None:
        if mode not in ("emit", "recompute"):
            raise SettingsError(f"mutation-skip mode must be 'emit' or 'recompute', got {mode!r}")
        self.detector, self.mode = StepDetector(lens, params), mode
        self.session: StepSession | None = None

    def start(self, session: StepSession) -> None:
        self.session = session

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        host = self.detector.host(self.detector.curves(scores, states))
        mutations = self.detector.mutations(host, self.detector.critical_layers(host))
        final = scores.argmax(dim=-1).tolist()
        out = scores.clone()
        recompute: dict[int, list[int]] = {}
        for row, found in enumerate(mutations):
            if not found:
                continue
            stable = int(host["top1_ids"][found[0].layer - 1, row])
            if stable == final[row] or not math.isfinite(float(scores[row, stable])):
                continue
            if self.mode == "emit":
                out[row, stable] = scores[row].max() + 1.0
            else:
                recompute[row] = [m.layer for m in found]
        if recompute:
            redone = self._recompute(input_ids, recompute).to(scores.device, scores.dtype)
            for row in recompute:
                out[row] = torch.where(torch.isinf(scores[row]) & (scores[row] < 0), scores[row], redone[row])
        return out

    def _recompute(self, input_ids: torch.Tensor, skip: dict[int, list[int]]) -> torch.Tensor:
        """``[rows, vocab]`` final logits of the sequences so far, each row in ``skip`` run with its layers
        (1-based decoder layers = the states they produce) as the identity; one forward pass without the cache,
        not recorded."""
        session = self.session
        if session is None:
            raise SettingsError("the mutation rule was not started")
        model: Any = session.model
        with session.paused(), row_identity(session.layers, skip, input_ids.shape[0], input_ids.device):
            kwargs = grown_inputs(model, session.inputs, input_ids.shape[1] - session.prompt_len)
            return model(input_ids=input_ids, use_cache=False, **kwargs).logits[:, -1].float()


def grown_inputs(model: Any, inputs: Mapping[str, Any], n_new: int) -> dict[str, Any]:
    """The model inputs besides ``input_ids`` for a forward pass without the cache over the prompt and ``n_new``
    generated tokens, as ``generate`` grows them: position ids from the attention mask (the family's own rule, e.g.
    Qwen's M-RoPE), then one step of the family's ``_update_model_kwargs_for_generation`` per generated token
    (attention mask, position ids, token type ids)."""
    kwargs = {k: v for k, v in inputs.items() if k != "input_ids"}
    accepts = "position_ids" in inspect.signature(model.forward).parameters
    if accepts and kwargs.get("position_ids") is None:
        kwargs["position_ids"] = model._prepare_position_ids_for_generation(inputs["input_ids"], dict(inputs))
    for _ in range(n_new):
        kwargs = model._update_model_kwargs_for_generation({}, kwargs, is_encoder_decoder=False)
    kwargs.pop("past_key_values", None)
    return kwargs


def row_identity(
    layers: nn.ModuleList, skip: dict[int, list[int]], n_rows: int, device: torch.device
) -> AbstractContextManager[None]:
    """Within the block, decoder layer ``l`` (1-based) returns its input for the rows ``r`` with ``l`` in
    ``skip[r]``, its output for the others (:func:`~evolens.capture.hooks.identity_layers`)."""
    masks: dict[int, torch.Tensor | None] = {}
    for row, found in skip.items():
        for layer in found:
            mask = masks.setdefault(layer, torch.zeros(n_rows, dtype=torch.bool, device=device))
            assert mask is not None
            mask[row] = True
    return identity_layers(layers, masks)


class ContrastRowRule:
    """VCD / ICD: contrast each item's final scores with its contrast row's (a distorted image or a disturbing
    instruction): ``(1 + alpha) log p - alpha log p_contrast`` on the plausible tokens."""

    contrast = True

    def __init__(self, alpha: float, beta: float) -> None:
        self.alpha, self.beta = alpha, beta

    def start(self, session: StepSession) -> None:
        self.n_items = session.n_items

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        n = self.n_items
        logp = torch.log_softmax(scores.float(), dim=-1)
        mixed = contrast_scores(logp[:n], logp[n:], keep=1.0 + self.alpha, alpha=self.alpha, beta=self.beta)
        return torch.cat([mixed, mixed]).to(scores.dtype)
