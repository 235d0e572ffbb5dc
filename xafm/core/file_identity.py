"""Which version of a file a reader holds: the identity recorded when a file is opened, the
check that the file at that path is still that file, and opening all from one version.

Readers reopen a file by path for every lazy read (``core.lazy``), so a file that another
process replaced (``os.replace`` of a new version), rewrote in place or truncated meanwhile
would give frames of two versions, or offsets of one applied to the other, without an
error. A :class:`FileIdentity` is what tells the versions apart with one ``stat``:

- a file: its inode number, size and modification time (ns). A replacement is another
  inode; a rewrite in place or a truncation changes the size or the modification time.
- a folder (OME-Zarr stores, frame folders): its inode number only. A folder's own size
  and time change whenever an entry is added, which an append to a store does; what a
  folder format counts as changed inside it is its reader's to check.

The device number is left out: the clients of a network file system (the workers of a
``dask.distributed`` cluster) may number the same mount differently, while the inode
number, size and time come from the server and agree.

- a URL (``s3://``, ``https://``, ...): what the store says of the object (``fs.info``,
  one HEAD request): its size and its version (the version id, else the ETag, else the
  last-modified time, as the store gives them). An overwritten object has another ETag
  (or version id, or time); a prefix ("folder") is only checked to still exist.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..exceptions import FileChangedError, ObjectNotFoundError, is_own_bug
from . import sources

T = TypeVar("T")

#: How often an open is tried when the file changes while it is being read.
OPEN_ATTEMPTS = 3


@dataclass(frozen=True)
class FileIdentity:
    """A file's (or folder's) identity at one moment: what a later ``stat`` is compared to."""

    inode: int
    size: int | None  # None for a folder
    mtime_ns: int | None  # None for a folder
    #: A URL's object version: ``"VersionId x"``, ``"ETag x"`` or ``"LastModified x"`` (None: a path)
    version: str | None = None

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity | None:
        """The identity of what is at ``path`` now (None when nothing is). For a URL, a
        store that cannot be asked raises its :class:`~xafm.exceptions.RemoteError`: not
        knowing is not "nothing is there"."""
        path = sources.local_path(path)
        if sources.is_url(path):
            return cls._of_url(path)
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode):
            return cls(st.st_ino, None, None)
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


    @classmethod
    def _of_url(cls, url: str) -> FileIdentity | None:
        try:
            info = sources.info(url)
        except ObjectNotFoundError:
            return None
        if info.get("type") == "directory":
            return cls(0, None, None, "prefix")
        for key in ("VersionId", "ETag", "etag", "LastModified", "Last-Modified", "mtime", "updated"):
            value = info.get(key)
            if value:
                return cls(0, int(info.get("size") or 0), None, f"{key} {value}")
        return cls(0, int(info.get("size") or 0), None, "")


def _when(ns: int | None) -> str:
    if ns is None:
        return "?"
    return _dt.datetime.fromtimestamp(ns / 1e9, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def change(recorded: FileIdentity, now: FileIdentity | None) -> str | None:
    """What differs between the identity ``recorded`` at open and ``now``, in words (None
    when nothing does)."""
    if now == recorded:
        return None
    if now is None:
        return "it is no longer at this path (deleted or moved, or not visible from this machine)"
    if now.version != recorded.version and recorded.version is not None:
        return f"the object was overwritten ({recorded.version or 'size ' + str(recorded.size)}, now {now.version or 'size ' + str(now.size)})"
    if now.inode != recorded.inode:
        return f"it was replaced by another file (inode {recorded.inode}, now {now.inode})"
    if recorded.size is not None and now.size is not None and now.size < recorded.size:
        return f"it was truncated from {recorded.size} to {now.size} bytes"
    if now.size != recorded.size:
        return f"it was rewritten in place ({recorded.size} bytes, now {now.size})"
    return f"it was rewritten in place (modified {_when(recorded.mtime_ns)}, now {_when(now.mtime_ns)})"


def check_unchanged(path: str, recorded: FileIdentity | None) -> None:
    """Raise :class:`FileChangedError` when the file at ``path`` is no longer the one whose
    identity was ``recorded`` (None: nothing was recorded, nothing to check)."""
    if recorded is None:
        return
    if recorded.size is not None and recorded.version is None:
        # a local file, the check of every lazy read: one stat compared field by field
        # (what FileIdentity.of would build and compare), the words only when it differs
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            pass
        else:
            if st.st_ino == recorded.inode and st.st_size == recorded.size and st.st_mtime_ns == recorded.mtime_ns and not stat.S_ISDIR(st.st_mode):
                return
    problem = change(recorded, FileIdentity.of(path))
    if problem is not None:
        raise FileChangedError(path, f"the file changed since it was opened: {problem}; reading on would mix two versions, open it again")


@contextlib.contextmanager
def unchanged_while(path: str, recorded: FileIdentity | None) -> Iterator[None]:
    """Check ``path`` against ``recorded`` before and after a block that reads it; a block
    that fails while the file changed raises :class:`FileChangedError` instead."""
    check_unchanged(path, recorded)
    try:
        yield
    except Exception:
        check_unchanged(path, recorded)
        raise
    check_unchanged(path, recorded)


_IN_ONE_VERSION: contextvars.ContextVar[bool] = contextvars.ContextVar("xafm_in_one_version", default=False)
#: The URL an open (:func:`one_version`) is reading and the identity it took before.
_OPENING: contextvars.ContextVar[tuple[str, FileIdentity | None] | None] = contextvars.ContextVar("xafm_opening", default=None)


def recorded(path: str | os.PathLike[str]) -> FileIdentity | None:
    """The identity a lazy array made now records for ``path``: for the URL an open is
    reading, the one the open took before it began (and checks again when it ends), so
    that the arrays of one open cost no request each; otherwise :meth:`FileIdentity.of`."""
    key = sources.local_path(path)
    opening = _OPENING.get()
    if opening is not None and opening[0] == key:
        return opening[1]
    return FileIdentity.of(key)


def one_version(path: str | os.PathLike[str], attempt: Callable[[], T], *, attempts: int = OPEN_ATTEMPTS) -> T:
    """Run ``attempt`` (an open, or an open and a load) so that all it read is of one
    version of the file at ``path``.

    The identity is taken before and after; when it differs, or ``attempt`` raised
    :class:`FileChangedError` (a lazy read saw the change), or it failed while the file
    changed under it, the whole attempt is run again, up to ``attempts`` times, then
    :class:`FileChangedError` is raised. Nested calls leave the retrying to the outermost.
    """
    key = sources.local_path(path)
    opening = _OPENING.get()
    if opening is not None and opening[0] == key:
        return attempt()  # a URL the outer open checks before and after already
    if _IN_ONE_VERSION.get():
        attempts = 1
    token = _IN_ONE_VERSION.set(True)
    try:
        for i in range(attempts):
            last = i == attempts - 1
            before = FileIdentity.of(path)
            remote = _OPENING.set((key, before)) if sources.is_url(key) else None
            try:
                with sources.known_size(key, before.size if before is not None else None):
                    result = attempt()
            except FileChangedError:
                if last:
                    raise
                continue
            except Exception as exc:
                after = FileIdentity.of(path)
                if after == before or before is None or is_own_bug(exc) or isinstance(exc, ImportError):
                    raise
                if last:
                    raise FileChangedError(path, f"the file changed while it was being read ({change(before, after)}), and the read failed: {exc}") from exc
                continue
            finally:
                if remote is not None:
                    _OPENING.reset(remote)
            after = FileIdentity.of(path)
            if after == before or before is None:
                return result
            if last:
                problem = change(before, after)
                raise FileChangedError(path, f"the file changed while it was being read, {attempts} times in a row (last: {problem})")
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        _IN_ONE_VERSION.reset(token)
