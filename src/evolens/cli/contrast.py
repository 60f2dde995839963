"""``evolens contrast``: a generated (e.g. hallucinated) token against an alternative (e.g. the correct one),
layer by layer, from a saved trace (paper §3.2, Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.options import (
    Dpi,
    FigureFormats,
    cells,
    detector_options,
    load_options,
    new_table,
    parse_words,
    say,
    trace_dirs,
    write_figure,
)
from evolens.errors import LensUnavailableError, SettingsError
from evolens.files import check_writable, make_directory

if TYPE_CHECKING:
    from evolens.experiments.hallucination import TokenComparison
    from evolens.trace import Trace


def stored_token_ids(trace: Trace, word: str, *, what: str) -> list[int]:
    """The ids of ``word`` among the tokens a saved trace knows (its vocabulary: generated, top-k, candidate and
    tracked tokens), best matches first: the display string itself, then without outer spaces, then ignoring
    case. A number is taken as a token id."""
    if word.strip().isdigit():
        return [int(word)]
    vocab = trace.vocab
    for same in (
        lambda s: s == word,
        lambda s: s.strip() == word.strip(),
        lambda s: s.strip().lower() == word.strip().lower(),
    ):
        found = sorted(i for i, s in vocab.items() if same(s))
        if found:
            return found
    raise SettingsError(
        f"{what} {word!r} is not among the tokens stored with this trace; give --model to look it up (and compute "
        "its probabilities), trace with track=[...], or give a token id"
    )


def resolve_tokens(
    trace: Trace, words: Sequence[str], lvlm: Any, *, what: str, single: bool = False
) -> list[int | str]:
    """Token ids for ``words``: through the model's tokenizer when one is loaded (words stay words for the API),
    else from the trace's stored vocabulary."""
    if lvlm is not None:
        return [int(w) if w.strip().isdigit() else w for w in words]
    ids: list[int | str] = []
    for word in words:
        found = stored_token_ids(trace, word, what=what)
        if single and len(found) > 1:
            listed = ", ".join(f"{i} ({trace.vocab.get(i, '?')!r})" for i in found)
            raise SettingsError(f"{what} {word!r} matches several stored tokens: {listed}; give one id")
        ids.extend(found)
    return list(dict.fromkeys(ids))


def print_comparisons(comparisons: Sequence[TokenComparison]) -> None:
    table = new_table(
        "generated vs alternative token across layers",
        (
            "step",
            "generated",
            "alternative",
            "source",
            "crossing",
            "critical",
            "mutation",
            "alt. led",
            "at mutation",
        ),
    )
    for c in comparisons:
        row = (
            str(c.step),
            repr(c.generated_token),
            repr(c.alternative_token),
            c.alternative_source,
            str(c.crossing_layer) if c.crossing_layer >= 0 else "–",
            str(c.critical_layer) if c.critical_layer >= 0 else "–",
            ", ".join(map(str, c.mutation_layers)) or "–",
            "yes" if c.alternative_led else "no",
            "yes" if c.crossing_at_mutation else "no",
        )
        table.add_row(*cells(*row))
    out.print(table)
    say(
        "crossing: the state where the generated token rises above the alternative for good; alt. led: the "
        "alternative was ahead between the critical and the first mutation layer (the Fig. 3 pattern)"
    )


