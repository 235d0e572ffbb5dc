"""xafm's exception hierarchy, and the one place that decides what a failure means.

Every error xafm raises on purpose derives from :class:`XafmError`, and also from the
built-in exception a caller would naturally catch (``ValueError`` for bad arguments,
``OSError`` for files), so ``except ValueError`` keeps working.

:func:`reading` is where a failure while parsing a file becomes a
:class:`CorruptFileError` naming the file, and :func:`is_own_bug` where a programming
error in xafm is told apart, so that it reaches the user as what it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any


class XafmError(Exception):
    """Base class of every error xafm raises on purpose."""


class XafmWarning(UserWarning):
    """Base class of xafm's warnings."""


class StackError(XafmError, ValueError):
    """A stack, or the arguments that would build one, break the data model."""


class FormatError(XafmError, ValueError):
    """An unknown format name, or an operation a format does not support."""


class UnknownOptionError(FormatError, TypeError):
    """A reader or writer was given an option it does not declare (a misspelt keyword)."""


class RenderError(XafmError, ValueError):
    """Bad rendering options for an animation (colormap, z-scale, fps, sizes)."""


class ChannelError(XafmError, ValueError):
    """A channel was asked for that the file does not hold."""


class FileError(XafmError, OSError):
    """A problem with a particular file; the message always names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:  # OSError's own __str__ would show the args tuple
        return f"{self.path}: {self.problem}"

    def __reduce__(self) -> tuple[Any, ...]:  # keep errors picklable for dask.distributed
        return (type(self), (self.path, self.problem))


class UnknownFormatError(FileError):
    """No reader recognises the file."""


class SuffixMismatchError(UnknownFormatError):
    """The file's content is another format than its name says."""


class CorruptFileError(FileError):
    """The file is truncated, inconsistent or not what its name says."""


class NotAnImageError(FileError):
    """The file is a sound measurement that is not an image stack (a force curve, a force
    map, a spectrum): xafm reads images. Not a :class:`CorruptFileError`, which says the
    file is damaged."""


class UnsafeFileError(CorruptFileError):
    """The file carries content xafm refuses to load (e.g. a pickle payload)."""


class SpecialFileError(FileError):
    """The path is a FIFO, a device, a socket or another non-regular file: xafm opens only
    regular files (and folders, for the formats that are folders), so that nothing waits
    on a pipe or reads ``/dev/zero`` without end."""


class FileChangedError(FileError):
    """The file a lazy array was opened on is no longer the file at that path (it was
    replaced, rewritten or truncated since): reading on would mix two versions."""


class OutputExistsError(FileError, FileExistsError):
    """The destination exists and ``overwrite`` was not given."""


class RemoteError(FileError):
    """A URL could not be read: the server refused the request (credentials, permissions),
    failed, or could not be reached. The message names the URL and the cause."""


class ObjectNotFoundError(UnknownFormatError, FileNotFoundError):
    """No object (or no bucket) at a URL: what a missing local file is, for a URL."""


class WriteError(FileError):
    """Writing failed; the destination was left as it was."""


class TruncatedFileWarning(XafmWarning):
    """A video was shorter than its header said; the complete frames were read."""


# --------------------------------------------------------------------------------------
# what a failure means
# --------------------------------------------------------------------------------------
#: Exception types that, raised by xafm's own code, are programming errors: a file's
#: content cannot cause them once a reader checks what it parses.
BUG_TYPES: tuple[type[BaseException], ...] = (AttributeError, NameError, TypeError, AssertionError, NotImplementedError)


def _innermost_module(exc: BaseException) -> str:
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", ""))


def is_own_bug(exc: BaseException) -> bool:
    """Whether ``exc`` is a programming error in xafm rather than a verdict on a file.

    True for an ``AttributeError``, ``NameError``, ``TypeError``, ``AssertionError`` or
    ``NotImplementedError`` raised by xafm's own code (the innermost frame is in an
    ``xafm`` module). The same types raised inside a library that was parsing the file
    (h5py, tifffile, zarr, ...) say that the file is damaged; a bad call from xafm into a
    library fails in xafm's frame, so it still counts as xafm's bug.
    """
    if not isinstance(exc, BUG_TYPES):
        return False
    module = _innermost_module(exc)
    return module == "xafm" or module.startswith("xafm.")


def passes_through(exc: BaseException) -> bool:
    """Failures that keep their own type wherever they happen: xafm's own errors, a
    missing optional dependency, interrupts, and xafm's programming errors."""
    return isinstance(exc, (XafmError, ImportError)) or not isinstance(exc, Exception) or is_own_bug(exc)


def as_corrupt(path: str | os.PathLike[str], action: str, exc: BaseException) -> CorruptFileError:
    """The :class:`CorruptFileError` that a parse failure ``exc`` on ``path`` becomes."""
    if isinstance(exc, MemoryError):
        return CorruptFileError(path, f"{action} failed: the file asks for an implausible amount of memory")
    return CorruptFileError(path, f"{action} failed: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def reading(path: str | os.PathLike[str], action: str = "reading") -> Iterator[None]:
    """Run a reader's work; a failure to parse the file becomes a ``CorruptFileError``.

    Readers raise precise xafm errors themselves; this turns what they did not foresee
    (``struct.error``, a ``KeyError`` on a missing member, a library's own error on a
    damaged file, the data model's :class:`StackError` on a stack built from lying
    sizes) into an error that names the file. xafm's own programming errors and
    missing dependencies pass through unchanged (:func:`passes_through`).
    """
    try:
        yield
    except StackError as exc:  # the data model refused what the reader made of the file
        raise CorruptFileError(path, f"{action} failed: the file describes no valid stack: {exc}") from exc
    except BaseException as exc:
        if passes_through(exc):
            raise
        raise as_corrupt(path, action, exc) from exc
