"""Resolve and check a family's roles on a loaded model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evolens.errors import AdapterError
from evolens.models.registry import LOGIT_CONFIG_ATTRS, Family


@dataclass(frozen=True)
class LogitTransform:
    """What a model does to its head's output before softmax, so the lens can do the same.

    Attributes:
        scale: Multiplier applied to the logits (Cohere's ``logit_scale``; 1 / Granite's ``logits_scaling``).
        softcap: ``cap * tanh(logits / cap)`` when not ``None`` (Gemma 2's ``final_logit_softcapping``).
    """

    scale: float = 1.0
    softcap: float | None = None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


@dataclass(frozen=True)
class ModelRoles:
    """The modules and ids evolens reads from a model, resolved once at load time.

    Attributes:
        decoder_layers: The text decoder's layers, in order; ``n_layers`` of them.
        final_norm: The norm applied to the last layer's output before the head.
        lm_head: The language head (``d_model -> vocab_size``).
        input_embeddings: The token embedding table.
        n_layers: Number of decoder layers L; a trace has L + 1 states per token.
        d_model: Width of the residual stream.
        vocab_size: Number of logits the head produces.
        image_token_id: Id of the placeholder token that stands for image features (``None`` for text models).
        extra_image_token_ids: Other image-related special tokens (start/end markers).
        logit_transform: Scaling/soft-capping between head and softmax.
    """

    decoder_layers: nn.ModuleList
    final_norm: nn.Module
    lm_head: nn.Module
    input_embeddings: nn.Module
    n_layers: int
    d_model: int
    vocab_size: int
    image_token_id: int | None
    extra_image_token_ids: tuple[int, ...]
    logit_transform: LogitTransform

    @property
    def suppressed_token_ids(self) -> tuple[int, ...]:
        """Ids generation must never emit: the image placeholder and its markers."""
        ids = (
            *((self.image_token_id,) if self.image_token_id is not None else ()),
            *self.extra_image_token_ids,
        )
        return tuple(sorted({i for i in ids if 0 <= i < self.vocab_size}))


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _config_value(config: Any, attrs: tuple[str, ...]) -> tuple[str, int] | None:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else None
    for source in (config, text_config):
        if source is None:
            continue
        for attr in attrs:
            value = getattr(source, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return attr, value
    return None


def _token_ids(value: Any) -> tuple[int, ...]:
    """A config value holding one token id or a list of them, as a tuple (``()`` for anything else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    return ()


def _logit_transform(text_config: Any, attrs: tuple[str, ...]) -> LogitTransform:
    """The scaling/soft-capping of the ``attrs`` (of :data:`LOGIT_CONFIG_ATTRS`) set in ``text_config``."""
    unknown = set(attrs) - set(LOGIT_CONFIG_ATTRS)
    if unknown:
        raise AdapterError(f"unknown logit_config_attrs {sorted(unknown)}; known: {list(LOGIT_CONFIG_ATTRS)}")

    def number(attr: str) -> float | None:
        value = getattr(text_config, attr, None) if attr in attrs else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None

    scale = 1.0
    logit_scale = number("logit_scale")
    if logit_scale is not None:
        scale *= logit_scale
    logits_scaling = number("logits_scaling")
    if logits_scaling is not None and logits_scaling not in (0.0, 1.0):
        scale /= logits_scaling
    softcap = number("final_logit_softcapping")
    return LogitTransform(scale=scale, softcap=softcap if softcap is not None and softcap > 0 else None)


def resolve_roles(model: nn.Module, family: Family) -> ModelRoles:
    """Find and check every role ``family`` declares on ``model``.

    Raises:
        AdapterError: A role is missing or inconsistent with the model's config (the message names it).
    """
    config: Any = getattr(model, "config")  # noqa: B009  (nn.Module's typing hides HF attributes)
    text_config = config.get_text_config()
    where = f"family {family.name!r} on {type(model).__name__}"
    try:
        decoder = _get_path(model, family.decoder_path) if family.decoder_path else model.get_decoder()  # type: ignore[operator]
    except AttributeError as err:
        raise AdapterError(
            f"{where}: cannot find the text decoder ({family.decoder_path or 'get_decoder()'}): {err}"
        ) from None
    layers = getattr(decoder, family.layers_attr, None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise AdapterError(
            f"{where}: {type(decoder).__name__}.{family.layers_attr} is not a non-empty nn.ModuleList"
        )
    n_layers = len(layers)
    expected = getattr(text_config, "num_hidden_layers", n_layers)
    if expected != n_layers:
        raise AdapterError(f"{where}: found {n_layers} decoder layers but the config says {expected}")
    norm = getattr(decoder, family.norm_attr, None)
    if not isinstance(norm, nn.Module):
        raise AdapterError(f"{where}: {type(decoder).__name__}.{family.norm_attr} (final norm) is missing")
    head = model.get_output_embeddings()  # type: ignore[operator]
    head_weight = getattr(head, "weight", None)
    if not isinstance(head, nn.Module) or not isinstance(head_weight, torch.Tensor) or head_weight.dim() != 2:
        raise AdapterError(f"{where}: get_output_embeddings() returned no language head with a 2-D weight")
    embed = model.get_input_embeddings()  # type: ignore[operator]
    if not isinstance(embed, nn.Module):
        raise AdapterError(f"{where}: get_input_embeddings() returned nothing")
    vocab_size, d_model = head_weight.shape
    hidden = getattr(text_config, "hidden_size", d_model)
    if hidden != d_model:
        raise AdapterError(f"{where}: language head expects width {d_model} but hidden_size is {hidden}")

    image_token_id = None
    extra: tuple[int, ...] = ()
    if family.kind == "vlm":
        found = _config_value(config, family.image_token_attrs)
        if found is None:
            raise AdapterError(
                f"{where}: none of the config attributes {family.image_token_attrs} holds an image token id"
            )
        image_token_id = found[1]
        extra = tuple(
            i for attr in family.extra_image_token_attrs for i in _token_ids(getattr(config, attr, None))
        )
    transform = _logit_transform(text_config, family.logit_config_attrs)
    if not math.isfinite(transform.scale):
        raise AdapterError(f"{where}: logit scale {transform.scale} is not finite")
    return ModelRoles(
        decoder_layers=layers,
        final_norm=norm,
        lm_head=head,
        input_embeddings=embed,
        n_layers=n_layers,
        d_model=int(d_model),
        vocab_size=int(vocab_size),
        image_token_id=image_token_id,
        extra_image_token_ids=extra,
        logit_transform=transform,
    )
