"""Lens: hidden state -> vocabulary distribution (the :class:`Lens` interface and the logit lens)."""

from evolens.lens.base import Lens
from evolens.lens.logit_lens import LENS_MODES, LensMode, LogitLens, check_lens_mode, lens_dtype_of

__all__ = ["LENS_MODES", "Lens", "LensMode", "LogitLens", "check_lens_mode", "lens_dtype_of"]
