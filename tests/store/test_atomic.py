"""Atomic file and directory writes."""

from __future__ import annotations

import pytest

from evolens.errors import StoreError
from evolens.store import atomic_directory, atomic_file, atomic_write_text


def test_atomic_file_replaces_only_on_success(tmp_path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    with pytest.raises(ValueError), atomic_file(target) as tmp:
        tmp.write_text("two")
        raise ValueError("interrupted")
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    atomic_write_text(target, "three")
    assert target.read_text() == "three"


def test_atomic_directory(tmp_path) -> None:
    target = tmp_path / "d"
    with atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
        assert not target.exists()
    assert (target / "x").read_text() == "1"
    with pytest.raises(StoreError, match="already exists"), atomic_directory(target):
        pass
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "y").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["y"]
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match="is a file"), atomic_directory(tmp_path / "f"):
        pass
