"""Settings and results of training the toy LVLM (:func:`~evolens.toy.train`), and the shipped model's recipe."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from evolens.errors import SettingsError, check_positive_int
from evolens.toy.model import ToyArchitecture
from evolens.toy.world import ONE_WORD_KINDS, PRIOR_STRENGTH


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


#: The recipe of the shipped model: four phases, each continuing from the one before (``evolens toy train``
#: without options runs it; about 23 min on 2 cores). The later phases lower the learning rate and ask more of the
#: questions the model found hardest: a named shape's colour and whether a shape is there, then, last, whether a
#: shape has a colour ("is the heart red ?").
_CONTINUED = TrainConfig(seed=1, steps=2400, batch_size=48, warmup_vision_steps=0, lr=1e-3, lr_warmup=50)
SHIPPED_RECIPE: tuple[TrainConfig, ...] = (
    TrainConfig(seed=0, steps=3000, batch_size=48, warmup_vision_steps=300),
    _CONTINUED,
    replace(_CONTINUED, seed=2, steps=2000, lr=7e-4, question_weights={"color": 3.0, "exists": 2.5}),
    replace(
        _CONTINUED,
        seed=3,
        steps=1200,
        lr=5e-4,
        question_weights={"attribute": 3.0, "color": 2.0, "exists": 2.0},
    ),
)
