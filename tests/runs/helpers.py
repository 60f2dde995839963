"""Compare two run directories file by file (content, not timestamps)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file


def _same_file(a: Path, b: Path) -> None:
    if a.suffix == ".parquet":
        ta, tb = pq.read_table(a), pq.read_table(b)
        assert ta.equals(tb), f"{a} differs from {b}"
    elif a.suffix == ".safetensors":
        xa, xb = load_file(str(a)), load_file(str(b))
        assert xa.keys() == xb.keys(), a
        for key in xa:
            assert torch.equal(xa[key], xb[key]), f"{a}: tensor {key} differs"
    elif a.suffix == ".json":
        assert json.loads(a.read_text()) == json.loads(b.read_text()), f"{a} differs from {b}"
    else:
        assert a.read_bytes() == b.read_bytes(), f"{a} differs from {b}"


def assert_same_run(a: Path, b: Path) -> None:
    """Every file of run ``a`` equals the one of run ``b`` (run.json: the configuration), and no stray entries."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert not [p for p in files_a if any(part.startswith(".") for part in p.parts)], (
        "temporary files left behind"
    )
    for rel in files_a:
        if rel.name == "run.json":
            ma, mb = json.loads((a / rel).read_text()), json.loads((b / rel).read_text())
            assert ma["config"] == mb["config"] and ma["config_sha256"] == mb["config_sha256"]
            continue
        _same_file(a / rel, b / rel)
