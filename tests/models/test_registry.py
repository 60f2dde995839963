"""The family registry: user families, duplicates, unknown model types, and roles checked at load time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import evolens
from evolens.errors import AdapterError, UnsupportedModelError
from evolens.models import Family, family_for_model_type, get_family, register_family, unregister_family
from evolens.testing import save_tiny


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llava", tmp_path_factory.mktemp("llava"))


@pytest.fixture
def user_family() -> Iterator[Family]:
    """A copy of the llava family under another name and model type, removed after the test."""
    family = dataclasses.replace(
        get_family("llava"),
        name="user_llava",
        model_types=("evolens_user_llava",),
        description="a user family",
    )
    register_family(family)
    yield family
    unregister_family("user_llava")


def _register_user_model_type() -> str:
    """Teach transformers a model type that is LLaVA under another name (idempotent: the registry is global)."""
    from transformers import (
        AutoConfig,
        AutoModelForImageTextToText,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    model_type = "evolens_user_llava"
    try:
        AutoConfig.for_model(model_type)
        return model_type
    except ValueError:
        pass

    class UserLlavaConfig(LlavaConfig):
        pass

    UserLlavaConfig.model_type = model_type

    class UserLlavaForConditionalGeneration(LlavaForConditionalGeneration):
        config_class = UserLlavaConfig

    AutoConfig.register(model_type, UserLlavaConfig)
    AutoModelForImageTextToText.register(UserLlavaConfig, UserLlavaForConditionalGeneration)
    return model_type


def test_user_family_is_chosen_by_its_model_type(user_family: Family, tmp_path: Path) -> None:
    from transformers import AutoConfig

    model_type = _register_user_model_type()
    model, processor = evolens.testing.build_tiny("llava")
    settings = {k: v for k, v in model.config.to_diff_dict().items() if k != "model_type"}
    config = AutoConfig.for_model(model_type, **settings)
    user_model = type(model)(config)  # the same weights under the user's model type
    user_model.load_state_dict(model.state_dict())
    user_model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    lvlm = evolens.load(tmp_path, device="cpu")
    assert lvlm.model.config.model_type == model_type
    assert lvlm.family == "user_llava"
    trace = lvlm.trace(Image.new("RGB", (40, 30), (200, 10, 10)), "describe the image", max_new_tokens=3)
    assert trace.model.family == "user_llava"
    assert trace.image_token_positions.numel() == 16


def test_forcing_a_registered_family_by_name(user_family: Family, llava_dir: Path) -> None:
    lvlm = evolens.load(llava_dir, device="cpu", family="user_llava")
    assert lvlm.family == "user_llava"
    reference = evolens.load(llava_dir, device="cpu")
    image = Image.new("RGB", (40, 30), (10, 200, 10))
    forced = lvlm.trace(image, "describe the image", max_new_tokens=3)
    chosen = reference.trace(image, "describe the image", max_new_tokens=3)
    assert forced.generated_ids.tolist() == chosen.generated_ids.tolist()
    assert forced.hidden_states is not None and chosen.hidden_states is not None
    assert torch.equal(forced.hidden_states, chosen.hidden_states)


def test_duplicate_names_and_model_types_are_refused(user_family: Family) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_family(dataclasses.replace(user_family, model_types=("something_else",)))
    with pytest.raises(ValueError, match=r"already belong to family \['llava'\]"):
        register_family(Family(name="another_llava", model_types=("llava",)))
    assert family_for_model_type("llava").name == "llava"
    assert family_for_model_type("evolens_user_llava").name == "user_llava"


def test_replace_overrides_and_unregister_restores(user_family: Family) -> None:
    changed = dataclasses.replace(user_family, description="changed")
    register_family(changed, replace=True)
    assert get_family("user_llava").description == "changed"
    assert family_for_model_type("evolens_user_llava").description == "changed"


def test_a_family_needs_a_name_and_a_model_type() -> None:
    with pytest.raises(ValueError, match="name and at least one model_type"):
        register_family(Family(name="", model_types=("x",)))
    with pytest.raises(ValueError, match="name and at least one model_type"):
        register_family(Family(name="x", model_types=()))


def test_unknown_model_type_lists_the_supported_families() -> None:
    with pytest.raises(UnsupportedModelError) as caught:
        family_for_model_type("no_such_model")
    message = str(caught.value)
    assert "'no_such_model' is not supported" in message
    for name in ("llava", "qwen2_vl", "gemma3", "idefics3", "paligemma", "llama", "qwen2"):
        assert f"{name} (" in message
    assert "register_family" in message


def test_loading_an_unsupported_checkpoint_raises_before_reading_weights(tmp_path: Path) -> None:
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    with pytest.raises(UnsupportedModelError, match=r"'bert' is not supported.*llava"):
        evolens.load(tmp_path, device="cpu")


def test_unknown_family_name_lists_the_families(llava_dir: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"unknown family 'nope'; supported families: .*llava"):
        evolens.load(llava_dir, device="cpu", family="nope")


def test_wrong_roles_are_refused_at_load_time(llava_dir: Path) -> None:
    wrong_path = dataclasses.replace(get_family("llava"), decoder_path="model.no_such_decoder")
    with pytest.raises(AdapterError, match="cannot find the text decoder"):
        evolens.models.load_model(llava_dir, device="cpu", family=wrong_path)
    wrong_layers = dataclasses.replace(get_family("llava"), layers_attr="embed_tokens")
    with pytest.raises(AdapterError, match=r"is not a non-empty nn\.ModuleList"):
        evolens.models.load_model(llava_dir, device="cpu", family=wrong_layers)
    wrong_transform = dataclasses.replace(get_family("llava"), logit_config_attrs=("temperature",))
    with pytest.raises(AdapterError, match="unknown logit_config_attrs"):
        evolens.models.load_model(llava_dir, device="cpu", family=wrong_transform)


def test_a_lens_that_does_not_reproduce_the_logits_is_refused(tmp_path: Path) -> None:
    # Gemma 3's wrapper does not soft-cap its logits; a family that claims it does fails the load-time check.
    path = save_tiny("gemma3", tmp_path)
    claims_softcap = dataclasses.replace(
        get_family("gemma3"),
        name="gemma3_claims_softcap",
        model_types=("evolens_unused_model_type",),
        logit_config_attrs=("final_logit_softcapping",),
    )
    register_family(claims_softcap)
    try:
        with pytest.raises(AdapterError, match="does not reproduce"):
            evolens.load(path, device="cpu", family="gemma3_claims_softcap")
        assert evolens.load(path, device="cpu", family="gemma3_claims_softcap", verify=False).n_layers == 4
    finally:
        unregister_family("gemma3_claims_softcap")


def test_every_builtin_model_type_is_known_to_transformers() -> None:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    for name, model_types in evolens.supported_families().items():
        for model_type in model_types:
            assert model_type in CONFIG_MAPPING_NAMES, f"family {name}: unknown model type {model_type}"
