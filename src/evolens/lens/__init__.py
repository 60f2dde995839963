"""Lens: hidden state -> vocabulary distribution (the logit lens; room for a tuned lens)."""

from evolens.lens.logit_lens import LENS_MODES, LensMode, LogitLens, check_lens_mode

__all__ = ["LENS_MODES", "LensMode", "LogitLens", "check_lens_mode"]
