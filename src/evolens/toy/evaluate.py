"""``evolens toy eval``: the toy LVLM's quality on held-out scenes with known truth.

The held-out set (:func:`heldout_scenes`) has *typical* scenes (hearts red, moons yellow, as in most training text)
and *atypical* ones (a heart or moon in another colour). Every scene is asked every question kind of
:func:`evolens.toy.world.questions`, through the saved checkpoint and its processor (the path any user takes),
greedy decoding.

Measured:

* **VQA accuracy**: the first word of the answer equals the truth — per question kind and over all one-word kinds;
* **captions**: object (shape) precision and recall of the shapes a caption names, the same for whole objects
  (colour, shape and slot all right), and exact caption matches;
* **prior-driven errors** on atypical objects: of the colour questions about an atypical heart/moon, the share
  answered with the *prior* colour (the hallucination the world was built to provoke); the share of shape
  questions about them answered wrongly; and captions that give an atypical object its prior colour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evolens.data.scores import first_word
from evolens.toy.world import (
    ONE_WORD_KINDS,
    PRIORS,
    Question,
    Scene,
    caption_prior_colors,
    caption_words,
    parse_caption,
    questions,
    render,
    sample_test_scene,
)

#: Seed of the held-out scenes (training draws from the seed of its own config: another stream).
TEST_SEED = 20_251_201


def heldout_scenes(n_typical: int, n_atypical: int, seed: int = TEST_SEED) -> list[Scene]:
    """``n_typical`` typical then ``n_atypical`` atypical held-out scenes, reproducibly."""
    rng = np.random.default_rng(seed)
    return [sample_test_scene(rng, atypical=False) for _ in range(n_typical)] + [
        sample_test_scene(rng, atypical=True) for _ in range(n_atypical)
    ]


def heldout_items(scenes: Sequence[Scene], seed: int = TEST_SEED) -> list[tuple[int, Question]]:
    """``(scene index, question)`` for every question of every scene (the questions' own draws are seeded)."""
    rng = np.random.default_rng(seed + 1)
    return [(i, q) for i, scene in enumerate(scenes) for q in questions(scene, rng)]


@dataclass
class Rate:
    """``hits / n`` with its count (``value`` is ``None`` when ``n == 0``)."""

    hits: int = 0
    n: int = 0

    def add(self, hit: bool) -> None:
        self.hits += int(hit)
        self.n += 1

    @property
    def value(self) -> float | None:
        return self.hits / self.n if self.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"hits": self.hits, "n": self.n, "value": self.value}


@dataclass
class CaptionScores:
    """Caption quality of one group of scenes.

    Attributes:
        object_precision: Named shapes that are in the scene / named shapes.
        object_recall: Scene shapes named / scene shapes.
        full_precision, full_recall: The same for whole objects (colour + shape + slot).
        exact: Captions equal to the reference caption (words compared, punctuation spacing ignored).
    """

    object_precision: Rate = field(default_factory=Rate)
    object_recall: Rate = field(default_factory=Rate)
    full_precision: Rate = field(default_factory=Rate)
    full_recall: Rate = field(default_factory=Rate)
    exact: Rate = field(default_factory=Rate)

    def add(self, scene: Scene, text: str, reference: str) -> None:
        named = parse_caption(text)
        truth = {(o.color, o.shape, o.slot) for o in scene.objects}
        shapes = set(scene.shapes)
        for color, shape, slot in named:
            self.object_precision.add(shape in shapes)
            self.full_precision.add((color, shape, slot) in truth)
        named_shapes = {shape for _, shape, _ in named}
        for obj in scene.objects:
            self.object_recall.add(obj.shape in named_shapes)
            self.full_recall.add((obj.color, obj.shape, obj.slot) in set(named))
        self.exact.add(caption_words(text) == caption_words(reference))

    def to_dict(self) -> dict[str, Any]:
        return {k: v.to_dict() for k, v in self.__dict__.items()}


