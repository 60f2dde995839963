"""Images and figures as ``data:`` URIs, so that a report needs no other file."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from evolens.errors import SettingsError

THUMBNAIL_SIDE = 384
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def _uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _sniff(data: bytes) -> str | None:
    for magic, mime in _MAGIC.items():
        if data.startswith(magic):
            return mime
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "image/svg+xml"  # shown through <img>: scripts in it never run
    return None


def thumbnail_uri(image: Image.Image, max_side: int = THUMBNAIL_SIDE) -> str:
    """A PIL image scaled to at most ``max_side`` pixels, as PNG (small or transparent images) or JPEG."""
    picture = image.copy()
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    if picture.mode in ("RGBA", "LA", "P") or max(picture.size) <= 128:
        picture.save(buffer, format="PNG", optimize=True)
        return _uri("image/png", buffer.getvalue())
    picture.convert("RGB").save(buffer, format="JPEG", quality=85)
    return _uri("image/jpeg", buffer.getvalue())


def image_uri(image: Any, max_side: int = THUMBNAIL_SIDE) -> str:
    """A path, PIL image, ``[height, width(, 3|4)]`` uint8 array or encoded image bytes as a thumbnail URI.

    Raises:
        SettingsError: The file is missing or is not an image.
    """
    if isinstance(image, Image.Image):
        return thumbnail_uri(image, max_side)
    if isinstance(image, np.ndarray):
        try:
            return thumbnail_uri(Image.fromarray(image), max_side)
        except (TypeError, ValueError) as err:
            raise SettingsError(f"cannot use an array of shape {image.shape} as an image: {err}") from None
    if not isinstance(image, bytes | str | Path):
        raise SettingsError(f"an image must be a path, PIL image, array or bytes, got {type(image).__name__}")
    try:
        source = io.BytesIO(image) if isinstance(image, bytes) else Path(image)
        with Image.open(source) as opened:
            opened.load()
            return thumbnail_uri(opened, max_side)
    except (OSError, UnidentifiedImageError, TypeError) as err:
        raise SettingsError(f"cannot use {str(image)[:200]!r} as an image: {err}") from None


def figure_uri(figure: Any) -> str:
    """A matplotlib figure (rendered as SVG: sharp at any zoom, text kept as text), encoded PNG/JPEG/SVG bytes, or a
    path to such a file, as a URI. SVG is shown through ``<img>``, where no script in it could run."""
    from matplotlib.figure import Figure

    if isinstance(figure, Figure):
        from evolens.report.figures import deterministic_svg
        from evolens.viz.save import figure_bytes

        with deterministic_svg():
            return _uri("image/svg+xml", figure_bytes(figure, "svg"))
    if isinstance(figure, bytes):
        data = figure
    elif isinstance(figure, str | Path):
        path = Path(figure)
        if not path.is_file():
            raise SettingsError(f"figure file {path} does not exist")
        data = path.read_bytes()
    else:
        raise SettingsError(
            f"a figure must be a matplotlib Figure, image bytes or a path, got {type(figure).__name__}"
        )
    mime = _sniff(data)
    if mime is None:
        raise SettingsError("a figure must be PNG, JPEG or SVG data")
    return _uri(mime, data)


def trace_image(source: str, sha256: str, image_root: Path | None) -> tuple[str | None, str]:
    """Find a trace's image file: ``source`` as is, then under ``image_root`` (relative path, then file name).

    Returns:
        ``(uri, note)``: the thumbnail URI (``None`` when not found) and a note for the reader ("" when the file
        matches the hash the trace recorded).
    """
    if source.startswith("<"):  # an in-memory image: nothing on disk
        return None, "the image was given in memory and is not stored with the trace"
    candidates = [Path(source)]
    if image_root is not None:
        candidates += [image_root / source, image_root / Path(source).name]
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            note = (
                "" if hashlib.sha256(data).hexdigest() == sha256 else "the file differs from the traced image"
            )
            try:
                return image_uri(data), note
            except SettingsError:
                return None, "the image file cannot be decoded"
    return None, "image file not found"
