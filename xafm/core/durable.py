"""fsync: a write is reported done only when its data and its name are on the disk, so a
power loss after that keeps it (``fsync=False`` on a writer skips this, for scratch output).

A file is synced before it is renamed into place, a folder file by file and folder by
folder from the bottom up, and the parent folder after the rename (a rename is durable
only once its folder is). ``os.fsync`` is looked up at call time, so tests can count it.
"""

from __future__ import annotations

import errno
import os

#: errno values of an fsync that a folder does not support (some platforms and file
#: systems cannot sync a directory): nothing more can be done there, so it is skipped
_DIR_SYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EISDIR, errno.EACCES})


def sync_fd(fd: int) -> None:
    """Flush a file's data and metadata (raises ``OSError`` as fsync does: EIO, ENOSPC)."""
    os.fsync(fd)


def sync_file(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of a folder (a rename into it, a removal) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_SYNC_UNSUPPORTED:  # e.g. Windows cannot open a folder
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_SYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def sync_tree(root: str | os.PathLike[str]) -> None:
    """Every file and folder under ``root`` (and ``root``), bottom-up; symlinks are skipped
    (a writer makes none, and their targets are not its data)."""
    for folder, _subfolders, files in os.walk(root, topdown=False):
        for name in files:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                sync_file(p)
        sync_dir(folder)