@dataclass
class ToyEvaluation:
    """The toy model's measured quality (see the module docstring).

    Attributes:
        n_typical, n_atypical: Held-out scenes of each group.
        vqa: ``{group: {kind: Rate}}`` for group ``"typical"``/``"atypical"`` and every one-word kind, plus
            ``"all"`` (every one-word question of the group).
        captions: ``{group: CaptionScores}``.
        prior_color_errors: Colour questions about an atypical heart/moon answered with the prior colour.
        atypical_color_errors: The same questions answered wrongly in any way.
        atypical_shape_errors: Shape questions ("what shape is on the left ?") about an atypical heart/moon
            answered wrongly; ``typical_prior_shape_errors``: the same about typical hearts/moons.
        caption_prior_colors: Atypical objects a caption names with their prior colour (of those it names).
        yes_no_prior_answers: Yes/no colour questions about an atypical heart/moon answered as the prior suggests
            (``Question.prior_yes_no``: "yes" to its prior colour, "no" to its true one).
        examples: Up to 20 prior-driven errors ``{question, truth, answer}`` for the model card.
    """

    n_typical: int
    n_atypical: int
    vqa: dict[str, dict[str, Rate]]
    captions: dict[str, CaptionScores]
    prior_color_errors: Rate
    atypical_color_errors: Rate
    atypical_shape_errors: Rate
    typical_prior_shape_errors: Rate
    caption_prior_colors: Rate
    yes_no_prior_answers: Rate
    examples: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_typical": self.n_typical,
            "n_atypical": self.n_atypical,
            "vqa": {g: {k: r.to_dict() for k, r in kinds.items()} for g, kinds in self.vqa.items()},
            "captions": {g: c.to_dict() for g, c in self.captions.items()},
            "prior_color_errors": self.prior_color_errors.to_dict(),
            "atypical_color_errors": self.atypical_color_errors.to_dict(),
            "atypical_shape_errors": self.atypical_shape_errors.to_dict(),
            "typical_prior_shape_errors": self.typical_prior_shape_errors.to_dict(),
            "caption_prior_colors": self.caption_prior_colors.to_dict(),
            "yes_no_prior_answers": self.yes_no_prior_answers.to_dict(),
            "examples": self.examples,
        }

    def summary_lines(self) -> list[str]:
        def pct(rate: Rate) -> str:
            return "n/a" if rate.value is None else f"{100 * rate.value:.1f}% ({rate.hits}/{rate.n})"

        lines = [f"held-out scenes: {self.n_typical} typical, {self.n_atypical} atypical"]
        for group in ("typical", "atypical"):
            kinds = self.vqa[group]
            per_kind = "  ".join(
                f"{k} {100 * (kinds[k].value or 0):.1f}" for k in ONE_WORD_KINDS if kinds[k].n
            )
            lines.append(f"VQA accuracy, {group}: {pct(kinds['all'])}   [{per_kind}]")
            c = self.captions[group]
            lines.append(
                f"captions, {group}: object precision {pct(c.object_precision)}, recall {pct(c.object_recall)}; "
                f"whole objects {pct(c.full_precision)} / {pct(c.full_recall)}; exact {pct(c.exact)}"
            )
        lines.append(f"prior-driven colour errors on atypical hearts/moons: {pct(self.prior_color_errors)}")
        lines.append(f"any colour error on them: {pct(self.atypical_color_errors)}")
        lines.append(
            f"shape errors on atypical hearts/moons: {pct(self.atypical_shape_errors)} "
            f"(typical ones: {pct(self.typical_prior_shape_errors)})"
        )
        lines.append(f"captions giving an atypical object its prior colour: {pct(self.caption_prior_colors)}")
        lines.append(
            f"yes/no colour questions on them answered as the prior suggests: {pct(self.yes_no_prior_answers)}"
        )
        return lines


def _batches(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def generate_answers(
    model: Any,
    processor: Any,
    images: Sequence[np.ndarray],
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 64,
) -> list[str]:
    """Greedy answers of ``model`` (a loaded Hugging Face LLaVA) to one prompt per image, left-padded batches."""
    import torch
    from PIL import Image

    processor.tokenizer.padding_side = "left"
    answers: list[str] = []
    pairs = list(zip(images, prompts, strict=True))
    for batch in _batches(pairs, batch_size):
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": p}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for _, p in batch
        ]
        enc = processor(
            text=texts, images=[Image.fromarray(img) for img, _ in batch], padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, enc["input_ids"].shape[1] :]
        answers += processor.tokenizer.batch_decode(new, skip_special_tokens=True)
    return [a.strip() for a in answers]


