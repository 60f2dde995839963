"""Training: sequences equal the processor's encoding, a tiny run works and is deterministic, bad settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import evolens
from evolens.errors import SettingsError, StoreError
from evolens.toy import world
from evolens.toy.batches import IGNORE, Vocab, conversation_ids, pixel_values
from evolens.toy.config import TrainConfig
from evolens.toy.model import ToyArchitecture, build_processor
from evolens.toy.train import train

TINY = ToyArchitecture(
    vision_hidden=32, vision_intermediate=64, vision_layers=1, vision_heads=2,
    text_hidden=32, text_intermediate=64, text_layers=2, text_heads=2,
)  # fmt: skip


def tiny_config(**kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "steps": 3,
        "warmup_vision_steps": 2,
        "batch_size": 4,
        "lr_warmup": 1,
        "arch": TINY,
    }
    return TrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_training_sequences_equal_the_processor_encoding() -> None:
    processor = build_processor()
    vocab = Vocab(processor.tokenizer)
    turns = [("what color is the heart ?", "red"), ("how many shapes are there ?", "two")]
    ids, labels = conversation_ids(vocab, turns, ToyArchitecture().n_image_tokens)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": turns[0][0]}]},
        {"role": "assistant", "content": [{"type": "text", "text": turns[0][1]}]},
        {"role": "user", "content": [{"type": "text", "text": turns[1][0]}]},
        {"role": "assistant", "content": [{"type": "text", "text": turns[1][1]}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    image = Image.fromarray(world.render(world.sample_scene(np.random.default_rng(0))))
    encoded = processor(text=text, images=image, return_tensors="pt")["input_ids"][0].tolist()
    assert ids == encoded
    answers = [
        processor.tokenizer.convert_ids_to_tokens(i)
        for i, lab in zip(ids, labels, strict=True)
        if lab != IGNORE
    ]
    assert answers == ["red", "</s>", "two", "</s>"]


def test_pixels_equal_the_processor() -> None:
    processor = build_processor()
    rng = np.random.default_rng(1)
    images = [world.render(world.sample_scene(rng)) for _ in range(3)]
    ours = pixel_values(images, processor.image_processor.image_mean, processor.image_processor.image_std)
    theirs = processor.image_processor([Image.fromarray(i) for i in images], return_tensors="pt")[
        "pixel_values"
    ]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_a_tiny_training_run_saves_a_loadable_deterministic_model(tmp_path: Path) -> None:
    a = train(tmp_path / "a", tiny_config(), progress=False)
    b = train(tmp_path / "b", tiny_config(), progress=False)
    c = train(tmp_path / "c", tiny_config(seed=1), progress=False)
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a.out_dir, b.out_dir, c.out_dir))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
    assert np.isfinite(a.final_loss) and a.vision_loss is not None
    assert (a.out_dir / "train.json").is_file()
    lvlm = evolens.load(a.out_dir, device="cpu")  # loads as any llava checkpoint, lens verified
    assert lvlm.family == "llava" and lvlm.n_layers == 2
    image = Image.fromarray(world.render(world.sample_scene(np.random.default_rng(2))))
    trace = lvlm.trace(image=image, prompt="What color is the heart?", max_new_tokens=3)
    assert trace.token_probs().shape[0] == 3


def test_continuing_from_a_saved_model_records_both_phases(tmp_path: Path) -> None:
    import json

    first = train(tmp_path / "one", tiny_config(), progress=False).out_dir
    second = train(
        tmp_path / "two", tiny_config(warmup_vision_steps=0), progress=False, init_from=first
    ).out_dir
    record = json.loads((second / "train.json").read_text())
    assert record["init_from"] == first.name and len(record["previous_phases"]) == 1
    assert record["previous_phases"][0]["config"]["warmup_vision_steps"] == 2


def test_existing_output_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(StoreError, match="already exists"):
        train(tmp_path / "taken", tiny_config(steps=10_000), progress=False)


@pytest.mark.parametrize(
    "bad",
    [{"steps": 0}, {"batch_size": -1}, {"lr": 0.0}, {"caption_share": 1.5}, {"warmup_vision_steps": -1}],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(SettingsError):
        tiny_config(**bad)


def test_a_recipe_trains_its_phases_in_turn(tmp_path: Path) -> None:
    import json

    from evolens.toy.train import SHIPPED_RECIPE, train_recipe

    out = tmp_path / "recipe"
    result = train_recipe(out, [tiny_config(), tiny_config(seed=1, warmup_vision_steps=0)], progress=False)
    record = json.loads((out / "train.json").read_text())
    assert result.out_dir == out and record["config"]["seed"] == 1 and len(record["previous_phases"]) == 1
    assert not (tmp_path / "recipe.phases").exists()
    assert len(SHIPPED_RECIPE) == 4 and SHIPPED_RECIPE[0].warmup_vision_steps > 0
    with pytest.raises(SettingsError):
        train_recipe(tmp_path / "none", [], progress=False)
