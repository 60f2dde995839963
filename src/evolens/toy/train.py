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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evolens._version import software_versions
from evolens.errors import SettingsError
from evolens.files import atomic_directory, check_replaceable
from evolens.toy.batches import Vocab, patch_targets, pixel_values, slot_targets, text_batch
from evolens.toy.config import SHIPPED_RECIPE, TrainConfig, TrainResult
from evolens.toy.model import build_model, build_processor
from evolens.toy.world import COLORS, SHAPES, SLOTS, Scene, render_with_labels, sample_scene

logger = logging.getLogger(__name__)


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
        "versions": software_versions(),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": config.threads},
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        (tmp / "train.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("toy model written to %s in %.0f s", out_dir, seconds)
    return TrainResult(out_dir, seconds, vision_loss, losses[-1], losses)


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