def evaluate(
    model_dir: str | Path,
    *,
    n_typical: int = 200,
    n_atypical: int = 300,
    seed: int = TEST_SEED,
    batch_size: int = 64,
    progress: bool = True,
) -> ToyEvaluation:
    """Measure a saved toy model (see the module docstring)."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    scenes = heldout_scenes(n_typical, n_atypical, seed)
    images = [render(s) for s in scenes]
    items = heldout_items(scenes, seed)
    answers: dict[int, str] = {}
    groups = [
        [k for k, (_, q) in enumerate(items) if q.kind != "describe"],
        [k for k, (_, q) in enumerate(items) if q.kind == "describe"],
    ]
    bar = tqdm(total=len(items), desc="toy eval", unit="question", disable=not progress)
    for indices, max_new in zip(groups, (4, 48), strict=True):
        for chunk in _batches(indices, batch_size * 4):
            texts = generate_answers(
                model,
                processor,
                [images[items[k][0]] for k in chunk],
                [items[k][1].text for k in chunk],
                max_new,
                batch_size,
            )
            answers.update(zip(chunk, texts, strict=True))
            bar.update(len(chunk))
    bar.close()
    return score(scenes, items, [answers[k] for k in range(len(items))], n_typical)


def score(
    scenes: Sequence[Scene], items: Sequence[tuple[int, Question]], answers: Sequence[str], n_typical: int
) -> ToyEvaluation:
    """Score ``answers`` (one per item) — a pure function, separate from the generation."""
    vqa = {g: {k: Rate() for k in (*ONE_WORD_KINDS, "all")} for g in ("typical", "atypical")}
    captions = {g: CaptionScores() for g in ("typical", "atypical")}
    prior, any_color, shape_atyp, shape_typ, cap_prior, yes_no_prior = (
        Rate(),
        Rate(),
        Rate(),
        Rate(),
        Rate(),
        Rate(),
    )
    examples: list[dict[str, str]] = []
    for (scene_idx, q), answer in zip(items, answers, strict=True):
        scene = scenes[scene_idx]
        group = "typical" if scene_idx < n_typical else "atypical"
        if q.kind == "describe":
            captions[group].add(scene, answer, q.answer)
            for prior_color in caption_prior_colors(scene, answer):
                cap_prior.add(prior_color)
            continue
        word = first_word(answer)[0]
        hit = word == q.answer
        vqa[group][q.kind].add(hit)
        vqa[group]["all"].add(hit)
        if q.prior_answer is not None:
            prior.add(word == q.prior_answer)
            any_color.add(not hit)
            if word == q.prior_answer and len(examples) < 20:
                examples.append({"question": q.text, "truth": q.answer, "answer": answer})
        if q.prior_yes_no is not None:
            yes_no_prior.add(word == q.prior_yes_no)
        if q.kind == "shape" and q.subject in PRIORS:
            (shape_atyp if q.atypical else shape_typ).add(not hit)
    return ToyEvaluation(
        n_typical=n_typical,
        n_atypical=len(scenes) - n_typical,
        vqa=vqa,
        captions=captions,
        prior_color_errors=prior,
        atypical_color_errors=any_color,
        atypical_shape_errors=shape_atyp,
        typical_prior_shape_errors=shape_typ,
        caption_prior_colors=cap_prior,
        yes_no_prior_answers=yes_no_prior,
        examples=examples,
    )


def save_evaluation(evaluation: ToyEvaluation, path: str | Path) -> Path:
    from evolens.files import atomic_write_text

    return atomic_write_text(path, json.dumps(evaluation.to_dict(), indent=2) + "\n")


__all__ = ["CaptionScores", "Rate", "ToyEvaluation", "evaluate", "heldout_items", "heldout_scenes", "score"]
