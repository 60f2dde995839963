"""What every reader yields — :class:`DataItem` — and the checks readers share (paths inside the root, JSON files).

A reader is an iterable of items with a length, a name and a JSON-able description of itself (:class:`Dataset`),
whose class says as data which options it takes (:class:`ReaderOption`), which evaluators judge its items and which
annotations they carry (the registry of readers: :mod:`evolens.data.readers`). Items come out lazily, in a fixed
order; nothing is decoded until it is traced (images are opened by the engine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Any, ClassVar

from evolens.errors import DatasetError, SettingsError, UnsafePathError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class DataItem:
    """One thing to trace: an image (or none), a prompt, and what the benchmark knows about it.

    Attributes:
        item_id: Unique name of the item within its dataset (AMBER/POPE ids as strings, relative image paths...).
        image: The image file, resolved inside the dataset's image root, or ``None`` for text-only items.
        prompt: The instruction or question sent to the model.
        annotations: JSON-able ground truth for evaluation; ``annotations["task"]`` names the evaluator
            (``"amber-generative"``, ``"amber-discriminative"``, ``"pope"``, ``"chair"``) when there is one.
        image_ref: The image path as the dataset file wrote it, relative to the image root (stored in run
            directories instead of the absolute path, so a run does not depend on where the dataset lives).
    """

    item_id: str
    image: Path | None
    prompt: str
    annotations: Mapping[str, Any] = field(default_factory=dict)
    image_ref: str | None = None

    def __post_init__(self) -> None:
        where = f"item {self.item_id!r}"
        for name, value in (
            ("id", self.item_id),
            ("image", self.image_ref),
            ("prompt", self.prompt),
            ("annotations", self.annotations),
        ):
            check_unicode(value, f"{where}: its {name}")

    @property
    def task(self) -> str | None:
        """The evaluator this item's annotations are for, or ``None``."""
        task = self.annotations.get("task")
        return str(task) if task is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record (the image as its reference relative to the dataset's image root)."""
        return {
            "item_id": self.item_id,
            "image": self.image_ref,
            "prompt": self.prompt,
            "annotations": dict(self.annotations),
        }


_OPTION_TYPES: dict[type, str] = {
    str: "text",
    Path: "path",
    int: "integer",
    float: "number",
    bool: "true or false",
}
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class ReaderOption:
    """One option a reader takes, declared as data so that a command line can offer and check it without knowing
    the reader (``evolens run --data-option KEY=VALUE``).

    Attributes:
        name: The reader's keyword argument (``"questions"``).
        type: ``str``, ``Path``, ``int``, ``float`` or ``bool``: how a value given as text is read.
        help: One line saying what it is.
        required: The reader cannot open without it.
        default: The value the reader uses when the option is not given (``None``: none, or worked out).
        multiple: A sequence of values; as text, comma-separated (``"1,2,3"``).
    """

    name: str
    type: type = str
    help: str = ""
    required: bool = False
    default: Any = None
    multiple: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise SettingsError(f"a reader option's name must be a Python identifier, got {self.name!r}")
        if self.type not in _OPTION_TYPES:
            raise SettingsError(
                f"reader option {self.name!r}: type must be one of str, Path, int, float, bool; got {self.type!r}"
            )
        if self.required and self.default is not None:
            raise SettingsError(f"reader option {self.name!r} is required, so it cannot have a default")

    def parse(self, text: str) -> Any:
        """The value written as ``text`` (a tuple of values when :attr:`multiple`).

        Raises:
            SettingsError: ``text`` is not a value of :attr:`type`.
        """
        if not self.multiple:
            return self._parse_one(text.strip())
        return tuple(self._parse_one(part.strip()) for part in text.split(",") if part.strip())

    def _parse_one(self, text: str) -> Any:
        if self.type is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
        elif self.type in (int, float):
            try:
                return self.type(text)
            except ValueError:
                pass
        elif text:
            return Path(text) if self.type is Path else text
        expected = _OPTION_TYPES[self.type] + ("s, comma-separated" if self.multiple else "")
        raise SettingsError(f"dataset option {self.name!r} takes {expected}, got {text!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (``type`` as a word: text, path, integer, number, true or false)."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        return {
            "name": self.name,
            "type": _OPTION_TYPES[self.type],
            "help": self.help,
            "required": self.required,
            "default": str(default) if isinstance(default, Path) else default,
            "multiple": self.multiple,
        }


class Dataset:
    """Base class of readers: iterate to get :class:`DataItem` s in a fixed order.

    Subclasses set :attr:`name` and implement :meth:`__iter__`, :meth:`__len__` and :meth:`describe`;
    :meth:`resources` returns what evaluation needs besides the items (AMBER's word lists, CHAIR's synonyms).
    A reader registered by name (:func:`~evolens.data.register_reader`) also declares, as class attributes,
    the :attr:`options` its constructor takes after the root, the :attr:`evaluators` that judge its items and the
    :attr:`annotation_keys` its items carry; :meth:`open` builds it from a root and options.
    """

    name: ClassVar[str] = "dataset"
    #: The keyword options of the constructor, after ``root``.
    options: ClassVar[tuple[ReaderOption, ...]] = ()
    #: The evaluators that judge the items (the ``annotations["task"]`` values they carry; none: not judged).
    evaluators: ClassVar[tuple[str, ...]] = ()
    #: What an item's annotations hold: key -> meaning.
    annotation_keys: ClassVar[Mapping[str, str]] = MappingProxyType({})

    @classmethod
    def open(cls, root: Path, options: Mapping[str, Any]) -> Dataset:
        """The reader over ``root`` with ``options`` (checked names, as :attr:`options` declares them)."""
        make: Callable[..., Dataset] = cls  # subclasses take (root, **options)
        return make(root, **options)

    def __iter__(self) -> Iterator[DataItem]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able description: reader name and options (written into run manifests)."""
        return {"name": self.name}

    def resources(self) -> dict[str, Any]:
        """JSON-able evaluation resources shared by all items (none by default)."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({options})"


def _looks_absolute(ref: str) -> bool:
    return (
        PurePosixPath(ref).is_absolute()
        or PureWindowsPath(ref).is_absolute()
        or bool(PureWindowsPath(ref).drive)
    )


def resolve_inside(root: Path, ref: object, *, where: str) -> Path:
    """The file ``ref`` (a relative path from a dataset file) under ``root``, refusing anything that escapes it.

    Refused: non-strings, empty paths, absolute paths, and paths whose resolution (``..`` components and symlinks
    followed) leaves ``root``. The file need not exist (a missing image is an item failure, not a format error).

    Args:
        root: The dataset's image root.
        ref: The path as written in the dataset file.
        where: ``"<file>, entry <n>"`` for the error message.

    Raises:
        DatasetError: ``ref`` is not a non-empty string.
        UnsafePathError: ``ref`` is absolute or resolves outside ``root``.
    """
    if not isinstance(ref, str) or not ref.strip():
        raise DatasetError(f"{where}: the image path must be a non-empty string, got {ref!r}")
    if _looks_absolute(ref):
        raise UnsafePathError(
            f"{where}: image path {ref!r} is absolute; dataset files must name images relative to the image "
            f"root {root}"
        )
    base = root.resolve()
    candidate = (base / ref).resolve()
    if candidate != base and base not in candidate.parents:
        raise UnsafePathError(
            f"{where}: image path {ref!r} resolves to {candidate}, outside the image root {base} (through '..' "
            "or a symbolic link); refusing to read it"
        )
    return candidate


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a :class:`DatasetError` naming ``what``."""
    if not path.is_dir():
        raise DatasetError(f"{what} {path} is not a directory")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a :class:`DatasetError` naming ``what``."""
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist or is not a file")
    return path


def read_json(path: Path, what: str, *, list_of: str | None = None) -> Any:
    """Parse a JSON file, with errors that name the file and the line; with ``list_of`` (what each entry is, in
    words), refuse anything but a list."""
    require_file(path, what)
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {what} {path}: {err}") from None
    if list_of is not None and not isinstance(data, list):
        raise DatasetError(f"{path}: expected a list of {list_of}")
    return data


def check_unicode(value: object, where: str) -> None:
    """Raise :class:`DatasetError` when a string in ``value`` (nested in lists and dicts too, keys included)
    cannot be written as UTF-8: a lone surrogate, from a JSON escape such as ``"\\udcff"`` or a file name
    that is not UTF-8. Such an item could be traced but never stored, so it is refused before any work."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(
                f"{where} is not valid Unicode ({ascii(value)[:80]} holds a lone surrogate; a file name that is "
                "not UTF-8 gives one): rename the file or fix the text"
            ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_unicode(key, where)
            check_unicode(item, where)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_unicode(item, where)


def json_lines(text: str) -> list[str]:
    """The non-blank lines of JSON Lines text.

    Lines end at ``"\n"`` only (``"\r\n"`` too): a JSON string may hold U+2028, U+2029, U+0085 and the other
    characters at which :meth:`str.splitlines` also breaks, unescaped.
    """
    return [line for line in text.split("\n") if line.strip()]


def iter_json_lines(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """``(line_number, value)`` for every non-blank line of a JSON Lines file (1-based line numbers)."""
    require_file(path, what)
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {what} {path}: {err}") from None


def item_id_of(value: object, where: str) -> str:
    """An item id from a dataset entry: a non-empty string or an integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value):
        raise DatasetError(f"{where}: the id must be a non-empty string or an integer, got {value!r}")
    return str(value)


def prompt_of(value: object, where: str, field_name: str = "prompt") -> str:
    """A prompt from a dataset entry: a string that is not blank."""
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: {field_name!r} must be a non-empty string, got {value!r}")
    return value


def absolute_str(path: Path) -> str:
    """``path`` as written in a manifest: absolute, with ``~`` expanded."""
    return os.fspath(path.expanduser().absolute())
