"""Preferred chunks: how a lazily read stack is cut into dask chunks when nobody says.

``xafm.open(path, chunks={})``, ``xr.open_dataset(path, engine="xafm", chunks={})`` and
the command line take a variable's ``encoding["preferred_chunks"]``. Every lazily read
variable along ``time`` gets them here, in one place: whole frames (never a frame split in
y or x unless the storage itself is), a few at a time, about :data:`CHUNK_BYTES` per chunk,
and the same frames per chunk for the data, its masks, layers and per-frame coordinates,
so a Dataset's chunks agree. A reader whose storage is chunked (Zarr, chunked HDF5) sets
``preferred_chunks`` itself, to multiples of the stored chunks, and ``encoding["chunks"]``
to the stored chunks.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from xarray.core import indexing

from .conventions import TIME

#: Target size of one chunk along time; chunks stay within :data:`CHUNK_RANGE` unless one
#: frame (or one stored chunk) alone is larger, or the whole stack is smaller.
CHUNK_BYTES = 32 * 2**20
CHUNK_RANGE = (16 * 2**20, 64 * 2**20)


def frames_per_chunk(frame_bytes: int, n_frames: int, stored: int = 1) -> int:
    """Whole frames per chunk: about :data:`CHUNK_BYTES`, a multiple of ``stored`` (the
    storage's own frames per chunk), at least one stored chunk, at most the whole stack."""
    stored = max(1, int(stored))
    per_stored = max(1, int(frame_bytes)) * stored
    k = max(1, CHUNK_BYTES // per_stored)
    return max(1, min(int(n_frames), k * stored))


def _is_lazy(var: xr.Variable) -> bool:
    return isinstance(var._data, indexing.ExplicitlyIndexed) and not var._in_memory


def frame_bytes(var: xr.Variable) -> int:
    """Bytes of one time step of ``var``."""
    sizes = [n for d, n in var.sizes.items() if d != TIME]
    return int(np.prod(sizes, dtype=np.int64)) * int(var.dtype.itemsize)


def declare(ds: xr.Dataset) -> xr.Dataset:
    """Give every lazy variable along ``time`` preferred chunks (in place; returns ``ds``).

    The frames per chunk come from the stack's own variable (its declared preferred
    chunks if its reader set them, else :func:`frames_per_chunk`); variables a reader
    already declared are left as they are.
    """
    lead = [v for v in ds.data_vars.values() if TIME in v.dims]
    if not lead:
        return ds
    main = lead[0].variable
    declared = main.encoding.get("preferred_chunks") or {}
    per_chunk = declared.get(TIME) or frames_per_chunk(frame_bytes(main), main.sizes[TIME])
    for var in ds.variables.values():
        if TIME not in var.dims or not _is_lazy(var) or "preferred_chunks" in var.encoding:
            continue
        var.encoding["preferred_chunks"] = {d: (per_chunk if d == TIME else n) for d, n in var.sizes.items()}
    return ds


def declare_stored(var: xr.Variable, stored: dict[str, int]) -> None:
    """Declare the chunks of a variable whose storage is chunked (Zarr, chunked HDF5):
    ``encoding["chunks"]`` is the stored chunk shape, and the preferred chunks are whole
    stored chunks: the stored chunk along y and x, along time as many stored chunks as
    make about :data:`CHUNK_BYTES`."""
    sizes = {str(d): int(n) for d, n in var.sizes.items()}
    inner = {d: min(int(stored.get(d, n)), n) for d, n in sizes.items()}
    step_bytes = int(np.prod([c for d, c in inner.items() if d != TIME], dtype=np.int64)) * var.dtype.itemsize
    preferred = dict(inner)
    if TIME in sizes:
        preferred[TIME] = frames_per_chunk(step_bytes, sizes[TIME], inner[TIME])
    var.encoding["chunks"] = tuple(inner[str(d)] for d in var.dims)
    var.encoding["preferred_chunks"] = preferred
