"""The final step of a write: a rename that never replaces what appeared meanwhile, and a
swap of two names in one step.

Linux has both as ``renameat2`` flags (``RENAME_NOREPLACE``, ``RENAME_EXCHANGE``; glibc
2.28+ exports the call, reached here through ctypes). A file system that lacks a flag
answers ``EINVAL`` (``ENOSYS``/``EOPNOTSUPP`` on old kernels), other systems have no
``renameat2``: then :class:`Unsupported` is raised, and the caller falls back.
"""

from __future__ import annotations

import ctypes
import errno
import os

from .libc import linux_function

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
#: errno values that say "this rename flag is not available here", not "this rename failed"
UNSUPPORTED_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)})


class Unsupported(Exception):
    """The platform or the file system has no such rename; the caller falls back."""


_RENAMEAT2 = linux_function("renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint])


def renameat2(src: str | os.PathLike[str], dst: str | os.PathLike[str], flags: int) -> None:
    """``renameat2(src, dst, flags)``; :class:`Unsupported` where the flag is unavailable,
    ``OSError`` (``FileExistsError`` for ``EEXIST``) for a failed rename."""
    if _RENAMEAT2 is None:
        raise Unsupported("this platform has no renameat2")
    if _RENAMEAT2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) == 0:
        return
    err = ctypes.get_errno()
    if err in UNSUPPORTED_ERRNOS:
        raise Unsupported(f"renameat2 flag {flags} unavailable here: {os.strerror(err)}")
    raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Move ``src`` to ``dst`` unless something (a dangling symlink too) is at ``dst``:
    ``FileExistsError`` then, and ``src`` stays. Returns whether the refusal was atomic.

    ``renameat2(RENAME_NOREPLACE)`` where available; for a file, else ``link`` + ``unlink``
    (a hard link fails with ``EEXIST`` in one step); else a check then a rename, which a
    writer that appears in between can slip through (the one window that is left).
    """
    try:
        renameat2(src, dst, RENAME_NOREPLACE)
        return True
    except Unsupported:
        pass
    if not os.path.isdir(src):
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system (FAT, some FUSE): check, then rename
            pass
        else:
            os.unlink(src)
            return True
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(dst))
    os.rename(src, dst)
    return False


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
    """Swap the names ``a`` and ``b`` (both must exist) in one step; :class:`Unsupported`
    where ``RENAME_EXCHANGE`` is unavailable."""
    renameat2(a, b, RENAME_EXCHANGE)
