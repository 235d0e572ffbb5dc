"""Writing atomically: an output appears complete at its destination or not at all, and an
existing file is replaced only when asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..exceptions import OutputExistsError, WriteError, XafmError, is_own_bug


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the body succeeds.

    An exception in the body removes the temporary file (or folder) and leaves an existing
    ``path`` untouched. Other failures (a full disk, a failing dask task, a library's error)
    are re-raised as :class:`WriteError` naming the destination; xafm's own errors, its
    programming errors and interrupts keep their type.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise OutputExistsError(path, "already exists; pass overwrite=True to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(path, f"cannot create the folder {path.parent}: {exc}") from exc
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:10]}.xafm-tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(path, "the writer produced no output")
        if tmp.is_dir() and path.exists():
            backup = path.with_name(f".{path.name}.{uuid.uuid4().hex[:10]}.xafm-old")
            os.replace(path, backup)
            os.replace(tmp, path)
            _remove(backup)
        else:
            if path.is_dir():
                _remove(path)
            os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, XafmError) or not isinstance(exc, Exception) or is_own_bug(exc):
            raise
        raise WriteError(path, f"writing failed, nothing was written: {type(exc).__name__}: {exc}") from exc
