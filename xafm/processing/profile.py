"""Line profiles and kymographs: a stack's values sampled along a straight line, frame by
frame, as a labeled ``(time, distance)`` DataArray.

A kymograph *is* a line profile over time: :func:`kymograph` returns the same array as
:func:`profile` (only its provenance name differs), and "kymograph" names the picture
:func:`xafm.render.plot.plot_kymograph` draws of it (time downward, distance across).
Points are in nm, in the stack's own ``y``/``x`` coordinates, as ``(y, x)`` pairs like every
pair in xafm (``pixel_size_nm``, ``origin_nm``), or as ``{"x": ..., "y": ...}``. Sampling
runs per frame with :func:`scipy.ndimage.map_coordinates` inside :func:`xarray.apply_ufunc`,
so a dask stack stays lazy until the profile's values are asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError
from .apply import _step_index

#: Interpolation methods and the spline order each is.
METHODS = {"nearest": 0, "linear": 1, "cubic": 3}
#: The dim (and coordinate, in nm) along the line.
DISTANCE = "distance"
#: How far (in pixels) a sample may lie outside the frame's pixel centres and still count as
#: inside: the rounding of nm -> pixel arithmetic, not a real overshoot.
_EDGE_TOLERANCE_PX = 1e-6


def _point(p: Any, what: str) -> tuple[float, float]:
    """``(y, x)`` in nm from a ``(y, x)`` pair or a mapping with ``x`` and ``y``."""
    if isinstance(p, Mapping):
        if set(p) != {"x", "y"}:
            raise StackError(f"{what} as a mapping needs exactly the keys 'x' and 'y', got {sorted(map(str, p))}")
        vals: Any = (p["y"], p["x"])
    else:
        vals = p
    try:
        y, x = (float(v) for v in vals)
    except (TypeError, ValueError):
        raise StackError(f"{what} must be a (y, x) pair of numbers in nm or {{'x': ..., 'y': ...}}, got {p!r}") from None
    if not (math.isfinite(y) and math.isfinite(x)):
        raise StackError(f"{what} must be finite, got {p!r}")
    return y, x


def _sample_points(start: tuple[float, float], end: tuple[float, float], num: int, width: float, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distances along the line, the (y, x) nm positions of its samples, and those of every
    sample averaged: ``(lines, num)``, parallel lines at most ``step`` apart across ``width``."""
    (y0, x0), (y1, x1) = start, end
    length = math.hypot(y1 - y0, x1 - x0)
    t = np.linspace(0.0, 1.0, num)
    ys, xs = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
    lines = 1 + math.ceil(width / step - 1e-9) if width > 0 else 1
    offsets = np.linspace(-width / 2, width / 2, lines) if lines > 1 else np.zeros(1)
    ny, nx = (x1 - x0) / length, -(y1 - y0) / length  # unit normal, (y, x)
    band_y, band_x = ys[None, :] + offsets[:, None] * ny, xs[None, :] + offsets[:, None] * nx
    return t * length, ys, xs, band_y, band_x


def _sampler(iy: np.ndarray, ix: np.ndarray, order: int, inside: np.ndarray, lines: int, out_dtype: np.dtype) -> Any:
    """A function of ``(..., y, x)`` frames -> ``(..., distance)`` samples, mean over the lines."""
    from scipy import ndimage

    coords = np.stack([iy.ravel(), ix.ravel()])
    num = iy.shape[-1]

    def sample(block: np.ndarray) -> np.ndarray:
        lead = block.shape[:-2]
        frames = block.reshape((-1, *block.shape[-2:]))
        out = np.empty((frames.shape[0], num), dtype=out_dtype)
        for i, frame in enumerate(frames):
            vals = ndimage.map_coordinates(np.asarray(frame, dtype=out_dtype), coords, order=order, mode="nearest", output=out_dtype)
            vals = np.where(inside.ravel(), vals, np.nan).reshape(lines, num)
            out[i] = vals[0] if lines == 1 else vals.mean(axis=0)
        return out.reshape((*lead, num))

    return sample


def profile(da: xr.DataArray, start: Any, end: Any, *, num: int | None = None, method: str = "linear", width: float = 0.0) -> xr.DataArray:
    """The values along the straight line from ``start`` to ``end``, in every frame.

    Parameters
    ----------
    start, end
        The line's ends in nm, in the stack's ``y``/``x`` coordinates: ``(y, x)`` pairs (the
        order of every pair in xafm) or mappings ``{"x": ..., "y": ...}``.
    num
        Number of samples; default one per (finer) pixel of length, ends included.
    method
        ``"linear"`` (bilinear), ``"nearest"`` or ``"cubic"`` (a cubic spline: NaN in a
        frame makes its whole profile NaN).
    width
        Width in nm of a band centred on the line: parallel lines about one pixel apart
        across it are averaged (0: the line alone).

    Returns
    -------
    DataArray
        The stack's dims with ``y, x`` replaced by ``distance`` (nm from ``start``), with
        ``y`` and ``x`` coordinates along ``distance`` (the samples' positions, nm), the
        per-frame coordinates, units and channel, and a provenance record. Samples outside
        the frame are NaN. dask stacks stay lazy (per frame, any chunks along time).
    """
    return line_samples(da, start, end, num=num, method=method, width=width, name="profile")


