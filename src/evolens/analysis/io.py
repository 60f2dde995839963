"""JSON files of analysis and experiment results: ``{"kind", "schema", "evolens", "data"}``, written atomically."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evolens.errors import StoreError
from evolens.files import atomic_write_text

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


def write_result(path: str | Path, kind: str, data: dict[str, Any], default_name: str) -> Path:
    """Write ``data`` under ``kind`` to ``path`` (a ``.json`` file, or a directory that receives
    ``default_name``) atomically; returns the file written."""
    from evolens._version import __version__

    target = resolve_path(path, default_name)
    payload = {"kind": kind, "schema": SCHEMA_VERSION, "evolens": __version__, "data": clean_json(data)}
    atomic_write_text(target, json.dumps(payload, indent=1, allow_nan=False) + "\n")
    return target


def read_result(path: str | Path, kind: str, default_name: str) -> dict[str, Any]:
    """Read what :func:`write_result` wrote; checks the kind and schema."""
    target = resolve_path(path, default_name)
    try:
        payload = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{target} does not exist") from None
    except (OSError, json.JSONDecodeError) as err:
        raise StoreError(f"cannot read {target}: {err}") from None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise StoreError(f"{target} holds {found!r}, not {kind!r}")
    if payload.get("schema") != SCHEMA_VERSION:
        raise StoreError(
            f"{target} has schema {payload.get('schema')!r}; this evolens reads {SCHEMA_VERSION}"
        )
    data = payload.get("data")
    if not isinstance(data, dict):
        raise StoreError(f"{target} has no data")
    return data
