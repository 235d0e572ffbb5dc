"""Writing atomically: an output appears complete at its destination or not at all, never
replaces what another writer put there meanwhile, replaces only an output of its own kind
when asked, and is on the disk when the write returns (see docs/guarantees.md).

The output is written as a locked temporary file or folder beside the destination
(:mod:`.leftovers`), synced (:mod:`.durable`) and moved into place in one step
(:mod:`.renames`): a rename that refuses to replace, or, for an existing folder, a swap.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import OutputExistsError, WriteError, XafmError, is_own_bug
from . import durable, leftovers, renames


@dataclass(frozen=True)
class OutputKind:
    """What a writer produces, so that ``overwrite`` replaces that and nothing else.

    ``owns(path)`` says whether an existing ``path`` (never a symlink: a symlink is
    replaced as a link, its target untouched) is such an output; an empty folder counts
    for a folder kind (nothing is lost by replacing it).
    """

    noun: str
    folder: bool
    owns: Callable[[Path], bool]


def _regular_file(p: Path) -> bool:
    return stat.S_ISREG(os.lstat(p).st_mode)


#: Every file writer's kind: it replaces a regular file, never a folder or a device.
FILE = OutputKind("a file", folder=False, owns=_regular_file)


def _describe(p: Path) -> str:
    mode = os.lstat(p).st_mode
    if stat.S_ISDIR(mode):
        return "a folder" if any(os.scandir(p)) else "an empty folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a special file (a FIFO, device or socket)"


def _empty_folder(p: Path) -> bool:
    with os.scandir(p) as entries:
        return next(entries, None) is None


def check_replaceable(dest: Path, kind: OutputKind) -> None:
    """Refuse to replace ``dest`` unless it is a symlink or an output of ``kind``."""
    try:
        if os.path.islink(dest):
            return
        mode = os.lstat(dest).st_mode
        if kind.folder and stat.S_ISDIR(mode) and (_empty_folder(dest) or kind.owns(dest)):
            return
        if not kind.folder and kind.owns(dest):
            return
        what = _describe(dest)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WriteError(dest, f"cannot tell what is there: {exc.strerror or exc}") from exc
    raise OutputExistsError(
        dest, f"exists and is {what}, not {kind.noun}; overwrite=True replaces only {kind.noun} (what this writer writes), so it was left as it was"
    )


def recover(path: str | os.PathLike[str]) -> list[str]:
    """Complete an interrupted folder replacement at ``path`` (see :func:`.leftovers.recover`);
    cheap for a file that exists (only a folder output is ever set aside); nothing for a URL."""
    if not isinstance(path, (str, os.PathLike)) or "://" in os.fspath(path):
        return []
    p = Path(path).expanduser()
    if os.path.lexists(p) and not p.is_dir():
        return []
    return leftovers.recover(p)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, top first."""
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    for q in reversed(missing):
        try:
            os.mkdir(q)
            created.append(q)
        except FileExistsError:
            if not q.is_dir():
                _remove_created(created)
                raise
    return created


def _remove_created(created: list[Path]) -> None:
    """Remove again the folders a failed write created, deepest first, if still empty."""
    for q in reversed(created):
        with contextlib.suppress(OSError):
            os.rmdir(q)


def _sync_parent(dest: Path, created: list[Path], fsync: bool) -> None:
    if fsync:
        durable.sync_dir(dest.parent)
        if created:  # the new folders' own entries
            durable.sync_dir(created[0].parent)


def _replace_folder(tmp: Path, dest: Path, kind: OutputKind, fsync: bool) -> None:
    """Put the folder ``tmp`` at ``dest``, replacing what is there if it is ``kind``'s:
    a swap in one step, or two renames with a recoverable ``.xafm-old`` in between."""
    for _ in range(10):
        if not os.path.lexists(dest):
            try:
                renames.rename_noreplace(tmp, dest)
                return
            except FileExistsError:
                continue  # something appeared: check what it is
        check_replaceable(dest, kind)
        old = leftovers.lock_existing(dest)  # None for a symlink; held until the old one is gone
        try:
            try:
                renames.exchange(tmp, dest)
                aside = tmp
            except renames.Unsupported:
                aside = _two_renames(tmp, dest)
            except FileNotFoundError:
                continue  # it went away meanwhile
            if fsync:
                durable.sync_dir(dest.parent)
            leftovers.remove(aside)
        finally:
            if old is not None:
                old.close()
        return
    raise OutputExistsError(dest, "kept changing while it was being replaced; the new output was discarded")


def _two_renames(tmp: Path, dest: Path) -> Path:
    """The fallback of a swap: ``dest`` aside as ``.NAME.<hex>.xafm-old``, then ``tmp`` in;
    a kill between them is completed by :func:`recover` on the next open or write."""
    if os.path.islink(dest):  # only the link is lost in between: nothing to set aside
        os.unlink(dest)
        renames.rename_noreplace(tmp, dest)
        return tmp
    old = leftovers.leftover_name(dest, leftovers.OLD_SUFFIX)
    os.rename(dest, old)
    try:
        renames.rename_noreplace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, dest)
        raise
    return old


