"""The lens's fast mode through the API, storage, runs and the CLI: recorded, close to the exact lens, refused when
unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evolens
from evolens.errors import SettingsError
from evolens.lens.logit_lens import lens_dtype_of
from tests.run_options import run_options


def test_fast_lens_is_close_to_exact_and_recorded(tiny_llava, image, tmp_path: Path) -> None:
    exact = tiny_llava.trace(image=image, prompt="describe this image", max_new_tokens=6)
    fast = tiny_llava.trace(
        image=image, prompt="describe this image", max_new_tokens=6, lens_dtype="bfloat16"
    )
    assert torch.equal(exact.generated_ids, fast.generated_ids)  # generation is untouched
    assert exact.metrics.lens_dtype is None and fast.metrics.lens_dtype == "bfloat16"
    torch.testing.assert_close(fast.metrics.target_logprobs, exact.metrics.target_logprobs, atol=0.1, rtol=0)
    torch.testing.assert_close(fast.jsd(), exact.jsd(), atol=0.02, rtol=0)
    assert not torch.equal(fast.metrics.target_logprobs, exact.metrics.target_logprobs)  # it did run in bf16
    fast.save(tmp_path / "fast")
    assert json.loads((tmp_path / "fast" / "manifest.json").read_text())["lens_dtype"] == "bfloat16"
    loaded = evolens.Trace.load(tmp_path / "fast")
    assert loaded.metrics.lens_dtype == "bfloat16"
    assert tiny_llava.attach(loaded).lens.matmul_dtype == torch.bfloat16


@pytest.mark.parametrize("bad", ["int8", "float64", 3, torch.int32])
def test_unknown_lens_dtypes_are_refused(bad: object) -> None:
    with pytest.raises(SettingsError, match="lens dtype"):
        lens_dtype_of(bad)  # type: ignore[arg-type]


def test_exact_spellings() -> None:
    assert lens_dtype_of(None) is lens_dtype_of("exact") is lens_dtype_of("none") is None
    assert lens_dtype_of("torch.bfloat16") is lens_dtype_of(torch.bfloat16) is torch.bfloat16


def test_a_run_records_the_fast_lens(tiny_llava_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from evolens.data import ImageFolder

    (tmp_path / "images").mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(tmp_path / "images" / f"{i}.png")
    data = ImageFolder(tmp_path / "images", prompt="describe this image")
    evolens.run(
        tiny_llava_dir,
        data,
        tmp_path / "run",
        **run_options(max_new_tokens=3, lens_dtype="bfloat16", progress=False),
    )
    run_json = next((tmp_path / "run").glob("run*.json"))
    assert json.loads(run_json.read_text())["config"]["trace"]["lens_dtype"] == "bfloat16"
    with pytest.raises(SettingsError, match="lens dtype"):
        evolens.run(
            tiny_llava_dir, data, tmp_path / "other", **run_options(lens_dtype="int8", progress=False)
        )
