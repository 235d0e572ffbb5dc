"""The data model: what an xafm stack is, how to build one, and how to check one.

A stack is an ``xarray.DataArray`` with dims ``("time", "y", "x")``; see
``docs/data-model.md`` for the full description. Everything a stack carries lives on the
DataArray itself (coordinates and attrs), so slicing keeps it aligned and a plain
``to_netcdf`` / ``to_zarr`` stores it.
"""

from __future__ import annotations

import json
import math
import string
import unicodedata
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .exceptions import StackError

TIME, Y, X = "time", "y", "x"
DIMS = (TIME, Y, X)

#: Coordinate name prefixes for masks and kept processed layers (name is percent-encoded).
MASK_PREFIX = "mask__"
LAYER_PREFIX = "layer__"
#: Prefix for per-frame metadata keys that are not usable as coordinate names as they are.
META_PREFIX = "meta__"

#: attrs keys xafm owns.
PROVENANCE_ATTR = "xafm_provenance"
ACQUISITION_ATTR = "acquisition_json"
PIXEL_SIZE_ATTR = "pixel_size_nm"
PIXEL_SIZE_Y_ATTR = "pixel_size_y_nm"
#: Coordinate attrs that let per-frame metadata map back to the original keys and types.
META_KEY_ATTR = "frame_metadata_key"
META_ENCODING_ATTR = "xafm_encoding"

_SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


# --------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------
def encode_name(name: str, what: str = "name") -> str:
    """Percent-encode a mask/layer name so it is safe as an HDF5 path, NPZ key or file name.

    Only ASCII letters, digits, ``-`` and ``_`` are kept; everything else (``/``, ``.``,
    spaces, non-ASCII) becomes ``%XX`` of its UTF-8 bytes, so ``decode_name`` inverts it
    exactly and no encoded name can be empty, ``.`` or ``..``.
    """
    if not isinstance(name, str) or name == "":
        raise StackError(f"{what} must be a non-empty string, got {name!r}")
    try:
        return "".join(
            c if c in _SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
            for c in name
        )
    except UnicodeEncodeError as exc:
        raise StackError(f"{what} {name!r} is not valid unicode: {exc}") from None


def decode_name(encoded: str) -> str:
    return urllib.parse.unquote(encoded, errors="replace")


def check_netcdf_name(name: Any, what: str) -> str:
    """Return ``name`` (NFC-normalised) if netCDF accepts it as a variable name, else raise.

    The rules are netCDF-C's: a letter, digit, ``_`` or non-ASCII character first; no
    ``/`` or control characters; no trailing white space.
    """
    if not isinstance(name, str) or not name:
        raise StackError(f"{what} must be a non-empty string, got {name!r}")
    name = unicodedata.normalize("NFC", name)
    first = name[0]
    if first.isascii() and not (first.isalnum() or first == "_"):
        raise StackError(f"{what} {name!r} must start with a letter, digit or '_'")
    for c in name:
        if c == "/" or (c.isascii() and not c.isprintable()) or unicodedata.category(c) in ("Cc", "Cs"):
            raise StackError(f"{what} {name!r} contains {c!r}, which netCDF does not allow")
    if name[-1].isspace():
        raise StackError(f"{what} {name!r} ends with white space, which netCDF does not allow")
    return name


def mask_coord(name: str) -> str:
    return MASK_PREFIX + encode_name(name, "mask name")


def layer_coord(name: str) -> str:
    return LAYER_PREFIX + encode_name(name, "layer name")


