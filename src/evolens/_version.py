"""The package version, in a leaf module so that any stage can record it without importing the package root."""

__version__ = "0.1.0"


def software_versions() -> dict[str, str]:
    """Versions of evolens, transformers, torch and Python, as manifests and model cards record them."""
    import platform

    import torch
    import transformers

    return {
        "evolens": __version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
