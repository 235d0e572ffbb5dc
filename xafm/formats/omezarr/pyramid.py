"""Pyramid levels: 2x2 reduction in y and x (mean, nearest, max, min), and building level
k from level k-1 as it lies in the store, task by task, so no level is held in memory."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from ...core.lazy import LazyArray
from .geometry import aligned, is_int, level_geometry, level_shape
from .reader import ZarrArraySource
from .store import Target, store_dask

METHODS = ("mean", "nearest", "max", "min")


def downsample_block(block: np.ndarray, method: str, dtype: np.dtype) -> np.ndarray:
    """2x2 reduction in y and x of one (t, 2a, 2b) block."""
    if method == "nearest":
        return np.ascontiguousarray(block[:, ::2, ::2])
    t, h, w = block.shape
    r = block.reshape(t, h // 2, 2, w // 2, 2)
    if method == "mean":
        out = r.mean(axis=(2, 4), dtype=np.float64 if dtype.itemsize > 4 or dtype.kind != "f" else np.float32)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(dtype)
    return (r.max(axis=(2, 4)) if method == "max" else r.min(axis=(2, 4))).astype(dtype, copy=False)


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
