"""What a report is built from: trace directories, run directories and :class:`~evolens.Trace` objects, resolved
into items (each with the run it belongs to, if any) and loaded one at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from evolens.errors import SettingsError, StoreError
from evolens.report.runs import RunContext, is_run_dir, load_run, run_root_of
from evolens.trace import Trace

TraceSource = Trace | str | Path


def is_trace_dir(path: Path) -> bool:
    """Whether ``path`` holds a saved trace (a ``manifest.json`` of kind ``evolens.trace``).

    Raises:
        StoreError: ``path`` holds a ``manifest.json`` that cannot be read as JSON (named, rather than passed over
            as if there were no trace).
    """
    from evolens.trace.fileformat import KIND, MANIFEST

    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoreError(f"cannot read {manifest}: {err}") from None
    return isinstance(content, dict) and content.get("kind") == KIND


def collect_trace_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Trace directories named by ``paths``: each path is a trace directory, or a directory searched (recursively,
    in sorted order, hidden entries skipped) for trace directories — e.g. a run directory.

    Raises:
        StoreError: A path does not exist, or no trace directory is found under it.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise StoreError(f"{path} does not exist")
        if not path.is_dir():
            raise StoreError(f"{path} is not a directory: give trace directories or run directories")
        if is_trace_dir(path):
            found.append(path)
            continue
        inside = sorted(
            p.parent
            for p in path.rglob("manifest.json")
            if not any(part.startswith(".") for part in p.relative_to(path).parts) and is_trace_dir(p.parent)
        )
        if not inside:
            raise StoreError(f"no evolens trace found under {path} (a trace directory holds manifest.json)")
        found.extend(inside)
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Source:
    """One item to report: a trace (or its directory) and the run it belongs to, if any."""

    trace: Trace | Path
    run: RunContext | None = None


def iter_traces(sources: Sequence[Source]) -> Iterator[tuple[Source, Trace]]:
    """Each source with its trace, loaded when it is reached (a report never holds every trace in memory)."""
    for source in sources:
        yield source, source.trace if isinstance(source.trace, Trace) else Trace.load(source.trace)


def _expand(path: Path, runs: dict[Path, RunContext]) -> list[Source]:
    """The items under ``path``: a run directory's finished items in run order (with the run), or the trace
    directories found under it (attached to their run when they are a run's items)."""

    def run_of(root: Path) -> RunContext:
        key = root.resolve()
        if key not in runs:
            runs[key] = load_run(root)
        return runs[key]

    if path.is_dir() and is_run_dir(path):
        context = run_of(path)
        return [Source(d, context) for d in context.item_dirs()]
    sources = []
    for directory in collect_trace_dirs([path]):
        root = run_root_of(directory)
        sources.append(Source(directory, run_of(root) if root is not None else None))
    return sources


def resolve_sources(traces: Iterable[TraceSource] | str | Path) -> tuple[list[Source], list[RunContext]]:
    """The items to report (each directory once) and the runs they belong to.

    Raises:
        StoreError: A path does not exist, or holds no trace.
        SettingsError: An entry is neither a trace nor a directory, or nothing is given.
    """
    runs: dict[Path, RunContext] = {}
    entries: Iterable[TraceSource] = [traces] if isinstance(traces, str | Path) else traces
    sources: list[Source] = []
    for entry in entries:
        if isinstance(entry, Trace):
            sources.append(Source(entry))
        elif isinstance(entry, str | Path):
            path = Path(entry)
            if not path.exists():
                raise StoreError(f"{path} does not exist")
            sources.extend(_expand(path, runs))
        else:
            raise SettingsError(f"expected Trace objects or directories, got {type(entry).__name__}")
    if not sources and not runs:
        raise SettingsError("no traces given: nothing to report")
    seen: dict[Path, None] = {}
    unique = []
    for source in sources:  # a directory named twice (or inside a run also given) is reported once
        if isinstance(source.trace, Path):
            key = source.trace.resolve()
            if key in seen:
                continue
            seen[key] = None
        unique.append(source)
    return unique, list(runs.values())
