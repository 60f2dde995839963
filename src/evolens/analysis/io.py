"""JSON files of analysis and experiment results: ``{"kind", "schema", "evolens", "data"}`` (the nested
:class:`~evolens.envelope.Envelope`), written atomically."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from evolens.envelope import Envelope

SCHEMA_VERSION = 1


def resolve_path(path: str | Path, default_name: str) -> Path:
    """``path`` itself, or ``path / default_name`` when ``path`` is an existing directory or has no suffix."""
    target = Path(path)
    if target.is_dir() or not target.suffix:
        return target / default_name
    return target


def clean_json(value: Any) -> Any:
    """``value`` with NaN and infinities turned into ``None`` (strict JSON) and tuples into lists, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def _envelope(kind: str) -> Envelope:
    return Envelope(
        what=kind.removeprefix("evolens.").replace("_", " "), schema=SCHEMA_VERSION, kinds=(kind,)
    )


def write_result(path: str | Path, kind: str, data: dict[str, Any], default_name: str) -> Path:
    """Write ``data`` under ``kind`` to ``path`` (a ``.json`` file, or a directory that receives
    ``default_name``) atomically; returns the file written."""
    return _envelope(kind).write(resolve_path(path, default_name), kind, clean_json(data))


def read_result(path: str | Path, kind: str, default_name: str) -> dict[str, Any]:
    """Read what :func:`write_result` wrote; checks the kind and schema.

    Raises:
        StoreError: No such file, not JSON, or another kind or schema.
    """
    return _envelope(kind).read(resolve_path(path, default_name))


R = TypeVar("R", bound="JsonResult")


class JsonResult:
    """``save``/``load`` for a result dataclass that has ``to_dict``/``from_dict``: one JSON file of the class's
    ``result_kind``, written with :func:`write_result` and read back (kind and schema checked) with
    :func:`read_result`.

    A subclass sets ``result_kind`` (e.g. ``"evolens.skip_report"``) and ``default_name`` (the file a directory
    receives, e.g. ``"skip.json"``) as class variables.
    """

    result_kind: ClassVar[str]
    default_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (a ``.json`` file, or a directory that receives ``default_name``); returns
        the file written."""
        return write_result(path, self.result_kind, self.to_dict(), self.default_name)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read what :meth:`save` wrote (a ``.json`` file, or a directory holding ``default_name``)."""
        return cls.from_dict(read_result(path, cls.result_kind, cls.default_name))
