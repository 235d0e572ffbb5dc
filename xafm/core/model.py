"""The data model: what an xafm stack is, how to build one, and how to check one.

A stack is an ``xarray.DataArray`` with dims ``("time", "y", "x")``; see
``docs/data-model.md`` for the full description. Everything a stack carries lives on the
DataArray itself (coordinates and attrs), so slicing keeps it aligned and a plain
``to_netcdf`` / ``to_zarr`` stores it.
"""

from __future__ import annotations

import json
import math
import operator
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..exceptions import StackError, XafmWarning
from . import provenance as prov
from .blocks import is_dask
from .conventions import (
    ACQUISITION_ATTR,
    DIMS,
    LAYER_PREFIX,
    MASK_PREFIX,
    META_ENCODING_ATTR,
    META_KEY_ATTR,
    META_PREFIX,
    OWN_ATTRS,
    PIXEL_SIZE_ATTR,
    PIXEL_SIZE_Y_ATTR,
    PROVENANCE_ATTR,
    TIME,
    X,
    Y,
    check_attrs,
    check_netcdf_name,
    decode_name,
    encode_name,
    jsonable,
)
from .lazy import LazyArray
from .variables import variable as variable  # re-exported: the readers build coordinates with it


# --------------------------------------------------------------------------------------
# per-frame metadata <-> coordinates
# --------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _numeric_column(values: Any) -> np.ndarray | None:
    """A 1-D numpy column of numbers or booleans as the array :func:`_column_to_array`
    makes of it value by value (float64, int64 or bool); None for anything else."""
    if not isinstance(values, np.ndarray) or values.ndim != 1:
        return None
    kind = values.dtype.kind
    if kind == "f":
        return values.astype(np.float64)
    if kind == "b":
        return values.astype(bool)
    if kind == "i" or (kind == "u" and values.dtype.itemsize < 8):
        return values.astype(np.int64)
    return None


def _column_values(values: Any) -> list[Any]:
    """One column of a dict of columns as a list of its values (a list as it is: its
    items may be lists themselves)."""
    return list(values) if isinstance(values, list) else list(np.asarray(values, dtype=object).ravel())


def frame_columns(frame_metadata: Sequence[Mapping[str, Any]], n_frames: int) -> dict[str, list[Any]]:
    """Per-frame dicts as columns (key -> one value per frame, None where a frame lacks
    the key), keys in the order they first appear. Frames that all have the same keys
    (the usual case) are taken apart without a Python loop over the frames."""
    frames = list(frame_metadata)
    if len(frames) != n_frames:
        raise StackError(f"frame_metadata has {len(frames)} entries for {n_frames} frames")
    if frames and set(map(type, frames)) == {dict}:
        shapes = set(map(tuple, frames))
        if len(shapes) == 1:
            keys = next(iter(shapes))
            if all(type(k) is str for k in keys):
                return {k: list(map(operator.itemgetter(k), frames)) for k in keys}
    found: dict[str, None] = {}
    for i, fm in enumerate(frames):
        if not isinstance(fm, Mapping):
            raise StackError(f"frame_metadata[{i}] is a {type(fm).__name__}, not a dict")
        for k in fm:
            found.setdefault(str(k), None)
    return {k: [fm.get(k) for fm in frames] for k in found}


def _column_to_array(key: str, values: Sequence[Any]) -> tuple[np.ndarray, dict[str, str]]:
    """Turn one per-frame metadata column into a netCDF-safe 1-D array (+ coord attrs)."""
    arr = _numeric_column(values)
    if arr is not None:
        return arr, {}
    vals = list(values)
    types = set(map(type, vals))
    if types == {float} or types == {float, type(None)} or types == {int, float} or types == {int, float, type(None)}:
        return np.array(vals, dtype=np.float64), {}  # None: NaN
    if types == {int}:
        try:
            return np.array(vals, dtype=np.int64), {}
        except OverflowError:
            return np.array(vals, dtype=np.float64), {}
    if types == {str}:
        return _vlen(vals), {}
    present = [v for v in vals if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in vals):
        return np.array(vals, dtype=bool), {}
    if all(v is None or _is_number(v) for v in vals):
        if present and len(present) == len(vals) and all(isinstance(v, (int, np.integer)) for v in vals):
            try:
                return np.array(vals, dtype=np.int64), {}
            except OverflowError:
                pass
        return np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64), {}
    # strings as variable-length (object) arrays: netCDF vlen strings, Zarr v3 "string"
    if all(isinstance(v, str) for v in vals):
        return _vlen(vals), {}
    # mixed, nested or None among strings: keep each value exactly, as JSON text
    return _vlen([json.dumps(jsonable(v), sort_keys=True) for v in vals]), {META_ENCODING_ATTR: "json"}


