"""Stack edits: crops that keep their place, NaN replacement, dropping and selecting frames.

Every edit slices the stack as xarray does, so times, per-frame metadata, masks and kept
layers stay with their frames and pixels, and the ``x``/``y`` coordinates keep the crop's
offset. Each appends a provenance step with its parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError
from .apply import _step_index, apply
from .catalogue import step

#: A box in pixels: (y0, y1, x0, x1), ends exclusive (playNano's ``intersection_bounds``).
Box = tuple[int, int, int, int]


def _record(da: xr.DataArray, out: xr.DataArray, name: str, params: dict[str, Any], **extra: Any) -> xr.DataArray:
    recs = provenance.records(da)
    index = _step_index(recs)
    record = provenance.make_record(
        "step", index=index, name=name, params=params, function=name, module=__name__, per_frame=0,
        output_key=f"step_{index}_{name}", **extra,
    )  # fmt: skip
    return provenance.append(out, record)


# --------------------------------------------------------------------------------------
# boxes
# --------------------------------------------------------------------------------------
def valid_box(shifts: np.ndarray, frame: tuple[int, int], origin: tuple[int, int]) -> Box:
    """The canvas box every frame covers once shifted by ``shifts`` (pixels, (dy, dx)) with
    the reference frame's pixel 0 at ``origin``: where no frame is NaN."""
    bounds = []
    for axis in (0, 1):
        tops = origin[axis] + np.asarray(shifts, dtype=np.float64)[:, axis]
        floor = np.floor(tops + 1e-9)
        first = floor + (tops - floor > 1e-9)  # a fractional shift loses the first row
        bounds += [int(first.max()), int((floor + frame[axis]).min())]
    return bounds[0], bounds[1], bounds[2], bounds[3]


def square_box(box: Box) -> Box:
    """The largest centred square inside ``box`` (playNano's ``crop_square``)."""
    y0, y1, x0, x1 = box
    size = min(y1 - y0, x1 - x0)
    top, left = y0 + (y1 - y0 - size) // 2, x0 + (x1 - x0 - size) // 2
    return top, top + size, left, left + size


def _normalize_pad(pad: Any) -> tuple[int, int, int, int]:
    """playNano's pad: an int, (vertical, horizontal) or (top, bottom, left, right)."""
    if isinstance(pad, (int, np.integer)) and not isinstance(pad, bool):
        return (int(pad), int(pad), int(pad), int(pad))
    if isinstance(pad, (tuple, list)) and len(pad) in (2, 4) and all(isinstance(p, (int, np.integer)) for p in pad):
        vals = [int(p) for p in pad]
        return (vals[0], vals[0], vals[1], vals[1]) if len(vals) == 2 else (vals[0], vals[1], vals[2], vals[3])
    raise StackError(f"pad must be an int, (vertical, horizontal) or (top, bottom, left, right), got {pad!r}")


def _axis_coord(da: xr.DataArray, dim: str, start: int, stop: int, step_nm: float) -> np.ndarray:
    first = float(da.coords[dim].values[0]) if dim in da.coords else 0.0
    return first + np.arange(start, stop, dtype=np.float64) * step_nm


def crop_box(da: xr.DataArray, box: Box, *, name: str | None = None, params: dict[str, Any] | None = None) -> xr.DataArray:
    """``da`` cut to ``box`` (pixels, ends exclusive); parts outside the stack are NaN
    (False for masks). The coordinates keep their place; recorded as ``name`` if given."""
    y0, y1, x0, x1 = (int(v) for v in box)
    h, w = da.sizes[conventions.Y], da.sizes[conventions.X]
    if y1 <= y0 or x1 <= x0:
        raise StackError(f"crop box {box} is empty")
    dy, dx = model.pixel_size_nm(da)
    inside = da.isel({conventions.Y: slice(max(y0, 0), max(min(y1, h), 0)), conventions.X: slice(max(x0, 0), max(min(x1, w), 0))})
    pads = {conventions.Y: (max(0, -y0), max(0, y1 - h)), conventions.X: (max(0, -x0), max(0, x1 - w))}
    if any(sum(p) for p in pads.values()):
        if inside.sizes[conventions.Y] == 0 or inside.sizes[conventions.X] == 0:
            raise StackError(f"crop box {box} lies outside the {h} x {w} stack")
        masks = {k: c for k, c in inside.coords.items() if str(k).startswith(conventions.MASK_PREFIX)}
        base = inside.drop_vars(list(masks)).astype(np.result_type(inside.dtype, np.float32))
        out = base.pad(pads, mode="constant", constant_values=np.nan)
        for k, c in masks.items():
            padded = xr.DataArray(c.variable).pad(pads, mode="constant", constant_values=False).astype(bool)
            out = out.assign_coords({k: padded.variable})
        out.attrs = dict(da.attrs)
    else:
        out = inside
    coords = {
        conventions.Y: (conventions.Y, _axis_coord(da, conventions.Y, y0, y1, dy), dict(da.coords[conventions.Y].attrs)),
        conventions.X: (conventions.X, _axis_coord(da, conventions.X, x0, x1, dx), dict(da.coords[conventions.X].attrs)),
    }
    out = out.assign_coords(coords)
    if name is None:
        return out
    return _record(da, out, name, params or {}, bounds_px=[y0, y1, x0, x1])


