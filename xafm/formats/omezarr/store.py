"""Writing into Zarr arrays, chunk-aligned and in parallel.

A :class:`Target` is a picklable handle on one array, opened inside each task and never
kept open, so the tasks of a dask stack run on any scheduler (threads, or the workers of
a ``dask.distributed`` cluster). A dask stack is rechunked so that every task writes whole
write units (the shard, else the chunk) that no other task touches; a numpy- or
lazily-backed stack is written block by block in the calling process. Every write can
return the finite min/max of what it wrote (the omero window's ``min``/``max``; its
percentiles come from :mod:`.display`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ...core import blocks, tasks
from ...core.blocks import is_dask, raw_data
from ...core.paths import open_regular
from .geometry import aligned
from .reduce import Range, downsample_block, finite_range

__all__ = ["Range", "Target", "finite_range", "merge_ranges", "store", "store_dask"]


def zarr() -> Any:
    """zarr, imported when a store is first opened."""
    import zarr

    return zarr


def settle_io() -> None:
    """Wait until zarr's IO thread has finished every write this process asked of it.

    zarr 3 runs each read and write as a coroutine on an event loop of its own thread,
    and the calling thread only waits for it: a Ctrl-C interrupts the wait, not the
    writes, which go on and would recreate a store's folders after its clean-up.
    """
    zsync = sys.modules.get("zarr.core.sync")
    loop = getattr(zsync, "loop", [None])[0] if zsync is not None else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def others_done() -> None:
        me = asyncio.current_task()
        while pending := [t for t in asyncio.all_tasks() if t is not me]:
            await asyncio.wait(pending)

    asyncio.run_coroutine_threadsafe(others_done(), loop).result()


@contextlib.contextmanager
def settled_on_failure() -> Iterator[None]:
    """Let a failure (or a Ctrl-C) leave only once no write to the store is in flight:
    the dask tasks are waited for by :func:`xafm.core.tasks.compute`, zarr's own IO here."""
    try:
        yield
    except BaseException:
        settle_io()
        raise


def _get_regular(path: Path, prototype: Any, byte_range: Any) -> Any:
    """zarr's local read of one key, for regular files only (a FIFO named ``zarr.json``
    or a chunk key would block, a device would read without end)."""
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    with open_regular(path) as f:
        if byte_range is None:
            return prototype.buffer.from_bytes(f.read())
        size = f.seek(0, io.SEEK_END)
        if isinstance(byte_range, RangeByteRequest):
            f.seek(byte_range.start)
            return prototype.buffer.from_bytes(f.read(byte_range.end - f.tell()))
        if isinstance(byte_range, OffsetByteRequest):
            f.seek(byte_range.offset)
        elif isinstance(byte_range, SuffixByteRequest):
            f.seek(max(0, size - byte_range.suffix))
        else:
            raise TypeError(f"unexpected byte range {byte_range!r}")
        return prototype.buffer.from_bytes(f.read())


@functools.cache
def _regular_store_class() -> type:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import LocalStore

    class RegularFileStore(LocalStore):
        """A local store that reads regular files only: a FIFO, device or socket at a
        key raises :class:`SpecialFileError` naming it instead of blocking."""

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            if prototype is None:
                prototype = default_buffer_prototype()
            if not self._is_open:
                await self._open()
            try:
                return await asyncio.to_thread(_get_regular, self.root / key, prototype, byte_range)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
            return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    RegularFileStore.__module__ = __name__
    RegularFileStore.__qualname__ = "RegularFileStore"
    return RegularFileStore


def local_store(root: str, mode: str = "r") -> Any:
    """The store of a local folder, reading regular files only (see :func:`_get_regular`)."""
    return _regular_store_class()(root, read_only=(mode == "r"))


def open_array(root: str, component: str, mode: str = "r") -> Any:
    """One array of a local store; opened to write, it writes every chunk, also those
    equal to the fill value (a reader checks extents by the chunks present, :mod:`.extents`)."""
    arr = zarr().open_array(store=local_store(root, mode), path=component, mode=mode)
    return arr if mode == "r" else arr.with_config({"write_empty_chunks": True})


