"""How decoder layers are replaced by the identity (paper §4.2, Fig. 5): the skip set, and the two methods.

Two methods:

* ``"hook"`` (default, correct for every family): a forward hook on each skipped layer returns the layer's input
  as its output. The layer still runs — its KV cache is filled as usual, so the cache, padded batches and per-layer
  attention types are untouched (on a model whose later layers share an earlier layer's keys and values, Gemma 4
  with ``num_kv_shared_layers``, they still read what the skipped layer computed from its input). No compute is
  saved. The hook is registered before the capture hooks, so a trace taken inside sees state ``l`` equal to state
  ``l - 1``.
* ``"rebuild"``: the decoder's layer list is rebuilt without the skipped layers, with everything the decoder finds
  by position renumbered (cache slots, ``layer_types``, Mllama's cross-attention layer list; see
  :mod:`evolens.experiments.rebuild`), all restored on exit. This saves the skipped layers' compute; no per-layer
  states can be traced inside (the stack is shorter). Families with position-bound features a renumbering cannot
  carry are refused with :class:`~evolens.errors.SettingsError` giving the reason (Gemma 4's per-layer
  embeddings and per-position head sizes; Qwen3-VL's DeepStack layers; Mllama with a cross-attention layer
  first; a hybrid decoder left with no attention layer), read from the model's configs. As a second guard each
  (model, skip set, kind of input) is checked once against the hook method before use: a short cached greedy
  generation must agree token for token, last states within tolerance.

Layer numbers are 1-based decoder layers ``1..L`` (see :mod:`evolens.analysis.layers`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from evolens.capture.generate import GenerationSettings, eos_token_ids, generate_with_capture
from evolens.capture.hooks import identity_layers
from evolens.errors import SettingsError
from evolens.experiments.rebuild import rebuild_refusal, rebuilt_stack

if TYPE_CHECKING:
    from evolens.api import LVLM

SkipMethod = Literal["hook", "rebuild"]


def check_skip_layers(layers: Iterable[int], n_layers: int) -> tuple[int, ...]:
    """Sorted, de-duplicated 1-based layer numbers; refuses numbers out of ``[1, L]`` and skipping every layer."""
    out: set[int] = set()
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise SettingsError(f"layers to skip must be integers, got {layer!r}")
        if not 1 <= layer <= n_layers:
            raise SettingsError(
                f"layer {layer} is out of range: decoder layers are numbered 1..{n_layers} (1-based; layer l "
                "produces state l)"
            )
        out.add(layer)
    if len(out) == n_layers:
        raise SettingsError(f"cannot skip every one of the {n_layers} decoder layers; keep at least one")
    return tuple(sorted(out))


@contextmanager
def skip_layers(
    lvlm: LVLM, layers: Iterable[int], *, method: SkipMethod = "hook"
) -> Iterator[tuple[int, ...]]:
    """Within the block, ``lvlm``'s decoder layers ``layers`` (1-based) act as the identity.

    With ``method="hook"`` ``lvlm.trace(...)`` and ``lvlm.model.generate(...)`` both work inside; with
    ``"rebuild"`` only generation does (see the module docstring). Everything is restored on exit, also on
    errors. Yields the checked skip set.
    """
    with skip_context(lvlm, layers, method) as (skip, _):
        yield skip


@contextmanager
def skip_context(
    lvlm: LVLM, layers: Iterable[int], method: str, verify_inputs: Any = None
) -> Iterator[tuple[tuple[int, ...], nn.ModuleList]]:
    """Like :func:`skip_layers`, but yields the checked skip set and the layer list that runs (to generate on).

    ``verify_inputs`` is the batch :func:`verify_rebuild` checks the rebuilt stack on (``method="rebuild"``).
    """
    if method not in ("hook", "rebuild"):
        raise SettingsError(f"unknown skip method {method!r}; use 'hook' or 'rebuild'")
    roles = lvlm.loaded.roles
    skip = check_skip_layers(layers, roles.n_layers)
    if not skip:
        yield skip, roles.decoder_layers
    elif method == "hook":
        with identity_hooks(roles.decoder_layers, skip):
            yield skip, roles.decoder_layers
    else:
        reason = rebuild_unsupported(lvlm, skip)
        if reason is not None:
            raise SettingsError(
                f"method='rebuild' cannot skip layers {list(skip)} on family {lvlm.family!r}: {reason}; use "
                "method='hook'"
            )
        verify_rebuild(lvlm, skip, inputs=verify_inputs)
        with rebuilt_stack(lvlm.model, roles.decoder_layers, skip) as shorter:
            yield skip, shorter


def rebuild_unsupported(lvlm: LVLM, layers: Iterable[int]) -> str | None:
    """``None`` when ``method="rebuild"`` can skip ``layers`` (1-based) on ``lvlm``, else the reason it cannot.

    Read from the model's configs (:data:`evolens.experiments.rebuild.REBUILD_BLOCKERS`); nothing is run.
    """
    roles = lvlm.loaded.roles
    return rebuild_refusal(lvlm.model, roles.decoder_layers, check_skip_layers(layers, roles.n_layers))


# ---------------------------------------------------------------------------- hook method
@contextmanager
def identity_hooks(layers: nn.ModuleList, skip: Sequence[int]) -> Iterator[None]:
    """Forward hooks making decoder layers ``skip`` (1-based) return their input for every row; removed on exit
    (:func:`~evolens.capture.hooks.identity_layers`). Register this before any recording hook so recordings see
    the identity."""
    with identity_layers(layers, dict.fromkeys(skip)):
        yield


# ---------------------------------------------------------------------------- rebuild method
# model -> (skip set, input keys) checked; the input keys tell the code paths apart (with or without an image)
_VERIFIED: weakref.WeakKeyDictionary[nn.Module, set[tuple[tuple[int, ...], tuple[str, ...]]]] = (
    weakref.WeakKeyDictionary()
)
VERIFY_TEXTS = ("The image shows a", "a")


def verify_rebuild(lvlm: LVLM, skip: Sequence[int], *, inputs: Any = None, n_tokens: int = 3) -> None:
    """Check once per (model, skip set, input keys) that the rebuilt stack generates what the hook method does.

    ``inputs`` (a processor batch; default: a left-padded batch of two short text prompts) is generated greedily
    for ``n_tokens`` tokens with the KV cache both ways; the tokens must be equal and the last layer's states
    close. A batch with other keys (pixel values: the image path) is checked again.

    Raises:
        SettingsError: the rebuilt stack is not equivalent for this model; use ``method="hook"``.
    """
    skip = tuple(skip)
    if inputs is None:
        inputs = lvlm.tokenizer(list(VERIFY_TEXTS), return_tensors="pt", padding=True)
    key = (skip, tuple(sorted(k for k, v in inputs.items() if v is not None)))
    done = _VERIFIED.setdefault(lvlm.model, set())
    if key in done:
        return
    settings = GenerationSettings(max_new_tokens=n_tokens)
    layers = lvlm.loaded.roles.decoder_layers
    with identity_hooks(layers, skip):
        reference = generate_on(lvlm, inputs, settings, layers)
    try:
        with rebuilt_stack(lvlm.model, layers, skip) as shorter:
            rebuilt = generate_on(lvlm, inputs, settings, shorter)
    except Exception as err:  # any failure of the rebuilt stack means: not supported here
        raise SettingsError(
            f"the rebuilt stack fails on family {lvlm.family!r} ({type(err).__name__}: {err}); use method='hook'"
        ) from err
    tol = 1e-4 if lvlm.loaded.dtype in (torch.float32, torch.float64) else 5e-2
    for ref, new in zip(reference, rebuilt, strict=True):
        same_tokens = torch.equal(ref.generated_ids, new.generated_ids)
        n = min(ref.hidden_states.shape[1], new.hidden_states.shape[1])
        a, b = ref.hidden_states[-1, :n].float(), new.hidden_states[-1, :n].float()
        scale = float(a.abs().max().clamp_min(1.0))
        if not same_tokens or float((a - b).abs().max()) > tol * scale:
            raise SettingsError(
                f"the rebuilt stack of family {lvlm.family!r} does not reproduce the hook method when skipping "
                f"layers {list(skip)}; use method='hook'"
            )
    done.add(key)


def generate_on(lvlm: LVLM, inputs: Any, settings: GenerationSettings, layers: nn.ModuleList) -> list[Any]:
    """Generate ``inputs`` (a processor batch) with ``lvlm``'s decoding rules, recording on ``layers`` (the layer
    list that runs: the whole stack, or a rebuilt shorter one)."""
    roles = lvlm.loaded.roles
    return generate_with_capture(
        lvlm.model,
        layers,
        inputs,
        settings,
        eos_ids=eos_token_ids(lvlm.model, lvlm.tokenizer),
        pad_id=int(lvlm.tokenizer.pad_token_id),
        image_token_id=roles.image_token_id,
        suppress_ids=roles.suppressed_token_ids,
    )
