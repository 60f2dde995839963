"""Atomic file and directory writes."""

from __future__ import annotations

import pytest

from evolens.errors import StoreError
from evolens.files import atomic_directory, atomic_file, atomic_write_text


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


def test_filesystem_failures_are_store_errors_naming_the_path(tmp_path) -> None:
    from evolens.store import make_directory

    blocker = tmp_path / "file.png"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=r"file\.png is a file, not a directory"):
        atomic_write_text(blocker / "sub" / "a.txt", "x")
    with (
        pytest.raises(StoreError, match=r"file\.png is a file, not a directory"),
        atomic_directory(blocker / "d"),
    ):
        pass
    with pytest.raises(StoreError, match=r"file\.png is a file"):
        make_directory(blocker / "d")
    with pytest.raises(StoreError, match="it is a directory"):
        atomic_write_text(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.png"]  # nothing left behind


def test_check_writable_creates_nothing(tmp_path) -> None:
    from evolens.store import check_writable

    blocker = tmp_path / "file.png"
    blocker.write_text("")
    assert (
        check_writable(tmp_path / "new" / "deeper" / "out.json") == tmp_path / "new" / "deeper" / "out.json"
    )
    assert check_writable(tmp_path / "new", directory=True) == tmp_path / "new"
    assert check_writable(blocker) == blocker  # an existing file may be replaced
    for path, directory, match in (
        (blocker / "x.json", False, "is a file, not a directory"),
        (blocker, True, "exists and is a file"),
        (tmp_path, False, "is a directory; give a file name"),
    ):
        with pytest.raises(StoreError, match=match):
            check_writable(path, directory=directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.png"]


def test_paths_that_are_not_utf8_are_refused_before_anything_is_written(tmp_path) -> None:
    import os

    from evolens.files import check_replaceable, check_writable, make_directory

    bad = tmp_path / os.fsdecode(b"out\xff")
    for check in (
        lambda: check_writable(bad, directory=True),
        lambda: check_replaceable(bad),
        lambda: make_directory(bad / "sub"),
    ):
        with pytest.raises(StoreError, match="not valid UTF-8"):
            check()
    assert list(tmp_path.iterdir()) == []
