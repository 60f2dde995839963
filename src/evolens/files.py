"""Atomic file and directory writes: write to a temporary sibling, flush, then rename over the target.

Filesystem failures (a parent that is a file, no permission, a full disk) raise :class:`StoreError` naming the
path, so the command line reports them in one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from evolens.errors import StoreError


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def _existing_ancestor(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_utf8_path(path: str | Path) -> Path:
    """``path``, if it can be written as UTF-8 text (Parquet files and the JSON manifests record paths as text).

    Raises:
        StoreError: The path holds bytes that are not UTF-8 (Python keeps them as lone surrogates).
    """
    target = Path(path)
    try:
        str(target).encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(
            f"{str(target)!a} is not valid UTF-8; evolens writes only to paths that are: choose another name"
        ) from None
    return target


def make_directory(path: str | Path) -> Path:
    """``mkdir -p path``, raising :class:`StoreError` with the reason (e.g. a parent that is a file)."""
    target = check_utf8_path(path)
    if target.is_dir():
        return target
    blocker = _existing_ancestor(target)
    if blocker.exists() and not blocker.is_dir():
        raise StoreError(f"cannot create the directory {target}: {blocker} is a file, not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"cannot create the directory {target}: {_reason(err)}") from None
    return target


def check_writable(path: str | Path, *, directory: bool = False) -> Path:
    """Check, creating nothing, that ``path`` (a file, or with ``directory`` a directory) can be written.

    Meant for the start of a long job, so a bad output path fails before the work rather than after it.

    Raises:
        StoreError: ``path`` is a directory where a file is wanted (or the reverse), an existing ancestor is a
            file, there is no write permission where it would be created, or it is not valid UTF-8.
    """
    target = check_utf8_path(Path(path).expanduser())
    if target.exists():
        if directory and not target.is_dir():
            raise StoreError(f"{target} exists and is a file, not a directory")
        if not directory and target.is_dir():
            raise StoreError(f"{target} is a directory; give a file name")
    ancestor = _existing_ancestor(target.parent)
    if not ancestor.is_dir():
        raise StoreError(f"cannot write {target}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write {target}: no write permission in {ancestor}")
    if directory and target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write into {target}: no write permission")
    return target


def check_replaceable(path: str | Path, *, overwrite: bool = False) -> Path:
    """Check that the directory ``path`` may be written whole: absent, empty, or ``overwrite`` given.

    :func:`atomic_directory` checks this itself; long jobs call it first, so they refuse before the work.

    Raises:
        StoreError: ``path`` is a file, or a non-empty directory while ``overwrite`` is false.
    """
    target = check_utf8_path(path)
    if target.exists() and not target.is_dir():
        raise StoreError(f"{target} exists and is a file, not a directory")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise StoreError(
            f"{target} already exists and is not empty; pass overwrite=True (CLI: --overwrite) to replace it"
        )
    return target


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    if target.is_dir():
        raise StoreError(f"cannot write {target}: it is a directory")
    make_directory(target.parent)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        try:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as err:
            raise StoreError(f"cannot write {target}: {_reason(err)}") from None
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise StoreError(f"cannot write {path}: {_reason(err)}") from None
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces ``path`` in one rename.

    Raises:
        StoreError: ``path`` exists (and is not empty) while ``overwrite`` is false, or is a file.
    """
    target = check_replaceable(path, overwrite=overwrite)
    make_directory(target.parent)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = target.with_name(f".{target.name}.tmp-{token}")
    try:
        tmp.mkdir()
    except OSError as err:
        raise StoreError(f"cannot write {target}: {_reason(err)}") from None
    try:
        yield tmp
        old = None
        try:
            for child in tmp.iterdir():
                if child.is_file():
                    with child.open("rb+") as fh:
                        os.fsync(fh.fileno())
            if target.exists():
                old = target.with_name(f".{target.name}.old-{token}")
                os.replace(target, old)
            os.replace(tmp, target)
        except OSError as err:
            if old is not None and not target.exists():
                os.replace(old, target)  # put the previous contents back
            raise StoreError(f"cannot write {target}: {_reason(err)}") from None
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
