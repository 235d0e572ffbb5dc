"""What xafm agrees to open: regular files, and folders for the formats that are folders.

A FIFO waits for a writer that may never come, ``/dev/zero`` reads without end, a socket
cannot be read as a file at all: every entry point (``xafm.open``, ``xafm.channels``, the
xarray engine, the command line, the content checks) and every reader that opens further
files itself (a folder's members, a multi-file set's companions) asks here first.
:func:`check_openable` looks at the path without opening it; :func:`open_regular` opens
a file so that it can neither block nor be swapped for a special file between the check
and the open (``O_NONBLOCK``, then ``fstat`` on the open descriptor).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ..exceptions import SpecialFileError

#: What each kind of non-regular file is called in an error.
KINDS = (
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("FIFO (named pipe)", "character device",
    ...); None for a regular file or a folder."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in KINDS if test(mode)), f"special file (mode {stat.filemode(mode)})")


def _refusal(path: str | os.PathLike[str], kind: str) -> SpecialFileError:
    target = ""
    if os.path.islink(path):
        target = f" (through a symlink to {os.path.realpath(path)})"
    return SpecialFileError(
        path, f"is a {kind}{target}, not a regular file: xafm opens only regular files (and folders for folder formats)"
    )


def check_openable(path: str | os.PathLike[str], *, folder: bool | None = None) -> None:
    """Raise :class:`SpecialFileError` naming ``path`` and what it is unless it is a
    regular file or a folder (symlinks followed). ``folder=False`` refuses folders too,
    ``folder=True`` regular files. A path that does not exist passes: the caller says so
    in its own words."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    kind = special_kind(st.st_mode)
    if kind is not None:
        raise _refusal(path, kind)
    if folder is False and stat.S_ISDIR(st.st_mode):
        raise SpecialFileError(path, "is a folder, not a file")
    if folder is True and not stat.S_ISDIR(st.st_mode):
        raise SpecialFileError(path, "is a file, not a folder")


def is_special(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (no exception)."""
    try:
        return special_kind(os.stat(path).st_mode) is not None
    except (OSError, ValueError):
        return False


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` for a regular file only: never blocks on a FIFO, never opens
    a device (``stat`` first), and refuses what the path became before the open
    (``fstat`` of the open descriptor). Raises :class:`SpecialFileError` or ``OSError``."""
    check_openable(path, folder=False)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _refusal(path, special_kind(mode) or "folder")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
