"""Core commands: families, trace, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolens.api import LoadOptions, TraceOptions
from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.cli.options import load_options, trace_options
from evolens.demo import DEMO_ATYPICAL, DEMO_TYPICAL


@app.command()
def families(config: ConfigOption = None) -> None:
    """List the supported model families: kind, the model types each handles, and notes.

    Example: evolens families
    """
    from rich.table import Table

    from evolens.models import get_family, supported_families

    table = Table("family", "kind", "model types", "notes", show_lines=False, highlight=False)
    for name in supported_families():
        fam = get_family(name)
        kind = "vision-language" if fam.kind == "vlm" else "text"
        table.add_row(name, kind, ", ".join(fam.model_types), fam.description)
    out.print(table)


@app.command()
@trace_options(
    "max_new_tokens",
    "lens",
    "lens_dtype",
    "metrics_dtype",
    "topk",
    "prompt_positions",
    "compile",
    "decoding",
    "decoding_param",
)
@load_options
def trace(
    model: Annotated[
        str, typer.Argument(help="Local model directory or hub id, e.g. llava-hf/llava-1.5-7b-hf")
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Instruction or question")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the trace to")],
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Image file (omit for text-only)")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
    config: ConfigOption = None,
    *,
    trace: TraceOptions,
    load: LoadOptions,
) -> None:
    """Trace one generation through every layer and save it.

    Example: evolens trace llava-hf/llava-1.5-7b-hf -i dog.jpg -p "Please describe this image in detail." -o runs/dog

    With a decoding strategy: evolens trace MODEL -i dog.jpg -p "..." -o runs/dog-dola --decoding dola
    """
    import evolens
    from evolens.files import check_replaceable, check_writable
    from evolens.models.inputs import check_prompt

    check_prompt(prompt)  # cheap checks before the expensive load
    if image is not None:
        evolens.models.load_image(image)
    check_writable(out_dir, directory=True)
    check_replaceable(out_dir, overwrite=overwrite)
    quiet_transformers()
    with out.status(f"loading {model}"):
        lvlm = load.open(model)
    with out.status(f"tracing up to {trace.generation.max_new_tokens} tokens through {lvlm.n_layers} layers"):
        result = lvlm.trace(image=image, prompt=prompt, options=trace)
    result.save(out_dir, overwrite=overwrite)
    out.print(f"text: {result.text!r}", markup=False, highlight=False)  # model text: never rich markup
    out.print(f"{result.n_steps} tokens x {result.n_layers + 1} layers written to {out_dir}", markup=False)
    if result.decoding is not None:
        changed = result.decoding["overridden"]
        out.print(
            f"decoding {result.decoding['strategy']['name']}: {len(changed)} of {result.n_steps} tokens differ from "
            "the final layer's arg-max at their step",
            markup=False,
        )


@app.command(
    epilog=examples(
        "evolens demo                                   # writes runs/demo: run directory, figures, report.html",
        "evolens demo --out /tmp/demo --typical 20 --atypical 40",
    )
)
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Demo directory")] = Path("runs/demo"),
    typical: Annotated[
        int, typer.Option(help="Held-out typical scenes (8 items each)", min=1)
    ] = DEMO_TYPICAL,
    atypical: Annotated[
        int, typer.Option(help="Held-out atypical scenes (8 items each)", min=1)
    ] = DEMO_ATYPICAL,
    config: ConfigOption = None,
) -> None:
    """The main job on the built-in toy LVLM: trace captions and questions about held-out scenes (typical and
    atypical), evaluate them against the truth, find critical and mutation layers, draw the figures, write the
    HTML report, print where they are and a summary."""
    from evolens.demo import run_demo
    from evolens.files import check_writable

    check_writable(out_dir, directory=True)
    quiet_transformers()
    run_demo(out_dir, console=out, n_typical=typical, n_atypical=atypical)
