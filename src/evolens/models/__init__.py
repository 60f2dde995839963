"""Models: load a checkpoint and resolve, per family, the roles the rest of evolens reads."""

from evolens.models import families as _families  # noqa: F401  (registers the built-in families)
from evolens.models.inputs import ImageInfo, load_image, render_prompt
from evolens.models.loading import LoadedModel, load_model
from evolens.models.registry import (
    Family,
    family_for_model_type,
    get_family,
    register_family,
    supported_families,
    unregister_family,
)
from evolens.models.roles import LogitTransform, ModelRoles, resolve_roles

__all__ = [
    "Family",
    "ImageInfo",
    "LoadedModel",
    "LogitTransform",
    "ModelRoles",
    "family_for_model_type",
    "get_family",
    "load_image",
    "load_model",
    "register_family",
    "render_prompt",
    "resolve_roles",
    "supported_families",
    "unregister_family",
]
