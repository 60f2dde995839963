"""The one envelope of evolens's JSON result files: a header that says what a file holds, around its data.

A header names the file's ``kind`` and ``schema``; :meth:`Envelope.write` writes it as strict JSON (NaN refused),
atomically, and :meth:`Envelope.read` reads it back, checking both, with an error naming the file and what is
wrong. Two layouts are in use, and files written before read back unchanged:

- nested (analysis and experiment results): ``{"kind", "schema", "evolens": version, "data": {...}}``, indented,
  one space per level, with a final newline;
- flat (feature maps): ``{"schema", "kind", field, ...}`` on one line, UTF-8 as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from evolens._version import __version__
from evolens.errors import StoreError
from evolens.files import atomic_write_text


@dataclass(frozen=True)
class Envelope:
    """How one family of result files is wrapped.

    Attributes:
        what: What the files hold, in words, for error messages (``"feature map"``).
        schema: The schema this evolens writes and reads.
        kinds: The kinds a file may hold.
        nested: The data sits under ``"data"`` beside the evolens version (else beside the header, flat).
    """

    what: str
    schema: int | str
    kinds: tuple[str, ...]
    nested: bool = True

    def wrap(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """The JSON object of ``data`` of ``kind``: header and data."""
        if kind not in self.kinds:
            raise ValueError(f"{kind!r} is not a kind of {self.what}: {self.kinds}")
        if self.nested:
            return {"kind": kind, "schema": self.schema, "evolens": __version__, "data": data}
        return {"schema": self.schema, "kind": kind, **data}

    def unwrap(self, payload: Any, where: str) -> dict[str, Any]:
        """The data of a JSON object read from ``where`` (the whole object when flat), after checking its header.

        Raises:
            StoreError: Not a JSON object, another schema, another kind, or (nested) no data.
        """
        if not isinstance(payload, dict):
            raise StoreError(f"{where} does not hold a {self.what}: it holds a {type(payload).__name__}")
        if payload.get("schema") != self.schema:
            raise StoreError(
                f"{where} is not an evolens {self.what} this version reads "
                f"(schema {payload.get('schema')!r}, expected {self.schema!r})"
            )
        if payload.get("kind") not in self.kinds:
            expected = " or ".join(repr(k) for k in self.kinds)
            raise StoreError(f"{where} holds {payload.get('kind')!r}, not {expected}")
        if not self.nested:
            return payload
        data = payload.get("data")
        if not isinstance(data, dict):
            raise StoreError(f"{where} has no data")
        return data

    def write(self, path: str | Path, kind: str, data: dict[str, Any]) -> Path:
        """Write ``data`` of ``kind`` to the file ``path`` atomically; returns the path."""
        payload = self.wrap(kind, data)
        if self.nested:
            text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
        else:
            text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
        return atomic_write_text(path, text)

    def read(self, path: str | Path) -> dict[str, Any]:
        """Read what :meth:`write` wrote: the data (the whole object when flat).

        Raises:
            StoreError: No file at ``path``, not JSON, or a header this envelope does not accept.
        """
        target = Path(path)
        try:
            payload = json.loads(target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"no {self.what} at {target}: the file does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise StoreError(f"cannot read {target}: {err}") from None
        return self.unwrap(payload, str(target))


def read_manifest(path: Path, *, kind: str, schema_version: int, what: str) -> dict[str, Any]:
    """A directory's JSON manifest (a trace's ``manifest.json``, a run's ``run.json``), checked for its ``kind``
    and ``schema_version``; ``what`` names the directory's kind in errors (``"trace"``).

    Raises:
        StoreError: The file cannot be read or parsed, or holds another kind or schema version.
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"cannot read {path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        found = manifest.get("kind") if isinstance(manifest, dict) else type(manifest).__name__
        raise StoreError(f"{path} describes a {found!r}, not an evolens {what}")
    if manifest.get("schema_version") != schema_version:
        raise StoreError(
            f"{path} has schema version {manifest.get('schema_version')}; this evolens reads version {schema_version}"
        )
    return manifest


_R = TypeVar("_R", bound="JsonRecord")


class JsonRecord:
    """A dataclass whose fields are plain JSON values: :meth:`to_dict` is :func:`dataclasses.asdict`, and
    :meth:`from_dict` takes exactly the fields back (a missing one is a ``KeyError``, extra keys are ignored)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def config_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``"key: stored -> wanted"`` for every setting (nested keys dotted) that differs between the settings a
    resumable directory recorded and those of the run that wants to resume it."""
    a, b = _flatten(stored), _flatten(wanted)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