def _finite_box(da: xr.DataArray) -> Box | None:
    """playNano's intersection: the bounding box of the pixels finite in every frame
    (one reduction over the stack, chunk by chunk, for dask stacks)."""
    finite = np.isfinite(da.data).all(axis=0)
    valid = np.asarray(finite.compute() if is_dask(finite) else finite)
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _padded(box: Box, pad: Any) -> Box:
    pt, pb, pl, pr = _normalize_pad(pad)
    return box[0] - pt, box[1] + pb, box[2] - pl, box[3] + pr


@step("edit")
def intersection_crop(da: xr.DataArray, pad: Any = 0) -> xr.DataArray:
    """Crop to the area finite in every frame (after alignment), optionally padded by ``pad`` pixels."""
    model.check_stack(da, "intersection_crop")
    box = _finite_box(da)
    if box is None:  # playNano returns the stack unchanged
        return _record(da, da, "intersection_crop", {"pad": pad}, note="no pixel finite in every frame")
    return crop_box(da, _padded(box, pad), name="intersection_crop", params={"pad": pad})


@step("edit")
def crop_square(da: xr.DataArray, pad: Any = 0) -> xr.DataArray:
    """Crop to the largest centred square inside the area finite in every frame."""
    model.check_stack(da, "crop_square")
    box = _finite_box(da)
    if box is None:
        return _record(da, da, "crop_square", {"pad": pad}, note="no pixel finite in every frame")
    return crop_box(da, _padded(square_box(box), pad), name="crop_square", params={"pad": pad})


@step("edit")
def crop(
    da: xr.DataArray,
    x_min: float | None = None,
    x_max: float | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
    units: str = "nm",
) -> xr.DataArray:
    """Crop to a region given in nm (the x/y coordinates, ends included) or in pixels (``units="px"``, ends excluded)."""
    model.check_stack(da, "crop")
    if units not in ("nm", "px"):
        raise StackError(f"crop units must be 'nm' or 'px', got {units!r}")
    params = {"x_min": x_min, "x_max": x_max, "y_min": y_min, "y_max": y_max, "units": units}
    if units == "nm":
        for k, v in params.items():
            if k != "units" and v is not None and not math.isfinite(float(v)):
                raise StackError(f"crop {k} must be finite, got {v!r}")
        out = da.sel({conventions.X: slice(x_min, x_max), conventions.Y: slice(y_min, y_max)})
    else:
        for k, v in params.items():
            if k != "units" and v is not None and not isinstance(v, (int, np.integer)):
                raise StackError(f"crop {k} must be a whole number of pixels with units='px', got {v!r}")
        out = da.isel({conventions.X: slice(x_min, x_max), conventions.Y: slice(y_min, y_max)})
    if out.sizes[conventions.X] == 0 or out.sizes[conventions.Y] == 0:
        raise StackError(f"crop {params} leaves no pixels of the {da.sizes[conventions.Y]} x {da.sizes[conventions.X]} stack")
    return _record(da, out, "crop", params, shape=[out.sizes[conventions.Y], out.sizes[conventions.X]])


# --------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------
def _fill_nan_frame(frame: np.ndarray, mode: str, value: float | None) -> np.ndarray:
    nan = np.isnan(frame)
    if not nan.any() or (nan.all() and mode in ("mean", "median")):
        return frame
    fill = {"zero": 0.0, "constant": value}.get(mode)
    if fill is None:
        fill = float(np.nanmean(frame) if mode == "mean" else np.nanmedian(frame))
    return np.where(nan, fill, frame)


