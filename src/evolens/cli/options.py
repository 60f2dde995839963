"""Options and helpers shared by the analysis and experiment commands (``analyze``, ``skip``, ``embed``,
``compare``, ``contrast``): the detector parameters as options, progress bars, trace loading, figure output and
small parsers for layer lists and word lists."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions
from evolens.cli.common import err_console, out
from evolens.errors import SettingsError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.table import Table
    from rich.text import Text

    from evolens.trace import Trace

F = TypeVar("F", bound=Callable[..., Any])

DETECTOR_PANEL = "Detector parameters (README: Detectors)"
DETECTOR_HELP: dict[str, str] = {
    "first_layer": "First state analysed (0 includes the embedding state)",
    "jsd_reduction": "JSD curve read: bits (eq. 3-4) or paper (the paper code's reduction)",
    "prob_curve": "Probability curve of the probability-based critical layer: generated or top1",
    "prob_rel": "Surge threshold relative to the curve's peak",
    "prob_min_peak": "Least peak probability for a token to stand out (and of a new top-1 token at a mutation)",
    "persistence": "Minimum persistence as a fraction of L (n = max(2, round(persistence * L)) states)",
    "jsd_drop_ratio": "Median JSD before the critical layer must be at least this times the median after",
    "jsd_min_gap_bits": "... and exceed it by at least this many bits",
    "spike_ratio": "A JSD spike exceeds this times the plateau level ...",
    "spike_mads": "... and the level plus this many scaled MADs ...",
    "spike_min_bits": "... and this many bits ...",
    "spike_layer_ratio": "... and this times the layer baseline (0: no baseline)",
    "baseline_min_tokens": "A trace's own layer baseline needs at least this many tokens",
    "mutation_rule": "Mutation evidence: jsd (spike), top1 (flip), either or both",
    "stage_critical": "Critical layer that delimits the stages: jsd or prob",
    "stage_fallback": "Use the other critical layer for tokens without the chosen one",
    "agreement_tolerance": "The two critical layers agree within max(1, round(tolerance * L)) layers",
}


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option of an option group: the field it sets, its type for the parser, default and help."""

    name: str
    annotation: Any
    default: Any
    help: str
    min: int | None = None
    negatable: bool = False  # a switch with a --no- form (for one on by default)
    max: int | None = None
    flags: tuple[str, ...] = ()  # the option's names when not --<name> (e.g. "--format", "-f")


def dataclass_specs(cls: type, helps: Mapping[str, str] | None = None) -> list[OptionSpec]:
    """An option per field of the dataclass ``cls``, with the help from ``helps`` or the field's ``metadata["help"]``."""
    hints = get_type_hints(cls)
    return [
        OptionSpec(f.name, hints[f.name], f.default, (helps or {}).get(f.name) or f.metadata.get("help", ""))
        for f in fields(cls)
    ]


def _flag(spec: OptionSpec) -> str:
    """``--name``, or ``--name/--no-name`` for a negatable switch."""
    name = spec.name.replace("_", "-")
    return f"--{name}/--no-{name}" if spec.negatable else f"--{name}"


def _names(spec: OptionSpec) -> tuple[str, ...]:
    return spec.flags or (_flag(spec),)


def option_group(
    specs: Sequence[OptionSpec], into: str, panel: str, build: Callable[..., Any]
) -> Callable[[F], F]:
    """A decorator that gives a command one option per spec (``--max-new-tokens`` ...), all under one help panel,
    and calls it with ``into=build(**values)``.

    The command declares a keyword parameter named ``into`` to receive the built object; the options take the
    fields' names, so a ``--config`` file sets them by those names (``max_new_tokens = 64``). Bad values raise
    :class:`~evolens.errors.SettingsError` from ``build`` (exit code 2). Each group is declared once, here, and shared
    by every command that needs it.
    """
    names = [spec.name for spec in specs]

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        if into not in signature.parameters:
            raise TypeError(f"{func.__name__} needs a {into!r} parameter to receive its options")
        own = [p for p in signature.parameters.values() if p.name != into]
        clash = {p.name for p in own} & set(names)
        if clash:
            raise TypeError(
                f"{func.__name__} has parameters {sorted(clash)} that shadow options of {panel!r}"
            )
        added = [
            inspect.Parameter(
                spec.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=spec.default,
                annotation=Annotated[
                    spec.annotation,
                    typer.Option(
                        *_names(spec),
                        help=spec.help,
                        rich_help_panel=panel,
                        min=spec.min,
                        max=spec.max,
                    ),
                ],
            )
            for spec in specs
        ]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names if name in kwargs}
            return func(*args, **{into: build(**values)}, **kwargs)

        parameters = [*own, *added]
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate


