from tests.experiments.conftest import _seed, make_image, tiny_models

__all__ = ["_seed", "make_image", "tiny_models"]
