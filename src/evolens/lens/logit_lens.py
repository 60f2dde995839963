"""The logit lens: map a residual-stream state to a distribution over the vocabulary (paper eq. 1-2).

Two modes:

* ``"logit"`` (default, correct): final norm, then the language head (and the model's own logit scaling or
  soft-capping, if it has any), on every state. Applied to the last layer's pre-norm output this reproduces the
  model's own next-token logits exactly.
* ``"paper"``: what the paper's released code does: the language head on the raw states of layers 0..L-1 (no
  final norm) and on the normed last state (Hugging Face's ``hidden_states[-1]`` is already normed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from evolens.errors import SettingsError
from evolens.models.roles import LogitTransform, ModelRoles

LensMode = Literal["logit", "paper"]
LENS_MODES: tuple[str, ...] = get_args(LensMode)


def check_lens_mode(mode: str) -> LensMode:
    """Return ``mode`` if it is a known lens mode, else raise :class:`SettingsError`."""
    if mode not in LENS_MODES:
        raise SettingsError(f"unknown lens {mode!r}; use one of {list(LENS_MODES)}")
    return mode  # type: ignore[return-value]


LENS_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
MetricsDtype = Literal["float32", "float64"]
METRICS_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def _named_dtype(value: object, names: dict[str, torch.dtype]) -> torch.dtype | None:
    """``value`` if it is one of ``names``' dtypes, the dtype a name (``"bfloat16"``, ``"torch.bfloat16"``)
    stands for, else ``None``."""
    if isinstance(value, torch.dtype):
        return value if value in names.values() else None
    if isinstance(value, str):
        return names.get(value.lower().removeprefix("torch."))
    return None


def lens_dtype_of(value: str | torch.dtype | None) -> torch.dtype | None:
    """The fast mode's GEMM dtype from a name (``"bfloat16"``, ``"float16"``) or a dtype; ``None``, ``"exact"``
    and ``"none"`` mean the exact lens.

    Raises:
        SettingsError: Another value.
    """
    if value is None or (isinstance(value, str) and value.lower() in ("exact", "none")):
        return None
    dtype = _named_dtype(value, LENS_DTYPES)
    if dtype is None:
        raise SettingsError(
            f"lens dtype must be one of {[*LENS_DTYPES, 'exact']} (the language head's GEMM in that dtype, "
            f"norm and softmax in float32), got {value!r}"
        )
    return dtype


def metrics_dtype_of(value: str | torch.dtype | None) -> torch.dtype:
    """The dtype of a lens's logits and of every metric from a name (``"float32"``, ``"float64"``) or a dtype;
    ``None`` means float32 (the default, and what a trace saved before the option existed was computed in).

    Raises:
        SettingsError: Another value.
    """
    dtype = torch.float32 if value is None else _named_dtype(value, METRICS_DTYPES)
    if dtype is None:
        raise SettingsError(
            f"metrics dtype must be one of {list(METRICS_DTYPES)} (float64: the language head, softmax and "
            f"every metric in float64), got {value!r}"
        )
    return dtype


@dataclass(frozen=True)
class LogitLens:
    """Final norm + language head, applied to residual states (a :class:`~evolens.lens.base.Lens`).

    Attributes:
        final_norm: The model's own final norm module (so Gemma's ``1 + w`` and friends are exact).
        lm_head: The model's language head.
        transform: Logit scaling / soft-capping the model applies after its head.
        n_layers: Number of decoder layers L (boundary L is the last layer's output).
        mode: ``"logit"`` or ``"paper"`` (see module docstring).
        matmul_dtype: dtype of the head's matrix product only (``None``: the head's own). ``torch.bfloat16`` on a
            float32 head is the *fast mode*: the norm runs in float32, the head's GEMM in bfloat16 (float32
            accumulation; 4-8x faster GEMMs on CPUs with AMX, and on GPUs), and logits, softmax and every metric
            stay in float32. Its error against float64 at LLaVA-1.5-7B geometry (``bench/lens_speed.py``; bounded
            in the tests): log-probabilities within ~0.06 nat, entropy ~0.12 bit, KL ~0.1 bit, JSD within ~1e-2
            bit (the logits keep bfloat16's 8 significant bits). Needs an ``nn.Linear`` head; the head's weight is
            converted once per lens and kept (a second copy: ``vocab x d_model`` x 2 bytes).
        logits_dtype: dtype of the logits and of everything computed from them (``torch.float32``, or
            ``torch.float64``: the metrics' float64 option). With float64 the states are normed by the model's own
            final norm as the model runs it (its dtype: in the paper mode exactly the last entry of Hugging Face's
            ``hidden_states``), then the language head runs in float64 (its weight converted once and kept: a
            second copy of ``vocab x d_model`` x 8 bytes), and so do the logit transform, the softmax and every
            metric. Needs an ``nn.Linear`` head; cannot combine with ``matmul_dtype``.
    """

    final_norm: nn.Module
    lm_head: nn.Module
    transform: LogitTransform
    n_layers: int
    mode: LensMode = "logit"
    matmul_dtype: torch.dtype | None = None
    logits_dtype: torch.dtype = torch.float32
    _weights: dict[torch.dtype, tuple[int, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.logits_dtype not in METRICS_DTYPES.values():
            raise SettingsError(
                f"logits_dtype must be torch.float32 or torch.float64, got {self.logits_dtype!r}"
            )
        if self.logits_dtype == torch.float64:
            if self.matmul_dtype is not None:
                raise SettingsError(
                    f"the fast lens (lens dtype {str(self.matmul_dtype).removeprefix('torch.')}) cannot combine "
                    "with float64 metrics: the one rounds the logits to 8 significant bits, the other is for "
                    "exact numbers; choose one"
                )
            if not isinstance(self.lm_head, nn.Linear):
                raise SettingsError(
                    f"float64 metrics need an nn.Linear language head, got {type(self.lm_head).__name__}"
                )
        if self.matmul_dtype is not None:
            if not isinstance(self.matmul_dtype, torch.dtype) or not self.matmul_dtype.is_floating_point:
                raise SettingsError(f"matmul_dtype must be a floating torch.dtype, got {self.matmul_dtype!r}")
            if not isinstance(self.lm_head, nn.Linear):
                raise SettingsError(
                    f"matmul_dtype needs an nn.Linear language head, got {type(self.lm_head).__name__}; "
                    "use matmul_dtype=None"
                )

    @classmethod
    def from_roles(cls, roles: ModelRoles, mode: str = "logit") -> LogitLens:
        return cls(
            roles.final_norm, roles.lm_head, roles.logit_transform, roles.n_layers, check_lens_mode(mode)
        )

    @property
    def device(self) -> torch.device:
        return next(self.lm_head.parameters()).device

    @property
    def vocab_size(self) -> int:
        """Number of logits the head produces."""
        weight = self.lm_head.weight
        assert isinstance(weight, torch.Tensor)
        return int(weight.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.lm_head.parameters()).dtype

    def with_mode(self, mode: str) -> LogitLens:
        return replace(self, mode=check_lens_mode(mode))

    def with_matmul_dtype(self, dtype: torch.dtype | None) -> LogitLens:
        """The same lens with the head's GEMM in ``dtype`` (``torch.bfloat16``: the fast mode; ``None``: exact)."""
        return replace(self, matmul_dtype=dtype)

    def with_logits_dtype(self, dtype: torch.dtype) -> LogitLens:
        """The same lens with its head, logits and metrics in ``dtype`` (``torch.float64`` or ``torch.float32``)."""
        return replace(self, logits_dtype=dtype)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if self.logits_dtype == torch.float64 else self.matmul_dtype
        if dtype is None or dtype == self.dtype:
            return self.lm_head(x)
        head = self.lm_head
        assert isinstance(head, nn.Linear)
        version = head.weight._version  # an in-place update of the head's weight makes a new copy
        cached = self._weights.get(dtype)
        if cached is None or cached[0] != version or cached[1].device != head.weight.device:
            cached = self._weights[dtype] = (version, head.weight.detach().to(dtype))
        weight = cached[1]
        bias = None if head.bias is None else head.bias.detach().to(dtype)
        return F.linear(x.to(dtype), weight, bias)

    @torch.inference_mode()
    def logits(self, states: torch.Tensor, boundaries: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``states``, in :attr:`logits_dtype` (float32 unless asked).

        Args:
            states: ``[n_boundaries, n, d_model]`` pre-norm residual states; row ``i`` is boundary
                ``boundaries[i]`` (0 = embeddings, L = last layer's output).
            boundaries: ``[n_boundaries]`` layer index of each row; default ``0..n_boundaries-1``.

        Returns:
            ``[n_boundaries, n, vocab_size]`` logits on the head's device.
        """
        if boundaries is None:
            boundaries = torch.arange(states.shape[0])
        x = states.to(device=self.device, dtype=self.dtype)
        if self.mode == "logit":
            x = self.final_norm(x)
        else:
            # rows found on the CPU and indexed by position: a boolean mask on the device would synchronise
            last = (boundaries.cpu() == self.n_layers).nonzero().flatten().to(self.device)
            if last.numel():
                x = x.clone()
                x[last] = self.final_norm(x[last])
        return self.transform.apply(self._head(x).to(self.logits_dtype))
