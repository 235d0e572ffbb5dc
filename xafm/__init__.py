"""xafm: atomic force microscopy stacks and high-speed AFM videos as labeled xarray arrays.

>>> import xafm
>>> da = xafm.stack(frames, pixel_size_nm=0.5, times=t)   # dims (time, y, x)
>>> da = da.afm.remove_plane().afm.align_rows()
>>> da.afm.to_h5("video.h5")
>>> xafm.open("video.h5", chunks={"time": 16})
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import xarray as xr

from . import _colormap_hook
from . import accessor as _accessor  # noqa: F401  (registers the .afm accessor)
from ._version import __version__
from .core.model import stack
from .exceptions import (
    ChannelError,
    CorruptFileError,
    FileChangedError,
    FileError,
    FormatError,
    NotAnImageError,
    OutputExistsError,
    RenderError,
    SpecialFileError,
    StackError,
    SuffixMismatchError,
    UnknownFormatError,
    UnknownOptionError,
    UnsafeFileError,
    WriteError,
    XafmError,
    XafmWarning,
)

# xafm_afm and xafm_afm_uniform are registered with matplotlib when matplotlib is imported
# (now, if it already is): import xafm itself does not import it (docs/animation.md)
_colormap_hook.install()

__all__ = [
    "ChannelError",
    "CorruptFileError",
    "FileChangedError",
    "FileError",
    "FormatError",
    "NotAnImageError",
    "OutputExistsError",
    "RenderError",
    "SpecialFileError",
    "StackError",
    "SuffixMismatchError",
    "UnknownFormatError",
    "UnknownOptionError",
    "UnsafeFileError",
    "WriteError",
    "XafmError",
    "XafmWarning",
    "__version__",
    "channels",
    "formats_table",
    "index",
    "open",
    "stack",
]


def open(
    path: str | os.PathLike[str],
    *,
    chunks: Any = None,
    lazy: bool = False,
    channel: str | None = None,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> xr.DataArray:
    """Read any file xafm knows as a labeled stack.

    Parameters
    ----------
    path
        A file (or, for frame-per-file videos and OME-Zarr, a folder), or a URL of one
        (``s3://bucket/video.asd``, ``https://host/store.ome.zarr``, ``gs://``, ``file://``),
        read in byte ranges where the format allows (``docs/formats.md``).
    chunks
        ``None`` (with ``lazy=False``) reads the values now; anything else gives a
        dask-backed stack that reads nothing until computed: ``{}`` takes the file's
        preferred chunks (whole frames, a few tens of MiB per chunk), ``{"time": 16}`` or
        ``"auto"`` as in xarray. For whole-stack work (processing, exports, reductions).
    lazy
        With ``chunks=None``: read nothing now and each selection when its values are
        asked for, through xarray's lazy indexing without dask (as ``xr.open_dataarray``
        without ``chunks``): ``da.isel(time=i).values`` reads frame ``i`` only, in about
        the time the file's own library takes, where dask adds a graph per fetch. For
        interactive access (notebooks, viewers); nothing is cached, ``da.load()`` keeps
        the values. Ignored when ``chunks`` is given. ``docs/data-model.md``, "Eager,
        lazy and dask".
    channel
        The channel to read (``xafm.channels(path)`` lists them).
    storage_options
        For a URL: fsspec's options for its file system (credentials, ``anon=True``,
        ``client_kwargs={"endpoint_url": ...}``), used for this URL and everything below
        it, also by dask workers that read the lazy stack.
    **options
        The options the file's reader declares (``docs/formats.md``); any other is an
        ``UnknownOptionError`` naming them.

    A file that another process replaces or rewrites while it is read is read again, so
    that an eager open gives values and coordinates all of one version; a lazy stack (dask
    or ``lazy=True``) raises ``FileChangedError`` when its file changed
    (``docs/guarantees.md``).
    """
    from .core import sources
    from .core.file_identity import one_version
    from .core.lazy import for_fetching
    from .xarray_plugin import XafmBackendEntrypoint

    _remember(path, storage_options)
    if channel is not None:
        options["channel"] = channel

    def attempt() -> xr.DataArray:
        with warnings.catch_warnings():
            # xarray warns when chunks split the preferred chunks; xafm warns only when they
            # split what the file stores as one chunk (_warn_if_split)
            warnings.filterwarnings("ignore", message="The specified chunks separate the stored chunks", category=UserWarning)
            da = xr.open_dataarray(os.fspath(path), engine=XafmBackendEntrypoint, chunks=chunks, cache=False, **options)
        if chunks is not None:
            return da
        if lazy:  # per-frame coordinates in memory: an isel then costs what xarray's own does
            return for_fetching(da, load_lazy=not sources.is_url(sources.local_path(path)))
        # eager: the metadata pass and this data pass must be of one version (retried if not)
        return da.load()

    da = one_version(path, attempt)
    if chunks is not None:
        _warn_if_split(da, path)
    return da


def _warn_if_split(da: xr.DataArray, path: str | os.PathLike[str]) -> None:
    stored = da.encoding.get("chunks")
    if not stored or da.chunks is None:
        return
    for dim, size, got in zip(da.dims, stored, da.chunks):
        stops = set(range(size, da.sizes[dim], size))
        edges = {sum(got[: i + 1]) for i in range(len(got) - 1)}
        if not edges <= stops:
            warnings.warn(
                f"{os.fspath(path)}: chunks of {got[0]} along {dim!r} split the {size} that the file stores together, "
                f"so each stored chunk is read more than once; multiples of {size} read each once",
                XafmWarning,
                stacklevel=3,
            )
            return


def _remember(path: str | os.PathLike[str], storage_options: dict[str, Any] | None) -> None:
    """Keep a URL's storage options for every later read of it (``core.sources``)."""
    from .core import sources

    if storage_options is None:
        return
    text = sources.local_path(path)
    if not sources.is_url(text):
        raise TypeError(f"storage_options are for URLs (s3://, gs://, https://, ...), not the path {text!r}")
    sources.remember_options(text, storage_options)


def channels(path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The channel names a file (or a URL, with its fsspec ``storage_options``) holds."""
    from . import registry

    _remember(path, storage_options)
    return registry.channels(path)


def formats_table() -> list[dict[str, Any]]:
    """One row per format: name, description, suffixes, read, write, lazy."""
    from . import registry

    return [
        {"name": f.name, "description": f.description, "suffixes": f.suffixes, "read": f.can_read, "write": f.can_write, "lazy": f.lazy}
        for f in registry.table().values()
    ]


def index(folder: str | os.PathLike[str], recursive: bool = False, *, unknown: bool = False, storage_options: dict[str, Any] | None = None) -> Any:
    """One row per file xafm reads in ``folder`` (or below a URL prefix, with its fsspec
    ``storage_options``), from the headers only, as a pandas DataFrame (path, format,
    channels, frames, size in px and nm, pixel size, date, duration; unreadable files with
    their error); docs/folder-index.md."""
    from .folder_index import index as _index

    return _index(folder, recursive, unknown=unknown, storage_options=storage_options)