def line_samples(da: xr.DataArray, start: Any, end: Any, *, num: int | None, method: str, width: float, name: str) -> xr.DataArray:
    """:func:`profile` and :func:`kymograph`, recorded in the provenance under ``name``."""
    if conventions.Y not in da.dims or conventions.X not in da.dims:
        raise StackError(f"{name} needs y and x dims; the array has {da.dims}")
    if DISTANCE in da.dims or DISTANCE in da.coords:
        raise StackError(f"{name}: the array already has a {DISTANCE!r} dim or coordinate")
    if method not in METHODS:
        raise StackError(f"{name}: method must be one of {sorted(METHODS)}, got {method!r}")
    if da.dtype.kind not in "iuf":
        raise StackError(f"{name} needs numeric values, the array has dtype {da.dtype}")
    p0, p1 = _point(start, "start"), _point(end, "end")
    length = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
    if not length > 0:
        raise StackError(f"{name}: start and end are the same point {p0} (y, x nm); a line needs two")
    try:
        width = float(width)
    except (TypeError, ValueError):
        raise StackError(f"{name}: width must be a number of nm, got {width!r}") from None
    if not (math.isfinite(width) and width >= 0):
        raise StackError(f"{name}: width must be a finite number of nm >= 0, got {width!r}")
    dy, dx = model.pixel_size_nm(da)
    y0, x0 = model.origin_nm(da)
    step = min(dy, dx)
    if num is None:
        num = max(2, math.ceil(length / step - 1e-9) + 1)
    elif isinstance(num, (bool, np.bool_)) or not isinstance(num, (int, np.integer)) or num < 2:
        raise StackError(f"{name}: num must be an integer >= 2, got {num!r}")
    num = int(num)
    dist, line_ys, line_xs, band_y, band_x = _sample_points(p0, p1, num, width, step)
    lines = band_y.shape[0]
    iy, ix = (band_y - y0) / dy, (band_x - x0) / dx
    ny, nx = da.sizes[conventions.Y], da.sizes[conventions.X]
    tol = _EDGE_TOLERANCE_PX
    inside = (iy >= -tol) & (iy <= ny - 1 + tol) & (ix >= -tol) & (ix <= nx - 1 + tol)
    out_dtype = np.dtype(np.result_type(da.dtype, np.float32)) if da.dtype.kind == "f" else np.dtype(np.float64)
    sample = _sampler(iy, ix, METHODS[method], inside, lines, out_dtype)
    src = da
    if is_dask(da.data):
        src = da.chunk({conventions.Y: -1, conventions.X: -1})  # whole frames per block
    keep = {k: v for k, v in da.coords.items() if conventions.Y not in v.dims and conventions.X not in v.dims}
    out = xr.apply_ufunc(
        sample, src.drop_vars([k for k in da.coords if k not in keep]),
        input_core_dims=[[conventions.Y, conventions.X]], output_core_dims=[[DISTANCE]],
        dask="parallelized", output_dtypes=[out_dtype], dask_gufunc_kwargs={"output_sizes": {DISTANCE: num}},
        keep_attrs=True,
    )  # fmt: skip
    out = out.assign_coords({
        DISTANCE: xr.Variable((DISTANCE,), dist, {"units": "nm", "long_name": "distance along the line"}),
        conventions.Y: xr.Variable((DISTANCE,), line_ys, {"units": "nm"}),
        conventions.X: xr.Variable((DISTANCE,), line_xs, {"units": "nm"}),
    })  # fmt: skip
    attrs = {k: v for k, v in da.attrs.items() if k not in (conventions.PIXEL_SIZE_ATTR, conventions.PIXEL_SIZE_Y_ATTR)}
    attrs.setdefault("long_name", model.channel_of(da))
    out.attrs = attrs
    recs = provenance.records(da)
    index = _step_index(recs)
    params = {"start_yx_nm": list(p0), "end_yx_nm": list(p1), "num": num, "method": method, "width_nm": width}
    record = provenance.make_record(
        "step", index=index, name=name, params=params, function=name, module=__name__, per_frame=1,
        output_key=f"step_{index}_{name}", length_nm=length, lines_averaged=lines,
    )  # fmt: skip
    return provenance.append(out, record)


def kymograph(da: xr.DataArray, start: Any, end: Any, *, num: int | None = None, method: str = "linear", width: float = 0.0) -> xr.DataArray:
    """The values along the line from ``start`` to ``end`` over time: a ``(time, distance)``
    DataArray, the same as :func:`profile` gives (see it for the parameters); the name says
    what it is for. Draw it with ``k.afm.plot()`` (time downward, distance across) or
    xarray's own ``k.plot()``."""
    if conventions.TIME not in da.dims:
        raise StackError(f"kymograph needs a time dim (a kymograph is a line over time); the array has {da.dims}")
    return line_samples(da, start, end, num=num, method=method, width=width, name="kymograph")