@app.command(
    "contrast",
    epilog=examples(
        "evolens contrast runs/dog --step 12 --alternative camera",
        "evolens contrast runs/dog --step 12 --truth camera,dog,beach",
        "evolens contrast runs/dog --hallu water,frisbee --truth camera,dog -o figs/dog_contrast",
        "evolens contrast runs/dog --step 5 --alternative zebra --model llava-hf/llava-1.5-7b-hf",
    ),
)
@detector_options
@load_options
def contrast(
    trace_dir: Annotated[Path, typer.Argument(help="A saved trace", show_default=False)],
    step: Annotated[
        list[int] | None, typer.Option("--step", "-s", help="Generation step(s) to compare (repeat)")
    ] = None,
    alternative: Annotated[
        str | None, typer.Option(help="The alternative token (text or id); default: chosen automatically")
    ] = None,
    truth: Annotated[
        list[str] | None,
        typer.Option(
            help="Ground-truth words: the alternative is the one most probable before the mutation layer"
        ),
    ] = None,
    hallu: Annotated[
        list[str] | None,
        typer.Option(help="Hallucinated words: compare every step that generated one (instead of --step)"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="The trace's model, to look words up and compute tokens the trace did not store"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output directory (contrast.json and the figure); default: the trace's"
        ),
    ] = None,
    ncols: Annotated[int, typer.Option(help="Panels per row when there are several", min=1)] = 2,
    formats: FigureFormats = None,
    dpi: Dpi = 150,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    load: LoadOptions,
) -> None:
    """Probability of the generated token against an alternative at every layer (paper Fig. 3): where they cross, the step's critical and mutation layers, and whether the alternative led before the mutation.

    The alternative is --alternative, else the --truth word most probable before the mutation layer, else the
    strongest competitor (another top-1 token of the step). Without --model, words are looked up among the tokens
    the trace stored. Writes contrast.json and contrast.png/.svg (default: into the trace directory).
    """
    from evolens.analysis import analyze_trace
    from evolens.experiments import compare_hallucinations, compare_tokens, save_comparisons
    from evolens.trace import Trace
    from evolens.viz import token_comparison_figure

    dirs = trace_dirs([trace_dir])
    if len(dirs) != 1:
        raise SettingsError(f"{trace_dir} holds {len(dirs)} traces; give one trace directory, e.g. {dirs[0]}")
    check_writable(out_dir if out_dir is not None else dirs[0], directory=True)
    truth_words, hallu_words = parse_words(truth), parse_words(hallu)
    if hallu_words and (step or alternative):
        raise SettingsError(
            "--hallu compares every step that generated one of the words; leave out --step/--alternative"
        )
    if not hallu_words and not step:
        raise SettingsError("give --step N (and optionally --alternative or --truth), or --hallu WORDS")
    trace = Trace.load(dirs[0])
    for s in step or ():
        if not 0 <= s < trace.n_steps:
            raise SettingsError(f"--step must be in [0, {trace.n_steps}), got {s}")
    lvlm = None
    if model is not None:
        quiet_transformers()
        lvlm = load.open(model)
        wanted, have = trace.model.weights_hash, lvlm.loaded.weights_hash
        if wanted and have and wanted != have:
            raise SettingsError(
                f"--model {model} has other weights than the model that made the trace ({trace.model.source})"
            )
    truth_ids = resolve_tokens(trace, truth_words, lvlm, what="--truth word") if truth_words else None
    analysis = analyze_trace(trace, params)
    comparisons: list[TokenComparison]
    try:
        if hallu_words:
            hallu_ids = resolve_tokens(trace, hallu_words, lvlm, what="--hallu word")
            comparisons = compare_hallucinations(
                trace, hallu_ids, truth_ids or [], lvlm=lvlm, params=params, analysis=analysis
            )
            if not comparisons:
                raise SettingsError(f"the trace generated none of {hallu_words}: {trace.text!r}")
        else:
            alt = (
                resolve_tokens(trace, [alternative], lvlm, what="--alternative", single=True)[0]
                if alternative is not None
                else None
            )
            comparisons = [
                compare_tokens(
                    trace, s, alt, ground_truth=truth_ids, lvlm=lvlm, params=params, analysis=analysis
                )
                for s in step or ()
            ]
    except LensUnavailableError:
        raise SettingsError(
            "a token's probabilities were not stored at a compared step (only the generated token, the step's "
            "top-1 candidates and tracked tokens are); give --model to compute them from the hidden states"
        ) from None
    target = out_dir if out_dir is not None else dirs[0]
    make_directory(target)
    print_comparisons(comparisons)
    say(f"wrote {save_comparisons(target / 'contrast.json', comparisons)}")
    write_figure(token_comparison_figure(comparisons, ncols=ncols), target / "contrast", formats, dpi)