def _vlen(strings: list[str]) -> np.ndarray:
    out = np.empty(len(strings), dtype=object)
    out[:] = strings
    return out


def _coord_name_for_key(key: str, taken: set[str]) -> str:
    try:
        name = check_netcdf_name(key, "frame metadata key")
    except StackError:
        name = None
    if (
        name is None
        or name in taken
        or name in DIMS
        or name.startswith((MASK_PREFIX, LAYER_PREFIX, META_PREFIX))
    ):
        name = META_PREFIX + encode_name(str(key), "frame metadata key")
    return name


def frame_metadata_to_coords(
    frame_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | None,
    n_frames: int,
) -> dict[str, xr.Variable]:
    """Per-frame metadata (a list of dicts, one per frame, or a dict of columns) as coords.

    The key ``timestamp`` is left out: it is the ``time`` coordinate.
    """
    if frame_metadata is None:
        return {}
    columns: dict[str, Any]
    if isinstance(frame_metadata, Mapping):
        columns = {str(k): v if _numeric_column(v) is not None else _column_values(v) for k, v in frame_metadata.items()}
    else:
        columns = frame_columns(frame_metadata, n_frames)
    coords: dict[str, xr.Variable] = {}
    for key, values in columns.items():
        if key == "timestamp":
            continue
        if len(values) != n_frames:
            raise StackError(f"frame metadata {key!r} has {len(values)} values for {n_frames} frames")
        arr, attrs = _column_to_array(key, values)
        name = _coord_name_for_key(key, set(coords))
        if name != key:
            attrs[META_KEY_ATTR] = key
        coords[name] = variable((TIME,), arr, attrs)
    return coords


def frame_metadata_names(da: xr.DataArray) -> list[str]:
    """Coordinate names that hold per-frame metadata (1-D along time, not time itself)."""
    return [str(k) for k, c in da.coords.items() if k != TIME and c.dims == (TIME,)]


def frame_metadata(da: xr.DataArray, *, with_timestamp: bool = True) -> list[dict[str, Any]]:
    """The per-frame metadata as a list of dicts (playNano's ``frame_metadata`` shape)."""
    names = frame_metadata_names(da)
    columns = {}
    for name in names:
        c = da.coords[name]
        key = c.attrs.get(META_KEY_ATTR, name)
        vals = np.asarray(c.values)
        if c.attrs.get(META_ENCODING_ATTR) == "json":
            columns[key] = [json.loads(str(v)) for v in vals]
        else:
            columns[key] = [_plain(v) for v in vals]
    times = np.asarray(da.coords[TIME].values, dtype=np.float64)
    out = []
    for i in range(da.sizes[TIME]):
        fm: dict[str, Any] = {"timestamp": float(times[i])} if with_timestamp else {}
        fm.update({k: col[i] for k, col in columns.items()})
        out.append(fm)
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


# --------------------------------------------------------------------------------------
# building stacks
# --------------------------------------------------------------------------------------
def as_variable(dims: tuple[str, ...], arr: Any, attrs: Mapping[str, Any] | None = None) -> xr.Variable:
    """Wrap numpy, dask, or a lazy backend array (see ``core.lazy``) as a Variable."""
    from xarray.core import indexing

    if isinstance(arr, xr.DataArray):
        arr = arr.variable._data if isinstance(arr.variable._data, indexing.ExplicitlyIndexed) else arr.data
    if isinstance(arr, LazyArray):
        data: Any = indexing.LazilyIndexedArray(arr)
    elif isinstance(arr, indexing.ExplicitlyIndexed) or is_dask(arr):
        data = arr
    else:
        return variable(dims, np.asarray(arr), attrs)
    return xr.Variable(dims, data, dict(attrs or {}))


def _check_pixel_size(pixel_size_nm: Any) -> tuple[float, float]:
    vals = np.atleast_1d(np.asarray(pixel_size_nm, dtype=object))
    if vals.size not in (1, 2):
        raise StackError(f"pixel_size_nm must be a number or a (y, x) pair, got {pixel_size_nm!r}")
    try:
        fl = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise StackError(f"pixel_size_nm must be a number, got {pixel_size_nm!r}") from None
    for v in fl:
        if not math.isfinite(v) or v <= 0:
            raise StackError(f"pixel_size_nm must be positive and finite, got {pixel_size_nm!r}")
    return (fl[0], fl[0]) if len(fl) == 1 else (fl[0], fl[1])


