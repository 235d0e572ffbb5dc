"""Levelling and filters: steps that change the values frame by frame."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ..exceptions import StackError
from .apply import apply
from .catalogue import step


# --------------------------------------------------------------------------------------
def plane_fit(frame: np.ndarray) -> np.ndarray:
    """Subtract the least-squares plane ``a*x + b*y + c`` (over finite pixels)."""
    f = np.asarray(frame, dtype=np.float64)
    ny, nx = f.shape
    finite = np.isfinite(f)
    n = int(finite.sum())
    if n == 0:
        return f
    x = np.arange(nx, dtype=np.float64) - (nx - 1) / 2
    y = np.arange(ny, dtype=np.float64) - (ny - 1) / 2
    if n == f.size:
        # regular full grid: x and y are orthogonal and centred, so the fit separates
        c = f.mean()
        a = (f.sum(axis=0) @ x) / (ny * (x @ x)) if nx > 1 else 0.0
        b = (f.sum(axis=1) @ y) / (nx * (y @ y)) if ny > 1 else 0.0
    else:
        yy, xx = np.nonzero(finite)
        A = np.column_stack([x[xx], y[yy], np.ones(n)])
        (a, b, c), *_ = np.linalg.lstsq(A, f[finite], rcond=None)
    return f - (a * x[None, :] + b * y[:, None] + c)


def row_align(frame: np.ndarray, method: str = "median") -> np.ndarray:
    """Subtract each scan line's median (or mean), ignoring NaN."""
    f = np.asarray(frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN
        ref = np.nanmedian(f, axis=1, keepdims=True) if method == "median" else np.nanmean(f, axis=1, keepdims=True)
    return f - ref


@step("filter")
def remove_plane(da: xr.DataArray, *, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each frame's least-squares plane (over its finite pixels)."""
    return apply(da, plane_fit, name="remove_plane", keep_layer=keep_layer)


@step("filter")
def align_rows(da: xr.DataArray, method: str = "median", *, keep_layer: bool = False) -> xr.DataArray:
    """Subtract each scan line's median (or mean), ignoring NaN."""
    if method not in ("median", "mean"):
        raise StackError(f"align_rows method must be 'median' or 'mean', got {method!r}")
    return apply(da, row_align, name="align_rows", keep_layer=keep_layer, method=method)
