"""Load a checkpoint (a local ``save_pretrained`` directory or a hub id) with its processor and family roles.

Safety defaults: weights load from safetensors only (pickle files can run code when unpickled) unless the caller
passes ``allow_pickle=True``; ``trust_remote_code`` stays off unless asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evolens.errors import (
    ModelLoadError,
    ModelNotFoundError,
    NotAModelError,
    SettingsError,
    UnsafeCheckpointError,
)
from evolens.models.processors import load_processor
from evolens.models.registry import Family, family_for_model_type, get_family
from evolens.models.roles import ModelRoles, resolve_roles

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass
class LoadedModel:
    """A model with its processor, family and resolved roles.

    Attributes:
        model: The Hugging Face model, in eval mode, gradients off.
        processor: Its ``AutoProcessor`` (vision-language) or tokenizer (text-only).
        family: The family whose roles were resolved.
        roles: Decoder layers, final norm, head, embeddings, image-token ids.
        source: The path or hub id as the user gave it.
        local_dir: The directory the files were read from (a hub id's snapshot in the cache).
        weight_files: The weight files that were loaded.
    """

    model: nn.Module
    processor: Any
    family: Family
    roles: ModelRoles
    source: str
    local_dir: Path
    weight_files: tuple[Path, ...]
    _weights_hash: str | None = field(default=None, repr=False)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self) -> torch.device:
        return next(self.roles.lm_head.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.roles.lm_head.parameters()).dtype

    @property
    def weights_hash(self) -> str:
        """SHA-256 over the weight files' names and contents (hub cache blob names are reused, not rehashed)."""
        if self._weights_hash is None:
            self._weights_hash = hash_weight_files(self.weight_files)
        return self._weights_hash


def parse_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"``/``None``: float32 on CPU, bfloat16 on CUDA when supported (else float16)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise SettingsError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or 'auto'") from None


def parse_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None``: the first CUDA device when there is one, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise SettingsError(
            f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:1', ... or 'auto'"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"device {device!r} asked for, but CUDA is not available on this machine")
    return parsed


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or "\\" in source
        or source.count("/") > 1
        or not _HUB_ID.match(source)
    )


