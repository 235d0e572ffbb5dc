"""Processing steps that record themselves in the provenance, lazily for dask stacks."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .core import conventions, model, provenance
from .core.blocks import is_dask
from .exceptions import StackError


def _step_index(recs: list[dict]) -> int:
    return len(provenance.step_records(recs)) + 1


def current_layer_name(recs: list[dict]) -> str:
    """What the stack's values are, in playNano's layer names: ``raw`` or ``step_<i>_<name>``."""
    for rec in reversed(recs):
        if rec.get("type") == "step":
            return str(rec.get("output_key") or f"step_{rec.get('index')}_{rec.get('name')}")
    return "raw"


def _out_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)


def _per_frame(func: Callable, params: dict, out_dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    def run(block: np.ndarray) -> np.ndarray:
        out = np.empty(block.shape, dtype=out_dtype)
        for i in range(block.shape[0]):
            res = np.asarray(func(block[i], **params))
            if res.shape != block.shape[1:]:
                raise StackError(f"{getattr(func, '__name__', func)} returned shape {res.shape} for a frame of {block.shape[1:]}")
            out[i] = res
        return out

    return run


def apply(
    da: xr.DataArray,
    func: Callable[..., Any],
    *,
    name: str | None = None,
    keep_layer: bool = False,
    per_frame: bool = True,
    **params: Any,
) -> xr.DataArray:
    """Apply ``func`` to every frame (``per_frame=True``: ``func(frame2d, **params)``) or to
    the whole stack (``func(array3d, **params)``, given the dask array for dask stacks),
    and record the step. dask stacks stay lazy. ``keep_layer=True`` keeps the input as a
    layer named after what it is (``raw`` for the first)."""
    model.check_stack(da, "apply")
    if not callable(func):
        raise StackError(f"apply needs a function, got {func!r}")
    name = name or getattr(func, "__name__", "step")
    data = da.data
    out_dtype = _out_dtype(data.dtype)
    if per_frame:
        run = _per_frame(func, params, out_dtype)
        if is_dask(data):
            data = data.rechunk({1: -1, 2: -1})
            out = data.map_blocks(run, dtype=out_dtype, meta=np.empty((0, 0, 0), out_dtype))
        else:
            out = run(np.asarray(data))
    else:
        out = func(data, **params)
        if tuple(out.shape) != tuple(da.shape):
            raise StackError(f"{name} returned shape {tuple(out.shape)}, the stack has {tuple(da.shape)}")
    recs = provenance.records(da)
    index = _step_index(recs)
    new = model.replace_data(da, out)
    kept = None
    if keep_layer:
        kept = current_layer_name(recs)
        if kept in model.layers(da):
            kept = f"step_{index}_{name}_input"
        new = new.assign_coords({conventions.layer_coord(kept): da.variable.copy(deep=False)})
        new.coords[conventions.layer_coord(kept)].attrs = {}
    record = provenance.make_record(
        "step",
        index=index,
        name=name,
        params=params,
        function=getattr(func, "__qualname__", repr(func)),
        module=getattr(func, "__module__", None) or type(func).__module__,
        per_frame=int(bool(per_frame)),
        output_key=f"step_{index}_{name}",
        **({"kept_layer": kept} if kept else {}),
    )
    return provenance.append(new, record)


# --------------------------------------------------------------------------------------
# built-in levelling
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


def remove_plane(da: xr.DataArray, *, keep_layer: bool = False) -> xr.DataArray:
    return apply(da, plane_fit, name="remove_plane", keep_layer=keep_layer)


def align_rows(da: xr.DataArray, method: str = "median", *, keep_layer: bool = False) -> xr.DataArray:
    if method not in ("median", "mean"):
        raise StackError(f"align_rows method must be 'median' or 'mean', got {method!r}")
    return apply(da, row_align, name="align_rows", keep_layer=keep_layer, method=method)


# --------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------
def _attach_mask(da: xr.DataArray, name: str, mask: Any, record: dict) -> xr.DataArray:
    if isinstance(mask, xr.DataArray):
        mask = mask.transpose(*conventions.DIMS).data if set(mask.dims) == set(conventions.DIMS) else mask.data
    if not is_dask(mask):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(da.shape):
        raise StackError(f"mask {name!r} has shape {tuple(mask.shape)}, the stack has {tuple(da.shape)}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iub":
            raise StackError(f"mask {name!r} must be boolean, got dtype {mask.dtype}")
        mask = mask.astype(bool)
    new = da.assign_coords({conventions.mask_coord(name): (conventions.DIMS, mask)})
    return provenance.append(new, record)


def with_mask(da: xr.DataArray, name: str, mask: Any) -> xr.DataArray:
    """A stack carrying ``mask`` (a boolean array, or a function of the stack) as ``name``."""
    model.check_stack(da, "with_mask")
    conventions.encode_name(name, "mask name")
    recs = provenance.records(da)
    func = None
    if callable(mask):
        func = mask
        mask = mask(da)
    record = provenance.make_record(
        "mask",
        index=_step_index(recs),
        name=name,
        mask=name,
        params={},
        **({"function": getattr(func, "__qualname__", repr(func)), "module": getattr(func, "__module__", None)} if func else {}),
    )
    return _attach_mask(da, name, mask, record)


def mask_threshold(da: xr.DataArray, threshold: float, *, name: str | None = None, above: bool = True) -> xr.DataArray:
    """Mask the pixels above (or below) ``threshold``, in the stack's units; NaN is never masked."""
    model.check_stack(da, "mask_threshold")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise StackError(f"threshold must be a number, got {threshold!r}") from None
    recs = provenance.records(da)
    index = _step_index(recs)
    name = name or f"step_{index}_mask_threshold"
    data = da.data
    mask = data > threshold if above else data < threshold
    record = provenance.make_record(
        "mask",
        index=index,
        name="mask_threshold",
        mask=name,
        params={"threshold": threshold, "above": int(bool(above))},
        module=__name__,
        function="mask_threshold",
    )
    return _attach_mask(da, name, mask, record)
