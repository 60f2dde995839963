"""Model families as data, and the registry that maps a checkpoint's ``model_type`` to one.

A :class:`Family` says where evolens finds the *roles* it needs on a loaded model — the text decoder's layer
list, its final norm, the language head, the input embedding, the image-token id(s) — and how a prompt is built.
Most families differ only in data (attribute names, config keys); the few that need code pass small callables.

Users add a family with :func:`register_family`; a duplicate name or model type is refused unless
``replace=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from evolens.errors import UnsupportedModelError

FamilyKind = Literal["vlm", "text"]

LOGIT_CONFIG_ATTRS = ("logit_scale", "logits_scaling", "final_logit_softcapping")

# (processor, user_prompt, n_images) -> the prompt as the model sees it
PromptBuilder = Callable[[Any, str, int], str]


@dataclass(frozen=True)
class Family:
    """How to find the roles evolens needs on one model family.

    Attributes:
        name: Short unique name, e.g. ``"llava"``.
        model_types: The ``config.model_type`` values this family handles.
        kind: ``"vlm"`` (loaded with ``AutoModelForImageTextToText`` and ``AutoProcessor``) or ``"text"``
            (``AutoModelForCausalLM`` and ``AutoTokenizer``).
        decoder_path: Dotted attribute path from the loaded model to the text decoder that owns the layer list
            and the final norm; ``None`` uses ``model.get_decoder()``.
        layers_attr: Attribute of the decoder holding the ``nn.ModuleList`` of decoder layers.
        norm_attr: Attribute of the decoder holding the final norm.
        image_token_attrs: Config attributes (top-level config first, then its text config) that hold the id of
            the placeholder token standing for image features. The first one found is the family's image token.
        extra_image_token_attrs: Config attributes of other image-related special tokens (start/end markers; an
            attribute may hold one id or a list); they are suppressed during generation but are not counted as
            image positions.
        logit_config_attrs: Text-config attributes the model's forward applies to its head's output, which the
            lens must apply too: ``logit_scale`` (multiply), ``logits_scaling`` (divide), ``final_logit_softcapping``
            (``cap * tanh(x / cap)``). Some vision-language wrappers ignore their text config's values (Aya Vision
            ignores ``logit_scale``, Gemma 3 ignores ``final_logit_softcapping``): their families list fewer.
        processor_kwargs: Extra keyword arguments for the processor call (e.g. ``return_mm_token_type_ids``).
        needs_image: The processor refuses prompts without an image (PaliGemma's): text-only traces are refused
            with a clear error instead.
        prompt_builder: Builds the rendered prompt when the family needs something other than the processor's
            chat template (``None``: chat template, else ``"<image>\\n"`` + prompt).
        description: One line shown in the list of supported families.
    """

    name: str
    model_types: tuple[str, ...]
    kind: FamilyKind = "vlm"
    decoder_path: str | None = None
    layers_attr: str = "layers"
    norm_attr: str = "norm"
    image_token_attrs: tuple[str, ...] = ("image_token_id", "image_token_index")
    extra_image_token_attrs: tuple[str, ...] = ()
    logit_config_attrs: tuple[str, ...] = LOGIT_CONFIG_ATTRS
    processor_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    needs_image: bool = False
    prompt_builder: PromptBuilder | None = None
    description: str = ""


_FAMILIES: dict[str, Family] = {}
_BY_MODEL_TYPE: dict[str, str] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to the registry and return it.

    Raises:
        ValueError: The name or one of the model types is already registered and ``replace`` is false.
    """
    if not family.name or not family.model_types:
        raise ValueError("a family needs a name and at least one model_type")
    if not replace:
        if family.name in _FAMILIES:
            raise ValueError(
                f"family {family.name!r} is already registered; pass replace=True to override it"
            )
        taken = [t for t in family.model_types if t in _BY_MODEL_TYPE]
        if taken:
            owners = sorted({_BY_MODEL_TYPE[t] for t in taken})
            raise ValueError(
                f"model type(s) {taken} already belong to family {owners}; pass replace=True to override"
            )
    old = _FAMILIES.get(family.name)
    if old is not None:
        for t in old.model_types:
            _BY_MODEL_TYPE.pop(t, None)
    for t in family.model_types:
        previous = _BY_MODEL_TYPE.get(t)
        if previous is not None and previous != family.name:
            prev_family = _FAMILIES[previous]
            rest = tuple(x for x in prev_family.model_types if x != t)
            if rest:
                _FAMILIES[previous] = dataclasses.replace(prev_family, model_types=rest)
            else:
                del _FAMILIES[previous]
        _BY_MODEL_TYPE[t] = family.name
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a family (mostly for tests of user-registered families)."""
    family = _FAMILIES.pop(name, None)
    if family is None:
        raise KeyError(f"no family named {name!r}")
    for t in family.model_types:
        if _BY_MODEL_TYPE.get(t) == name:
            del _BY_MODEL_TYPE[t]


def supported_families() -> dict[str, tuple[str, ...]]:
    """Registered family names mapped to the model types they handle."""
    return {name: fam.model_types for name, fam in sorted(_FAMILIES.items())}


def get_family(name: str) -> Family:
    """The family registered under ``name``."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UnsupportedModelError(
            f"unknown family {name!r}; supported families: {', '.join(sorted(_FAMILIES))}"
        ) from None


def family_for_model_type(model_type: str) -> Family:
    """The family that handles ``model_type``.

    Raises:
        UnsupportedModelError: No registered family handles it; the message lists the supported ones.
    """
    name = _BY_MODEL_TYPE.get(model_type)
    if name is None:
        listing = "; ".join(f"{n} ({', '.join(types)})" for n, types in supported_families().items())
        raise UnsupportedModelError(
            f"model type {model_type!r} is not supported. Supported families (model types): {listing}. "
            "Register a new one with evolens.register_family(Family(...))."
        )
    return _FAMILIES[name]
