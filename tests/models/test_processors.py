"""Image-only processors: the video sub-processor left out, everything else as the original processor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from evolens.models.processors import (
    MissingVideoProcessor,
    image_only_processor_class,
    load_processor,
    processor_class_for,
)
from evolens.testing import build_tiny


def test_a_processor_without_video_is_kept_as_is() -> None:
    from transformers import LlavaProcessor

    assert image_only_processor_class(LlavaProcessor) is LlavaProcessor


def test_image_only_class_drops_the_video_processor_wherever_it_sits() -> None:
    from transformers import LlavaNextVideoProcessor, Qwen2VLProcessor

    for original in (Qwen2VLProcessor, LlavaNextVideoProcessor):  # video last / video first in __init__
        image_only = image_only_processor_class(original)
        assert issubclass(image_only, original) and image_only.__name__ == original.__name__
        assert "video_processor" not in image_only.get_attributes()
        assert set(image_only.get_attributes()) == set(original.get_attributes()) - {"video_processor"}


def test_saved_image_only_processor_reloads_and_processes_images_alike(tmp_path: Path) -> None:
    model, processor = build_tiny("qwen2_vl")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2VLProcessor"

    from transformers import Qwen2VLProcessor

    assert processor_class_for(tmp_path, model.config) is Qwen2VLProcessor
    loaded = load_processor(tmp_path, model.config)
    assert isinstance(loaded, Qwen2VLProcessor)
    text = ["<|vision_start|><|image_pad|><|vision_end|>describe the image"]
    image = [[Image.new("RGB", (40, 30), (1, 2, 3))]]
    before = processor(text=text, images=image, return_tensors="pt")
    after = loaded(text=text, images=image, return_tensors="pt")
    assert set(before) == set(after)
    for key in before:
        assert before[key].tolist() == after[key].tolist(), key


def test_the_missing_video_processor_reads_none_and_refuses_videos() -> None:
    missing = MissingVideoProcessor()
    assert missing.num_frames is None and missing.fps is None
    with pytest.raises(NotImplementedError, match="without its video processor"):
        missing([])
