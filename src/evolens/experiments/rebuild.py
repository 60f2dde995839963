"""A shorter decoder: the layer list rebuilt without the skipped layers (``skip_layers(method="rebuild")``).

Hugging Face decoders find several things by a layer's *position in the list* rather than through the layer
itself. :func:`rebuilt_stack` renumbers those that can follow a layer to its new position:

* ``layer_idx`` of every module inside a kept layer: the cache slot its attention (or linear attention) uses;
* ``num_hidden_layers`` and ``layer_types`` of the decoder's config: how many cache slots are built and each
  slot's kind, and which mask (sliding window or full) and rotary table each position gets;
* the layer-index lists in :data:`LAYER_INDEX_LISTS` (Mllama's ``cross_attention_layers``), in the decoder's
  config and on the decoder module, with skipped layers dropped.

Other position-bound features cannot follow a renumbering; :data:`REBUILD_BLOCKERS` describes them as data (the
config attribute that reveals each, and which skip sets it affects), and :func:`rebuild_refusal` says which apply.
The rebuild is refused there with the reason; the identity hook (``method="hook"``) works for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from evolens.errors import SettingsError

# Decoder-config attributes listing 0-based decoder layer indices that the forward compares with a layer's
# position in the list (Mllama: ``idx in self.cross_attention_layers`` decides whether a cross-attention layer runs).
LAYER_INDEX_LISTS = ("cross_attention_layers",)

# Layer types whose cache slot tracks the sequence length (Hugging Face's hybrid caches measure it on one of them).
ATTENTION_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "chunked_attention"})


@dataclass(frozen=True)
class RebuildBlocker:
    """A position-bound decoder feature that a renumbered, shorter layer list cannot reproduce.

    Attributes:
        attr: The config attribute that reveals the feature.
        scope: ``"decoder"``: looked up on the text decoder's config only; ``"model"``: on every config of the
            model (the vision tower's included).
        applies: ``(value, n_layers, skip) -> bool``: whether the feature (attribute value ``value``) is present
            and affected by skipping ``skip`` (1-based) out of ``n_layers`` decoder layers.
        reason: Why, formatted with ``value``, ``k`` (``len(value)`` of a list), ``layers`` (a list of 0-based
            layer indices as 1-based layer numbers) and ``n_layers``.
    """

    attr: str
    scope: Literal["decoder", "model"]
    applies: Callable[[Any, int, Sequence[int]], bool]
    reason: str


def _first_kept(n_layers: int, skip: Sequence[int]) -> int:
    return next((i for i in range(n_layers) if i + 1 not in set(skip)), n_layers)


def _kept_types_lack_attention(types: Any, n_layers: int, skip: Sequence[int]) -> bool:
    if not isinstance(types, (list, tuple)) or len(types) != n_layers:
        return False
    kept = [t for i, t in enumerate(types) if i + 1 not in set(skip)]
    return bool(ATTENTION_LAYER_TYPES & set(types)) and not ATTENTION_LAYER_TYPES & set(kept)


REBUILD_BLOCKERS: tuple[RebuildBlocker, ...] = (
    RebuildBlocker(
        attr="hidden_size_per_layer_input",
        scope="decoder",
        applies=lambda value, n, skip: bool(value),
        reason=(
            "it has per-layer embeddings (hidden_size_per_layer_input={value}): the decoder gives the i-th layer "
            "in its list the i-th slice of an input sized by num_hidden_layers"
        ),
    ),
    RebuildBlocker(
        attr="num_kv_shared_layers",
        scope="decoder",
        applies=lambda value, n, skip: isinstance(value, int) and value > 0,
        reason="its last {value} layers reuse the KV cache of earlier layers, chosen by position in the list",
    ),
    RebuildBlocker(
        attr="is_heterogeneous",
        scope="decoder",
        applies=lambda value, n, skip: value is True,
        reason=(
            "its config is heterogeneous: config.per_layer_config sets some attributes by position in the list "
            "(Gemma 4: the full-attention layers' head size), and each cache slot is built from the settings at "
            "its position"
        ),
    ),
    RebuildBlocker(
        attr="deepstack_visual_indexes",
        scope="model",
        applies=lambda value, n, skip: (
            isinstance(value, (list, tuple)) and any(s <= len(value) for s in skip)
        ),
        reason=(
            "DeepStack adds visual features to the outputs of decoder layers 1..{k}, chosen by position in the "
            "list; skipping one of them would move those additions (skip sets after layer {k} can be rebuilt)"
        ),
    ),
    RebuildBlocker(
        attr="cross_attention_layers",
        scope="decoder",
        applies=lambda value, n, skip: isinstance(value, (list, tuple)) and _first_kept(n, skip) in value,
        reason=(
            "the first kept layer would be a cross-attention layer (layers {layers}), and Hugging Face's cache "
            "measures the text's length on the first layer's slot (keep layer 1 or another self-attention layer "
            "first)"
        ),
    ),
    RebuildBlocker(
        attr="layer_types",
        scope="decoder",
        applies=_kept_types_lack_attention,
        reason=(
            "none of the kept layers would be an attention layer (full, sliding or chunked), and Hugging Face's "
            "hybrid cache measures the sequence length on one (keep at least one of them)"
        ),
    ),
)


def owner_of(model: nn.Module, layers: nn.ModuleList) -> tuple[nn.Module, str]:
    """The module holding ``layers`` as a child, and the child's name."""
    for module in model.modules():
        for name, child in module.named_children():
            if child is layers:
                return module, name
    raise SettingsError("cannot find the module that owns the decoder layer list")


def _all_configs(model: nn.Module) -> list[Any]:
    """Every distinct config object of the model's modules."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            seen.setdefault(id(config), config)
    return list(seen.values())


def decoder_configs(model: nn.Module, layers: nn.ModuleList) -> list[Any]:
    """The config objects describing this layer stack: the decoder module's and the model's text config.

    Only configs with ``num_hidden_layers == len(layers)`` are returned; other towers' configs (a vision encoder
    that happens to have as many layers) are never touched.
    """
    owner, _ = owner_of(model, layers)
    candidates = [getattr(owner, "config", None)]
    top = getattr(model, "config", None)
    get_text = getattr(top, "get_text_config", None)
    if callable(get_text):
        candidates.append(get_text(decoder=True))
    seen: dict[int, Any] = {}
    for config in candidates:
        if config is not None and getattr(config, "num_hidden_layers", None) == len(layers):
            seen.setdefault(id(config), config)
    return list(seen.values())


def rebuild_refusal(model: nn.Module, layers: nn.ModuleList, skip: Sequence[int]) -> str | None:
    """Why a rebuilt stack without layers ``skip`` (1-based) would not be ``model``, or ``None`` when it would be.

    Checks every :data:`REBUILD_BLOCKERS` entry against the decoder's config (``scope="decoder"``) or every
    config of the model (``scope="model"``).
    """
    n_layers = len(layers)
    decoder = decoder_configs(model, layers)
    everywhere = list({id(c): c for c in [*_all_configs(model), *decoder]}.values())
    reasons: list[str] = []
    for blocker in REBUILD_BLOCKERS:
        for config in decoder if blocker.scope == "decoder" else everywhere:
            # class attributes (is_heterogeneous is a property) and instance attributes alike
            value = getattr(config, blocker.attr, None)
            if value is not None and blocker.applies(value, n_layers, tuple(skip)):
                is_list = isinstance(value, (list, tuple))
                reasons.append(
                    blocker.reason.format(
                        value=value,
                        k=len(value) if is_list else None,
                        layers=[int(i) + 1 for i in value]
                        if is_list and all(isinstance(i, int) for i in value)
                        else None,
                        n_layers=n_layers,
                    )
                )
                break
    return "; ".join(reasons) or None


@contextmanager
def rebuilt_stack(model: nn.Module, layers: nn.ModuleList, skip: Sequence[int]) -> Iterator[nn.ModuleList]:
    """Temporarily replace the decoder's layer list by the kept layers, renumbered (module docstring).

    Everything is restored on exit, also when the block raises.

    Raises:
        SettingsError: :func:`rebuild_refusal` names a feature the shorter stack cannot reproduce.
    """
    skip_set = set(skip)
    reason = rebuild_refusal(model, layers, tuple(skip))
    if reason is not None:
        raise SettingsError(
            f"method='rebuild' cannot skip layers {sorted(skip_set)} of {type(model).__name__}: {reason}; "
            "use method='hook'"
        )
    n_layers = len(layers)
    kept = [i for i in range(n_layers) if i + 1 not in skip_set]
    new_index = {old: new for new, old in enumerate(kept)}
    owner, attr = owner_of(model, layers)
    configs = decoder_configs(model, layers)
    restore: list[tuple[Any, str, Any]] = []

    def replace(obj: Any, name: str, value: Any) -> None:
        restore.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    try:
        for new_idx, old_idx in enumerate(kept):
            for sub in layers[old_idx].modules():
                value = getattr(sub, "layer_idx", None)
                if isinstance(value, int) and not isinstance(value, bool):
                    replace(sub, "layer_idx", new_idx)
        for config in configs:
            replace(config, "num_hidden_layers", len(kept))
            types = getattr(config, "layer_types", None)
            if isinstance(types, (list, tuple)) and len(types) == n_layers:
                replace(config, "layer_types", [types[i] for i in kept])
        for holder in [*configs, owner]:
            for name in LAYER_INDEX_LISTS:
                indices = getattr(holder, name, None)
                if isinstance(indices, (list, tuple)):
                    replace(holder, name, [new_index[i] for i in indices if i in new_index])
        replace(owner, attr, nn.ModuleList([layers[i] for i in kept]))
        yield getattr(owner, attr)
    finally:
        for obj, name, value in reversed(restore):
            setattr(obj, name, value)
