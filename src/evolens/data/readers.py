"""The registry of dataset readers: what a reader is (:class:`Reader`), the readers by name (:data:`READERS`), and a
dataset as options (:class:`DatasetOptions`) that the command line, the API and the runner pass along whole.

A new benchmark is one reader class and one :func:`register_reader` line::

    class MyBench(Dataset):
        name = "mybench"
        options = (ReaderOption("split", str, "which split", default="test"),)
        evaluators = ("vqa",)
        annotation_keys = {"task": "vqa", "answer": "the one-word answer"}

        def __init__(self, root, split="test"): ...
        def __iter__(self): ...  # DataItem s
        def __len__(self): ...

    register_reader(MyBench)
    open_dataset("mybench", "data/mybench", split="val")    # evolens run -d mybench --data-option split=val
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from evolens.data.evaluation import TASKS
from evolens.data.items import DataItem, Dataset, ReaderOption
from evolens.errors import DatasetError, SettingsError, check_positive_int


class Reader(Protocol):
    """What a dataset reader is: a name, the options it takes, how its answers are judged, and how it opens.

    A :class:`~evolens.data.items.Dataset` subclass is one: its class attributes declare the rest, and its
    ``open`` classmethod calls the constructor.

    Attributes:
        name: The registry name (``evolens run -d NAME``).
        options: The options it takes besides the root (:class:`~evolens.data.items.ReaderOption`).
        evaluators: The evaluators that judge its items (:data:`evolens.data.evaluation.TASKS`; an item names
            its own in ``annotations["task"]``), empty when its items are not judged.
        annotation_keys: What an item's annotations hold: key -> meaning.
    """

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> Sequence[ReaderOption]: ...

    @property
    def evaluators(self) -> Sequence[str]: ...

    @property
    def annotation_keys(self) -> Mapping[str, str]: ...

    def open(self, root: Path, options: Mapping[str, Any]) -> Dataset:
        """The dataset over ``root``, with ``options`` named and typed as :attr:`options` declares them."""
        ...


_READERS: dict[str, Reader] = {}
#: The registered readers by name (read-only; :func:`register_reader` adds one).
READERS: Mapping[str, Reader] = MappingProxyType(_READERS)


def register_reader(reader: Reader) -> Reader:
    """Make ``reader`` openable by its name (:func:`open_dataset`, ``evolens run -d NAME``); returns it.

    Raises:
        SettingsError: The name is taken, an option is declared twice, or an evaluator is not one evolens has.
    """
    name = reader.name
    if not isinstance(name, str) or not name or name != name.strip():
        raise SettingsError(f"a reader needs a name without surrounding blanks, got {name!r}")
    if name in _READERS:
        raise SettingsError(
            f"a dataset reader named {name!r} is registered already ({_READERS[name]!r}); choose another name"
        )
    names = [option.name for option in reader.options]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SettingsError(f"reader {name!r} declares the option(s) {twice} more than once")
    unknown = [task for task in reader.evaluators if task not in TASKS]
    if unknown:
        raise SettingsError(f"reader {name!r}: no evaluator {unknown}; evolens judges {list(TASKS)}")
    _READERS[name] = reader
    return reader


def unregister_reader(name: str) -> Reader:
    """Remove the reader registered as ``name`` and return it (a plugin reloaded, a test's own reader)."""
    try:
        return _READERS.pop(name)
    except KeyError:
        raise SettingsError(f"no dataset reader named {name!r} is registered") from None


def reader_named(name: str) -> Reader:
    """The reader registered as ``name``.

    Raises:
        SettingsError: None is.
    """
    try:
        return _READERS[name]
    except KeyError:
        raise SettingsError(f"unknown dataset kind {name!r}; use one of {sorted(_READERS)}") from None


def check_options(
    kind: str, options: Mapping[str, Any], *, spell: Callable[[str], str] = repr
) -> dict[str, Any]:
    """``options`` checked against what the reader ``kind`` declares: ``None`` values dropped (the reader's
    default applies), text read as the option's type, unknown names and missing required ones refused.

    Args:
        kind: The reader's name.
        options: Option name -> value (text, or a value of the option's type).
        spell: How an error message names an option (the command line says ``--questions``).

    Raises:
        SettingsError: An unknown option, a missing required one, or text that is not of the option's type.
    """
    reader = reader_named(kind)
    declared = {option.name: option for option in reader.options}
    unknown = [name for name, value in options.items() if value is not None and name not in declared]
    if unknown:
        takes = ", ".join(spell(name) for name in declared) or "no options"
        raise SettingsError(f"the {kind!r} reader has no option {spell(unknown[0])}; it takes {takes}")
    missing = [o for o in reader.options if o.required and options.get(o.name) is None]
    if missing:
        needs = " and ".join(f"{spell(o.name)} ({o.help})" if o.help else spell(o.name) for o in missing)
        raise SettingsError(f"the {kind!r} reader needs {needs}")
    return {name: _read(declared[name], value) for name, value in options.items() if value is not None}


def _read(option: ReaderOption, value: Any) -> Any:
    """``value`` as the option takes it: text parsed unless the option is one piece of text."""
    if isinstance(value, str) and (option.type is not str or option.multiple):
        return option.parse(value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class DatasetOptions:
    """A dataset to open: the reader's name, the root, its options and how many items to take — one value the
    command line builds and the API and the runner take whole.

    Attributes:
        kind: The registered reader's name (``"amber"``).
        root: The dataset's root folder.
        options: The reader's options, checked at construction (see :func:`check_options`; ``None`` values
            dropped).
        limit: Only the first ``limit`` items (``None``: all).
        ids: Only the items with these ids, in the dataset's order (``None``: all) — e.g. the 500-image CHAIR
            subset a paper used (:func:`read_ids`); an id the dataset lacks is refused when it opens.

    Raises:
        SettingsError: An unknown kind, a bad option, or a limit that is not a positive integer.
    """

    kind: str
    root: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "options", MappingProxyType(check_options(self.kind, self.options)))
        if self.limit is not None:
            check_positive_int("limit", self.limit)
        if self.ids is not None:
            object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))

    @property
    def reader(self) -> Reader:
        """The registered reader of :attr:`kind`."""
        return reader_named(self.kind)

    def open(self) -> Dataset:
        """The dataset (restricted to :attr:`ids` when given; the runner applies :attr:`limit`)."""
        dataset = self.reader.open(self.root, dict(self.options))
        return IdSubset(dataset, self.ids) if self.ids is not None else dataset

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (paths as text, sequences as lists)."""
        options = {name: _jsonable(value) for name, value in self.options.items()}
        ids = list(self.ids) if self.ids is not None else None
        return {
            "kind": self.kind,
            "root": str(self.root),
            "options": options,
            "limit": self.limit,
            "ids": ids,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetOptions:
        """The inverse of :meth:`to_dict` (text read back as each option's type)."""
        options = {
            name: tuple(value) if isinstance(value, list) else value
            for name, value in dict(data.get("options") or {}).items()
        }
        ids = data.get("ids")
        return cls(
            data["kind"],
            Path(data["root"]),
            options,
            data.get("limit"),
            tuple(ids) if ids is not None else None,
        )


def open_dataset(name: str, root: str | Path, **options: Any) -> Dataset:
    """A reader by name (``"folder"``, ``"amber"``, ``"pope"``, ``"coco"``, ``"toy"`` or a registered one) over
    ``root`` with its options.

    Options left as ``None`` take the reader's defaults; text is read as the option's declared type.

    Raises:
        SettingsError: An unknown reader, or an option it does not take, or a required one missing.
    """
    return DatasetOptions(name, Path(root), options).open()


class IdSubset(Dataset):
    """The items of ``dataset`` whose ``item_id`` is in ``ids``, in the dataset's order (its name, resources and
    description, with the ids added to the description, which a run's manifest records).

    Raises:
        DatasetError: An id that no item of ``dataset`` has (the first few named), or no ids at all.
    """

    def __init__(self, dataset: Dataset, ids: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            raise DatasetError("the id list is empty")
        known = {item.item_id for item in dataset}
        missing = [i for i in wanted if i not in known]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(
                f"{len(missing)} of the {len(wanted)} ids are not in the {dataset.name} dataset ({shown}); "
                "ids are the items' ids (COCO: the image id, AMBER: the query id)"
            )
        self.dataset = dataset
        self.ids = frozenset(wanted)
        self.name = dataset.name  # type: ignore[misc]

    def __iter__(self) -> Iterator[DataItem]:
        return (item for item in self.dataset if item.item_id in self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> dict[str, Any]:
        return {**self.dataset.describe(), "ids": sorted(self.ids)}

    def resources(self) -> dict[str, Any]:
        return self.dataset.resources()


def read_ids(path: str | Path) -> tuple[str, ...]:
    """Item ids from a file: a JSON list (of ids, or of ``{"image_id": ...}`` / ``{"id": ...}`` objects, as the
    CHAIR subsets are shared) or plain text with one id per line (blank lines and ``#`` comments skipped).

    Raises:
        DatasetError: The file cannot be read or holds no ids.
    """
    source = Path(path)
    try:
        raw = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the id list {source}: {err}") from None
    ids: list[str]
    if raw.lstrip().startswith("["):
        try:
            entries = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{source} is not valid JSON: {err}") from None
        ids = []
        for n, entry in enumerate(entries):
            value = entry.get("image_id", entry.get("id")) if isinstance(entry, Mapping) else entry
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise DatasetError(f"{source}, entry {n}: expected an id (text or integer), got {entry!r}")
            ids.append(str(value))
    else:
        ids = [
            line.strip() for line in raw.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    if not ids:
        raise DatasetError(f"{source} holds no ids")
    return tuple(ids)
