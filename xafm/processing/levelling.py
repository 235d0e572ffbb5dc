"""Levelling and filters: steps that change the values of every frame (playNano's filters).

Each step runs a whole-block kernel (:mod:`._fits`) on many frames at once: on a dask
stack one task per chunk of frames (lazily), on an in-memory stack blocks of frames shared
between threads (numpy and scipy release the GIL). The levelling steps take ``mask=``, the
name of a mask (or ``True``/``"latest"`` for the current one: :func:`.masks.resolve_mask`),
and fit only the pixels it leaves out, as playNano's masked filters do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model
from ..core.blocks import is_dask
from ..exceptions import StackError
from . import _fits
from .apply import _out_dtype, apply
from .catalogue import step
from .masks import resolve_mask

#: Frames per block for in-memory stacks: big enough for BLAS and scipy to run at full
#: speed, small enough that a step's temporaries stay a few tens of MiB.
BLOCK_BYTES = 32 * 2**20

Kernel = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


def _threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_in_memory(kernel: Kernel, data: np.ndarray, mask: np.ndarray | None, out_dtype: np.dtype) -> np.ndarray:
    """``kernel`` over blocks of frames of an in-memory stack, two blocks at a time."""
    n = data.shape[0]
    frame_bytes = max(1, int(np.prod(data.shape[1:])) * 8)
    per = max(1, BLOCK_BYTES // frame_bytes)
    out = np.empty(data.shape, dtype=out_dtype)

    def one(start: int) -> None:
        stop = min(n, start + per)
        out[start:stop] = kernel(data[start:stop], None if mask is None else mask[start:stop])

    starts = range(0, n, per)
    if len(starts) > 1 and _threads() > 1:
        with ThreadPoolExecutor(_threads()) as pool:
            list(pool.map(one, starts))
    else:
        for s in starts:
            one(s)
    return out


def _frames(
    da: xr.DataArray, name: str, kernel: Kernel, *, mask: Any = None, masked: bool = True, keep_layer: bool = False, **params: Any
) -> xr.DataArray:
    """Run a frame-wise ``kernel(block, mask_block)`` as the recorded step ``name``; the
    record's parameters are ``params`` and, for a step that takes a mask (``masked``), the
    mask's name (resolved: never ``"latest"``)."""
    model.check_stack(da, name)
    mask_name = resolve_mask(da, mask)
    mask_data = None if mask_name is None else da.coords[conventions.mask_coord(mask_name)].transpose(*conventions.DIMS).data
    out_dtype = _out_dtype(da.dtype)

    def whole(data: Any, **_: Any) -> Any:
        if is_dask(data):
            import dask.array as dsa

            data = data.rechunk({1: -1, 2: -1})
            if mask_data is None:
                return data.map_blocks(lambda b: kernel(b, None).astype(out_dtype, copy=False), dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
            m = dsa.asarray(mask_data).rechunk(data.chunks)
            return dsa.map_blocks(lambda b, mb: kernel(b, mb).astype(out_dtype, copy=False), data, m, dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
        return _run_in_memory(kernel, np.asarray(data), None if mask_data is None else np.asarray(mask_data), out_dtype)

    whole.__name__ = whole.__qualname__ = name
    whole.__module__ = __name__
    record = {**params, "mask": mask_name} if masked else dict(params)
    return apply(da, whole, name=name, keep_layer=keep_layer, per_frame=False, **record)


# --------------------------------------------------------------------------------------
# single frames (the public helpers of earlier versions)
# --------------------------------------------------------------------------------------
def plane_fit(frame: np.ndarray) -> np.ndarray:
    """Subtract the least-squares plane ``a*x + b*y + c`` (over finite pixels)."""
    f = np.asarray(frame, dtype=np.float64)
    return _fits.subtract_polynomial(f[None], 1)[0]


def row_align(frame: np.ndarray, method: str = "median") -> np.ndarray:
    """Subtract each scan line's median (or mean), ignoring NaN."""
    f = np.asarray(frame, dtype=np.float64)
    return _fits.subtract_offsets(f[None], 2, method)[0]


# --------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------
def _order(order: Any) -> int:
    try:
        value = float(order)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value >= 1 and value == int(value)) or isinstance(order, bool):
        raise StackError(f"polynomial_flatten order must be a positive integer, got {order!r}")
    return int(value)


@step("filter")
def remove_plane(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's least-squares plane, fitted to the finite pixels outside ``mask``."""
    return _frames(da, "remove_plane", lambda b, m: _fits.subtract_polynomial(b, 1, m), mask=mask, keep_layer=keep_layer)


@step("filter")
def polynomial_flatten(da: xr.DataArray, order: int = 2, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's least-squares polynomial surface of total degree ``order``."""
    order = _order(order)
    return _frames(da, "polynomial_flatten", lambda b, m: _fits.subtract_polynomial(b, order, m), mask=mask, keep_layer=keep_layer, order=order)


@step("filter")
def row_median_align(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each scan line's median (of its finite pixels outside ``mask``)."""
    return _frames(da, "row_median_align", lambda b, m: _fits.subtract_offsets(b, 2, "median", m), mask=mask, keep_layer=keep_layer)


@step("filter")
def align_rows(da: xr.DataArray, method: str = "median", *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each scan line's median (or mean), ignoring NaN and the pixels in ``mask``."""
    if method not in ("median", "mean"):
        raise StackError(f"align_rows method must be 'median' or 'mean', got {method!r}")
    return _frames(da, "align_rows", lambda b, m: _fits.subtract_offsets(b, 2, method, m), mask=mask, keep_layer=keep_layer, method=method)


@step("filter")
def zero_mean(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's mean height (of its finite pixels outside ``mask``)."""
    return _frames(da, "zero_mean", lambda b, m: _fits.subtract_offsets(b, (1, 2), "mean", m), mask=mask, keep_layer=keep_layer)


@step("filter")
def zero_median(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's median height (of its finite pixels outside ``mask``)."""
    return _frames(da, "zero_median", lambda b, m: _fits.subtract_offsets(b, (1, 2), "median", m), mask=mask, keep_layer=keep_layer)


@step("filter")
def gaussian_filter(da: xr.DataArray, sigma: float = 1.0, *, keep_layer: bool = False) -> xr.DataArray:
    """Smooth every frame with a Gaussian of ``sigma`` pixels (scipy.ndimage, reflected edges)."""
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise StackError(f"gaussian_filter sigma must be a number, got {sigma!r}") from None
    if not sigma >= 0:
        raise StackError(f"gaussian_filter sigma must be 0 or more, got {sigma!r}")
    return _frames(da, "gaussian_filter", lambda b, m: _fits.gaussian(b, sigma), masked=False, keep_layer=keep_layer, sigma=sigma)


@step("filter")
def vertical_flip(da: xr.DataArray, *, keep_layer: bool = False) -> xr.DataArray:
    """Reverse the order of every frame's rows (its masks with it; coordinates unchanged)."""
    model.check_stack(da, "vertical_flip")

    def flip(data: Any) -> Any:
        return data[:, ::-1, :]

    flip.__qualname__ = flip.__name__ = "vertical_flip"
    out = apply(da, flip, name="vertical_flip", keep_layer=keep_layer, per_frame=False)
    flipped = {}
    for mname in model.masks(da):
        key = conventions.mask_coord(mname)
        coord = da.coords[key].transpose(*conventions.DIMS)
        flipped[key] = (conventions.DIMS, coord.data[:, ::-1, :], coord.attrs)
    return out.assign_coords(flipped) if flipped else out
