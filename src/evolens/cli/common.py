"""Shared pieces of the command line: the Typer app, the consoles and the ``--config FILE`` option.

Every command can take ``config: ConfigOption = None``: the file's values become the command's defaults, so the
command line still wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Annotated, Any, get_args

import typer
import typer._click as click
from rich.console import Console, ConsoleDimensions

from evolens.errors import SettingsError

app = typer.Typer(
    name="evolens",
    help="Layer-by-layer knowledge evolution in vision-language models (logit lens, JSD, critical and mutation layers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
PIPE_WIDTH = 100_000  # characters a line may take in a pipe or a file: nothing wraps


class _Console(Console):
    """A console that wraps at the terminal's width, and not at all in a pipe or a file (where rich would wrap at
    80 columns, breaking summary lines mid-phrase and splitting table headers), unless ``COLUMNS`` says otherwise."""

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        if self.is_terminal or "COLUMNS" in os.environ:
            return dimensions
        return ConsoleDimensions(PIPE_WIDTH, dimensions.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


err_console = _Console(stderr=True)
out = _Console()


def quiet_transformers() -> None:
    """Hide transformers' own progress bars and info logs (the CLI shows its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# --------------------------------------------------------------------------------------------- --config
CONFIG_HELP = (
    "TOML, YAML or JSON file of option values: keys are option names (max_items or max-items); a table named after "
    "the command applies to it only. The command line wins; relative paths are relative to the file."
)


def examples(*lines: str) -> str:
    """A command's ``--help`` epilog listing example invocations, one per line."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def read_config(path: Path) -> dict[str, Any]:
    """The mapping in a ``.toml``, ``.yaml``/``.yml`` or ``.json`` config file.

    Raises:
        SettingsError: The file is missing, unreadable, of an unknown type, or not a mapping.
    """
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data: Any = tomllib.loads(raw)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw)
        elif suffix == ".json":
            data = json.loads(raw)
        else:
            raise SettingsError(f"config file {path} must end in .toml, .yaml, .yml or .json")
    except SettingsError:
        raise
    except Exception as err:  # each parser has its own error class
        raise SettingsError(f"cannot parse config file {path}: {_one_line(str(err))}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of option names to values")
    return data


def _one_line(message: str) -> str:
    """Collapse a multi-line parser message into one line."""
    return " ".join(message.split())


def _command_path(ctx: click.Context) -> list[str]:
    names = []
    node: click.Context | None = ctx
    while node is not None and node.parent is not None:
        names.append(node.info_name or "")
        node = node.parent
    return names[::-1]


def config_values(data: Mapping[str, Any], command_path: Sequence[str]) -> dict[str, Any]:
    """The values that apply to a command: top-level scalars, then each enclosing table's scalars
    (``[plot]``, then ``[plot.jsd]``), inner tables winning. Tables of other commands are ignored.

    >>> config_values({"topk": 5, "report": {"title": "x"}, "plot": {"dpi": 90}}, ["report"])
    {'topk': 5, 'title': 'x'}
    """
    values = {k: v for k, v in data.items() if not isinstance(v, Mapping)}
    level: Mapping[str, Any] = data
    for name in command_path:
        table = level.get(name)
        if not isinstance(table, Mapping):
            break
        values.update({k: v for k, v in table.items() if not isinstance(v, Mapping)})
        level = table
    return values


def apply_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Eager ``--config`` callback: load the file into the command's default map before other options are read."""
    if value is None or ctx.resilient_parsing:
        return value
    path = Path(value)
    values = config_values(read_config(path), _command_path(ctx))
    params: dict[str, click.Parameter] = {}
    for p in ctx.command.params:
        if p.name and p is not param:
            params[p.name] = p
            for opt in getattr(p, "opts", []):  # --out for out_file
                if opt.startswith("--"):
                    params.setdefault(opt[2:].replace("-", "_"), p)
    defaults: dict[str, Any] = {}
    for key, raw in values.items():
        target = params.get(str(key).replace("-", "_"))
        if target is None or target.name is None:
            known = ", ".join(sorted(k.replace("_", "-") for k in params if k not in _param_only(params)))
            raise SettingsError(f"{path}: unknown option {key!r} for `{ctx.command_path}`; known: {known}")
        defaults[target.name] = _relative_to(path.parent, target, raw)
        _check_type(ctx, target, defaults[target.name], f"{path}: {key} = {raw!r}")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _check_type(ctx: click.Context, param: click.Parameter, value: Any, where: str) -> None:
    """Convert a config file's value as the command line would, so that a wrong type names the file and the key
    (later, the parser would blame the command-line option)."""
    runtime = getattr(param, "get_runtime_param", None)
    if runtime is None or value is None:
        return
    try:
        runtime().coerce(value, param=param, ctx=ctx)
    except click.exceptions.UsageError as err:
        raise SettingsError(f"{where}: {_one_line(err.message)}") from None


def _param_only(params: Mapping[str, click.Parameter]) -> set[str]:
    """Keys that are Python parameter names shadowed by a differently named long option (``out_file``)."""
    shadowed = set()
    for key, p in params.items():
        longs = [o[2:].replace("-", "_") for o in getattr(p, "opts", []) if o.startswith("--")]
        if longs and key == p.name and key not in longs:
            shadowed.add(key)
    return shadowed


def _is_path_param(param: click.Parameter) -> bool:
    """Whether a Typer parameter is annotated with ``Path`` (also inside ``Path | None`` or ``list[Path]``)."""
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    pending, seen = [annotation], 0
    while pending and seen < 16:
        current = pending.pop()
        seen += 1
        if isinstance(current, type) and issubclass(current, PurePath):
            return True
        pending.extend(get_args(current))
    return False


def _relative_to(base: Path, param: click.Parameter, value: Any) -> Any:
    """Resolve relative paths of path-typed parameters against the config file's directory."""
    if not _is_path_param(param):
        return value
    if isinstance(value, list | tuple):
        return [_relative_to(base, param, v) for v in value]
    if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
        return str(base / value)
    return value


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help=CONFIG_HELP,
        is_eager=True,
        callback=apply_config,
        metavar="FILE",
        show_default=False,
    ),
]