# --------------------------------------------------------------------------------------
# attrs
# --------------------------------------------------------------------------------------
def check_attr_value(key: str, value: Any) -> Any:
    """Raise unless ``value`` is netCDF-safe: str, int, float or a 1-D numeric array."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise StackError(f"attr {key!r}={value!r} is not netCDF-safe (bool/None); use an int or str")
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.dtype.kind in "iuf":
            return arr
    raise StackError(
        f"attr {key!r} has type {type(value).__name__}, which netCDF cannot store; "
        "store nested content as a JSON string"
    )


def check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): check_attr_value(str(k), v) for k, v in attrs.items()}


def attrs_from_json(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """attrs as a file's JSON keeps them: lists back to numeric arrays, anything that is
    not netCDF-safe (nested content) kept as a JSON string."""
    out: dict[str, Any] = {}
    for k, v in (stored or {}).items():
        if isinstance(v, list):
            v = np.asarray(v)
        try:
            out[str(k)] = check_attr_value(str(k), v)
        except StackError:
            out[str(k)] = json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)
    return out


# --------------------------------------------------------------------------------------
# per-frame metadata <-> coordinates
# --------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _column_to_array(key: str, values: Sequence[Any]) -> tuple[np.ndarray, dict[str, str]]:
    """Turn one per-frame metadata column into a netCDF-safe 1-D array (+ coord attrs)."""
    vals = list(values)
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
    return _vlen([json.dumps(_jsonable(v), sort_keys=True) for v in vals]), {META_ENCODING_ATTR: "json"}


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
    if isinstance(frame_metadata, Mapping):
        columns = {str(k): list(np.asarray(v, dtype=object).ravel()) for k, v in frame_metadata.items()}
    else:
        frames = list(frame_metadata)
        if len(frames) != n_frames:
            raise StackError(f"frame_metadata has {len(frames)} entries for {n_frames} frames")
        keys: list[str] = []
        for i, fm in enumerate(frames):
            if not isinstance(fm, Mapping):
                raise StackError(f"frame_metadata[{i}] is a {type(fm).__name__}, not a dict")
            keys.extend(str(k) for k in fm if str(k) not in keys)
        columns = {k: [fm.get(k) for fm in frames] for k in keys}
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
        coords[name] = xr.Variable((TIME,), arr, attrs)
    return coords


def frame_metadata_names(da: xr.DataArray) -> list[str]:
    """Coordinate names that hold per-frame metadata (1-D along time, not time itself)."""
    return [k for k, c in da.coords.items() if k != TIME and c.dims == (TIME,)]


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


def _jsonable(obj: Any) -> Any:
    from .provenance import jsonable

    return jsonable(obj)


# --------------------------------------------------------------------------------------
# building stacks
# --------------------------------------------------------------------------------------
def _is_dask(arr: Any) -> bool:
    return type(arr).__module__.startswith("dask.") and hasattr(arr, "chunks")


def as_variable(dims: tuple[str, ...], arr: Any, attrs: Mapping[str, Any] | None = None) -> xr.Variable:
    """Wrap numpy, dask, or a lazy backend array (see ``formats._lazy``) as a Variable."""
    from xarray.core import indexing

    from .formats._lazy import LazyArray

    if isinstance(arr, xr.DataArray):
        arr = arr.variable._data if isinstance(arr.variable._data, indexing.ExplicitlyIndexed) else arr.data
    if isinstance(arr, LazyArray):
        data: Any = indexing.LazilyIndexedArray(arr)
    elif isinstance(arr, indexing.ExplicitlyIndexed) or _is_dask(arr):
        data = arr
    else:
        data = np.asarray(arr)
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


def _shape_dtype(data: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        return tuple(int(s) for s in data.shape), np.dtype(data.dtype)
    arr = np.asarray(data)
    return arr.shape, arr.dtype


def assemble(
    data: Any,
    *,
    pixel_size_nm: Any,
    times: Any = None,
    channel: str = "height",
    units: str = "nm",
    frame_metadata: Any = None,
    masks: Mapping[str, Any] | None = None,
    layers: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    provenance: list[dict] | None = None,
) -> xr.Dataset:
    """Build the one-variable Dataset behind a stack; data may be numpy, dask or lazy.

    Readers use this directly so that lazily indexed data stays unread.
    """
    if not _is_dask(data) and not hasattr(data, "shape"):
        data = np.asarray(data)
    shape, dtype = _shape_dtype(data)
    if len(shape) != 3:
        hint = " (for a single image use data[None])" if len(shape) == 2 else ""
        raise StackError(f"data must be 3-D (time, y, x), got {len(shape)}-D with shape {shape}{hint}")
    if dtype.kind not in "iuf":
        raise StackError(f"data must be numeric (int, uint or float), got dtype {dtype}")
    n_t, n_y, n_x = shape
    if n_t < 1 or n_y < 1 or n_x < 1:
        raise StackError(f"data must have at least one frame of at least 1x1 pixels, got shape {shape}")
    dy, dx = _check_pixel_size(pixel_size_nm)
    channel = check_netcdf_name(channel, "channel")
    if not isinstance(units, str):
        raise StackError(f"units must be a string, got {units!r}")

    if times is None and isinstance(frame_metadata, Sequence) and not isinstance(frame_metadata, (str, bytes)):
        stamps = [fm.get("timestamp") if isinstance(fm, Mapping) else None for fm in frame_metadata]
        if len(stamps) == n_t and all(_is_number(s) for s in stamps):
            times = stamps
    t = check_times(np.arange(n_t, dtype=np.float64) if times is None else times, n_t)

    coords: dict[str, xr.Variable] = {
        TIME: xr.Variable((TIME,), t, {"units": "s", "long_name": "time since first frame"}),
        Y: xr.Variable((Y,), np.arange(n_y, dtype=np.float64) * dy, {"units": "nm"}),
        X: xr.Variable((X,), np.arange(n_x, dtype=np.float64) * dx, {"units": "nm"}),
    }
    coords.update(frame_metadata_to_coords(frame_metadata, n_t))
    for kind, mapping, prefix in (("mask", masks, MASK_PREFIX), ("layer", layers, LAYER_PREFIX)):
        for name, arr in (mapping or {}).items():
            cname = prefix + encode_name(name, f"{kind} name")
            mshape, mdtype = _shape_dtype(arr)
            if mshape != shape:
                raise StackError(f"{kind} {name!r} has shape {mshape}, the stack has {shape}")
            if kind == "mask" and mdtype != bool:
                if mdtype.kind not in "iub":
                    raise StackError(f"mask {name!r} must be boolean, got dtype {mdtype}")
                arr = arr.astype(bool)
            if kind == "layer" and mdtype.kind not in "iuf":
                raise StackError(f"layer {name!r} must be numeric, got dtype {mdtype}")
            coords[cname] = as_variable(DIMS, arr)
    if channel in coords:
        raise StackError(f"channel {channel!r} clashes with a coordinate name; choose another channel name")

    from . import provenance as prov

    all_attrs = check_attrs(attrs or {})
    all_attrs.update(
        {
            "units": units,
            "channel": channel,
            "long_name": channel,
            PIXEL_SIZE_ATTR: dx,
        }
    )
    if dy != dx:
        all_attrs[PIXEL_SIZE_Y_ATTR] = dy
    all_attrs[PROVENANCE_ATTR] = prov.dumps(provenance or [])
    var = as_variable(DIMS, data, all_attrs)
    return xr.Dataset({channel: var}, coords=coords)


def stack(
    data: Any,
    *,
    pixel_size_nm: float | tuple[float, float],
    times: Sequence[float] | np.ndarray | None = None,
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
    channel, units
        Channel name (also the DataArray's name) and the values' units.
    frame_metadata
        Per-frame metadata: a list of dicts (one per frame) or a dict of columns.
    masks, layers
        ``name -> array`` of the stack's shape: boolean masks and kept processed layers.
    attrs
        Extra netCDF-safe attrs (str, numbers, 1-D numeric arrays).
    """
    from . import provenance as prov

    record = prov.make_record("create", function="xafm.stack")
    return assemble(
        data,
        pixel_size_nm=pixel_size_nm,
        times=times,
        channel=channel,
        units=units,
        frame_metadata=frame_metadata,
        masks=masks,
        layers=layers,
        attrs=attrs,
        provenance=[record],
    )[check_netcdf_name(channel, "channel")]


