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
import concurrent.futures
import contextlib
import functools
import io
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ...core import blocks, percentiles, sources, tasks
from ...core.blocks import is_dask, raw_data
from ...core.paths import open_regular
from .geometry import aligned
from .reduce import Range, downsample_block, finite_range

__all__ = ["Range", "Target", "Written", "finite_range", "merge_ranges", "store", "store_dask"]


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


def root_of(path: str | Path) -> str:
    """Where a store is, as its readers and tasks keep it: an absolute path (dask workers
    may run in another directory), or a URL as given (without a trailing ``/``)."""
    text = sources.local_path(os.fspath(path))
    if sources.is_url(text):
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))


def options_of(root: str) -> dict[str, Any] | None:
    """The storage options a URL's store is opened with (None for a local path): kept
    by every picklable handle, since a dask worker has none remembered of its own."""
    return sources.storage_options(root) if sources.is_url(root) else None


#: Stores opened in this process, by (process, URL, mode, options): a file system's session
#: (its connection pool) is made once per process, never pickled into a dask graph.
_url_stores: dict[tuple[int, str, str, str], Any] = {}
_URL_STORES_KEPT = 32


def _for_chunks(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options with s3fs told to GET a whole object in one request (unless the user
    said otherwise): its default first asks for the size (a HEAD per chunk) to split
    objects above 50 MiB into concurrent ranges, which a chunk or a metadata object
    never needs. That halves the requests per frame read (a shard above 50 MiB is then
    also uploaded in sequential parts rather than concurrent ones)."""
    if sources.protocol(url) in ("s3", "s3a") and "max_concurrency" not in options:
        return {**options, "max_concurrency": 1}
    return options


def url_store(url: str, mode: str = "r", options: dict[str, Any] | None = None) -> Any:
    """zarr's own store for a URL (``s3://``, ``gs://``, ``https://``), through fsspec
    with ``options`` (else those remembered for the URL). Tasks keep the URL and the
    options; each process opens the store once and reuses it (see :data:`_url_stores`)."""
    from zarr.storage import FsspecStore

    opts = _for_chunks(url, sources.storage_options(url) if options is None else options)
    key = (os.getpid(), url, "r" if mode == "r" else "w", json.dumps(opts, sort_keys=True, default=repr))
    got = _url_stores.get(key)
    if got is not None:
        return got
    try:
        got = FsspecStore.from_url(url, storage_options=opts, read_only=(mode == "r"))
    except ImportError as err:
        package = sources.EXTRAS.get(sources.protocol(url), "the fsspec implementation of " + sources.protocol(url))
        raise ImportError(f"opening {url} needs {package}: pip install 'xafm[remote]'") from err
    if len(_url_stores) >= _URL_STORES_KEPT:
        _url_stores.pop(next(iter(_url_stores)))
    _url_stores[key] = got
    return got


def store_of(root: str, mode: str = "r", options: dict[str, Any] | None = None) -> Any:
    """The store at ``root``: a URL's (:func:`url_store`) or a local folder's (:func:`local_store`)."""
    if sources.is_url(root):
        return url_store(root, mode, options)
    return local_store(root, mode)


#: The Zarr format of the stores at URLs opened in this process: told to zarr, it asks for
#: one metadata object per open (``zarr.json``) instead of three (and ``.zarray``, ``.zattrs``).
_url_formats: dict[str, int] = {}


def note_format(root: str, node: Any) -> None:
    """Remember the Zarr format of the store at a URL ``root`` from a group or array of it."""
    if sources.is_url(root):
        _url_formats[root] = int(node.metadata.zarr_format)


def _open_url_array(root: str, component: str, mode: str, options: dict[str, Any] | None) -> Any:
    """One array of a URL's store, with one metadata request when its format is known
    (a store replaced by one of the other format is opened again without it)."""
    zr = zarr()
    store = store_of(root, mode, options)
    known = _url_formats.get(root)
    if known is not None:
        try:
            return zr.open_array(store=store, path=component, mode=mode, zarr_format=known)
        except (FileNotFoundError, zr.errors.NodeNotFoundError, zr.errors.MetadataValidationError):
            pass
    arr = zr.open_array(store=store, path=component, mode=mode)
    note_format(root, arr)
    return arr


def open_array(root: str, component: str, mode: str = "r", options: dict[str, Any] | None = None) -> Any:
    """One array of a store; opened to write, it writes every chunk, also those
    equal to the fill value (a reader checks extents by the chunks present, :mod:`.extents`)."""
    if sources.is_url(root):
        arr = _open_url_array(root, component, mode, options)
    else:
        arr = zarr().open_array(store=store_of(root, mode, options), path=component, mode=mode)
    return arr if mode == "r" else arr.with_config({"write_empty_chunks": True})


def native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def np_dtype(arr: Any) -> np.dtype:
    """The numpy dtype of a stored array (Zarr v3 dtypes or numpy ones)."""
    dt = arr.dtype
    return np.dtype(dt.to_native_dtype() if hasattr(dt, "to_native_dtype") else dt)


class Target:
    """Picklable handle on one Zarr array, opened where the tasks run (a zarr array holds
    no file open: each chunk is a file of its own, opened per read or write).

    ``below`` names the arrays of the further pyramid levels built from every block
    written, which must then be whole frames: level k gets the 2x2 ``method`` reduction
    of level k-1's block (trimmed to even) at the same frames, so a level is made while
    its frames are in memory instead of read back from the store (:func:`.pyramid.fused`).
    """

    def __init__(self, root: str, component: str, below: tuple[str, ...] = (), method: str = "mean"):
        self.root, self.component = root, component
        self.options = options_of(root)  # a URL's: the worker opens it with them
        self.below, self.method = tuple(below), method
        self._opened: list[Any] | None = None

    def arrays(self) -> list[Any]:
        """The arrays, opened once per copy of this target (a task graph's tasks share
        it in one process; a pickled copy opens them again where it runs)."""
        opened = self._opened
        if opened is None:
            opened = self._opened = [open_array(self.root, c, "r+", self.options) for c in (self.component, *self.below)]
        return opened

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def write(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        write_into(self.arrays(), region, block, self.method)


def write_into(arrays: list[Any], region: tuple[slice, ...], block: np.ndarray, method: str) -> None:
    """Write ``block`` at ``region`` of ``arrays[0]`` and its reductions into the others."""
    arrays[0][region] = block
    for arr, lower in zip(arrays[1:], reductions(block, method)):
        arr[region[0]] = lower


def reductions(block: np.ndarray, method: str) -> Iterator[np.ndarray]:
    """The 2x2 reductions of a block of whole frames, level after level (without end)."""
    while True:
        block = downsample_block(block[:, : block.shape[1] // 2 * 2, : block.shape[2] // 2 * 2], method, block.dtype)
        yield block


def merge_ranges(ranges: Any) -> Range | None:
    got = [r for r in ranges if r is not None]
    if not got:
        return None
    return min(r[0] for r in got), max(r[1] for r in got)


class Written(NamedTuple):
    """What a write returns: the finite range of the values (when asked) and, when asked
    and the tasks held whole frames, the histogram of the values made by the tasks
    (binning, parts: :func:`xafm.core.percentiles.block_histogram`), for the z-scale."""

    range: Range | None
    histogram: tuple[percentiles.Binning, list[tuple[np.ndarray, np.ndarray]]] | None = None


def _write_block(block: np.ndarray, target: Target, region: tuple[slice, ...], dtype: np.dtype, stats: bool, how: percentiles.Binning | None = None) -> tuple[Range | None, Any]:
    """One dask task: write one chunk-aligned block; return its finite min/max if asked,
    and its histogram binned as ``how`` if given."""
    block = np.asarray(block).astype(dtype, copy=False)
    target.write(region, block)
    return (finite_range(block) if stats else None), (percentiles.block_histogram(block, how) if how is not None else None)


def _binning(dtype: np.dtype, first: np.ndarray, *others: np.ndarray) -> percentiles.Binning:
    return percentiles.binning(*(np.asarray(b).astype(dtype, copy=False) for b in (first, *others)))


def store_dask(arr: Any, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool, histogram: bool = False) -> Written:
    """Write a dask array at time offset ``t0``: one task per write unit (chunk or shard),
    or per ``unit[0]`` whole frames when the target builds further levels.

    With ``histogram`` and tasks of whole frames, each task also bins its values as a
    task of its own decides from the first, middle and last blocks (centre from the
    first, tail thresholds from all three: :func:`xafm.core.percentiles.binning`; those
    blocks are computed once all the same), so the z-scale needs no pass of its own."""
    import dask

    n, ny, nx = arr.shape
    if target.below:  # whole frames: each task writes every level of its frames
        unit = (unit[0], ny, nx)
    arr = arr.rechunk((aligned(n, unit[0], t0), aligned(ny, unit[1]), aligned(nx, unit[2])))
    edges = [np.cumsum((0,) + c) for c in arr.chunks]
    writes = []
    pieces = arr.to_delayed()
    how = None
    if histogram and pieces.size and pieces.shape[1:] == (1, 1):
        picked = sorted({0, pieces.shape[0] // 2, pieces.shape[0] - 1})
        how = dask.delayed(_binning, pure=False)(dtype, *(pieces[i, 0, 0] for i in picked), dask_key_name=f"xafm-zarr-binning-{uuid.uuid4().hex}")
    for idx in np.ndindex(*pieces.shape):
        region = tuple(
            slice(int(e[i]) + (t0 if ax == 0 else 0), int(e[i + 1]) + (t0 if ax == 0 else 0))
            for ax, (e, i) in enumerate(zip(edges, idx))
        )
        writes.append(dask.delayed(_write_block, pure=False)(pieces[idx], target, region, dtype, stats, how, dask_key_name=f"xafm-zarr-write-{uuid.uuid4().hex}"))
    if not writes:
        return Written(None)
    while len(writes) > 1:  # a tree of merges: the tasks' results are not all held at the end
        writes = [dask.delayed(_merged, pure=False)(writes[i : i + _FAN_IN], dask_key_name=f"xafm-zarr-merge-{uuid.uuid4().hex}") for i in range(0, len(writes), _FAN_IN)]
    # waits for the running writes on any failure: none lands after the clean-up
    done = tasks.compute(writes[0], *([how] if how is not None else []))
    rng, hist = done[0]
    return Written(rng if stats else None, (done[1], [hist]) if how is not None else None)


#: Results of write tasks merged by one task.
_FAN_IN = 8


def _merged(results: list[tuple[Range | None, Any]]) -> tuple[Range | None, Any]:
    """The finite range and the histogram (occupied bins) of several write tasks' blocks."""
    rng = merge_ranges(r for r, _ in results)
    parts = [h for _, h in results if h is not None]
    if not parts:
        return rng, None
    if len(parts) == 1:
        return rng, parts[0]
    keys = np.concatenate([k for k, _ in parts])
    uniq, inverse = np.unique(keys, return_inverse=True)
    counts = np.zeros(uniq.size, np.int64)
    np.add.at(counts, inverse, np.concatenate([c for _, c in parts]))
    return rng, (uniq, counts)


def _store_local(obj: xr.DataArray, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool) -> Written:
    """Write a numpy- or lazily-backed stack block by block in this process.

    The writes go to two IO threads (blocks cover whole write units, so no two writes
    share a chunk) while this one reads the next block and computes the reductions and
    the finite range: zarr's writes mostly wait on the disk, and one thread left the
    disk idle between writes (1.5 GiB on a busy disk: 1.60x zarr-python's ``a[:] =``
    with one, 1.02x with two, one run each). At most two blocks are in flight; on a
    failure the writes not started are dropped and the running ones are waited for."""
    arrays = target.arrays()
    frame_bytes = max(1, int(np.prod(obj.shape[1:])) * dtype.itemsize)
    per_block = max(unit[0], blocks.BLOCK_BYTES // frame_bytes // unit[0] * unit[0])
    ranges = []
    a = 0
    pending: list[concurrent.futures.Future[None]] = []
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="xafm-zarr-write") as io_threads:
        try:
            for size in aligned(obj.shape[0], per_block, t0):
                block = np.asarray(obj[a : a + size].values).astype(dtype, copy=False)
                region = (slice(t0 + a, t0 + a + size),)
                pending.append(io_threads.submit(arrays[0].__setitem__, region, block))
                for arr, lower in zip(arrays[1:], reductions(block, target.method)):
                    pending.append(io_threads.submit(arr.__setitem__, region, lower))
                if stats:
                    ranges.append(finite_range(block))
                while len(pending) > 2 * len(arrays):  # the block before last is written
                    pending.pop(0).result()
                a += size
            for f in pending:
                f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return Written(merge_ranges(ranges))


def store(obj: xr.DataArray, target: Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool = False, histogram: bool = False) -> Written:
    """Write a stack into ``target`` from frame ``t0`` on, in write units ``unit``;
    return the finite min/max of the values if ``stats`` and, for a dask stack, their
    histogram if ``histogram`` (see :func:`store_dask`)."""
    if is_dask(obj):
        return store_dask(raw_data(obj), target, t0, unit, dtype, stats, histogram)
    return _store_local(obj, target, t0, unit, dtype, stats)
