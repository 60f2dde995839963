"""``evolens compare``: an LVLM with and without its image, and optionally a text-only LM, side by side (paper §6)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from evolens.analysis.params import DetectorParams
from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.options import (
    FigureOutput,
    cells,
    experiment_options,
    figure_options,
    new_table,
    say,
    spinner,
)
from evolens.errors import SettingsError
from evolens.files import check_writable, make_directory

if TYPE_CHECKING:
    from evolens.analysis.profiles import ProfileComparison


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def print_comparison(comparison: ProfileComparison) -> None:
    """One row per condition: its hierarchy ratio, split, critical layers and mutation rate."""
    table = new_table(
        "JSD profiles side by side",
        (
            "condition",
            "model",
            "L",
            "items",
            "tokens",
            "ratio",
            "split",
            "crit. found",
            "median crit.",
            "mutation",
        ),
    )
    for p in comparison.profiles:
        split = p.hierarchy.split_layer
        row = (
            p.label,
            Path(p.model_source).name or p.model_source,
            str(p.n_layers),
            str(p.n_items),
            str(p.n_tokens),
            _num(p.hierarchy.ratio, ".2f"),
            f"{split} ({_num(p.relative_split, '.0%')})" if split >= 0 else "–",
            _num(p.critical_found_rate, ".0%"),
            _num(p.median_critical_layer, "g"),
            _num(p.mutation_rate, ".0%"),
        )
        table.add_row(*cells(*row))
    out.print(table)
    say(
        "ratio: hierarchy ratio, the mean JSD before / after the profile's best split (about 1: no stages; >> 1: "
        "the LVLM pattern); split: that state (fraction of L); crit. found: tokens with a critical layer; mutation: "
        "of those, the share with a mutation layer"
    )
    for p in comparison.profiles:
        for text in p.texts[:3]:
            say(f"  {p.label}: {text[:160] + ('…' if len(text) > 160 else '')}")


@app.command(
    "compare",
    epilog=examples(
        "evolens compare llava-hf/llava-1.5-7b-hf -i dog.jpg -p 'Please describe this image in detail.' -o runs/cmp",
        "evolens compare MODEL -i a.jpg -i b.jpg -p 'Describe the image.' --text-model lmsys/vicuna-7b-v1.5 "
        "--text-prompt 'Who was the first Indian to win an academy award?' -o runs/cmp",
    ),
)
@experiment_options
@figure_options
def compare(
    model: Annotated[str, typer.Argument(help="The vision-language model (local directory or hub id)")],
    image: Annotated[list[Path], typer.Option("--image", "-i", help="Image file (repeat for several)")],
    prompt: Annotated[
        list[str], typer.Option("--prompt", "-p", help="One prompt, or one per image (repeat)")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory (profiles.json and the figure)")
    ],
    text_model: Annotated[
        str | None, typer.Option(help="A text-only causal LM traced the same way (local directory or hub id)")
    ] = None,
    text_prompt: Annotated[
        list[str] | None, typer.Option(help="Prompts for --text-model (repeat) [default: the same prompts]")
    ] = None,
    config: ConfigOption = None,
    *,
    params: DetectorParams,
    figure_output: FigureOutput,
    trace: TraceOptions,
    load: LoadOptions,
) -> None:
    """Trace the model with the images, the same model and prompts without them, and optionally a text-only LM; compare their adjacent-layer JSD profiles and stage structure, with one hierarchy ratio each (paper §6).

    Writes OUT/profiles.json (ProfileComparison) and the profiles figure OUT/profiles.png and .svg.
    """
    import evolens
    from evolens.models.inputs import check_prompt, load_image
    from evolens.viz import profile_comparison_figure

    check_writable(out_dir, directory=True)  # before the models load and trace
    for p in [*prompt, *(text_prompt or [])]:
        check_prompt(p)
    if len(prompt) not in (1, len(image)):
        raise SettingsError(
            f"give one --prompt, or one per --image: got {len(prompt)} for {len(image)} images"
        )
    if text_prompt and text_model is None:
        raise SettingsError("--text-prompt needs --text-model")
    for path in image:
        load_image(path)
    quiet_transformers()
    with spinner("loading the models and tracing"):
        lvlm = load.open(model)
        llm = load.open(text_model) if text_model is not None else None
        comparison = evolens.compare_text_only(
            lvlm,
            list(image),
            prompt[0] if len(prompt) == 1 else list(prompt),
            llm=llm,
            llm_prompts=list(text_prompt) if text_prompt else None,
            params=params,
            options=replace(trace, keep_hidden_states=False),
        )
    make_directory(out_dir)
    saved = comparison.save(out_dir / "profiles.json")
    print_comparison(comparison)
    say(f"wrote {saved}")
    figure_output.write(profile_comparison_figure(comparison), out_dir / "profiles")
