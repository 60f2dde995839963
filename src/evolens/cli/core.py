"""Core commands: families, trace, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolens.cli.common import app, out, quiet_transformers


@app.command()
def families() -> None:
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
def trace(
    model: Annotated[
        str, typer.Argument(help="Local model directory or hub id, e.g. llava-hf/llava-1.5-7b-hf")
    ],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Instruction or question")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the trace to")],
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Image file (omit for text-only)")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens to generate")] = 128,
    lens: Annotated[
        str, typer.Option(help="logit (norm + head) or paper (the paper code's variant)")
    ] = "logit",
    topk: Annotated[int, typer.Option(help="Top tokens kept per (layer, step)")] = 10,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16")] = "auto",
    allow_pickle: Annotated[bool, typer.Option(help="Accept pickle-only checkpoints (unsafe)")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Run code shipped with the checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
) -> None:
    """Trace one generation through every layer and save it.

    Example: evolens trace llava-hf/llava-1.5-7b-hf -i dog.jpg -p "Please describe this image in detail." -o runs/dog
    """
    import evolens
    from evolens.models.inputs import check_prompt

    check_prompt(prompt)  # cheap checks before the expensive load
    if image is not None:
        evolens.models.load_image(image)
    quiet_transformers()
    lvlm = evolens.load(
        model, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    result = lvlm.trace(image=image, prompt=prompt, max_new_tokens=max_new_tokens, lens=lens, topk=topk)
    result.save(out_dir, overwrite=overwrite)
    out.print(f"[bold]text[/bold]: {result.text!r}", markup=True, highlight=False)
    out.print(f"{result.n_steps} tokens x {result.n_layers + 1} layers written to {out_dir}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory")] = Path("runs/demo"),
) -> None:
    """Run the main job on the built-in model and print where the results are.

    Example: evolens demo --out runs/demo
    """
    from evolens.demo import run_demo

    quiet_transformers()

    run_demo(out_dir, console=out)