def check_times(times: Any, n_frames: int) -> np.ndarray:
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError):
        raise StackError(f"times must be numbers (seconds), got {times!r:.80}") from None
    if t.shape != (n_frames,):
        raise StackError(f"times has shape {t.shape}, expected ({n_frames},) for {n_frames} frames")
    if not np.all(np.isfinite(t)):
        raise StackError("times must be finite")
    if n_frames > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.argmax(~(np.diff(t) > 0)))
        raise StackError(f"times must be strictly increasing; times[{bad + 1}]={t[bad + 1]} <= times[{bad}]={t[bad]}")
    return t


def times_or_index(path: str, times: Any, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Recorded frame times if usable; else the frame index, plus the recorded values."""
    try:
        return check_times(times, n), None
    except StackError as exc:
        warnings.warn(f"{path}: frame times unusable ({exc}); using the frame index instead", XafmWarning, stacklevel=3)
        try:
            recorded = np.asarray(times, dtype=np.float64)
        except (TypeError, ValueError):
            recorded = None
        if recorded is not None and recorded.shape != (n,):
            recorded = None
        return np.arange(n, dtype=np.float64), recorded


def _shape_dtype(data: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return tuple(int(s) for s in data.shape), np.dtype(data.dtype)
    arr = np.asarray(data)
    return arr.shape, arr.dtype


def _checked_side_array(kind: str, name: str, arr: Any, dims: tuple[str, ...], sizes: Mapping[str, int]) -> xr.Variable:
    """A mask or kept layer as a coordinate variable: shape and dtype checked."""
    if isinstance(arr, tuple) and len(arr) == 2 and isinstance(arr[0], tuple):
        dims, arr = arr  # (dims, values): a mask over some of the dims only
    want = tuple(sizes[d] for d in dims)
    shape, dtype = _shape_dtype(arr)
    if shape != want:
        raise StackError(f"{kind} {name!r} has shape {shape}, the stack has {want} along {dims}")
    if kind == "mask" and dtype.kind != "b":
        if dtype.kind not in "iub":
            raise StackError(f"mask {name!r} must be boolean, got dtype {dtype}")
        arr = arr.astype(bool)
    if kind == "layer" and dtype.kind not in "iuf":
        raise StackError(f"layer {name!r} must be numeric, got dtype {dtype}")
    return as_variable(tuple(dims), arr)


def check_origin(origin_nm: Any) -> tuple[float, float]:
    """``(y0, x0)`` in nm, finite, from a pair (a file's value: None means ``(0, 0)``)."""
    if origin_nm is None:
        return 0.0, 0.0
    vals = np.atleast_1d(np.asarray(origin_nm, dtype=object))
    try:
        fl = [float(v) for v in vals]
    except (TypeError, ValueError):
        raise StackError(f"origin_nm must be a (y, x) pair of numbers, got {origin_nm!r}") from None
    if len(fl) != 2 or not all(math.isfinite(v) for v in fl):
        raise StackError(f"origin_nm must be a finite (y, x) pair, got {origin_nm!r}")
    return fl[0], fl[1]


def axis_coordinate(n: int, step: float, start: float = 0.0) -> np.ndarray:
    """The y or x coordinate of ``n`` pixels: ``start + i * step`` (``i * step`` exactly when
    ``start`` is 0, as stacks have always been made)."""
    values = np.arange(n, dtype=np.float64) * step
    return values + start if start else values


def assemble(
    data: Any,
    *,
    pixel_size_nm: Any,
    origin_nm: Any = None,
    times: Any = None,
    channel: str = "height",
    units: str = "nm",
    dims: tuple[str, ...] = DIMS,
    coords: Mapping[str, xr.Variable] | None = None,
    frame_metadata: Any = None,
    masks: Mapping[str, Any] | None = None,
    layers: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    provenance: list[prov.Record] | None = None,
) -> xr.Dataset:
    """Build the one-variable Dataset behind a stack; data may be numpy, dask or lazy.

    Readers use this directly so that lazily indexed data stays unread. ``dims`` other
    than (time, y, x) keep what a file holds beyond a stack (z, channel, ...), in
    :func:`dim_order`; ``coords`` are those dims' coordinates. ``masks`` and ``layers``
    map a name to an array of the data's shape, or to ``(dims, array)`` for a mask over
    some of the dims. ``origin_nm`` is the ``(y, x)`` coordinate of the first pixel: 0 for
    a whole scan, the offset of a crop a file kept.
    """
    if not is_dask(data) and not hasattr(data, "shape"):
        data = np.asarray(data)
    dims = tuple(dims)
    shape, dtype = _shape_dtype(data)
    if dims == DIMS and len(shape) != 3:
        hint = " (for a single image use data[None])" if len(shape) == 2 else ""
        raise StackError(f"data must be 3-D (time, y, x), got {len(shape)}-D with shape {shape}{hint}")
    if len(shape) != len(dims) or not set(DIMS) <= set(dims):
        raise StackError(f"data of shape {shape} does not match dims {dims}, which must include {DIMS}")
    if dtype.kind not in "iuf":
        raise StackError(f"data must be numeric (int, uint or float), got dtype {dtype}")
    if min(shape) < 1:
        raise StackError(f"data must have at least one frame of at least 1x1 pixels, got shape {shape}")
    sizes = dict(zip(dims, shape))
    dy, dx = _check_pixel_size(pixel_size_nm)
    y0, x0 = check_origin(origin_nm)
    channel = check_netcdf_name(channel, "channel")
    if not isinstance(units, str):
        raise StackError(f"units must be a string, got {units!r}")

    n_t = sizes[TIME]
    if times is None and isinstance(frame_metadata, Sequence) and not isinstance(frame_metadata, (str, bytes)):
        stamps = [fm.get("timestamp") if isinstance(fm, Mapping) else None for fm in frame_metadata]
        if len(stamps) == n_t and all(_is_number(s) for s in stamps):
            times = stamps
    t = check_times(np.arange(n_t, dtype=np.float64) if times is None else times, n_t)

    all_coords: dict[str, xr.Variable] = {
        TIME: variable((TIME,), t, {"units": "s", "long_name": "time since first frame"}, index=True),
        Y: variable((Y,), axis_coordinate(sizes[Y], dy, y0), {"units": "nm"}, index=True),
        X: variable((X,), axis_coordinate(sizes[X], dx, x0), {"units": "nm"}, index=True),
    }
    all_coords.update(frame_metadata_to_coords(frame_metadata, n_t))
    all_coords.update(coords or {})
    for kind, mapping, prefix in (("mask", masks, MASK_PREFIX), ("layer", layers, LAYER_PREFIX)):
        for name, arr in (mapping or {}).items():
            all_coords[prefix + encode_name(name, f"{kind} name")] = _checked_side_array(kind, name, arr, dims, sizes)
    if channel in all_coords:
        raise StackError(f"channel {channel!r} clashes with a coordinate name; choose another channel name")

    all_attrs = check_attrs(attrs or {})
    all_attrs.update({"units": units, "channel": channel, "long_name": channel, PIXEL_SIZE_ATTR: dx})
    if dy != dx:
        all_attrs[PIXEL_SIZE_Y_ATTR] = dy
    all_attrs[PROVENANCE_ATTR] = prov.dumps(provenance or [])
    return xr.Dataset({channel: as_variable(dims, data, all_attrs)}, coords=all_coords)


def stack(
    data: Any,
    *,
    pixel_size_nm: float | tuple[float, float],
    times: Sequence[float] | np.ndarray | None = None,
    origin_nm: tuple[float, float] | None = None,
    channel: str = "height",
    units: str = "nm",
    frame_metadata: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | None = None,
    masks: Mapping[str, Any] | None = None,
    layers: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Build a labeled AFM stack from a numpy or dask array of shape (time, y, x).

    Parameters
    ----------
    data
        numpy or dask array, 3-D. dask arrays stay lazy.
    pixel_size_nm
        Pixel size in nm, or a ``(y, x)`` pair for non-square pixels.
    times
        Frame times in seconds, strictly increasing. Default: the ``timestamp`` entries of
        ``frame_metadata`` if every frame has one, else ``0, 1, 2, ...``.
    origin_nm
        ``(y, x)`` coordinate of the first pixel in nm (default 0): where the frames lie in
        a larger scan.
    channel, units
        Channel name (also the DataArray's name) and the values' units.
    frame_metadata
        Per-frame metadata: a list of dicts (one per frame) or a dict of columns.
    masks, layers
        ``name -> array`` of the stack's shape: boolean masks and kept processed layers.
    attrs
        Extra netCDF-safe attrs (str, numbers, 1-D numeric arrays).
    """
    record = prov.make_record("create", function="xafm.stack")
    return assemble(
        data,
        pixel_size_nm=pixel_size_nm,
        origin_nm=origin_nm,
        times=times,
        channel=channel,
        units=units,
        frame_metadata=frame_metadata,
        masks=masks,
        layers=layers,
        attrs=attrs,
        provenance=[record],
    )[check_netcdf_name(channel, "channel")]


def dim_order(dims: list[str]) -> list[str]:
    """time, z, channel, the others in file order, y, x (as OME-Zarr and nd2 readers do)."""
    head = [d for d in ("time", "z", "channel") if d in dims]
    tail = [d for d in ("y", "x") if d in dims]
    return head + [d for d in dims if d not in head and d not in tail] + tail


# --------------------------------------------------------------------------------------
# reading a stack
# --------------------------------------------------------------------------------------
def check_stack(da: Any, action: str = "this") -> xr.DataArray:
    """Raise a clear ``StackError`` unless ``da`` is a (time, y, x) DataArray."""
    if not isinstance(da, xr.DataArray):
        raise StackError(f"{action} needs an xarray.DataArray, got {type(da).__name__}")
    if da.dims != DIMS:
        extra = [d for d in da.dims if d not in DIMS]
        missing = [d for d in DIMS if d not in da.dims]
        parts = []
        if extra:
            parts.append(f"extra dims {tuple(extra)} (select one position with .isel/.sel first)")
        if missing:
            parts.append(f"missing dims {tuple(missing)}")
        if not parts:
            parts.append(f"dims in order {da.dims} (use .transpose{DIMS})")
        raise StackError(f"{action} needs dims {DIMS}; the stack has " + " and ".join(parts))
    return da


def _spacing(da: xr.DataArray, dim: str, fallback: float | None) -> float:
    c = np.asarray(da.coords[dim].values, dtype=np.float64) if dim in da.coords else np.array([])
    if c.size >= 2:
        steps = np.diff(c)
        # an axis from 0 (i * p): its first step is p exactly; a crop's first step carries
        # the rounding of its offset, the mean step over the axis far less
        step = float(steps[0]) if c[0] == 0 else float((c[-1] - c[0]) / (c.size - 1))
        if not (step > 0 and np.all(np.isfinite(steps)) and np.allclose(steps, step, rtol=1e-6, atol=0)):
            raise StackError(f"the {dim} coordinate is not evenly spaced and increasing; pixel size is undefined")
        return step
    if fallback is None or not (fallback > 0):
        raise StackError(f"cannot tell the pixel size along {dim}: one pixel and no {PIXEL_SIZE_ATTR} attr")
    return float(fallback)


def pixel_size_nm(da: xr.DataArray) -> tuple[float, float]:
    """(y, x) pixel size in nm: from the coordinates, or the attrs for one-pixel axes."""
    px = da.attrs.get(PIXEL_SIZE_ATTR)
    py = da.attrs.get(PIXEL_SIZE_Y_ATTR, px)
    dx = _spacing(da, X, px)
    dy = _spacing(da, Y, py)
    return dy, dx


def origin_nm(da: xr.DataArray) -> tuple[float, float]:
    """(y, x) coordinate of the first pixel in nm: 0 for a whole scan, the offset of a crop
    (``isel``/``sel`` keep it); what writers store so that readers restore it."""
    out = []
    for dim in (Y, X):
        c = da.coords[dim].values if dim in da.coords else np.zeros(1)
        first = float(np.asarray(c, dtype=np.float64).reshape(-1)[0]) if np.size(c) else 0.0
        if not math.isfinite(first):
            raise StackError(f"the {dim} coordinate starts at {first}; its origin is undefined")
        out.append(first)
    return out[0], out[1]


def times_s(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.coords[TIME].values, dtype=np.float64) if TIME in da.coords else np.arange(da.sizes[TIME], dtype=np.float64)


def _named(da: xr.DataArray, prefix: str) -> dict[str, xr.DataArray]:
    return {decode_name(str(k)[len(prefix) :]): da.coords[k] for k in da.coords if str(k).startswith(prefix)}


def masks(da: xr.DataArray) -> dict[str, xr.DataArray]:
    return _named(da, MASK_PREFIX)


def layers(da: xr.DataArray) -> dict[str, xr.DataArray]:
    return _named(da, LAYER_PREFIX)


def channel_of(da: xr.DataArray) -> str:
    return str(da.attrs.get("channel") or da.name or "height")


def acquisition(da: xr.DataArray) -> dict[str, Any]:
    raw = da.attrs.get(ACQUISITION_ATTR)
    if not raw:
        return {}
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def user_attrs(da: xr.DataArray) -> dict[str, Any]:
    """attrs other than the ones xafm manages itself (carried through the bundles)."""
    return {k: v for k, v in da.attrs.items() if k not in OWN_ATTRS}


def replace_data(da: xr.DataArray, data: Any, **attrs_update: Any) -> xr.DataArray:
    """Same coords and attrs, new values (numpy or dask)."""
    out = da.copy(data=data)
    out.attrs = {**da.attrs, **attrs_update}
    return out