def _commit(tmp: Path, dest: Path, *, overwrite: bool, kind: OutputKind, fsync: bool) -> None:
    """The final step: ``tmp`` becomes ``dest`` in one step, never replacing what appeared
    meanwhile unless ``overwrite`` (and then only an output of ``kind``)."""
    if not overwrite:
        try:
            renames.rename_noreplace(tmp, dest)
        except FileExistsError:
            raise OutputExistsError(
                dest, "appeared while this output was being written (another writer?); it was left as it was and the new output discarded"
            ) from None
    elif kind.folder:
        _replace_folder(tmp, dest, kind, fsync)
    else:
        check_replaceable(dest, kind)
        try:
            os.replace(tmp, dest)  # a file, or a symlink (the link itself)
        except IsADirectoryError:
            raise OutputExistsError(dest, "a folder appeared there while this file was being written; it was left as it was") from None


def check_free_space(dest: Path, where: Path, needed: int) -> None:
    """Refuse, before anything is written, an output of about ``needed`` bytes that the
    file system holding ``where`` has no room for (for a writer whose library cannot fail
    cleanly on a full disk). Another process filling the disk meanwhile is not caught."""
    try:
        st = os.statvfs(where)
    except (OSError, AttributeError):  # no statvfs (Windows): nothing to check
        return
    free = st.f_bavail * st.f_frsize
    if free < needed:
        raise WriteError(dest, f"not enough free space: the output needs about {needed / 2**20:.1f} MiB, the disk has {free / 2**20:.1f} MiB free")


def _as_write_error(dest: Path, exc: BaseException, cleanup: str | None) -> WriteError:
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, XafmError) else str(exc)
    note = f" (and the temporary output could not be removed: {cleanup})" if cleanup else ""
    return WriteError(dest, f"writing failed, nothing was written: {type(exc).__name__}: {cause}{note}")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, overwrite: bool = False, kind: OutputKind = FILE, fsync: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the body succeeds.

    For a file ``kind`` the temporary file exists (empty) and is to be written in place
    (opened for writing, never unlinked and recreated: its lock is on that file); for a
    folder ``kind`` it is an empty folder to fill. An exception in the body removes it and
    leaves an existing ``path`` untouched. The final step refuses to replace anything that
    appeared at ``path`` meanwhile (:class:`OutputExistsError`) unless ``overwrite``, and
    ``overwrite`` replaces only an output of ``kind`` (or a symlink, as a link). With
    ``fsync`` the data are on the disk before the rename and the rename after it.

    Other failures (a full or read-only disk, a failing dask task, a library's error) are
    re-raised as :class:`WriteError` naming the destination; xafm's own errors, its
    programming errors and interrupts keep their type. Folders this write created for
    ``path`` are removed again if it fails.
    """
    dest = Path(path).expanduser()
    recover(dest)
    leftovers.sweep(dest)
    if os.path.lexists(dest):
        if not overwrite:
            raise OutputExistsError(dest, "already exists; pass overwrite=True to replace it")
        check_replaceable(dest, kind)
    temp, created = _start(dest, kind)
    try:
        yield temp.path
        if not (temp.path.is_dir() if kind.folder else temp.path.is_file()):
            raise WriteError(dest, "the writer produced no output")
        if fsync and kind.folder:
            durable.sync_tree(temp.path)
        elif fsync:
            durable.sync_fd(temp.fd)
        _commit(temp.path, dest, overwrite=overwrite, kind=kind, fsync=fsync)
    except BaseException as exc:
        cleanup = leftovers.remove(temp.path)
        _remove_created(created)
        if isinstance(exc, XafmError) or not isinstance(exc, Exception) or is_own_bug(exc):
            raise
        raise _as_write_error(dest, exc, cleanup) from exc
    finally:
        temp.close()
    try:
        _sync_parent(dest, created, fsync)
    except OSError as exc:  # in place, but its name may not survive a power loss
        raise WriteError(dest, f"was written, but syncing its folder to the disk failed: {exc.strerror or exc}") from exc


def _start(dest: Path, kind: OutputKind) -> tuple[leftovers.Locked, list[Path]]:
    """The parents of ``dest`` (those created) and a locked temporary output beside it."""
    created: list[Path] = []
    for attempt in range(3):
        try:
            created += _make_parents(dest.parent)
        except OSError as exc:
            _remove_created(created)
            raise WriteError(dest, f"cannot create the folder {dest.parent}: {exc.strerror or exc}") from exc
        try:
            return leftovers.create_temp(dest, kind.folder), created
        except FileNotFoundError:  # another failed write removed the parent it had created
            if attempt == 2:
                _remove_created(created)
                raise WriteError(dest, f"the folder {dest.parent} keeps disappearing") from None
        except OSError as exc:
            _remove_created(created)
            what = "folder" if kind.folder else "file"
            raise WriteError(dest, f"cannot write here: creating the temporary {what} beside it failed: {exc.strerror or exc}") from exc
    raise AssertionError("unreachable")