#: ``--first-layer`` ... : every :class:`~evolens.analysis.DetectorParams` field, into ``params``.
detector_options = option_group(
    dataclass_specs(DetectorParams, DETECTOR_HELP), "params", DETECTOR_PANEL, DetectorParams
)

#: ``--device``, ``--dtype`` ... : every :class:`~evolens.runs.options.LoadOptions` field, into ``load``.
load_options = option_group(dataclass_specs(LoadOptions), "load", "Model loading", LoadOptions)

#: The tracing options a command can offer (fields of :class:`~evolens.api.TraceOptions` and of its decoding
#: settings), each declared once.
TRACE_SPECS: dict[str, OptionSpec] = {
    spec.name: spec
    for spec in (
        OptionSpec("max_new_tokens", int, 128, "Most tokens to generate (per item)", min=1),
        OptionSpec("seed", int, 0, "Sampling seed"),
        OptionSpec("lens", str, "logit", "logit (norm + head) or paper (the paper code's variant)"),
        OptionSpec(
            "lens_dtype",
            str | None,
            None,
            "Fast lens: bfloat16 GEMM of the language head (README Benchmarks); default exact",
        ),
        OptionSpec(
            "metrics_dtype",
            str,
            "float32",
            "float64: language head, softmax and metrics in float64 (the paper mode then equals the paper's code "
            "to 1e-9; README Definitions)",
        ),
        OptionSpec("topk", int, 10, "Top tokens kept per (layer, step)", min=1),
        OptionSpec("batch_size", int, 8, "Items per generate call (in a run it fixes the batches)", min=1),
        OptionSpec(
            "prompt_positions", bool, False, "Keep every prompt position's states (for evolens patches)"
        ),
        OptionSpec(
            "compile",
            bool,
            False,
            "Decode with a static KV cache and a compiled step (CUDA graphs on a GPU; README On a GPU); a family "
            "that cannot compile decodes eagerly",
        ),
        OptionSpec(
            "decoding",
            str | None,
            None,
            "Decoding strategy that reads the lens while generating: greedy, mutation-skip, mutation-recompute, "
            "critical-contrast, dola, vcd or icd (README Mitigation decoding); default plain decoding",
        ),
        OptionSpec(
            "decoding_param",
            list[str] | None,
            None,
            "A strategy hyper-parameter as NAME.KEY=VALUE, e.g. dola.layers=low (repeat for several)",
        ),
    )
}


def build_trace_options(**values: Any) -> Any:
    """:class:`~evolens.api.TraceOptions` from the tracing options' values, ``decoding`` (a strategy's name) and
    ``decoding_param`` turned into the strategy (:func:`evolens.decoding.parse_strategies`), ``compile`` into the
    default :class:`~evolens.capture.compiled.CompileOptions` when set."""
    from evolens.api import TraceOptions
    from evolens.capture.compiled import CompileOptions
    from evolens.decoding import parse_strategies

    values["compile"] = CompileOptions() if values.pop("compile", False) else None
    name = values.pop("decoding", None)
    params = values.pop("decoding_param", None) or []
    if name is None and params:
        raise SettingsError("--decoding-param needs --decoding (the strategy it is for)")
    if name is not None:
        if "," in name:
            raise SettingsError(
                f"--decoding takes one strategy, got {name!r} (evolens decode compares several)"
            )
        values["decoding"] = parse_strategies(name, params)[0]
    return TraceOptions.from_flat(**values)


def experiment_options(func: F) -> F:
    """What a command that generates with a model and analyses the result takes: the detector parameters
    (``params``), the tracing options ``--max-new-tokens``, ``--lens``, ``--seed``, ``--batch-size`` (``trace``)
    and the model loading options (``load``)."""
    return detector_options(trace_options("max_new_tokens", "lens", "seed", "batch_size")(load_options(func)))


def trace_options(*names: str) -> Callable[[F], F]:
    """The tracing options ``names`` (keys of :data:`TRACE_SPECS`), into a ``trace: TraceOptions`` parameter."""
    return option_group([TRACE_SPECS[n] for n in names], "trace", "Tracing", build_trace_options)


# --------------------------------------------------------------------------------------------- progress
def _progress(*, rate: bool, transient: bool, disable: bool = False) -> Any:
    """A rich progress display on stderr: description, bar, done / total, (rate,) elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("eta")]
    else:
        columns.append(TimeElapsedColumn())
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=err_console, transient=transient, disable=disable)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (shown on a terminal, for two or more units of work); yields ``advance(n)``."""
    disable = total < 2 or not err_console.is_terminal
    with _progress(rate=False, transient=True, disable=disable) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


