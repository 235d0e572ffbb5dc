"""xafm: atomic force microscopy stacks and high-speed AFM videos as labeled xarray arrays.

>>> import xafm
>>> da = xafm.stack(frames, pixel_size_nm=0.5, times=t)   # dims (time, y, x)
>>> da = da.afm.remove_plane().afm.align_rows()
>>> da.afm.to_h5("video.h5")
>>> xafm.open("video.h5", chunks={"time": 16})
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from . import accessor as _accessor  # noqa: F401  (registers the .afm accessor)
from . import colormaps as _colormaps  # noqa: F401  (registers xafm_afm, xafm_afm_uniform with matplotlib)
from ._version import __version__
from .exceptions import (
    ChannelError,
    CorruptFileError,
    FileError,
    FormatError,
    OutputExistsError,
    RenderError,
    StackError,
    UnknownFormatError,
    UnsafeFileError,
    WriteError,
    XafmError,
    XafmWarning,
)
from .model import stack

__all__ = [
    "__version__",
    "stack",
    "open",
    "channels",
    "formats_table",
    "XafmError",
    "XafmWarning",
    "StackError",
    "FormatError",
    "ChannelError",
    "FileError",
    "UnknownFormatError",
    "CorruptFileError",
    "UnsafeFileError",
    "OutputExistsError",
    "RenderError",
    "WriteError",
]


def open(path: str | os.PathLike, *, chunks: Any = None, channel: str | None = None, **kwargs: Any) -> xr.DataArray:  # noqa: A001
    """Read any file xafm knows as a labeled stack.

    Parameters
    ----------
    path
        A file (or, for frame-per-file videos, a folder).
    chunks
        ``None`` reads the values now; anything else (``{}``, ``"auto"``,
        ``{"time": 16}``) gives a dask-backed stack that reads nothing until computed.
    channel
        The channel to read (``xafm.channels(path)`` lists them).
    """
    from .xarray_plugin import XafmBackendEntrypoint

    if channel is not None:
        kwargs["channel"] = channel
    da = xr.open_dataarray(os.fspath(path), engine=XafmBackendEntrypoint, chunks=chunks, cache=False, **kwargs)
    if chunks is None:
        da = da.load()
    return da


def channels(path: str | os.PathLike) -> list[str]:
    """The channel names a file holds."""
    from .formats import channels as _channels

    return _channels(path)


def formats_table() -> list[dict[str, Any]]:
    """One row per format: name, suffixes, read, write, lazy."""
    from .formats import FORMATS

    return [
        {"name": f.name, "description": f.description, "suffixes": f.suffixes, "read": f.can_read, "write": f.can_write, "lazy": f.lazy}
        for f in FORMATS.values()
    ]