#: Variable name of an array that keeps several channels as a ``channel`` dim.
MULTI_CHANNEL_NAME = "intensity"


def dim_order(dims: list[str]) -> list[str]:
    """time, z, channel, the others in file order, y, x (as OME-Zarr and nd2 readers do)."""
    head = [d for d in ("time", "z", "channel") if d in dims]
    tail = [d for d in ("y", "x") if d in dims]
    return head + [d for d in dims if d not in head and d not in tail] + tail


def assemble_dims(
    data: Any,
    dims: tuple[str, ...],
    *,
    name: str,
    units: str,
    pixel_size_nm: tuple[float, float],
    times: Any,
    coords: dict[str, xr.Variable] | None = None,
    frame_metadata: Any = None,
    masks: dict[str, tuple[tuple[str, ...], Any]] | None = None,
    attrs: dict[str, Any] | None = None,
    provenance: list[dict] | None = None,
) -> xr.Dataset:
    """``assemble`` for (time, y, x); the same conventions when more dims are kept.

    ``coords`` are the extra dims' coordinates; ``masks`` map a name to (dims, boolean
    array), the dims a subset of ``dims``.
    """
    from . import provenance as _prov

    dims = tuple(dims)
    masks = masks or {}
    if dims == DIMS:
        return assemble(
            data,
            pixel_size_nm=pixel_size_nm,
            times=times,
            channel=name,
            units=units,
            frame_metadata=frame_metadata,
            masks={k: arr for k, (_, arr) in masks.items()},
            attrs=attrs,
            provenance=provenance,
        )
    shape = tuple(int(n) for n in data.shape)
    sizes = dict(zip(dims, shape))
    dy, dx = (float(pixel_size_nm[0]), float(pixel_size_nm[1]))
    name = check_netcdf_name(name, "channel")
    t = check_times(times, sizes[TIME])
    all_coords: dict[str, xr.Variable] = {
        TIME: xr.Variable((TIME,), t, {"units": "s", "long_name": "time since first frame"}),
        Y: xr.Variable((Y,), np.arange(sizes[Y], dtype=np.float64) * dy, {"units": "nm"}),
        X: xr.Variable((X,), np.arange(sizes[X], dtype=np.float64) * dx, {"units": "nm"}),
    }
    all_coords.update(frame_metadata_to_coords(frame_metadata, sizes[TIME]))
    all_coords.update(coords or {})
    for mname, (mdims, arr) in masks.items():
        if tuple(int(n) for n in arr.shape) != tuple(sizes[d] for d in mdims):
            raise StackError(f"mask {mname!r} has shape {tuple(arr.shape)}, expected {tuple(sizes[d] for d in mdims)} for {mdims}")
        all_coords[mask_coord(mname)] = as_variable(tuple(mdims), arr)
    if name in all_coords:
        raise StackError(f"channel {name!r} clashes with a coordinate name")
    all_attrs = check_attrs(attrs or {})
    all_attrs.update({"units": units, "channel": name, "long_name": name, PIXEL_SIZE_ATTR: dx})
    if dy != dx:
        all_attrs[PIXEL_SIZE_Y_ATTR] = dy
    all_attrs[PROVENANCE_ATTR] = _prov.dumps(provenance or [])
    return xr.Dataset({name: as_variable(dims, data, all_attrs)}, coords=all_coords)


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
        step = float(steps[0])
        if not (step > 0 and np.allclose(steps, step, rtol=1e-6, atol=0)):
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


def times_s(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.coords[TIME].values, dtype=np.float64) if TIME in da.coords else np.arange(da.sizes[TIME], dtype=np.float64)


def _named(da: xr.DataArray, prefix: str) -> dict[str, xr.DataArray]:
    return {decode_name(k[len(prefix):]): da.coords[k] for k in da.coords if k.startswith(prefix)}


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
    own = {"units", "channel", "long_name", PIXEL_SIZE_ATTR, PIXEL_SIZE_Y_ATTR, PROVENANCE_ATTR}
    return {k: v for k, v in da.attrs.items() if k not in own}


def replace_data(da: xr.DataArray, data: Any, **attrs_update: Any) -> xr.DataArray:
    """Same coords and attrs, new values (numpy or dask)."""
    out = da.copy(data=data)
    out.attrs = {**da.attrs, **attrs_update}
    return out

