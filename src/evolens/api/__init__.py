"""The Python API: :func:`load` a model (:class:`LoadOptions`), then :meth:`LVLM.trace` generations through every
layer (:class:`TraceOptions`). :mod:`.lvlm` holds the model wrapper, :mod:`.batch` one traced generate call,
:mod:`.options` the options, :mod:`.decoding` the interface of decoding strategies."""

from evolens.api.batch import analyse_during_generation, token_pieces
from evolens.api.decoding import Decoding
from evolens.api.lvlm import LVLM, LoadOptions, load
from evolens.api.options import TraceOptions

__all__ = [
    "LVLM",
    "Decoding",
    "LoadOptions",
    "TraceOptions",
    "analyse_during_generation",
    "load",
    "token_pieces",
]
