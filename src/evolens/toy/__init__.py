"""The built-in toy LVLM: a synthetic world with known truth, a small LLaVA trained on it, and its evaluation.

import evolens
from evolens import toy

lvlm = evolens.load(toy.model_dir())          # the shipped, trained model (a plain llava checkpoint)
toy.export_testset("toy_test", n_typical=50, n_atypical=50)   # AMBER-format + one-word VQA held-out set
toy.evaluate(toy.model_dir())                 # the accuracies written in its model card
toy.train_recipe("my_toy")                    # retrain the shipped model (CPU, ~23 min on 2 cores)
"""

from __future__ import annotations

from pathlib import Path

from evolens.data.toy_testset import ToyTestSet
from evolens.errors import ModelLoadError
from evolens.toy.config import SHIPPED_RECIPE, TrainConfig, TrainResult
from evolens.toy.evaluate import ToyEvaluation, evaluate, heldout_scenes
from evolens.toy.testset import export_testset
from evolens.toy.train import train, train_recipe
from evolens.toy.world import Scene, caption, questions, render, sample_scene

WEIGHTS_DIR = Path(__file__).with_name("weights")


def model_dir() -> Path:
    """The directory of the shipped, trained toy model (``config.json``, ``model.safetensors``, processor,
    ``README.md`` model card)."""
    if not (WEIGHTS_DIR / "model.safetensors").is_file():
        raise ModelLoadError(
            f"the toy model's weights are missing from {WEIGHTS_DIR}; reinstall evolens, or train one with "
            "`evolens toy train -o DIR`"
        )
    return WEIGHTS_DIR


__all__ = [
    "SHIPPED_RECIPE",
    "Scene",
    "ToyEvaluation",
    "ToyTestSet",
    "TrainConfig",
    "TrainResult",
    "caption",
    "evaluate",
    "export_testset",
    "heldout_scenes",
    "model_dir",
    "questions",
    "render",
    "sample_scene",
    "train",
    "train_recipe",
]
