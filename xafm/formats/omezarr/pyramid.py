"""Pyramid levels: building level k from level k-1, so no level is held in memory.

When level 0 is written in blocks of whole frames, every level is built from each block
as it is written (:func:`fused`); otherwise level k is built from level k-1 as it lies
in the store, task by task (:func:`build_level`). Both give the same bytes: the 2x2
reductions (:mod:`.reduce`) of the same values, written in the same chunks."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from ...core.lazy import LazyArray
from .geometry import aligned, is_int, level_geometry, level_shape
from .reader import ZarrArraySource
from .reduce import METHODS, downsample_block
from .store import Target, store_dask

__all__ = ["FUSED_TASK_BYTES", "METHODS", "build_level", "downsample_block", "fused"]

#: Largest block of whole frames a dask task holds to build every level of it at once.
FUSED_TASK_BYTES = 64 * 2**20


def fused(shape: tuple, unit: tuple, levels: int, itemsize: int, dask: bool) -> bool:
    """Whether the levels above 0 are built from the blocks of level 0 as they are written
    (:class:`.store.Target` ``below``): blocks of whole frames, which hold whole write units
    of every level. A numpy or lazy stack is written in such blocks anyway; a dask stack's
    tasks then each hold ``unit[0]`` whole frames, so only while those fit in
    :data:`FUSED_TASK_BYTES`; else each level is read back from the one below
    (:func:`build_level`)."""
    if levels < 2:
        return False
    return not dask or unit[0] * shape[1] * shape[2] * itemsize <= FUSED_TASK_BYTES


def build_level(root: str, src: str, dst: str, k: int, shape: tuple, chunks: tuple, shards: tuple | None, method: str, dtype: np.dtype, t0: int, n: int) -> None:
    """Level ``k`` frames ``[t0, t0+n)`` from level ``k-1`` in the store, streamed task by task.

    Each task reads a (t, 2h, 2w) region of the level below (four of its chunks) and writes
    one whole chunk (or shard) of level ``k``.
    """
    prev_shape = level_shape(shape, k - 1)
    shape_k = level_shape(shape, k)
    ck, sk = level_geometry(chunks, shards, shape_k)
    unit = sk or ck
    source = ZarrArraySource(root, src, prev_shape, dtype)
    in_chunks = (aligned(n, unit[0], t0), aligned(2 * shape_k[1], 2 * unit[1]), aligned(2 * shape_k[2], 2 * unit[2]))
    sub = _source_window(source, t0, n, shape_k, in_chunks)
    out = sub.map_blocks(
        downsample_block,
        method,
        dtype,
        chunks=tuple(tuple(c // (1 if ax == 0 else 2) for c in cs) for ax, cs in enumerate(sub.chunks)),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )
    store_dask(out, Target(root, dst), t0, unit, dtype, stats=False)


def _source_window(source: ZarrArraySource, t0: int, n: int, shape_k: tuple, in_chunks: tuple) -> Any:
    """Level k-1 frames [t0, t0+n), trimmed to (2*ny_k, 2*nx_k), chunked for aligned output."""
    import dask.array as dsa

    window = _Window(source, t0, n, 2 * shape_k[1], 2 * shape_k[2])
    return dsa.from_array(window, chunks=in_chunks, lock=False, asarray=True,
                          name=f"xafm-zarr-read-{uuid.uuid4().hex}", meta=np.empty((0, 0, 0), source.dtype), inline_array=True)


class _Window(LazyArray):
    """A (t0.., 0.., 0..) corner window of a stored array."""

    def __init__(self, source: ZarrArraySource, t0: int, n: int, ny: int, nx: int):
        self.source, self.t0 = source, t0
        self.dtype, self.shape = source.dtype, (n, ny, nx)
        self.reads_through(source)

    def _read(self, key: tuple) -> np.ndarray:
        kt = key[0]
        if isinstance(kt, slice):
            a, b, s = kt.indices(self.shape[0])
            kt = slice(a + self.t0, b + self.t0, s)
        elif is_int(kt):
            kt = int(kt) % self.shape[0] + self.t0
        else:
            kt = np.asarray(kt) % self.shape[0] + self.t0
        ky = np.arange(self.shape[1])[key[1]] if not isinstance(key[1], slice) else slice(*key[1].indices(self.shape[1]))
        kx = np.arange(self.shape[2])[key[2]] if not isinstance(key[2], slice) else slice(*key[2].indices(self.shape[2]))
        return self.source._read((kt, ky, kx))
