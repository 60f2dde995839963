"""Load a vision-language processor, image-only when its video sub-processor cannot be built.

Several processors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, SmolVLM, LLaVA-OneVision, InternVL, GLM-4V...) own a video
processor next to the image processor and the tokenizer. In transformers 5 video processors need torchvision; on a
machine without it the whole processor fails to build, although evolens never sends videos. The image-only variant
is the same processor class with the video sub-processor left out: images and text are processed exactly as by the
full processor.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

VIDEO_ATTRIBUTES = ("video_processor",)


def video_attributes(processor_class: type) -> tuple[str, ...]:
    """The sub-processor attributes of ``processor_class`` that handle videos."""
    get_attributes = getattr(processor_class, "get_attributes", None)
    if get_attributes is None:
        return ()
    return tuple(a for a in get_attributes() if a in VIDEO_ATTRIBUTES)


class MissingVideoProcessor:
    """Stands in for the video processor of an image-only processor.

    Some processors read video defaults even for image prompts (SmolVLM's chat template reads ``num_frames`` and
    ``fps``): every setting reads as ``None``. Processing a video raises.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "this processor was loaded without its video processor (torchvision is missing)"
        )

    def __repr__(self) -> str:
        return "MissingVideoProcessor()"


@functools.cache
def image_only_processor_class(processor_class: type) -> type:
    """A subclass of ``processor_class`` without its video sub-processor (same name, so it saves as the original).

    It is built with the same arguments as the original (the video processor may be ``None``) and loads with
    ``from_pretrained`` from a directory that has no video processor config.
    """
    from transformers.processing_utils import ProcessorMixin

    dropped = video_attributes(processor_class)
    if not dropped:
        return processor_class
    all_attributes = list(processor_class.get_attributes())  # type: ignore[attr-defined]
    kept = [a for a in all_attributes if a not in dropped]

    def get_attributes(cls: type) -> list[str]:
        return list(kept)

    def from_args_and_dict(cls: type, args: Any, processor_dict: dict[str, Any], **kwargs: Any) -> Any:
        # ``args`` holds the kept sub-processors in order; the original __init__ takes every one positionally.
        given = iter(args)
        full = [None if a in dropped else next(given) for a in all_attributes]
        parent: Any = super(subclass, cls)
        return parent.from_args_and_dict(full, processor_dict, **kwargs)

    def base_init(self: Any, *args: Any, **kwargs: Any) -> None:
        # The original __init__ passes every sub-processor (the video one too, as None) to ProcessorMixin.__init__,
        # positionally in attribute order; the video ones are dropped here, wherever they sit.
        kept_args = [a for name, a in zip(all_attributes, args, strict=False) if name not in dropped]
        kept_args += list(args[len(all_attributes) :])
        for name in dropped:
            kwargs.pop(name, None)
        ProcessorMixin.__init__(self, *kept_args, **kwargs)

    # Placed between the original class and ProcessorMixin in the MRO, so the original's super().__init__ lands here.
    strip_video = type(f"_{processor_class.__name__}WithoutVideo", (ProcessorMixin,), {"__init__": base_init})
    subclass: type = type(
        processor_class.__name__,
        (processor_class, strip_video),
        {
            "__module__": processor_class.__module__,
            "__doc__": f"{processor_class.__name__} without its video processor (images and text only).",
            "get_attributes": classmethod(get_attributes),
            "from_args_and_dict": classmethod(from_args_and_dict),
            **{attr: MissingVideoProcessor() for attr in dropped},
        },
    )
    return subclass


def _torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def processor_class_for(local_dir: Path, config: Any) -> type | None:
    """The processor class a checkpoint names (``processor_config.json``) or its model type maps to."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING, processor_class_from_name

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        path = local_dir / name
        if not path.is_file():
            continue
        try:
            class_name = json.loads(path.read_text(encoding="utf-8")).get("processor_class")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(class_name, str):
            found: Any = processor_class_from_name(class_name)
            if isinstance(found, type):
                return found
    try:
        mapped: Any = PROCESSOR_MAPPING[type(config)]
    except KeyError:
        return None
    return mapped if isinstance(mapped, type) else None


def load_processor(local_dir: Path, config: Any, *, trust_remote_code: bool = False) -> Any:
    """``AutoProcessor.from_pretrained``, image-only when the video sub-processor cannot be built.

    The image-only variant is used directly when torchvision is missing, and as a fallback when the full
    processor fails to load for another reason; if that fails too, the original error is raised.
    """
    from transformers import AutoProcessor

    processor_class = None if trust_remote_code else processor_class_for(local_dir, config)
    has_video = processor_class is not None and bool(video_attributes(processor_class))
    if has_video and not _torchvision_available():
        assert processor_class is not None
        return image_only_processor_class(processor_class).from_pretrained(local_dir)  # type: ignore[attr-defined]
    try:
        return AutoProcessor.from_pretrained(local_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as err:
        if not has_video:
            raise
        assert processor_class is not None
        logger.info("loading %s without its video processor (%s)", processor_class.__name__, err)
        try:
            return image_only_processor_class(processor_class).from_pretrained(local_dir)  # type: ignore[attr-defined]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
            raise err from None
