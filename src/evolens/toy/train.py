"""Training the toy LVLM from scratch on the toy world, on CPU, deterministically under a seed.

Two phases (see :class:`TrainConfig`):

1. **Vision warm-up.** Plain end-to-end training learns to ignore the image (the same caption for every image).
   So the CLIP tower is first trained alone with throwaway heads that classify each patch's object (colour and
   shape) and each slot's content. The heads are discarded: the shipped model stays a plain LLaVA.
2. **Instruction training.** Every example is one image with one to three question/answer turns (or one caption
   turn), fresh images every step, the loss on the answers (and their ``</s>``) only, bfloat16 autocast with
   float32 master weights, AdamW with warm-up and cosine decay.

Same seed, same thread count and same library versions give bit-identical weights; another thread count changes
them slightly (about 1e-5), so the project ships the trained weights rather than promising bit-exact retraining.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evolens.errors import SettingsError, check_positive_int
from evolens.files import atomic_directory, check_replaceable
from evolens.toy.model import ToyArchitecture, build_model, build_processor
from evolens.toy.world import (
    COLORS,
    DESCRIBE_PROMPT,
    IMAGE_SIZE,
    ONE_WORD_KINDS,
    PRIOR_STRENGTH,
    SHAPES,
    SLOTS,
    Scene,
    caption,
    questions,
    render_with_labels,
    sample_scene,
)

logger = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (all of them go into ``train.json`` and the model card).

    Attributes:
        seed: Seeds the initial weights and the data stream.
        steps: Instruction-training steps.
        warmup_vision_steps: Vision warm-up steps (0 skips it).
        batch_size: Images per step.
        lr: Peak learning rate (AdamW), reached after ``lr_warmup`` steps, cosine decay to ``lr * final_lr_ratio``.
        weight_decay, grad_clip: AdamW decay and gradient-norm clipping.
        caption_share: Share of examples that are a single caption turn (the others hold 1-3 questions).
        prior_strength: Share of training hearts/moons in their prior colour.
        bf16: bfloat16 autocast (float32 master weights); halves step time on CPUs with bf16 support.
        threads: Torch threads (part of what makes a run reproducible); 2, the cores of the machines it is
            made for.
        attn_implementation: Attention kernel while training (``"eager"`` is the fastest here at these sizes).
        question_weights: ``{kind: weight}`` of the question kinds in conversations (missing kinds weigh 1; the
            two existence questions, present and absent shape, share the ``"exists"`` weight each).
        snapshot_every: With ``train(snapshot_dir=...)``, save the model every this many steps (0: never).
        arch: The model's sizes.
    """

    seed: int = 0
    steps: int = 3600
    warmup_vision_steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    lr_warmup: int = 100
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    caption_share: float = 0.3
    prior_strength: float = PRIOR_STRENGTH
    bf16: bool = True
    threads: int = 2
    attn_implementation: str = "eager"
    snapshot_every: int = 0
    question_weights: dict[str, float] = field(default_factory=dict)
    arch: ToyArchitecture = field(default_factory=ToyArchitecture)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            check_positive_int(name, getattr(self, name))
        if self.warmup_vision_steps < 0:
            raise SettingsError(f"warmup_vision_steps must be >= 0, got {self.warmup_vision_steps}")
        if not self.lr > 0:
            raise SettingsError(f"lr must be positive, got {self.lr}")
        unknown = sorted(set(self.question_weights) - set(ONE_WORD_KINDS))
        if unknown or any(not w > 0 for w in self.question_weights.values()):
            raise SettingsError(
                f"question_weights takes positive weights of {list(ONE_WORD_KINDS)}, got {self.question_weights}"
            )
        if not 0.0 <= self.caption_share <= 1.0 or not 0.0 <= self.prior_strength <= 1.0:
            raise SettingsError("caption_share and prior_strength must lie in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        out_dir: The saved model directory.
        seconds: Wall time of the whole run.
        vision_loss: Mean warm-up loss over the last 50 warm-up steps (``None`` without warm-up).
        final_loss: Mean answer loss (nats per answer token) over the last 100 steps.
        losses: Mean answer loss of every block of 100 steps.
    """

    out_dir: Path
    seconds: float
    vision_loss: float | None
    final_loss: float
    losses: list[float]


# ---------------------------------------------------------------------------------------------- batches
class Vocab:
    """Word -> id of the toy tokenizer, for building training sequences without the tokenizer's overhead (a test
    checks they equal the tokenizer's encoding of the chat template)."""

    def __init__(self, tokenizer: Any) -> None:
        self.ids: dict[str, int] = dict(tokenizer.get_vocab())
        self.bos, self.eos, self.pad = self.ids["<s>"], self.ids["</s>"], self.ids["<pad>"]
        self.image, self.user, self.assistant = self.ids["<image>"], self.ids["USER:"], self.ids["ASSISTANT:"]

    def encode(self, text: str) -> list[int]:
        return [self.ids[w] for w in text.split()]


def conversation_ids(
    vocab: Vocab, turns: Sequence[tuple[str, str]], n_image_tokens: int
) -> tuple[list[int], list[int]]:
    """Token ids and labels of ``USER: <image> q1 ASSISTANT: a1</s> USER: q2 ASSISTANT: a2</s> ...``.

    The image sits in the first turn, expanded to ``n_image_tokens`` placeholders (as the processor does); labels
    are :data:`IGNORE` except on the answers and their ``</s>``.
    """
    ids = [vocab.bos]
    labels = [IGNORE]
    for index, (question, answer) in enumerate(turns):
        prompt = [vocab.user] + ([vocab.image] * n_image_tokens if index == 0 else [])
        prompt += [*vocab.encode(question), vocab.assistant]
        reply = [*vocab.encode(answer), vocab.eos]
        ids += prompt + reply
        labels += [IGNORE] * len(prompt) + reply
    return ids, labels


def pixel_values(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[B, 3, 64, 64]`` float32: what the CLIP processor makes of 64×64 images (rescale, normalise)."""
    scaled = np.stack(images).astype(np.float32) / np.float32(255.0)
    normed = (scaled - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(normed.transpose(0, 3, 1, 2), dtype=np.float32))


def sample_turns(
    scene: Scene, rng: np.random.Generator, caption_share: float, weights: dict[str, float] | None = None
) -> list[tuple[str, str]]:
    """A conversation about ``scene``: one caption turn, or 1-3 of its questions (no repeats), question kinds
    drawn in proportion to ``weights`` (default: evenly)."""
    if rng.random() < caption_share:
        return [(DESCRIBE_PROMPT, caption(scene))]
    asked = [q for q in questions(scene, rng) if q.kind != "describe"]
    n = int(rng.integers(1, 4))
    if weights:
        w = np.array([weights.get(q.kind, 1.0) for q in asked], dtype=np.float64)
        chosen = rng.choice(len(asked), size=n, replace=False, p=w / w.sum())
    else:
        chosen = rng.choice(len(asked), size=n, replace=False)
    return [(asked[i].text, asked[i].answer) for i in chosen]


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def text_batch(
    scenes: Sequence[Scene], rng: np.random.Generator, vocab: Vocab, config: TrainConfig
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for one conversation per scene."""
    ids, labels = [], []
    for scene in scenes:
        seq, lab = conversation_ids(
            vocab,
            sample_turns(scene, rng, config.caption_share, config.question_weights),
            config.arch.n_image_tokens,
        )
        ids.append(seq)
        labels.append(lab)
    input_ids = _pad(ids, vocab.pad)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != vocab.pad).long(),
        "labels": _pad(labels, IGNORE),
    }


