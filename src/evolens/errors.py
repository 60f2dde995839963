"""Exceptions raised by evolens.

Every error a user can cause is a subclass of :class:`EvolensError` and carries a message that says what was
expected, what was found and what to try. The CLI turns these into one line and exit code 2.
"""

from __future__ import annotations


class EvolensError(Exception):
    """Base class of every error evolens raises on purpose."""


class InputError(EvolensError, ValueError):
    """A value given by the user cannot be used (bad image, empty prompt, bad setting)."""


class ImageError(InputError):
    """An image argument cannot be used."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """An image path does not exist or is not a file."""


class ImageDecodeError(ImageError):
    """A file exists but is not a decodable image (corrupt, truncated, or not an image at all)."""


class PromptError(InputError):
    """A prompt is empty, or prompts and images do not pair up."""


class SettingsError(InputError):
    """A generation, lens or metric setting is out of range."""


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`SettingsError` unless ``value`` is an ``int`` ≥ 1 (``bool`` refused: ``True`` is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{name} must be a positive integer, got {value!r}")


class ModelLoadError(EvolensError):
    """A checkpoint cannot be loaded."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A local model path does not exist, or a hub id cannot be reached."""


class NotAModelError(ModelLoadError):
    """A directory exists but holds no Hugging Face model (no ``config.json``)."""


class UnsafeCheckpointError(ModelLoadError):
    """The checkpoint has only pickle weights and ``allow_pickle`` was not given."""


class UnsupportedModelError(ModelLoadError):
    """No registered family handles this model type."""


class AdapterError(ModelLoadError):
    """A family adapter could not resolve or check a role (decoder layers, norm, head...) on a model."""


class CaptureError(EvolensError):
    """The residual stream could not be recorded consistently during generation."""


class LensUnavailableError(EvolensError):
    """A computation needs the model's final norm and head, but the trace was loaded without a model."""


class StoreError(EvolensError):
    """A run directory or trace directory cannot be written or read."""


class DatasetError(InputError):
    """A dataset file is missing or malformed; the message names the file and the entry."""


class UnsafePathError(DatasetError):
    """A dataset entry names a file outside the dataset root (``..``, an absolute path, a symlink out)."""