class RichProgress:
    """What :func:`evolens.run` reports to on the command line: items done / total, rate, elapsed and remaining."""

    def __init__(self) -> None:
        self._progress = _progress(rate=True, transient=False)
        self._task: Any = None

    def start(self, total: int, completed: int, description: str) -> None:
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=completed, rate="")

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)
        speed = self._progress.tasks[0].speed
        self._progress.update(self._task, rate=f"{speed:.2f} items/s" if speed else "")

    def close(self) -> None:
        self._progress.stop()


@contextmanager
def spinner(description: str) -> Iterator[None]:
    """A rich spinner on stderr while one long step runs (shown on a terminal only)."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(description):
        yield


# --------------------------------------------------------------------------------------------- traces
def trace_dirs(paths: Sequence[Path]) -> list[Path]:
    """Trace directories named by ``paths`` (trace directories, or directories searched for them, e.g. runs)."""
    from evolens.report import collect_trace_dirs

    return collect_trace_dirs(paths)


def load_traces(directories: Sequence[Path], description: str = "loading traces") -> list[Trace]:
    """Load saved traces with a progress bar."""
    from evolens.trace import Trace

    traces = []
    with progress_bar(description, len(directories)) as advance:
        for directory in directories:
            traces.append(Trace.load(directory))
            advance(1)
    return traces


# --------------------------------------------------------------------------------------------- output
#: A saved trace directory, the first argument of the commands that read one.
TraceDirArg = Annotated[Path, typer.Argument(help="A saved trace", show_default=False)]
Dpi = Annotated[int, typer.Option(help="Resolution of PNG figures", min=30, max=1200)]


@dataclass(frozen=True)
class FigureOutput:
    """How a command writes its figures: the formats (``None``: PNG and SVG) and the PNG resolution."""

    formats: tuple[str, ...] | None = None
    dpi: int = 150

    def write(self, fig: Figure, stem: Path) -> list[Path]:
        """Save ``fig`` as ``stem.<format>`` for each format and print each path."""
        return write_figure(fig, stem, self.formats, self.dpi)


def _figure_output(formats: Sequence[str] | None = None, dpi: int = 150) -> FigureOutput:
    return FigureOutput(tuple(formats) if formats else None, dpi)


#: ``--format/-f`` and ``--dpi``, into a ``figure_output: FigureOutput`` parameter.
figure_options = option_group(
    [
        OptionSpec(
            "formats",
            list[str] | None,
            None,
            "Figure formats (repeat: -f png -f pdf); default png and svg",
            flags=("--format", "-f"),
        ),
        OptionSpec("dpi", int, 150, "Resolution of PNG figures", min=30, max=1200),
    ],
    "figure_output",
    "Figures",
    _figure_output,
)


def write_figure(fig: Figure, stem: Path, formats: Sequence[str] | None, dpi: int) -> list[Path]:
    """Save ``fig`` as ``stem.<format>`` for each format (default PNG and SVG) and print each path."""
    from evolens.viz import save_figure

    written = save_figure(fig, stem.with_name(stem.name), list(formats) if formats else None, dpi=dpi)
    for path in written:
        out.print(f"wrote {path}", highlight=False, soft_wrap=True, markup=False)
    return written


def new_table(title: str, columns: Sequence[str]) -> Table:
    """A compact rich table (no outer border, narrow padding) with ``columns`` whose cells wrap."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1)
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def cells(*values: str) -> list[Text]:
    """Table cells as plain text (model and dataset strings may hold rich markup such as ``[bold]``)."""
    from rich.text import Text

    return [Text(v) for v in values]


def say(message: str) -> None:
    """Print one line of plain text (no markup: model strings may hold brackets)."""
    out.print(message, highlight=False, soft_wrap=True, markup=False)


# --------------------------------------------------------------------------------------------- parsers
def parse_layers(spec: str, what: str = "--layers") -> tuple[int, ...]:
    """``"18-31"``, ``"19,20,27"`` or ``"3-5,9"`` -> sorted unique layer numbers.

    >>> parse_layers("3-5,9,4")
    (3, 4, 5, 9)
    """
    layers: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            a, b = (int(low), int(high)) if dash else (int(part), int(part))
        except ValueError:
            raise SettingsError(
                f"{what}: cannot read {part!r}; give layer numbers and ranges such as 18-31 or 19,20,27"
            ) from None
        if a > b:
            raise SettingsError(f"{what}: the range {part!r} runs backwards; write {b}-{a}")
        layers.update(range(a, b + 1))
    if not layers:
        raise SettingsError(f"{what}: no layers in {spec!r}")
    return tuple(sorted(layers))


def parse_words(values: Sequence[str] | None) -> list[str]:
    """Words from repeated options, each possibly comma-separated: ``["dog,cat", "tree"]`` -> three words."""
    words: list[str] = []
    for value in values or ():
        words.extend(w.strip() for w in value.split(",") if w.strip())
    return list(dict.fromkeys(words))


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a :class:`SettingsError` naming the option."""
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value
