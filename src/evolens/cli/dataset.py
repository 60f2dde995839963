"""The dataset options, declared once for every command that reads a dataset (``run``, ``eval --responses``,
``skip -d``): ``--dataset``/``--root``, the flags the built-in readers' options have always had (``--prompt``,
``--questions`` ...), and ``--data-option KEY=VALUE`` for any option a reader declares — a reader registered later
needs no new command-line code. A command receives them as one :class:`~evolens.data.DatasetOptions`, checked
against the reader's declared options (an unknown or missing one: one line, exit code 2).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from evolens.data import READERS, DatasetOptions
from evolens.data.readers import check_options, read_ids
from evolens.errors import SettingsError

F = TypeVar("F", bound=Callable[..., Any])

PANEL = "Dataset"

PromptOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        "-p",
        help="Prompt (folder: for every image; amber/coco: replaces theirs)",
        rich_help_panel=PANEL,
    ),
]
JsonlOpt = Annotated[
    Path | None, typer.Option(help="folder: a JSONL file of {image, prompt}", rich_help_panel=PANEL)
]
QueriesOpt = Annotated[
    str | None,
    typer.Option(help="amber: query file (query_generative.json, query_all.json...)", rich_help_panel=PANEL),
]
ImagesOpt = Annotated[
    str | None, typer.Option(help="amber: image folder (default ROOT/image)", rich_help_panel=PANEL)
]
QuestionsOpt = Annotated[
    Path | None, typer.Option(help="pope: question file (JSON Lines)", rich_help_panel=PANEL)
]
TemplateOpt = Annotated[
    str | None, typer.Option(help="pope: prompt template containing {question}", rich_help_panel=PANEL)
]
CaptionsOpt = Annotated[Path | None, typer.Option(help="coco: captions_val2014.json", rich_help_panel=PANEL)]
InstancesOpt = Annotated[
    Path | None, typer.Option(help="coco: instances_val2014.json", rich_help_panel=PANEL)
]
SynonymsOpt = Annotated[Path | None, typer.Option(help="coco: CHAIR's synonyms.txt", rich_help_panel=PANEL)]

#: The reader options with a flag of their own (``--questions FILE``); any other is ``--data-option KEY=VALUE``.
FLAGS: dict[str, Any] = {
    "prompt": PromptOpt,
    "jsonl": JsonlOpt,
    "queries": QueriesOpt,
    "images": ImagesOpt,
    "questions": QuestionsOpt,
    "template": TemplateOpt,
    "captions": CaptionsOpt,
    "instances": InstancesOpt,
    "synonyms": SynonymsOpt,
}


def _more_options() -> str:
    """The registered readers' options without a flag of their own, for ``--data-option``'s help."""
    return "; ".join(
        f"{name}: {', '.join(o.name for o in reader.options if o.name not in FLAGS)}"
        for name, reader in READERS.items()
        if any(o.name not in FLAGS for o in reader.options)
    )


IdsOpt = Annotated[
    Path | None,
    typer.Option(
        help="Only the items whose ids this file lists (JSON list or one per line), e.g. a paper's CHAIR subset",
        rich_help_panel=PANEL,
    ),
]
DataOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--data-option",
        help=f"Any option of the reader, KEY=VALUE (repeat; lists comma-separated), e.g. {_more_options()}",
        rich_help_panel=PANEL,
    ),
]


ROOT_HELP = "Dataset root: image folder, AMBER data folder, POPE/COCO image folder"
LimitOpt = Annotated[int | None, typer.Option(help="Only the first N items", rich_help_panel=PANEL)]


def spell(name: str) -> str:
    """How the command line names a reader option: ``--questions``, or ``--data-option split``."""
    return f"--{name}" if name in FLAGS else f"--data-option {name}"


def parse_dataset_options(
    kind: str,
    root: Path,
    *,
    data_option: Sequence[str] | None = None,
    limit: int | None = None,
    ids: Path | None = None,
    **flags: Any,
) -> DatasetOptions:
    """The dataset flags of a command line as one :class:`~evolens.data.DatasetOptions`.

    Args:
        kind: ``--dataset``.
        root: ``--root``.
        data_option: ``--data-option KEY=VALUE`` entries (text read as each option's declared type).
        limit: ``--limit``.
        ids: ``--ids FILE``: only the items with the ids listed there (:func:`~evolens.data.readers.read_ids`).
        flags: The values of the flags in :data:`FLAGS` (``None``: not given).

    Raises:
        SettingsError: A malformed ``--data-option``, an option given twice, an option the reader does not
            take, or a required one missing (named as the command line names them).
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise TypeError(f"not dataset flags: {unknown}")
    values = {name: value for name, value in flags.items() if value is not None}
    for entry in data_option or ():
        key, sep, raw = entry.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SettingsError(f"--data-option must be KEY=VALUE, got {entry!r}")
        if key in values:
            raise SettingsError(f"the dataset option {key!r} is given twice ({spell(key)} and --data-option)")
        values[key] = raw
    chosen = read_ids(ids) if ids is not None else None
    return DatasetOptions(kind, root, check_options(kind, values, spell=spell), limit, chosen)


def _group(*, required: bool, limit: bool) -> list[inspect.Parameter]:
    """The dataset options as keyword parameters of a command."""
    kinds = " | ".join(READERS)
    dataset = typer.Option("--dataset", "-d", help=f"Dataset reader: {kinds}", rich_help_panel=PANEL)
    root = typer.Option("--root", "-r", help=ROOT_HELP, rich_help_panel=PANEL)
    annotations: dict[str, Any] = {
        "dataset": Annotated[str, dataset] if required else Annotated[str | None, dataset],
        "root": Annotated[Path, root] if required else Annotated[Path | None, root],
        **FLAGS,
        "data_option": DataOptionOpt,
        "ids": IdsOpt,
    }
    if limit:
        annotations["limit"] = LimitOpt
    empty = inspect.Parameter.empty
    return [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=empty if required and name in ("dataset", "root") else None,
            annotation=annotation,
        )
        for name, annotation in annotations.items()
    ]


def dataset_options(*, required: bool, limit: bool = False) -> Callable[[F], F]:
    """Give a command the dataset options (one help panel, ``Dataset``) and call it with ``data=`` the
    :class:`~evolens.data.DatasetOptions` they make.

    The command declares a keyword parameter ``data``. With ``required``, ``--dataset`` and ``--root`` must be
    given; without, ``data`` is ``None`` unless both are. ``limit`` adds ``--limit N`` (``DatasetOptions.limit``).
    The options keep their names, so a ``--config`` file sets them as before (``dataset = "folder"``).
    """

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        if "data" not in signature.parameters:
            raise TypeError(f"{func.__name__} needs a 'data' parameter to receive the DatasetOptions")
        own = [p for p in signature.parameters.values() if p.name != "data"]
        added = _group(required=required, limit=limit)
        shadowed = {p.name for p in own} & {p.name for p in added}
        if shadowed:
            raise TypeError(f"{func.__name__} has parameters {sorted(shadowed)} that shadow dataset options")
        names = [p.name for p in added]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            kind, root = values.pop("dataset", None), values.pop("root", None)
            data = None if kind is None or root is None else parse_dataset_options(kind, root, **values)
            return func(*args, data=data, **kwargs)

        parameters = [*own, *added]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate
