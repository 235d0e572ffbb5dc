"""What a write leaves beside its destination while it runs, and what a killed write leaves
behind: the temporary output ``.NAME.<10 hex>.xafm-tmp`` (a file or a folder) and, while a
folder output is replaced without an atomic swap, the old one as ``.NAME.<10 hex>.xafm-old``.

A writer holds an exclusive ``flock`` on its temporary output (on the file, or on the
folder's own descriptor) from its creation until it is renamed into place or removed, and
on an old output from before it is renamed aside until it is removed. A leftover whose lock
can be taken therefore belongs to no running writer: :func:`sweep` removes such temporary
outputs, :func:`recover` puts back an old output whose destination is missing (or removes
it when the destination is complete). Both take the lock first and keep it while they
act, and check that the path still names the object they locked, so a writer that just
created its temporary output (created, then locked) finds it gone and makes another.
Where ``fcntl`` is missing (Windows) nothing is locked and nothing is swept.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import XafmWarning

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

TMP_SUFFIX = ".xafm-tmp"
OLD_SUFFIX = ".xafm-old"
_ATTEMPTS = 10


def leftover_name(dest: Path, suffix: str) -> Path:
    """``.NAME.<10 hex>`` + ``suffix`` beside ``dest``."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:10]}{suffix}")


def _pattern(dest: Path, suffix: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(dest.name)}\.[0-9a-f]{{10}}{re.escape(suffix)}")


def _same_object(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file or folder open as ``fd``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _try_lock(fd: int, *, wait: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # a file system without flock: a writer goes on unlocked, a sweeper proves nothing
        return wait
    return True


def remove(p: Path) -> str | None:
    """Remove a file, a symlink or a folder tree; what went wrong, or None."""
    problems: list[str] = []
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, onerror=lambda _f, q, e: problems.append(f"{q}: {e[1]}"))
        else:
            p.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        problems.append(f"{p}: {exc.strerror or exc}")
    return "; ".join(problems) or None


@dataclass
class Locked:
    """A file or folder held open (and locked) by this process."""

    path: Path
    fd: int
    folder: bool

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def create_temp(dest: Path, folder: bool) -> Locked:
    """A new, locked, empty temporary file or folder beside ``dest`` (``OSError`` if none
    can be made there)."""
    for _ in range(_ATTEMPTS):
        tmp = leftover_name(dest, TMP_SUFFIX)
        try:
            if folder:
                os.mkdir(tmp)
                fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            else:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        _try_lock(fd, wait=True)  # a sweeper may hold it for a moment
        if _same_object(tmp, fd):
            return Locked(tmp, fd, folder)
        os.close(fd)  # a sweeper took it for a dead writer's and removed it: make another
    raise FileExistsError(f"no free temporary name beside {dest} after {_ATTEMPTS} attempts")


def lock_existing(path: Path) -> Locked | None:
    """``path`` (a real file or folder, not a symlink) open and locked, waiting for a
    writer that holds it; None for a symlink or where it cannot be opened."""
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return None
        _try_lock(fd, wait=True)
        if _same_object(path, fd):
            return Locked(path, fd, stat.S_ISDIR(os.fstat(fd).st_mode))
        os.close(fd)
    return None


def _abandoned(p: Path) -> Locked | None:
    """``p`` locked, when no running writer holds it and it is this user's regular file or
    folder; None otherwise (a live writer's, another user's, a FIFO, a symlink)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return None
    st = os.fstat(fd)
    own = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if own and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and _try_lock(fd, wait=False) and _same_object(p, fd):
        return Locked(p, fd, stat.S_ISDIR(st.st_mode))
    os.close(fd)
    return None


def _candidates(dest: Path, suffix: str) -> list[Path]:
    pattern = _pattern(dest, suffix)
    try:
        with os.scandir(dest.parent) as entries:
            return [Path(e.path) for e in entries if pattern.fullmatch(e.name)]
    except OSError:
        return []


def sweep(dest: Path) -> list[Path]:
    """Remove the temporary outputs of ``dest`` that no running writer holds (left by a
    killed write); returns those removed."""
    removed = []
    for p in _candidates(dest, TMP_SUFFIX):
        held = _abandoned(p)
        if held is None:
            continue
        try:
            if remove(p) is None:
                removed.append(p)
        finally:
            held.close()
    return removed


def recover(dest: Path) -> list[str]:
    """Finish a folder replacement that was interrupted between its two renames: an old
    output ``.NAME.<hex>.xafm-old`` that no writer holds is put back at ``dest`` when
    nothing is there, or removed when ``dest`` is there (the new output, complete: it is
    renamed into place only when written whole). Warns (:class:`XafmWarning`) and returns
    what was done; a leftover that cannot be touched (a read-only disk) stays."""
    done = []
    for old in sorted(_candidates(dest, OLD_SUFFIX)):
        held = _abandoned(old)
        if held is None:
            continue
        try:
            if os.path.lexists(dest):
                problem = remove(old)
                what = f"removed {old.name}, the old output left by an interrupted replacement of {dest} (which is complete)"
            else:
                from .renames import rename_noreplace

                try:
                    rename_noreplace(old, dest)
                    problem = None
                except OSError as exc:
                    problem = str(exc)
                what = f"restored {dest} from {old.name}: a replacement of it was interrupted before the new output was in place"
        finally:
            held.close()
        if problem is None:
            done.append(what)
            warnings.warn(what, XafmWarning, stacklevel=3)
    return done
