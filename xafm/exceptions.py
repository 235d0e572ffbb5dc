"""xafm's exception hierarchy.

Every error xafm raises on purpose derives from :class:`XafmError`, and also from the
built-in exception a caller would naturally catch (``ValueError`` for bad arguments,
``OSError`` for files), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os


class XafmError(Exception):
    """Base class of every error xafm raises on purpose."""


class XafmWarning(UserWarning):
    """Base class of xafm's warnings."""


class StackError(XafmError, ValueError):
    """A stack, or the arguments that would build one, break the data model."""


class FormatError(XafmError, ValueError):
    """An unknown format name, or an operation a format does not support."""


class RenderError(XafmError, ValueError):
    """Bad rendering options for an animation (colormap, z-scale, fps, sizes)."""


class ChannelError(XafmError, ValueError):
    """A channel was asked for that the file does not hold."""


class FileError(XafmError, OSError):
    """A problem with a particular file; the message always names the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:  # OSError's own __str__ would show the args tuple
        return f"{self.path}: {self.problem}"

    def __reduce__(self):  # keep errors picklable for dask.distributed
        return (type(self), (self.path, self.problem))


class UnknownFormatError(FileError):
    """No reader recognises the file."""


class CorruptFileError(FileError):
    """The file is truncated, inconsistent or not what its name says."""


class UnsafeFileError(CorruptFileError):
    """The file carries content xafm refuses to load (e.g. a pickle payload)."""


class OutputExistsError(FileError, FileExistsError):
    """The destination exists and ``overwrite`` was not given."""


class WriteError(FileError):
    """Writing failed; the destination was left as it was."""


class TruncatedFileWarning(XafmWarning):
    """A video was shorter than its header said; the complete frames were read."""
