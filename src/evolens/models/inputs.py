"""Turn user inputs (image paths, PIL images, prompts) into processor inputs, with clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from evolens.errors import ImageDecodeError, ImageNotFoundError, PromptError
from evolens.models.registry import Family

ImageInput = str | os.PathLike[str] | Image.Image


@dataclass(frozen=True)
class ImageInfo:
    """Where an image came from and what it was.

    Attributes:
        source: The file path as given, or ``"<PIL.Image>"`` for an in-memory image.
        width: Width in pixels.
        height: Height in pixels.
        sha256: Hex digest of the file's bytes (a path) or of the RGB pixel bytes (an in-memory image).
    """

    source: str
    width: int
    height: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "width": self.width, "height": self.height, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageInfo:
        return cls(str(data["source"]), int(data["width"]), int(data["height"]), str(data["sha256"]))


def load_image(image: ImageInput) -> tuple[Image.Image, ImageInfo]:
    """Open and fully decode an image as RGB.

    Raises:
        ImageNotFoundError: The path does not exist or is a directory.
        ImageDecodeError: The file is not an image, or is corrupt or truncated.
        TypeError: ``image`` is neither a path nor a PIL image.
    """
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, "the PIL image")
        rgb = image.convert("RGB")
        digest = hashlib.sha256(rgb.tobytes()).hexdigest()
        return rgb, ImageInfo("<PIL.Image>", rgb.width, rgb.height, digest)
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(f"image must be a path or a PIL.Image.Image, got {type(image).__name__}")
    path = Path(image).expanduser()
    if not path.exists():
        raise ImageNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageNotFoundError(f"image path is not a file: {path}")
    data = path.read_bytes()
    if not data:
        raise ImageDecodeError(f"image file is empty: {path}")
    try:
        with warnings.catch_warnings():  # the size is checked below, with a message of its own
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened:
            _check_size(opened.width, opened.height, str(path))  # from the header, before decoding
            opened.load()
            rgb = opened.convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image file (no known image format): {path}") from None
    except Image.DecompressionBombError:
        raise ImageDecodeError(f"{path} has more than {MAX_IMAGE_PIXELS:,} pixels: resize it") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"corrupt or truncated image {path}: {err}") from None
    return rgb, ImageInfo(display_path(str(image)), rgb.width, rgb.height, hashlib.sha256(data).hexdigest())


MAX_IMAGE_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold (PIL.Image.MAX_IMAGE_PIXELS)


def _check_size(width: int, height: int, what: str) -> None:
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{what} has no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"{what} is {width}x{height}, more than {MAX_IMAGE_PIXELS:,} pixels: resize it"
        )


def display_path(path: str) -> str:
    """``path`` as text that can be written as UTF-8: bytes of a file name that are not UTF-8 (Python keeps them as
    lone surrogates) become ``\\xNN`` escapes. For records and reports; the file is opened by its real name."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_prompt(prompt: object, *, what: str = "prompt") -> str:
    """Return ``prompt`` if it is a non-blank string, else raise :class:`PromptError`."""
    if not isinstance(prompt, str):
        raise PromptError(f"{what} must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError(f"{what} is empty; give the question or instruction to send to the model")
    return prompt


def unknown_words(tokenizer: Any, text: str) -> list[str]:
    """The words of ``text`` that ``tokenizer`` can encode only as its unknown token, in order (a word-level
    vocabulary such as the toy model's has them; byte-level tokenizers encode everything and return ``[]``)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or unk not in tokenizer(text, add_special_tokens=False)["input_ids"]:
        return []
    return [
        word
        for word in dict.fromkeys(text.split())
        if unk in tokenizer(word, add_special_tokens=False)["input_ids"]
    ]


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def render_prompt(
    family: Family, processor: Any, prompt: str, *, has_image: bool, system: str | None = None
) -> str:
    """The prompt string as the model will see it, before tokenization.

    Uses the family's own builder if it has one, else the processor's (or tokenizer's) chat template with one
    user turn (the image first, then the text) and the generation prompt; without a chat template, the image
    placeholder token, a newline and the prompt.
    """
    n_images = 1 if has_image else 0
    if family.prompt_builder is not None:
        return family.prompt_builder(processor, prompt, n_images)
    template_owner = processor if getattr(processor, "chat_template", None) else None
    if template_owner is None and getattr(_tokenizer(processor), "chat_template", None):
        template_owner = _tokenizer(processor)
    if template_owner is not None:
        messages: list[dict[str, Any]]
        if family.kind == "text":
            # Text tokenizers' templates expect plain string content.
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
        else:
            content = [{"type": "image"}] * n_images + [{"type": "text", "text": prompt}]
            messages = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
            messages.append({"role": "user", "content": content})
        rendered = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return str(rendered)
    if has_image:
        image_token = getattr(processor, "image_token", None) or "<image>"
        return f"{image_token}\n{prompt}"
    return prompt


def adds_special_tokens(processor: Any, rendered: str) -> bool:
    """Whether tokenizing ``rendered`` should add special tokens: not when it already starts with BOS.

    This is the rule Hugging Face's ``apply_chat_template(tokenize=True)`` follows for processors.
    """
    bos = getattr(_tokenizer(processor), "bos_token", None)
    return not (bos is not None and rendered.startswith(bos))
