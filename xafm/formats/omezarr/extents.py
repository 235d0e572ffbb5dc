"""An array's declared shape is a claim: check it against the chunks the store holds.

A ``zarr.json`` (or ``.zarray``) of a few hundred bytes can declare an axis of 2^40;
reading it builds coordinates and an index of that length. Before any of that is
allocated, :func:`check_extents` asks, for every axis longer than
:data:`UNCHECKED_EXTENT`, whether the store holds the chunk (the shard, for a sharded
array) containing the last element along that axis, the other axes at 0: one existence
check per long axis, through zarr's own chunk key encoding (v2 ``.``/``/``, v3 default
and v2-style keys, shards). A chunk's declared decoded size is bounded too
(:data:`MAX_CHUNK_BYTES`, what Zarr's codecs decode at most).

xafm's writer writes every chunk (``write_empty_chunks``), so its stores always pass.
A foreign store written sparsely (zarr-python 3 leaves out chunks equal to the fill
value by default) whose last chunk along a long axis is all fill value is refused:
its extent cannot be told from a lie.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...exceptions import CorruptFileError

#: Axes up to this length are not checked: their coordinates cost at most 512 KiB.
UNCHECKED_EXTENT = 2**16
#: Largest decoded chunk (or shard) believed: Blosc, the default codec, stops at 2 GiB.
MAX_CHUNK_BYTES = 2**31


def _outer_chunks(arr: Any) -> tuple[int, ...]:
    """The shape of what is stored under one key: the shard if sharded, else the chunk."""
    shards = getattr(arr, "shards", None)
    return tuple(int(c) for c in (shards or arr.chunks))


def _exists(arr: Any, coords: tuple[int, ...]) -> bool:
    from zarr.core.sync import sync

    key = arr.metadata.encode_chunk_key(coords)
    prefix = arr.store_path.path
    return bool(sync(arr.store_path.store.exists(f"{prefix}/{key}" if prefix else key)))


def check_extents(path: str, arr: Any, component: str, extents: tuple[int, ...] | None = None) -> None:
    """Raise :class:`CorruptFileError` naming the store unless the store holds what
    ``arr`` declares along each axis: ``extents`` (default: its shape; shorter where a
    reader uses less of an axis), each long one reached by a stored chunk."""
    shape = tuple(int(s) for s in arr.shape)
    extents = shape if extents is None else tuple(int(e) for e in extents)
    chunks = _outer_chunks(arr)
    if len(chunks) != len(shape) or any(c < 1 for c in chunks):
        raise CorruptFileError(path, f"array {component!r} declares chunks {chunks} for its shape {shape}")
    try:
        itemsize = int(np.dtype(arr.dtype.to_native_dtype() if hasattr(arr.dtype, "to_native_dtype") else arr.dtype).itemsize)
    except (TypeError, ValueError):
        itemsize = 1
    chunk_bytes = int(np.prod([min(c, max(s, 1)) for c, s in zip(chunks, shape)], dtype=object)) * max(itemsize, 1)
    if chunk_bytes > MAX_CHUNK_BYTES:
        raise CorruptFileError(
            path, f"array {component!r} declares chunks {chunks} of {chunk_bytes} bytes each; no Zarr codec stores more than {MAX_CHUNK_BYTES}"
        )
    for axis, n in enumerate(extents):
        if n <= UNCHECKED_EXTENT:
            continue
        coords = tuple((n - 1) // chunks[axis] if a == axis else 0 for a in range(len(shape)))
        if not _exists(arr, coords):
            raise CorruptFileError(
                path,
                f"array {component!r} declares {n} elements along axis {axis} (shape {shape}), but the store holds "
                f"no chunk {coords} where the last of them would be: the declared size is not what the store holds",
            )
