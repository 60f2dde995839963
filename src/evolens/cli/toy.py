"""``evolens toy train | eval | export | path``: the built-in toy LVLM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolens.cli.common import ConfigOption, app, examples, out, quiet_transformers
from evolens.errors import SettingsError

toy_app = typer.Typer(
    name="toy",
    help="The built-in toy LVLM: train it, evaluate it, export its held-out set, find its files.",
    no_args_is_help=True,
)
app.add_typer(toy_app, name="toy")


def _model_dir(model: Path | None) -> Path:
    from evolens import toy

    if model is None:
        return toy.model_dir()
    if not (model / "config.json").is_file():
        raise SettingsError(
            f"{model} is not a saved toy model (no config.json); train one with `evolens toy train`"
        )
    return model


@toy_app.command(
    epilog=examples(
        "evolens toy train -o my_toy                    # the shipped model's recipe: four phases, ~23 min on 2 cores",
        "evolens toy train -o my_toy --recipe single --steps 3000 --seed 3   # one phase with these settings",
        "evolens toy train -o my_toy2 --recipe single --init-from my_toy --lr 5e-4 --warmup-vision-steps 0",
        "evolens toy train -o /tmp/quick --recipe single --steps 20 --warmup-vision-steps 5 --batch-size 8",
    )
)
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to save the trained model in")],
    recipe: Annotated[
        str,
        typer.Option(
            help="shipped (the shipped model's phases) or single (one phase with the options below)"
        ),
    ] = "shipped",
    seed: Annotated[int, typer.Option(help="single: seed of the initial weights and the data stream")] = 0,
    steps: Annotated[int, typer.Option(help="single: instruction-training steps", min=1)] = 3000,
    batch_size: Annotated[int, typer.Option(help="single: images per step", min=1)] = 48,
    warmup_vision_steps: Annotated[
        int, typer.Option(help="single: vision warm-up steps (0: none)", min=0)
    ] = 300,
    lr: Annotated[float, typer.Option(help="single: peak learning rate (AdamW)")] = 2e-3,
    lr_warmup: Annotated[int, typer.Option(help="single: learning-rate warm-up steps", min=1)] = 100,
    threads: Annotated[
        int, typer.Option(help="Torch threads (part of what makes a run reproducible)", min=1)
    ] = 2,
    init_from: Annotated[
        Path | None, typer.Option(help="single: continue from this saved toy model instead of a fresh start")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory")] = False,
    config: ConfigOption = None,
) -> None:
    """Train the toy LVLM from scratch on the toy world (CPU, deterministic under its seeds), with progress bars."""
    from dataclasses import replace

    from evolens.files import check_replaceable
    from evolens.toy import TrainConfig
    from evolens.toy import train as train_toy
    from evolens.toy.train import SHIPPED_RECIPE, train_recipe

    if recipe not in ("shipped", "single"):
        raise SettingsError(f"--recipe must be 'shipped' or 'single', got {recipe!r}")
    if init_from is not None:
        if recipe != "single":
            raise SettingsError("--init-from continues one phase: use it with --recipe single")
        _model_dir(init_from)
    check_replaceable(out_dir, overwrite=overwrite)
    quiet_transformers()
    if recipe == "shipped":
        phases = [replace(phase, threads=threads) for phase in SHIPPED_RECIPE]
        result = train_recipe(out_dir, phases, overwrite=overwrite)
    else:
        cfg = TrainConfig(
            seed=seed,
            steps=steps,
            batch_size=batch_size,
            warmup_vision_steps=warmup_vision_steps,
            lr=lr,
            lr_warmup=lr_warmup,
            threads=threads,
        )
        result = train_toy(out_dir, cfg, overwrite=overwrite, init_from=init_from)
    out.print(
        f"trained in {result.seconds / 60:.1f} min, final answer loss {result.final_loss:.4f}; saved to {out_dir}",
        highlight=False,
        markup=False,
    )
    out.print(f"measure it: evolens toy eval {out_dir}", highlight=False, markup=False)


@toy_app.command(
    "eval",
    epilog=examples(
        "evolens toy eval                               # the shipped model",
        "evolens toy eval my_toy --typical 200 --atypical 300 --out my_toy/eval.json",
        "evolens toy eval my_toy --write-card           # README.md model card + eval.json into my_toy",
    ),
)
def eval_(
    model: Annotated[Path | None, typer.Argument(help="A saved toy model (default: the shipped one)")] = None,
    typical: Annotated[int, typer.Option(help="Held-out typical scenes", min=1)] = 200,
    atypical: Annotated[int, typer.Option(help="Held-out atypical scenes", min=1)] = 300,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the results as JSON")] = None,
    write_card: Annotated[
        bool, typer.Option(help="Write README.md (model card) and eval.json into MODEL")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Measure a toy model on held-out scenes: VQA accuracy, caption precision/recall, prior-driven errors."""
    from evolens.files import check_writable
    from evolens.toy import evaluate
    from evolens.toy.card import write_model_card
    from evolens.toy.evaluate import save_evaluation

    directory = _model_dir(model)
    if out_file is not None:
        check_writable(out_file)
    if write_card and model is None:
        raise SettingsError("--write-card writes into the model directory: name a model you trained")
    quiet_transformers()
    result = evaluate(directory, n_typical=typical, n_atypical=atypical)
    for line in result.summary_lines():
        out.print(line, highlight=False, markup=False)
    if out_file is not None:
        save_evaluation(result, out_file)
        out.print(f"results written to {out_file}", highlight=False, markup=False)
    if write_card:
        out.print(
            f"model card written to {write_model_card(directory, result)}", highlight=False, markup=False
        )


@toy_app.command(
    epilog=examples(
        "evolens toy export -o toy_test --typical 50 --atypical 50",
        'evolens run "$(evolens toy path)" -d toy -r toy_test -o runs/toy',
    )
)
def export(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the held-out set to")],
    typical: Annotated[int, typer.Option(help="Typical scenes", min=0)] = 50,
    atypical: Annotated[
        int, typer.Option(help="Atypical scenes (a heart or moon in a non-prior colour)", min=0)
    ] = 50,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing directory")] = False,
    config: ConfigOption = None,
) -> None:
    """Write the toy world's held-out set: images, their truth, AMBER-format files and one-word VQA (JSONL)."""
    from evolens.toy import export_testset

    if typical + atypical == 0:
        raise SettingsError("nothing to export: give --typical or --atypical a positive number")
    export_testset(out_dir, n_typical=typical, n_atypical=atypical, overwrite=overwrite)
    out.print(
        f"{typical + atypical} scenes written to {out_dir} (read it with: evolens run MODEL -d toy -r {out_dir})",
        highlight=False,
        markup=False,
    )


@toy_app.command(
    epilog=examples(
        "evolens toy path",
        'evolens trace "$(evolens toy path)" -i toy_test/image/toy_0001.png -p "what color is the heart?" -o runs/heart',
    )
)
def path(config: ConfigOption = None) -> None:
    """Print the directory of the shipped toy model (load it like any checkpoint)."""
    from evolens import toy

    typer.echo(str(toy.model_dir()))