def patch_targets(labels: np.ndarray, scene: Scene, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class of each patch (row-major; class 0 = no object): the object covering most of it,
    when it covers at least a sixteenth of the patch."""
    grid = IMAGE_SIZE // patch
    colors = np.zeros(grid * grid, dtype=np.int64)
    shapes = np.zeros(grid * grid, dtype=np.int64)
    for r in range(grid):
        for c in range(grid):
            cell = labels[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch]
            counts = np.bincount(cell[cell >= 0].ravel(), minlength=len(scene.objects))
            if counts.size and counts.max() * 16 >= patch * patch:
                obj = scene.objects[int(counts.argmax())]
                colors[r * grid + c] = 1 + COLORS.index(obj.color)
                shapes[r * grid + c] = 1 + SHAPES.index(obj.shape)
    return colors, shapes


def slot_targets(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class of each slot (class 0 = empty)."""
    colors = np.zeros(len(SLOTS), dtype=np.int64)
    shapes = np.zeros(len(SLOTS), dtype=np.int64)
    for obj in scene.objects:
        colors[SLOTS.index(obj.slot)] = 1 + COLORS.index(obj.color)
        shapes[SLOTS.index(obj.slot)] = 1 + SHAPES.index(obj.shape)
    return colors, shapes


class VisionHeads(nn.Module):
    """Throwaway warm-up heads on the tower's patch features: per patch and per slot, colour and shape."""

    def __init__(self, hidden: int, n_patches: int) -> None:
        super().__init__()
        self.patch_color = nn.Linear(hidden, len(COLORS) + 1)
        self.patch_shape = nn.Linear(hidden, len(SHAPES) + 1)
        self.slots = nn.Linear(hidden * n_patches, len(SLOTS) * (len(COLORS) + len(SHAPES) + 2))

    def loss(self, patches: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        ce = nn.functional.cross_entropy
        b = patches.shape[0]
        loss = ce(self.patch_color(patches).flatten(0, 1), targets["patch_color"].flatten())
        loss = loss + ce(self.patch_shape(patches).flatten(0, 1), targets["patch_shape"].flatten())
        slots = self.slots(patches.flatten(1)).view(b, len(SLOTS), -1)
        n_color = len(COLORS) + 1
        loss = loss + ce(slots[..., :n_color].flatten(0, 1), targets["slot_color"].flatten())
        return loss + ce(slots[..., n_color:].flatten(0, 1), targets["slot_shape"].flatten())


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.lr_warmup:
        return (step + 1) / config.lr_warmup
    progress = (step - config.lr_warmup) / max(1, config.steps - config.lr_warmup)
    return config.final_lr_ratio + (1 - config.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def snapshot_due(step: int, config: TrainConfig) -> bool:
    return config.snapshot_every > 0 and (step + 1) % config.snapshot_every == 0 and step + 1 < config.steps


def _scenes(rng: np.random.Generator, n: int, config: TrainConfig) -> list[Scene]:
    return [sample_scene(rng, prior_strength=config.prior_strength) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- training
def _warm_up_vision(
    model: Any, config: TrainConfig, rng: np.random.Generator, mean: Any, std: Any, progress: bool
) -> float | None:
    from tqdm.auto import tqdm

    if config.warmup_vision_steps == 0:
        return None
    tower = model.model.vision_tower
    n_patches = config.arch.n_image_tokens
    heads = VisionHeads(config.arch.vision_hidden, n_patches)
    params = [*tower.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    recent: list[float] = []
    bar = tqdm(range(config.warmup_vision_steps), desc="vision warm-up", disable=not progress, unit="step")
    for _ in bar:
        scenes = _scenes(rng, config.batch_size, config)
        rendered = [render_with_labels(s) for s in scenes]
        per_patch = [
            patch_targets(lab, s, config.arch.patch_size)
            for (_, lab), s in zip(rendered, scenes, strict=True)
        ]
        per_slot = [slot_targets(s) for s in scenes]
        targets = {
            "patch_color": torch.from_numpy(np.stack([p[0] for p in per_patch])),
            "patch_shape": torch.from_numpy(np.stack([p[1] for p in per_patch])),
            "slot_color": torch.from_numpy(np.stack([s[0] for s in per_slot])),
            "slot_shape": torch.from_numpy(np.stack([s[1] for s in per_slot])),
        }
        pixels = pixel_values([img for img, _ in rendered], mean, std)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            patches = tower(pixel_values=pixels).last_hidden_state[:, 1:]
            loss = heads.loss(patches.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        recent = [*recent[-49:], loss.item()]
        bar.set_postfix(loss=f"{np.mean(recent):.3f}")
    return float(np.mean(recent))


def _train_instructions(
    model: Any,
    config: TrainConfig,
    rng: np.random.Generator,
    vocab: Vocab,
    mean: Any,
    std: Any,
    progress: bool,
    snapshot: Any = None,
) -> list[float]:
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    block: list[float] = []
    blocks: list[float] = []
    bar = tqdm(range(config.steps), desc="training", disable=not progress, unit="step")
    model.train()
    for step in bar:
        scenes = _scenes(rng, config.batch_size, config)
        batch = text_batch(scenes, rng, vocab, config)
        batch["pixel_values"] = pixel_values([render_with_labels(s)[0] for s in scenes], mean, std)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        block.append(loss.item())
        if len(block) == 100 or step == config.steps - 1:
            blocks.append(float(np.mean(block)))
            block = []
        if snapshot is not None and snapshot_due(step, config):
            model.eval()
            snapshot(step + 1)
            model.train()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{block[-1] if block else blocks[-1]:.4f}")
    model.eval()
    return blocks


def versions() -> dict[str, str]:
    import transformers

    import evolens

    return {
        "evolens": evolens.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _phases(path: Path) -> list[dict[str, Any]]:
    # the training record of the model a run continues from, and of the ones before it
    data = json.loads(path.read_text(encoding="utf-8"))
    earlier = data.pop("previous_phases", [])
    return [*earlier, data]


def train(
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    overwrite: bool = False,
    snapshot_dir: str | Path | None = None,
    init_from: str | Path | None = None,
) -> TrainResult:
    """Train the toy LVLM and save it (model, tokenizer, processor, ``train.json``) to ``out_dir``.

    The directory is written whole or not at all (built beside it, then renamed into place). With
    ``snapshot_dir`` and ``config.snapshot_every``, intermediate models are saved as ``snapshot_dir/step-N`` (to
    evaluate a long run while it goes on). ``init_from`` continues from a saved toy model (its weights; a fresh
    optimizer and learning-rate schedule) instead of a fresh initialisation: how the shipped model's later phases
    were trained (:data:`SHIPPED_RECIPE`, its model card).

    Raises:
        StoreError: ``out_dir`` exists and ``overwrite`` is false.
    """
    config = config or TrainConfig()
    out_dir = Path(out_dir)
    check_replaceable(out_dir, overwrite=overwrite)  # before the training, not after it
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        processor = build_processor(config.arch)
        if init_from is None:
            model = build_model(processor.tokenizer, config.arch)
        else:
            from transformers import LlavaForConditionalGeneration

            model = LlavaForConditionalGeneration.from_pretrained(init_from, use_safetensors=True)
        model.set_attn_implementation(config.attn_implementation)
        mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
        vocab = Vocab(processor.tokenizer)
        vision_loss = _warm_up_vision(model, config, rng, mean, std, progress)

        def snapshot(step: int) -> None:
            assert snapshot_dir is not None
            with atomic_directory(Path(snapshot_dir) / f"step-{step}", overwrite=True) as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                processor.save_pretrained(tmp)

        losses = _train_instructions(
            model, config, rng, vocab, mean, std, progress, snapshot if snapshot_dir is not None else None
        )
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    previous = Path(init_from) / "train.json" if init_from is not None else None
    record = {
        "config": config.to_dict(),
        "init_from": Path(init_from).name if init_from is not None else None,  # a name: no local path shipped
        "previous_phases": _phases(previous) if previous is not None and previous.is_file() else [],
        "seconds": round(seconds, 1),
        "vision_loss": vision_loss,
        "final_loss": losses[-1],
        "losses_per_100_steps": losses,
        "versions": versions(),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": config.threads},
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / "train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("toy model written to %s in %.0f s", out_dir, seconds)
    return TrainResult(out_dir, seconds, vision_loss, losses[-1], losses)


#: The recipe of the shipped model: four phases, each continuing from the one before (``evolens toy train``
#: without options runs it; about 23 min on 2 cores). The later phases lower the learning rate and ask more of the
#: questions the model found hardest: a named shape's colour and whether a shape is there, then, last, whether a
#: shape has a colour ("is the heart red ?").
SHIPPED_RECIPE: tuple[TrainConfig, ...] = (
    TrainConfig(seed=0, steps=3000, batch_size=48, warmup_vision_steps=300),
    TrainConfig(seed=1, steps=2400, batch_size=48, warmup_vision_steps=0, lr=1e-3, lr_warmup=50),
    TrainConfig(
        seed=2,
        steps=2000,
        batch_size=48,
        warmup_vision_steps=0,
        lr=7e-4,
        lr_warmup=50,
        question_weights={"color": 3.0, "exists": 2.5},
    ),
    TrainConfig(
        seed=3,
        steps=1200,
        batch_size=48,
        warmup_vision_steps=0,
        lr=5e-4,
        lr_warmup=50,
        question_weights={"attribute": 3.0, "color": 2.0, "exists": 2.0},
    ),
)


def train_recipe(
    out_dir: str | Path,
    phases: Sequence[TrainConfig] = SHIPPED_RECIPE,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``phases`` one after the other, each from the previous one's weights, and save the last to
    ``out_dir`` (its ``train.json`` records every phase). Intermediate phases are kept in ``out_dir.phases/``
    until the end, so a run that was stopped can be looked at; the final directory is written atomically."""
    import shutil

    out_dir = Path(out_dir)
    if not phases:
        raise SettingsError("a recipe needs at least one phase")
    check_replaceable(out_dir, overwrite=overwrite)
    work = out_dir.with_name(out_dir.name + ".phases")
    previous: Path | None = None
    start = time.perf_counter()
    result: TrainResult | None = None
    for number, config in enumerate(phases, 1):
        last = number == len(phases)
        target = out_dir if last else work / f"phase-{number}"
        logger.info("phase %d of %d", number, len(phases))
        result = train(target, config, progress=progress, overwrite=True, init_from=previous)
        previous = target
    shutil.rmtree(work, ignore_errors=True)
    assert result is not None
    return TrainResult(
        result.out_dir, time.perf_counter() - start, result.vision_loss, result.final_loss, result.losses
    )
