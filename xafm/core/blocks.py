"""Streaming a stack block by block: how writers, rendering and processing pull frames
from numpy, dask or lazily indexed stacks without holding more than one block."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr
from xarray.core import indexing

from . import tasks

#: Target size of one block of frames pulled from a dask or lazy stack while writing.
BLOCK_BYTES = 32 * 2**20


def workers() -> int:
    """Threads for numpy work on blocks (percentiles, rendering): the cores, at most 4
    (more only contend for memory bandwidth)."""
    return max(1, min(4, os.cpu_count() or 1))


def raw_data(obj: xr.DataArray | xr.Variable) -> Any:
    var = obj.variable if isinstance(obj, xr.DataArray) else obj
    return var._data


def is_dask(obj: Any) -> bool:
    data = raw_data(obj) if isinstance(obj, (xr.DataArray, xr.Variable)) else obj
    return type(data).__module__.startswith("dask.") and hasattr(data, "chunks")


def time_blocks(obj: xr.DataArray | xr.Variable, target_bytes: int | None = None) -> list[tuple[int, int]]:
    """Frame ranges to pull one at a time: whole dask chunks grouped up to ``target_bytes``."""
    target_bytes = BLOCK_BYTES if target_bytes is None else target_bytes
    n = obj.shape[0]
    frame_bytes = max(1, int(np.prod(obj.shape[1:])) * obj.dtype.itemsize)
    per_block = max(1, target_bytes // frame_bytes)
    data = raw_data(obj)
    if is_dask(obj):
        edges = np.cumsum((0,) + tuple(data.chunks[0]))
        out, start = [], 0
        for stop in edges[1:]:
            if stop - start >= per_block or stop == n:
                out.append((int(start), int(stop)))
                start = int(stop)
        return out
    if isinstance(data, np.ndarray):
        return [(0, n)]
    return [(a, min(n, a + per_block)) for a in range(0, n, per_block)]


def iter_blocks(
    obj: xr.DataArray | xr.Variable, dtype: Any = None, target_bytes: int | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, values)`` for consecutive frame ranges, computing dask lazily.

    Never holds more than one block (plus whatever dask computes in parallel for it), so a
    stack larger than memory streams through. A failing block (or a Ctrl-C) returns only
    once no task of its compute runs (:func:`xafm.core.tasks.compute`).
    """
    data = raw_data(obj)
    for a, b in time_blocks(obj, target_bytes):
        if is_dask(obj):
            block = np.asarray(tasks.compute(data[a:b])[0])  # no task outlives a failure
        elif isinstance(data, np.ndarray):
            block = data[a:b]
        elif isinstance(data, indexing.ExplicitlyIndexed):
            key = indexing.BasicIndexer((slice(a, b), slice(None), slice(None)))
            block = np.asarray(data[key].get_duck_array())  # type: ignore[index]
        else:
            block = np.asarray(data[a:b])
        if dtype is not None:
            block = block.astype(dtype, copy=False)
        yield a, b, block


def iter_frames(obj: xr.DataArray | xr.Variable, dtype: Any = None) -> Iterator[np.ndarray]:
    for _, _, block in iter_blocks(obj, dtype):
        yield from (np.ascontiguousarray(f) for f in block)


def in_memory_or_frames(obj: xr.DataArray | xr.Variable, dtype: Any) -> np.ndarray | Iterator[np.ndarray]:
    """The values themselves when they are already a numpy array (one write is fastest),
    else a frame iterator that streams them."""
    data = raw_data(obj)
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data, dtype=dtype)
    return iter_frames(obj, dtype)
