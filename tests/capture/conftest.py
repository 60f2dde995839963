from tests.experiments.conftest import _seed, make_image, one_thread, tiny_models

__all__ = ["_seed", "make_image", "one_thread", "tiny_models"]
