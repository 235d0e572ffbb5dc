"""Levelling and filters: steps that change the values of every frame (playNano's filters).

Each step runs a kernel (:mod:`._fits`) that treats several frames in one numpy/scipy
call: on a dask stack one task per chunk of frames (lazily), on an in-memory stack pieces
of a few frames shared between two threads (numpy and scipy release the GIL). The levelling steps take ``mask=``, the
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

#: Bytes of float64 frames a kernel call works on: a few frames that stay in the CPU's
#: cache through a step's passes (measured: scipy's filter, the row selections and the
#: plane's sums run as fast as on single frames, faster than on a 100-frame block; the
#: loop over pieces costs microseconds against milliseconds of arithmetic).
BLOCK_BYTES = 8 * 2**20

#: ``kernel(block, mask_block, out)``: the block's new float64 values, in ``out`` if given.
Kernel = Callable[[np.ndarray, "np.ndarray | None", "np.ndarray | None"], np.ndarray]


def _threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _pieces(shape: tuple[int, ...]) -> list[slice]:
    per = max(1, BLOCK_BYTES // max(1, int(np.prod(shape[1:])) * 8))
    return [slice(s, min(shape[0], s + per)) for s in range(0, shape[0], per)]


def _run_block(kernel: Kernel, data: np.ndarray, mask: np.ndarray | None, out_dtype: np.dtype, threads: int = 1) -> np.ndarray:
    """``kernel`` over a block of frames, a few frames at a time (``threads`` at once:
    numpy and scipy release the GIL). Dask chunks run with one thread each, as the
    scheduler already runs two chunks at a time."""
    out = np.empty(data.shape, dtype=out_dtype)

    direct = out_dtype == np.float64

    def one(part: slice) -> None:
        m = None if mask is None else mask[part]
        if direct:
            kernel(data[part], m, out[part])
        else:
            out[part] = kernel(data[part], m, None)

    parts = _pieces(data.shape)
    if len(parts) > 1 and threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, parts))
    else:
        for part in parts:
            one(part)
    return out


def _frames(
    da: xr.DataArray, name: str, kernel: Kernel, *, mask: Any = None, masked: bool = True, keep_layer: bool = False, **params: Any
) -> xr.DataArray:
    """Run a frame-wise ``kernel(block, mask_block, out)`` as the recorded step ``name``; the
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
                return data.map_blocks(lambda b: _run_block(kernel, b, None, out_dtype), dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
            m = dsa.asarray(mask_data).rechunk(data.chunks)
            return dsa.map_blocks(lambda b, mb: _run_block(kernel, b, mb, out_dtype), data, m, dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
        mask_np = None if mask_data is None else np.asarray(mask_data)
        return _run_block(kernel, np.asarray(data), mask_np, out_dtype, threads=_threads())

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
    return _frames(da, "remove_plane", lambda b, m, o: _fits.subtract_polynomial(b, 1, m, o), mask=mask, keep_layer=keep_layer)


@step("filter")
def polynomial_flatten(da: xr.DataArray, order: int = 2, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's least-squares polynomial surface of total degree ``order``."""
    order = _order(order)
    return _frames(da, "polynomial_flatten", lambda b, m, o: _fits.subtract_polynomial(b, order, m, o), mask=mask, keep_layer=keep_layer, order=order)


@step("filter")
def row_median_align(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each scan line's median (of its finite pixels outside ``mask``)."""
    return _frames(da, "row_median_align", lambda b, m, o: _fits.subtract_offsets(b, 2, "median", m, o), mask=mask, keep_layer=keep_layer)


@step("filter")
def align_rows(da: xr.DataArray, method: str = "median", *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each scan line's median (or mean), ignoring NaN and the pixels in ``mask``."""
    if method not in ("median", "mean"):
        raise StackError(f"align_rows method must be 'median' or 'mean', got {method!r}")
    return _frames(da, "align_rows", lambda b, m, o: _fits.subtract_offsets(b, 2, method, m, o), mask=mask, keep_layer=keep_layer, method=method)


@step("filter")
def zero_mean(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's mean height (of its finite pixels outside ``mask``)."""
    return _frames(da, "zero_mean", lambda b, m, o: _fits.subtract_offsets(b, (1, 2), "mean", m, o), mask=mask, keep_layer=keep_layer)


@step("filter")
def zero_median(da: xr.DataArray, *, mask: Any = None, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's median height (of its finite pixels outside ``mask``)."""
    return _frames(da, "zero_median", lambda b, m, o: _fits.subtract_offsets(b, (1, 2), "median", m, o), mask=mask, keep_layer=keep_layer)


@step("filter")
def gaussian_filter(da: xr.DataArray, sigma: float = 1.0, *, keep_layer: bool = False) -> xr.DataArray:
    """Smooth every frame with a Gaussian of ``sigma`` pixels (scipy.ndimage, reflected edges)."""
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise StackError(f"gaussian_filter sigma must be a number, got {sigma!r}") from None
    if not sigma >= 0:
        raise StackError(f"gaussian_filter sigma must be 0 or more, got {sigma!r}")
    return _frames(da, "gaussian_filter", lambda b, m, o: _fits.gaussian(b, sigma, o), masked=False, keep_layer=keep_layer, sigma=sigma)


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
