"""Writing to a URL (``s3://``, ``gs://``, ...): an output appears complete at its
destination or not at all, and ``overwrite=False`` never replaces what is there.

Object stores have no rename, so the local way (:mod:`.output`: a temporary beside the
destination, renamed into place) does not carry over. Two ways instead:

- :func:`staged`: a single-file writer (``to_h5``, ``to_ome_tiff``, the animations) writes
  into a local temporary folder, with all of its usual guarantees, and the file is uploaded
  once complete. An object appears only when its upload completes (a put, or a multipart
  upload's last call), so the destination never holds a partial object. ``overwrite=False``
  is checked before writing and again before the upload, and the upload itself is a
  conditional put (``If-None-Match: *``) on S3: an object another writer put there
  meanwhile is never replaced. Elsewhere (gcs, ...) the second check and the put are two
  steps: a writer racing in between them is replaced.
- :func:`in_place`: a folder output written object by object where it lands (OME-Zarr, so
  that dask workers write their own chunks). A failure removes what was written; a store
  readable as OME-Zarr exists only once its metadata, written last, is. ``overwrite``
  removes the old output first: unlike locally, the old one is gone before the new one is
  complete.

Writers keep the URL (never an open file system or session), so dask graphs stay picklable.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..exceptions import OutputExistsError, WriteError, XafmError, is_own_bug
from . import sources


def exists(url: str) -> bool:
    """Whether there is an object at ``url``, or any object under it (a folder prefix)."""
    fs, inner = sources.filesystem(url)
    fs.invalidate_cache(inner)
    return bool(fs.exists(inner))


def remove(url: str) -> None:
    """Remove the object at ``url`` and every object under it (nothing if there is none)."""
    fs, inner = sources.filesystem(url)
    fs.invalidate_cache(inner)
    with contextlib.suppress(FileNotFoundError):
        if fs.isdir(inner):
            fs.rm(inner, recursive=True)
        else:
            fs.rm_file(inner)
    fs.invalidate_cache(inner)


def refuse_existing(url: str, *, overwrite: bool, owns: Callable[[str], bool] | None = None, noun: str = "an output") -> bool:
    """Raise :class:`OutputExistsError` if something is at ``url`` and may not be replaced:
    always without ``overwrite``; with it, unless ``owns(url)`` says it is this writer's kind.
    Returns whether something is there."""
    if not exists(url):
        return False
    if not overwrite:
        raise OutputExistsError(url, "already exists; pass overwrite=True to replace it")
    if owns is not None and not owns(url):
        raise OutputExistsError(url, f"exists and is not {noun}; overwrite=True replaces only {noun} (what this writer writes), so it was left as it was")
    return True


def _as_write_error(url: str, exc: BaseException) -> BaseException:
    """xafm's errors, programming errors and interrupts as they are; others as a WriteError."""
    if isinstance(exc, XafmError) or not isinstance(exc, Exception) or is_own_bug(exc):
        return exc
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return WriteError(url, f"writing failed, nothing was written: {type(exc).__name__}: {cause}")


def _creates_only(fs: Any) -> bool:
    """Whether this s3fs puts with ``mode="create"`` (``If-None-Match: *``), as recent s3fs releases do (2026.9 here)."""
    put = getattr(type(fs), "_put_file", None)
    return put is not None and "mode" in inspect.signature(put).parameters


def _put_file(local: str, url: str, *, overwrite: bool) -> None:
    """Upload one complete file: on S3 without ``overwrite`` a create-only put, which the
    server refuses (``FileExistsError``) if an object appeared there meanwhile."""
    fs, inner = sources.filesystem(url)
    kwargs: dict[str, Any] = {}
    if not overwrite and sources.protocol(url) in ("s3", "s3a") and _creates_only(fs):
        kwargs["mode"] = "create"
    try:
        fs.put_file(local, inner, **kwargs)
    except FileExistsError:
        raise OutputExistsError(
            url, "appeared while this output was being written (another writer?); it was left as it was and the new output discarded"
        ) from None
    finally:
        fs.invalidate_cache(inner)


def _upload(local: Path, url: str, *, overwrite: bool, folder: bool) -> None:
    """Upload a file, or a folder's files (removing those uploaded if one fails; with
    ``overwrite``, the objects of the old folder that the new one does not hold after)."""
    if not folder:
        _put_file(str(local), url, overwrite=overwrite)
        return
    fs, inner = sources.filesystem(url)
    old = set(fs.find(inner)) if overwrite else set()
    done: list[str] = []
    try:
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            rel = file.relative_to(local).as_posix()
            _put_file(str(file), sources.join(url, rel), overwrite=overwrite)
            done.append(f"{inner.rstrip('/')}/{rel}")
    except BaseException:
        if not overwrite:
            with contextlib.suppress(Exception):
                fs.rm(done)
        raise
    stale = sorted(old - set(done))
    if stale:
        fs.rm(stale)
    fs.invalidate_cache(inner)


def staged(url: str, write: Callable[[Path], Any], *, overwrite: bool, folder: bool = False) -> str:
    """Write with ``write(local_path)`` into a local temporary folder, then upload the
    complete output to ``url``; returns ``url``.

    Nothing is uploaded if ``write`` fails or is interrupted, and the temporary folder is
    removed either way. ``overwrite=False`` refuses an existing ``url`` before writing and
    again before the upload (and, on S3, in the upload itself).
    """
    url = url.rstrip("/")
    refuse_existing(url, overwrite=overwrite)
    tmp = tempfile.mkdtemp(prefix=".xafm-upload-")
    try:
        local = Path(tmp) / sources.name(url)
        write(local)
        if not (local.is_dir() if folder else local.is_file()):
            raise WriteError(url, "the writer produced no output")
        refuse_existing(url, overwrite=overwrite)
        _upload(local, url, overwrite=overwrite, folder=folder)
    except BaseException as exc:
        err = _as_write_error(url, exc)
        if err is exc:
            raise
        raise err from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return url


@contextlib.contextmanager
def in_place(url: str, *, overwrite: bool, owns: Callable[[str], bool], noun: str) -> Iterator[str]:
    """Yield ``url`` to write a folder output into object by object; remove what was
    written if the body fails (or is interrupted). An existing output is refused without
    ``overwrite`` and, with it, removed first if ``owns(url)``, else refused."""
    url = url.rstrip("/")
    if refuse_existing(url, overwrite=overwrite, owns=owns, noun=noun):
        remove(url)
    try:
        yield url
    except BaseException as exc:
        with contextlib.suppress(Exception):
            remove(url)
        err = _as_write_error(url, exc)
        if err is exc:
            raise
        raise err from exc


def local_or_url(path: str | os.PathLike[str]) -> str | Path:
    """A URL as a string (``Path`` would fold its ``//``), a local path as a ``Path``."""
    text = sources.local_path(os.fspath(path))
    return text.rstrip("/") if sources.is_url(text) else Path(text).expanduser()