def _fill_nan_global(data: Any) -> Any:
    return np.where(np.isnan(data), np.nanmean(data), data)


@step("filter")
def replace_nan(da: xr.DataArray, mode: str = "zero", value: float | None = None, *, keep_layer: bool = False) -> xr.DataArray:
    """Replace NaN with zero, the frame's mean or median, the stack's mean or a constant ``value``."""
    if mode not in ("zero", "mean", "median", "global_mean", "constant"):
        raise StackError(f"replace_nan mode must be one of zero, mean, median, global_mean, constant; got {mode!r}")
    if mode == "constant" and value is None:
        raise StackError("replace_nan mode='constant' needs a value")
    if mode == "global_mean":
        return apply(da, _fill_nan_global, name="replace_nan", keep_layer=keep_layer, per_frame=False).pipe(_set_params, mode, value)
    out = apply(da, _fill_nan_frame, name="replace_nan", keep_layer=keep_layer, mode=mode, value=None if value is None else float(value))
    return out


def _set_params(da: xr.DataArray, mode: str, value: Any) -> xr.DataArray:
    recs = provenance.records(da)
    recs[-1]["params"] = {"mode": mode, "value": value}
    return provenance.with_records(da, recs)


# --------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------
def _indices(values: Iterable[Any], n: int, what: str) -> list[int]:
    if isinstance(values, (int, np.integer)):
        values = [values]
    try:
        out = sorted({int(v) for v in values})
    except (TypeError, ValueError):
        raise StackError(f"{what} must be frame indices (whole numbers), got {values!r}") from None
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise StackError(f"{what} {bad} out of range for {n} frames (0..{n - 1})")
    return out


def _keep(da: xr.DataArray, keep: list[int], name: str, params: dict[str, Any]) -> xr.DataArray:
    n = da.sizes[conventions.TIME]
    if not keep:
        raise StackError(f"{name} would leave no frames of {n}")
    dropped = sorted(set(range(n)) - set(keep))
    return _record(da, da.isel({conventions.TIME: keep}), name, params, dropped=dropped)


@step("edit")
def drop_frames(da: xr.DataArray, indices_to_drop: Any) -> xr.DataArray:
    """Remove the frames at ``indices_to_drop``; times, metadata, masks and layers go with them."""
    model.check_stack(da, "drop_frames")
    n = da.sizes[conventions.TIME]
    drop = _indices(indices_to_drop, n, "drop_frames indices_to_drop")
    return _keep(da, sorted(set(range(n)) - set(drop)), "drop_frames", {"indices_to_drop": drop})


@step("edit")
def select_frames(da: xr.DataArray, keep_indices: Any) -> xr.DataArray:
    """Keep only the frames at ``keep_indices`` (in their original order)."""
    model.check_stack(da, "select_frames")
    keep = _indices(keep_indices, da.sizes[conventions.TIME], "select_frames keep_indices")
    return _keep(da, keep, "select_frames", {"keep_indices": keep})


@step("edit")
def drop_frame_range(da: xr.DataArray, start: int, end: int) -> xr.DataArray:
    """Remove frames ``start`` (included) to ``end`` (excluded)."""
    model.check_stack(da, "drop_frame_range")
    n = da.sizes[conventions.TIME]
    if not (isinstance(start, (int, np.integer)) and isinstance(end, (int, np.integer)) and 0 <= start < end <= n):
        raise StackError(f"drop_frame_range needs 0 <= start < end <= {n}, got start={start!r}, end={end!r}")
    keep = [i for i in range(n) if not start <= i < end]
    return _keep(da, keep, "drop_frame_range", {"start": int(start), "end": int(end)})


@step("edit")
def drop_final_frames(da: xr.DataArray, n_frames_to_drop: int = 1) -> xr.DataArray:
    """Remove the last ``n_frames_to_drop`` frames."""
    model.check_stack(da, "drop_final_frames")
    n = da.sizes[conventions.TIME]
    if not (isinstance(n_frames_to_drop, (int, np.integer)) and 0 <= n_frames_to_drop <= n):
        raise StackError(f"drop_final_frames n_frames_to_drop must be in [0, {n}], got {n_frames_to_drop!r}")
    return _keep(da, list(range(n - int(n_frames_to_drop))), "drop_final_frames", {"n_frames_to_drop": int(n_frames_to_drop)})
