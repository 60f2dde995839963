"""A layer-skip run's finished chunks on disk, so that a killed run resumes without computing a chunk twice
(:func:`~evolens.experiments.skip.run.run_skip_chunked` with ``chunks_dir``; ``evolens skip`` uses ``OUT/chunks``).

=========================  ============================================================================================
``DIR/settings.json``      what every chunk depends on (:func:`chunk_settings`: the model, the
                           :class:`~evolens.experiments.skip.options.SkipOptions`, the chunk size, the items); a run
                           with other settings is refused
``DIR/<NNNNN>.json``       chunk ``NNNNN`` (0-based, in input order): its item ids, the settings' fingerprint and its
                           :class:`~evolens.experiments.skip.results.SkipReport`, written atomically when it finishes
=========================  ============================================================================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolens.analysis.compare import Annotations
from evolens.analysis.io import clean_json
from evolens.envelope import Envelope, config_differences
from evolens.errors import SettingsError, StoreError
from evolens.experiments.skip.options import SkipOptions
from evolens.experiments.skip.results import SkipReport
from evolens.files import make_directory

SETTINGS_FILE = "settings.json"
_SETTINGS = Envelope("skip run's settings", schema=1, kinds=("evolens.skip_chunks_settings",))
_CHUNK = Envelope("skip chunk", schema=1, kinds=("evolens.skip_chunk",))


def _image_key(image: Any) -> str | None:
    """An image as text that names it across processes: a path as is, an in-memory image by its pixels' digest."""
    if image is None or isinstance(image, (str, Path)):
        return None if image is None else str(image)
    pixels = getattr(image, "tobytes", None)
    if pixels is None:
        raise SettingsError(
            f"cannot record a {type(image).__name__} image for resuming; give paths or PIL images"
        )
    shape = f"{getattr(image, 'mode', '')}{getattr(image, 'size', '')}"
    return f"{type(image).__name__}{shape}:{hashlib.sha256(pixels()).hexdigest()}"


def items_digest(
    item_ids: Sequence[str],
    prompts: Sequence[str],
    images: Sequence[Any],
    annotations: Sequence[Annotations | None],
) -> str:
    """SHA-256 of every item's id, prompt, image (a path, or an in-memory image's pixels) and annotations, in
    order: the items a run covers."""
    rows = [
        [i, p, _image_key(im), None if a is None else a.to_dict()]
        for i, p, im, a in zip(item_ids, prompts, images, annotations, strict=True)
    ]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode("utf-8")).hexdigest()


def chunk_settings(
    model: str,
    options: SkipOptions,
    chunk_size: int,
    items_sha256: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a run's chunks depend on, as plain JSON data: the model, the options, the chunk size, the items'
    digest (:func:`items_digest`) and ``extra`` (e.g. the dataset's description)."""
    settings = {
        "model": model,
        "skip": options.to_dict(),
        "chunk_size": chunk_size,
        "items_sha256": items_sha256,
        **(extra or {}),
    }
    return dict(clean_json(settings))


@dataclass(frozen=True)
class ChunkStore:
    """A directory of finished chunks of one run (build it with :meth:`open`).

    Attributes:
        directory: The directory.
        settings: The run's settings (:func:`chunk_settings`).
        fingerprint: SHA-256 of the settings, recorded in every chunk.
    """

    directory: Path
    settings: dict[str, Any]
    fingerprint: str

    @classmethod
    def open(cls, directory: str | Path, settings: dict[str, Any]) -> ChunkStore:
        """The chunks of the run of ``settings`` in ``directory``: created with its settings file, or resumed when
        it holds that run's.

        Raises:
            SettingsError: The directory holds the chunks of a run with other settings (the differences named).
            StoreError: Its settings file cannot be read as one.
        """
        root = Path(directory)
        path = root / SETTINGS_FILE
        if path.is_file():
            found = config_differences(_SETTINGS.read(path), settings)
            if found:
                shown = "; ".join(found[:4]) + (" ..." if len(found) > 4 else "")
                raise SettingsError(
                    f"{root} holds the chunks of a skip run with other settings (stored -> requested: {shown}); "
                    f"rerun with the same settings to resume, or give another output directory (or delete {root})"
                )
        else:
            _SETTINGS.write(make_directory(root) / SETTINGS_FILE, _SETTINGS.kinds[0], settings)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()
        return cls(root, settings, digest)

    def path(self, index: int) -> Path:
        """The file of chunk ``index`` (0-based)."""
        return self.directory / f"{index:05d}.json"

    def load(self, index: int, item_ids: Sequence[str]) -> SkipReport | None:
        """Chunk ``index``'s report when it is finished (``None``: not yet).

        Raises:
            StoreError: The file is not a chunk of this run with these items.
        """
        path = self.path(index)
        if not path.is_file():
            return None
        data = _CHUNK.read(path)
        if data.get("settings_sha256") != self.fingerprint or data.get("item_ids") != list(item_ids):
            raise StoreError(f"{path} is not chunk {index} of this run (other settings or items); delete it")
        return SkipReport.from_dict(data["report"])

    def save(self, index: int, item_ids: Sequence[str], report: SkipReport) -> Path:
        """Write chunk ``index`` (its items ``item_ids``) atomically; returns the file."""
        data = {"settings_sha256": self.fingerprint, "item_ids": list(item_ids), "report": report.to_dict()}
        return _CHUNK.write(self.path(index), _CHUNK.kinds[0], clean_json(data))