def resolve_local_dir(
    source: str | Path,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    local_files_only: bool = False,
) -> Path:
    """The local directory holding ``source``'s files, downloading a hub id's snapshot when needed."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotAModelError(f"{path} is a file; give the directory that holds the model's config.json")
        if not (path / "config.json").is_file():
            raise NotAModelError(f"{path} is not a Hugging Face model directory: it has no config.json")
        return path
    if isinstance(source, Path) or _looks_like_path(text):
        raise ModelNotFoundError(f"model directory not found: {text}")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
    if allow_pickle:
        patterns += [f"*{s}" for s in PICKLE_SUFFIXES]
    try:
        local = Path(
            snapshot_download(
                repo_id=text, revision=revision, allow_patterns=patterns, local_files_only=local_files_only
            )
        )
    except Exception as err:  # the hub raises many types: offline, gated, missing repo, bad revision
        raise ModelNotFoundError(
            f"cannot get {text!r} from the Hugging Face hub or its local cache ({type(err).__name__}: {err}); "
            "check the id, your network and HF_TOKEN, or give a local directory"
        ) from None
    if not (local / "config.json").is_file():
        raise NotAModelError(f"hub repository {text!r} has no config.json")
    return local


def weight_files(local_dir: Path, *, allow_pickle: bool) -> tuple[tuple[Path, ...], bool]:
    """The weight files to load and whether they are safetensors.

    Raises:
        NotAModelError: No weight file at all.
        UnsafeCheckpointError: Only pickle files, and ``allow_pickle`` is false.
    """
    safetensors = sorted(local_dir.glob("*.safetensors"))
    if safetensors:
        return tuple(safetensors), True
    pickles = sorted(p for p in local_dir.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not pickles:
        raise NotAModelError(f"{local_dir} has a config.json but no weight files (*.safetensors)")
    if not allow_pickle:
        names = ", ".join(p.name for p in pickles[:3])
        raise UnsafeCheckpointError(
            f"{local_dir} has only pickle weights ({names}); unpickling can run arbitrary code. Convert the "
            "checkpoint to safetensors, or pass allow_pickle=True (CLI: --allow-pickle) if you trust its source"
        )
    logger.warning("loading pickle weights from %s because allow_pickle=True", local_dir)
    return tuple(pickles), False


def check_safetensors_file(path: Path) -> None:
    """Check that a safetensors file is whole: its header is readable JSON and its data as long as the header says.

    Reads the header only (8 bytes of length, then JSON), so that a truncated or corrupt download is named before
    the loader fails on it.

    Raises:
        ModelLoadError: The file is truncated or its header is not a safetensors header.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            n_header = int.from_bytes(prefix, "little") if len(prefix) == 8 else 0
            if n_header < 2 or n_header > 100_000_000:  # the format caps headers at 100 MB
                raise ModelLoadError(f"{path} is corrupt: not a safetensors file ({size:,} bytes)")
            if n_header > size - 8:
                raise ModelLoadError(
                    f"{path} is truncated: {size:,} bytes where its header alone takes {8 + n_header:,}"
                )
            header = json.loads(fh.read(n_header))
        end = max(
            (int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"),
            default=0,
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ModelLoadError(f"{path} is corrupt: its safetensors header cannot be read ({err})") from None
    if 8 + n_header + end > size:
        raise ModelLoadError(
            f"{path} is truncated: {size:,} bytes where its header describes {8 + n_header + end:,}"
        )


def hash_weight_files(files: tuple[Path, ...]) -> str:
    """SHA-256 over ``name:sha256`` lines of the weight files, sorted by name.

    A file in the hub cache is a link to a blob named by its own SHA-256, which is reused instead of rehashing.
    """
    lines = []
    for path in sorted(files, key=lambda p: p.name):
        target = path.resolve()
        if _SHA256_HEX.match(target.name):
            digest = target.name
        else:
            h = hashlib.sha256()
            with target.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
            digest = h.hexdigest()
        lines.append(f"{path.name}:{digest}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _load_config(local_dir: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(local_dir, trust_remote_code=trust_remote_code)
    except ValueError as err:
        hint = "" if trust_remote_code else " If the model needs its own code, pass trust_remote_code=True."
        raise ModelLoadError(
            f"cannot read the config in {local_dir}: {str(err).rstrip('. ')}.{hint}"
        ) from None
    except OSError as err:
        raise NotAModelError(f"cannot read the config in {local_dir}: {err}") from None
    except Exception as err:
        raise remote_code_error(err, local_dir, trust_remote_code) from None


def remote_code_error(err: Exception, local_dir: Path, trust_remote_code: bool) -> Exception:
    """What to raise for an unexpected error while loading: with ``trust_remote_code`` it comes from the
    checkpoint's own code (any exception type), which gets one line naming it; otherwise the error as it is."""
    if not trust_remote_code:
        return err
    return ModelLoadError(
        f"the code shipped with {local_dir} failed (trust_remote_code): {type(err).__name__}: {err}"
    )


def _choose_family(name: str | None, config: Any) -> Family:
    """The registered family ``name``, or without one the family of ``config.model_type``."""
    return get_family(name) if name else family_for_model_type(config.model_type)


def _load_weights(local_dir: Path, fam: Family, kwargs: dict[str, Any], trust_remote_code: bool) -> Any:
    """The family's model class (image-text-to-text for a VLM, else causal LM) ``from_pretrained`` with
    ``kwargs``; a load failure becomes one :class:`ModelLoadError` line."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    auto_model = AutoModelForImageTextToText if fam.kind == "vlm" else AutoModelForCausalLM
    try:
        return auto_model.from_pretrained(local_dir, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load the {fam.name} model in {local_dir}: {err}") from None
    except Exception as err:
        raise remote_code_error(err, local_dir, trust_remote_code) from None


def _load_processor(local_dir: Path, config: Any, fam: Family, trust_remote_code: bool) -> Any:
    """The processor (VLM) or tokenizer (text-only) in ``local_dir``, its tokenizer set to pad on the left (so the
    last position predicts for every item) with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    try:
        if fam.kind == "vlm":
            processor = load_processor(local_dir, config, trust_remote_code=trust_remote_code)
        else:
            processor = AutoTokenizer.from_pretrained(local_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"cannot load the processor/tokenizer in {local_dir}: {err}") from None
    except Exception as err:
        raise remote_code_error(err, local_dir, trust_remote_code) from None
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = (
        "left"  # generation pads on the left so the last position predicts for every item
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def load_model(
    source: str | Path,
    *,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    family: str | Family | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    revision: str | None = None,
    local_files_only: bool = False,
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a model, its processor and its family roles.

    Args:
        source: A local directory written by ``save_pretrained`` or a hub id such as ``"llava-hf/llava-1.5-7b-hf"``.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``... Ignored when ``device_map`` is given.
        dtype: ``"auto"`` (float32 on CPU, bfloat16 on CUDA), a name such as ``"bfloat16"``, or a torch dtype.
        family: Force a registered family instead of choosing it from ``config.model_type``.
        allow_pickle: Accept pickle weight files (``*.bin``) when no safetensors exist.
        trust_remote_code: Let transformers run code shipped with the checkpoint.
        revision: Hub revision (branch, tag or commit).
        local_files_only: Do not reach the hub; use the local cache only.
        device_map: Passed to ``from_pretrained`` (e.g. ``"auto"`` to spread a large model over GPUs).
        attn_implementation: Passed to ``from_pretrained`` (``"eager"``, ``"sdpa"``...).
    """
    local_dir = resolve_local_dir(
        source, revision=revision, allow_pickle=allow_pickle, local_files_only=local_files_only
    )
    config = _load_config(local_dir, trust_remote_code)
    fam = family if isinstance(family, Family) else _choose_family(family, config)
    files, is_safetensors = weight_files(local_dir, allow_pickle=allow_pickle)
    if is_safetensors:
        for path in files:
            check_safetensors_file(path)
    torch_device = parse_device(device) if device_map is None else None
    torch_dtype = parse_dtype(
        dtype, torch_device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    kwargs: dict[str, Any] = {
        "dtype": torch_dtype,
        "use_safetensors": is_safetensors,
        "trust_remote_code": trust_remote_code,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = _load_weights(local_dir, fam, kwargs, trust_remote_code)
    if torch_device is not None:
        model.to(torch_device)
    model.eval()
    model.requires_grad_(False)
    processor = _load_processor(local_dir, config, fam, trust_remote_code)
    roles = resolve_roles(model, fam)
    return LoadedModel(
        model=model,
        processor=processor,
        family=fam,
        roles=roles,
        source=str(source),
        local_dir=local_dir,
        weight_files=files,
    )