def native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def np_dtype(arr: Any) -> np.dtype:
    """The numpy dtype of a stored array (Zarr v3 dtypes or numpy ones)."""
    dt = arr.dtype
    return np.dtype(dt.to_native_dtype() if hasattr(dt, "to_native_dtype") else dt)


class Target:
    """Picklable handle on one Zarr array: opened inside each task, never kept open.

    ``below`` names the arrays of the further pyramid levels built from every block
    written, which must then be whole frames: level k gets the 2x2 ``method`` reduction
    of level k-1's block (trimmed to even) at the same frames, so a level is made while
    its frames are in memory instead of read back from the store (:func:`.pyramid.fused`).
    """

    def __init__(self, root: str, component: str, below: tuple[str, ...] = (), method: str = "mean"):
        self.root, self.component = root, component
        self.below, self.method = tuple(below), method

    def arrays(self) -> list[Any]:
        return [open_array(self.root, c, "r+") for c in (self.component, *self.below)]

    def write(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        write_into(self.arrays(), region, block, self.method)


def write_into(arrays: list[Any], region: tuple[slice, ...], block: np.ndarray, method: str) -> None:
    """Write ``block`` at ``region`` of ``arrays[0]`` and its reductions into the others."""
    arrays[0][region] = block
    for arr in arrays[1:]:
        block = downsample_block(block[:, : block.shape[1] // 2 * 2, : block.shape[2] // 2 * 2], method, block.dtype)
        arr[region[0]] = block


def merge_ranges(ranges: Any) -> Range | None:
    got = [r for r in ranges if r is not None]
    if not got:
        return None
    return min(r[0] for r in got), max(r[1] for r in got)


def _write_block(block: np.ndarray, target: Target, region: tuple[slice, ...], dtype: np.dtype, stats: bool):
    """One dask task: write one chunk-aligned block; return its finite min/max if asked."""
    block = np.asarray(block).astype(dtype, copy=False)
    target.write(region, block)
    return finite_range(block) if stats else None


def store_dask(arr: Any, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool) -> Range | None:
    """Write a dask array at time offset ``t0``: one task per write unit (chunk or shard)."""
    import dask

    n, ny, nx = arr.shape
    if target.below:  # whole frames: each task writes every level of its frames
        unit = (unit[0], ny, nx)
    arr = arr.rechunk((aligned(n, unit[0], t0), aligned(ny, unit[1]), aligned(nx, unit[2])))
    edges = [np.cumsum((0,) + c) for c in arr.chunks]
    writes = []
    pieces = arr.to_delayed()
    for idx in np.ndindex(*pieces.shape):
        region = tuple(
            slice(int(e[i]) + (t0 if ax == 0 else 0), int(e[i + 1]) + (t0 if ax == 0 else 0))
            for ax, (e, i) in enumerate(zip(edges, idx))
        )
        writes.append(dask.delayed(_write_block, pure=False)(pieces[idx], target, region, dtype, stats, dask_key_name=f"xafm-zarr-write-{uuid.uuid4().hex}"))
    # waits for the running writes on any failure: none lands after the clean-up
    return merge_ranges(tasks.compute(*writes)) if writes else None


def _store_local(obj: xr.DataArray, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool) -> Range | None:
    """Write a numpy- or lazily-backed stack block by block in this process."""
    arrays = target.arrays()
    frame_bytes = max(1, int(np.prod(obj.shape[1:])) * dtype.itemsize)
    per_block = max(unit[0], blocks.BLOCK_BYTES // frame_bytes // unit[0] * unit[0])
    ranges = []
    a = 0
    for size in aligned(obj.shape[0], per_block, t0):
        block = np.asarray(obj[a : a + size].values).astype(dtype, copy=False)
        write_into(arrays, (slice(t0 + a, t0 + a + size),), block, target.method)
        if stats:
            ranges.append(finite_range(block))
        a += size
    return merge_ranges(ranges)


def store(obj: xr.DataArray, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool = False) -> Range | None:
    """Write a stack into ``target`` from frame ``t0`` on, in write units ``unit``;
    return the finite min/max of the values if ``stats``."""
    if is_dask(obj):
        return store_dask(raw_data(obj), target, t0, unit, dtype, stats)
    return _store_local(obj, target, t0, unit, dtype, stats)
