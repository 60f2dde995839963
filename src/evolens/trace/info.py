"""Which model produced a trace: :class:`ModelInfo`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a trace.

    Attributes:
        source: Path or hub id as given to :func:`evolens.load`.
        family: Registered family name.
        model_type: ``config.model_type``.
        n_layers: Decoder layers L.
        d_model: Residual stream width.
        vocab_size: Language head outputs.
        dtype: The model's dtype when traced (``"float32"``...).
        weights_hash: SHA-256 over the weight files (see ``evolens.models.loading.hash_weight_files``).
    """

    source: str
    family: str
    model_type: str
    n_layers: int
    d_model: int
    vocab_size: int
    dtype: str
    weights_hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})
