"""The shipped toy model's card (``README.md`` beside its weights): data, architecture, training, measured quality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evolens.files import atomic_write_text
from evolens.toy.evaluate import ToyEvaluation
from evolens.toy.world import COLORS, PRIOR_STRENGTH, PRIORS, SHAPES, SLOTS


def _pct(rate: dict[str, Any]) -> str:
    value = rate.get("value")
    return "n/a" if value is None else f"{100 * value:.1f}% ({rate['hits']}/{rate['n']})"


def _phase_lines(record: dict[str, Any]) -> list[str]:
    phases = [*record.get("previous_phases", []), {k: v for k, v in record.items() if k != "previous_phases"}]
    lines = []
    for number, phase in enumerate(phases, 1):
        c = phase["config"]
        start = (
            "from the previous phase's weights" if phase.get("init_from") else "from a random initialisation"
        )
        lines.append(
            f"{number}. {start}, seed {c['seed']}: vision warm-up {c['warmup_vision_steps']} steps, then "
            f"{c['steps']} steps of batch {c['batch_size']}, AdamW peak lr {c['lr']} (warm-up {c['lr_warmup']}, "
            f"cosine to {c['final_lr_ratio']}×), bf16 autocast {c['bf16']}, {c['threads']} thread(s), "
            f"{phase['seconds'] / 60:.1f} min; final answer loss {phase['final_loss']:.4f} nats/token"
        )
    return lines


def model_card(record: dict[str, Any], evaluation: ToyEvaluation, config: dict[str, Any]) -> str:
    """The card's Markdown, from ``train.json``, the evaluation and the saved ``config.json``."""
    e = evaluation.to_dict()
    text, vision = config["text_config"], config["vision_config"]
    typical, atypical = e["vqa"]["typical"], e["vqa"]["atypical"]
    caps = e["captions"]["typical"]
    kinds = ", ".join(f"{k} {_pct(v)}" for k, v in typical.items() if k != "all")
    kinds_atyp = ", ".join(f"{k} {_pct(v)}" for k, v in atypical.items() if k != "all")
    priors = ", ".join(f"{shape}s are {color}" for shape, color in PRIORS.items())
    versions = record.get("versions", {})
    lines = [
        "# evolens toy LVLM",
        "",
        "A small LLaVA trained by evolens on a synthetic world with known truth (`evolens.toy`). It loads as any",
        "llava-hf checkpoint: `evolens.load(evolens.toy.model_dir())`.",
        "",
        "## Data",
        f"64×64 images of one to three shapes ({', '.join(SHAPES)}) in {len(COLORS)} colours ({', '.join(COLORS)})",
        f"in four slots ({', '.join(SLOTS)}), distinct shapes per image, small jitter, grey background, drawn fresh",
        "for every step. Captions list the objects in slot order; one-word questions ask a shape's colour, the",
        "shape in a slot, the colour of the shape in a slot, the count, whether a shape is there (present and absent",
        "shapes) and whether a shape has a colour. **Language priors on purpose:** "
        f"{priors} in {PRIOR_STRENGTH:.0%} of training scenes.",
        "",
        "## Architecture",
        f"`LlavaForConditionalGeneration`: CLIP vision tower (hidden {vision['hidden_size']}, "
        f"{vision['num_hidden_layers']} layers, patch {vision['patch_size']} → 16 image tokens), 2-layer MLP",
        f"projector, Llama decoder (hidden {text['hidden_size']}, intermediate {text['intermediate_size']}, "
        f"**{text['num_hidden_layers']} decoder layers**, {text['num_attention_heads']} heads), untied "
        f"embeddings, a word-level tokenizer of {text['vocab_size']} tokens. Weights: float32 safetensors.",
        "",
        "## Training",
        "Loss on answer tokens only; each example is one image with 1–3 question turns or one caption turn.",
        "The vision tower is first warmed up alone with throwaway heads (patch and slot colour/shape), which",
        "are then discarded: without that the model learns to ignore the image.",
        "",
        *_phase_lines(record),
        "",
        f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items())}. Same seed, thread count and versions",
        "reproduce the weights bit for bit; another thread count changes them slightly.",
        "",
        f"## Measured quality (`evolens toy eval`, {e['n_typical']} typical + {e['n_atypical']} atypical held-out "
        "scenes)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| VQA accuracy, typical items (all one-word questions) | {_pct(typical['all'])} |",
        f"| caption object precision, typical | {_pct(caps['object_precision'])} |",
        f"| caption object recall, typical | {_pct(caps['object_recall'])} |",
        f"| caption whole-object precision / recall (colour + shape + slot), typical | "
        f"{_pct(caps['full_precision'])} / {_pct(caps['full_recall'])} |",
        f"| exact captions, typical | {_pct(caps['exact'])} |",
        f"| VQA accuracy, atypical items | {_pct(atypical['all'])} |",
        f"| **prior-driven colour errors** (atypical heart/moon answered with its prior colour) | "
        f"{_pct(e['prior_color_errors'])} |",
        f"| any colour error on atypical hearts/moons | {_pct(e['atypical_color_errors'])} |",
        f"| shape errors on atypical hearts/moons (typical ones) | {_pct(e['atypical_shape_errors'])} "
        f"({_pct(e['typical_prior_shape_errors'])}) |",
        f"| captions giving an atypical object its prior colour | {_pct(e['caption_prior_colors'])} |",
        f"| yes/no colour questions on atypical hearts/moons answered as the prior suggests | "
        f"{_pct(e['yes_no_prior_answers'])} |",
        "",
        f"Per kind, typical: {kinds}.",
        "",
        f"Per kind, atypical: {kinds_atyp}.",
        "",
        "The prior-driven errors are the hallucinations evolens' analyses study (README: Detectors).",
        "",
    ]
    if e["examples"]:
        lines += ["Examples of prior-driven errors:", ""]
        lines += [
            f"- {x['question']} truth **{x['truth']}**, answered *{x['answer']}*" for x in e["examples"][:8]
        ]
        lines.append("")
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, evaluation: ToyEvaluation) -> Path:
    """Write ``README.md`` and ``eval.json`` into ``model_dir`` (which holds ``train.json`` and ``config.json``)."""
    from evolens.toy.evaluate import save_evaluation

    model_dir = Path(model_dir)
    record = json.loads((model_dir / "train.json").read_text(encoding="utf-8"))
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    save_evaluation(evaluation, model_dir / "eval.json")
    return atomic_write_text(model_dir / "README.md", model_card(record, evaluation, config))
