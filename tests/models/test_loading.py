"""Loading checkpoints, and every bad input getting a specific error with a clear message."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import evolens
from evolens.errors import (
    ImageDecodeError,
    ImageNotFoundError,
    ModelLoadError,
    ModelNotFoundError,
    NotAModelError,
    PromptError,
    SettingsError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from evolens.models import load_image


def test_missing_directory(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="not found"):
        evolens.load(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="not found"):
        evolens.load("./relative/nope")


def test_directory_that_is_not_a_model(tmp_path) -> None:
    with pytest.raises(NotAModelError, match=r"no config\.json"):
        evolens.load(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(NotAModelError, match="is a file"):
        evolens.load(tmp_path / "weights.safetensors")


def test_config_without_weights(tiny_llava_dir, tmp_path) -> None:
    shutil.copy(tiny_llava_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(NotAModelError, match="no weight files"):
        evolens.load(tmp_path)


def _pickle_copy(src, dst):
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    (dst / "model.safetensors").unlink()
    torch.save(state, dst / "pytorch_model.bin")
    return dst


def test_pickle_only_checkpoint_is_refused_unless_allowed(tiny_llava_dir, tmp_path) -> None:
    path = _pickle_copy(tiny_llava_dir, tmp_path / "pickled")
    with pytest.raises(UnsafeCheckpointError, match="allow_pickle=True"):
        evolens.load(path)
    lvlm = evolens.load(path, allow_pickle=True, device="cpu")
    assert lvlm.n_layers == 4


def test_unsupported_model_type_lists_supported_families(tmp_path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    ).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"'bert' is not supported.*llava"):
        evolens.load(tmp_path)


def test_unknown_family_name(tiny_llava_dir) -> None:
    with pytest.raises(UnsupportedModelError, match="unknown family 'nope'"):
        evolens.load(tiny_llava_dir, family="nope")


def test_unreachable_hub_id(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="hub"):
        evolens.load("someone/no-such-model-xyz", local_files_only=True)


def test_bad_dtype_and_device(tiny_llava_dir) -> None:
    with pytest.raises(SettingsError, match="unknown dtype"):
        evolens.load(tiny_llava_dir, dtype="float8")
    with pytest.raises(SettingsError, match="device"):
        evolens.load(tiny_llava_dir, device="tpu:9")


def test_dtype_is_applied(tiny_llava_dir) -> None:
    lvlm = evolens.load(tiny_llava_dir, device="cpu", dtype="bfloat16")
    assert lvlm.loaded.dtype == torch.bfloat16
    assert lvlm.check_lens() < 5e-2


# ----------------------------------------------------------------------------------------------- images
def test_missing_image(tmp_path, tiny_llava) -> None:
    with pytest.raises(ImageNotFoundError, match="not found"):
        tiny_llava.trace(tmp_path / "missing.jpg", "describe this image")
    with pytest.raises(ImageNotFoundError, match="not a file"):
        load_image(tmp_path)


def test_text_file_named_jpg(tmp_path, tiny_llava) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    with pytest.raises(ImageDecodeError, match="not an image file"):
        tiny_llava.trace(path, "describe this image")


def test_corrupt_image(tmp_path, image) -> None:
    path = tmp_path / "broken.png"
    image.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_image(path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(empty)


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 9000)])
def test_huge_images_get_one_line_before_decoding(tmp_path, size) -> None:
    import warnings

    from PIL import Image

    path = tmp_path / "huge.png"
    Image.new("L", size).save(path)  # a few hundred kB of zeros, ~10^8 pixels decoded
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning besides the error
        with pytest.raises(ImageDecodeError, match="pixels: resize it") as info:
            load_image(path)
    assert "\n" not in str(info.value)


def test_an_image_without_pixels_is_refused(tiny_llava) -> None:
    from PIL import Image

    with pytest.raises(ImageDecodeError, match=r"no pixels \(0x0\)"):
        tiny_llava.trace(Image.new("RGB", (0, 0)), "describe this image")


def test_an_image_whose_name_is_not_utf8_is_traced_and_saved(tmp_path, tiny_llava, image) -> None:
    path = tmp_path / os.fsdecode(b"caf\xff.png")
    image.save(path, format="PNG")
    trace = tiny_llava.trace(path, "describe this image", max_new_tokens=2)
    assert trace.image is not None and trace.image.source.endswith("caf\\xff.png")
    trace.save(tmp_path / "trace")  # the manifest records the name with the byte escaped
    assert evolens.Trace.load(tmp_path / "trace").image.source == trace.image.source


def test_image_of_wrong_type(tiny_llava) -> None:
    with pytest.raises(TypeError, match="PIL"):
        load_image(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- prompts
@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt(tiny_llava, image, prompt) -> None:
    with pytest.raises(PromptError, match="empty"):
        tiny_llava.trace(image, prompt)


@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_max_new_tokens(tiny_llava, image, n) -> None:
    with pytest.raises(SettingsError, match="max_new_tokens"):
        tiny_llava.trace(image, "describe this image", max_new_tokens=n)


def test_batch_arguments_must_pair_up(tiny_llava, image) -> None:
    with pytest.raises(PromptError, match="pair up"):
        tiny_llava.trace(images=[image, image], prompts=["a", "b", "c"])
    with pytest.raises(PromptError, match="not both"):
        tiny_llava.trace(image, "a", prompts=["b"])
    with pytest.raises(PromptError, match="empty"):
        tiny_llava.trace(images=[], prompts=[])
    with pytest.raises(PromptError, match="give a prompt"):
        tiny_llava.trace(image)


def test_unknown_option(tiny_llava, image) -> None:
    with pytest.raises(SettingsError, match="unknown trace option"):
        tiny_llava.trace(image, "describe this image", max_tokens=3)  # type: ignore[call-arg]


def test_text_model_refuses_an_image(tiny_llama, image) -> None:
    with pytest.raises(PromptError, match="text-only model"):
        tiny_llama.trace(image, "describe this image")


# ------------------------------------------------------------------------------------- remote code
_REMOTE_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"
_AUTO_MAP = {
    "AutoConfig": "custom_code.CustomConfig",
    "AutoModelForImageTextToText": "custom_code.CustomModel",
    "AutoProcessor": "custom_code.CustomProcessor",
}


def test_code_shipped_with_a_checkpoint_never_runs_by_default(tiny_llava_dir, tmp_path) -> None:
    import json

    marker = tmp_path / "remote-code-ran"
    # A known model type with an auto_map: evolens loads transformers' own classes and ignores the code.
    known = tmp_path / "known"
    shutil.copytree(tiny_llava_dir, known)
    config = json.loads((known / "config.json").read_text())
    (known / "config.json").write_text(json.dumps({**config, "auto_map": _AUTO_MAP}))
    (known / "custom_code.py").write_text(_REMOTE_CODE.format(marker=str(marker)))
    lvlm = evolens.load(known, device="cpu")
    assert lvlm.family == "llava" and type(lvlm.model).__module__.startswith("transformers.")
    # A model type only the shipped code knows: refused, with the way out named, and the code never imported.
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(json.dumps({"model_type": "custom_lvlm", "auto_map": _AUTO_MAP}))
    (custom / "custom_code.py").write_text(_REMOTE_CODE.format(marker=str(marker)))
    with pytest.raises(ModelLoadError, match=r"trust_remote_code=True") as info:
        evolens.load(custom, device="cpu")
    assert ".." not in str(info.value)
    assert not marker.exists()


def test_broken_code_shipped_with_a_checkpoint_gets_one_line(tmp_path) -> None:
    import json

    custom = tmp_path / "broken"
    custom.mkdir()
    (custom / "config.json").write_text(json.dumps({"model_type": "broken_lvlm", "auto_map": _AUTO_MAP}))
    (custom / "custom_code.py").write_text("def broken(:\n")
    with pytest.raises(ModelLoadError, match=r"code shipped with .* failed \(trust_remote_code\)") as info:
        evolens.load(custom, device="cpu", trust_remote_code=True)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "is truncated"),
        (lambda data: data[:5], "not a safetensors file"),
        (lambda data: data[:200], "header alone takes"),
        (lambda data: (64).to_bytes(8, "little") + b"{not json" + data[17:], "header cannot be read"),
    ],
)
def test_a_damaged_weight_file_is_named(tiny_llava_dir, tmp_path, damage, message) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llava_dir, broken)
    weights = next(broken.glob("*.safetensors"))
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelLoadError, match=message) as info:
        evolens.load(broken, device="cpu")
    assert str(weights) in str(info.value)
