"""Reading OME-Zarr lazily: :class:`ZarrArraySource`, and the readers of xafm's own stores
(the stack they were written from) and of other tools' stores (with their own dims).

A :class:`ZarrArraySource` keeps a path and an array name and opens the array on each
read, so dask graphs built on it pickle to distributed workers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ...core import chunks as chunking
from ...core import conventions, model, provenance, sources
from ...core.lazy import LazyArray
from ...exceptions import ChannelError, CorruptFileError, FileChangedError, FormatError, XafmError, XafmWarning
from . import ngff
from .extents import check_extents
from .geometry import is_int
from .layout import NAME, join
from .store import native, note_format, np_dtype, open_array, options_of, root_of, store_of, zarr

#: The reader named in the read records: the package's public ``read``.
READER = __package__


class ZarrArraySource(LazyArray):
    """One stored Zarr array seen through a layout, opened on every read.

    ``layout`` gives, per output dim, the stored axis it shows or ``None`` for a new
    length-1 axis; ``fixed`` pins stored axes to one index; ``shape`` may be shorter than
    the stored array along an axis (frames an interrupted append left beyond the metadata).

    The store counts as changed (``FileChangedError``) when its folder is another folder
    (the base class checks its identity) or the array is no longer the one opened: another
    dtype, another frame shape, or fewer frames. More frames (an append) are not a change:
    the frames this array shows are still the ones it was opened on.
    """

    def __init__(self, root: str, component: str, shape: tuple[int, ...], dtype: Any, *, layout: tuple | None = None, fixed: Mapping[int, int] | None = None, out_dtype: Any = None):
        self.path = os.fspath(root)
        if sources.is_url(self.path):
            # a prefix has no version, and asking whether it is still there costs more
            # requests than the read; the array's metadata, read on every read, is the
            # check (_check_same_array; a deleted store has none, which zarr refuses)
            self.opened = None
        self.options = options_of(self.path)  # a URL's: a dask worker opens it with them
        self.component = component
        self.layout = tuple(range(len(shape))) if layout is None else tuple(layout)
        self.fixed = dict(fixed or {})
        self.stored_ndim = len([a for a in self.layout if a is not None]) + len(self.fixed)
        self.shape = tuple(int(shape[a]) if a is not None else 1 for a in self.layout)
        self.stored_dtype = np.dtype(dtype)
        self.stored_shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(out_dtype) if out_dtype is not None else native(dtype)

    def _check_same_array(self, arr: Any) -> None:
        shape = tuple(int(s) for s in arr.shape)
        same = np_dtype(arr) == self.stored_dtype and len(shape) == len(self.stored_shape) and shape[1:] == self.stored_shape[1:]
        if not same or shape[0] < self.stored_shape[0]:
            raise FileChangedError(
                self.path,
                f"the store changed since it was opened: its array {self.component!r} was {self.stored_dtype} "
                f"{self.stored_shape}, it is {np_dtype(arr)} {shape}; reading on would mix two versions, open it again",
            )

    def _read(self, key: tuple) -> np.ndarray:
        stored: list[Any] = [None] * self.stored_ndim
        for ax, v in self.fixed.items():
            stored[ax] = int(v)
        for o, ax in enumerate(self.layout):
            if ax is None:
                continue
            k, n = key[o], self.shape[o]
            if isinstance(k, slice):
                a, b, s = k.indices(n)
                k = slice(a, b, s) if s > 0 else np.arange(n)[k]
            elif is_int(k):
                k = int(k) + (n if k < 0 else 0)
                if not 0 <= k < n:
                    raise IndexError(f"index {key[o]} out of range for size {n}")
            else:
                k = np.asarray(k, dtype=np.intp)
                k = np.where(k < 0, k + n, k)
            stored[ax] = k
        if any(isinstance(k, slice) and k.stop <= k.start for k in stored) or any(isinstance(k, np.ndarray) and k.size == 0 for k in stored):
            shape = []
            for o in range(len(self.layout)):
                k = key[o]
                if not is_int(k):
                    shape.append(len(np.arange(self.shape[o])[k]) if isinstance(k, slice) else len(k))
            return np.empty(shape, self.dtype)
        arr = open_array(self.path, self.component, options=self.options)
        self._check_same_array(arr)
        data = np.asarray(arr.oindex[tuple(stored)])
        present = [ax for ax in range(self.stored_ndim) if not is_int(stored[ax])]
        want = [ax for o, ax in enumerate(self.layout) if ax is not None and not is_int(key[o])]
        data = np.transpose(data, [present.index(ax) for ax in want])
        pos = 0
        for o, ax in enumerate(self.layout):
            k = key[o]
            if is_int(k):
                if ax is None and int(k) not in (0, -1):
                    raise IndexError(f"index {k} out of range for size 1")
                continue
            if ax is None:
                m = len(np.arange(1)[k]) if isinstance(k, slice) else len(k)
                data = np.repeat(np.expand_dims(data, pos), m, axis=pos)
            pos += 1
        return data.astype(self.dtype, copy=False)


# ======================================================================================
# the image group
# ======================================================================================
def open_image(path: str) -> tuple[Any, str, dict[str, Any], str | None, dict[str, Any]]:
    """(group, group path in the store, NGFF content, version, all attrs) of the image."""
    zr = zarr()
    root = root_of(path)
    try:
        g = zr.open_group(store_of(root), mode="r")
    except XafmError:
        raise
    except Exception as exc:
        raise CorruptFileError(path, f"not a readable Zarr group: {type(exc).__name__}: {exc}") from None
    note_format(root, g)  # a URL's arrays are then opened with one request each
    attrs = g.attrs.asdict()
    ome, version = ngff.read_ome(attrs)
    prefix = ""
    if "multiscales" not in ome and ("bioformats2raw.layout" in ome or "bioformats2raw.layout" in attrs):
        prefix = "0"  # bioformats2raw: the first image is the group "0"
        try:
            g = g["0"]
        except KeyError:
            raise CorruptFileError(path, "bioformats2raw layout without the image group '0'") from None
        attrs = g.attrs.asdict()
        ome, version = ngff.read_ome(attrs)
    if "plate" in ome or "well" in ome:
        raise CorruptFileError(path, "an NGFF plate/well, not an image: open one image inside it (e.g. plate.zarr/A/1/0)")
    if not isinstance(ome.get("multiscales"), list) or not ome["multiscales"] or not isinstance(ome["multiscales"][0], Mapping):
        raise CorruptFileError(
            path,
            "no NGFF 'multiscales' metadata: not an OME-Zarr image "
            "(for a store written by xarray's to_zarr use xr.open_dataarray(path, engine='zarr'))",
        )
    return g, prefix, ome, version, attrs


def array_of(path: str, g: Any, component: str) -> Any:
    zr = zarr()
    try:
        arr = g[component]
    except KeyError:
        raise CorruptFileError(path, f"the array {component!r} named in the metadata is missing") from None
    if not isinstance(arr, zr.Array):
        raise CorruptFileError(path, f"{component!r} is a group, not an array")
    return arr


# ======================================================================================
# xafm's own stores
# ======================================================================================
#: The type each field of the ``xafm`` attributes must have (None allowed for all but
#: the first four): damaged metadata is a CorruptFileError naming the store.
_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "n_frames": int, "times_s": list, "pixel_size_nm": list, "channel": str,
    "units": str, "attrs": Mapping, "provenance": list, "frame_metadata": list, "masks": Mapping, "layers": Mapping,
}


def check_meta(path: str, meta: Mapping[str, Any]) -> None:
    """Refuse ``xafm`` attributes whose fields have the wrong type, naming the store."""
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        required = key in ("n_frames", "times_s", "pixel_size_nm")
        if (value is None and not required) or (isinstance(value, kind) and not isinstance(value, bool)):
            continue
        raise CorruptFileError(path, f"xafm metadata: {key} is {value!r:.60}, not {getattr(kind, '__name__', kind)}")
    times = meta["times_s"]
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise CorruptFileError(path, "xafm metadata: times_s must be numbers")
    for group in ("masks", "layers"):
        for name, where in (meta.get(group) or {}).items():
            if not isinstance(where, str):
                raise CorruptFileError(path, f"xafm metadata: the {group[:-1]} {name!r} has no group path ({where!r:.40})")
    if meta.get("frame_metadata") is not None and not all(isinstance(f, Mapping) for f in meta["frame_metadata"]):
        raise CorruptFileError(path, "xafm metadata: frame_metadata must list one mapping per frame")


def read_xafm(path: str, g: Any, ome: dict[str, Any], meta: dict[str, Any], channel: str | None, level: int) -> xr.Dataset:
    """A store xafm wrote, as the stack it was written from (pyramid ``level``)."""
    root = root_of(path)
    check_meta(path, meta)
    name = conventions.safe_channel(str(meta.get("channel") or "height"))
    if channel is not None and channel not in (name, meta.get("channel")):
        raise ChannelError(f"{path}: no channel {channel!r}; available: {[name]}")
    ms = ome["multiscales"][0]
    datasets = ngff.dataset_entries(path, ms)
    if level >= len(datasets):
        raise FormatError(f"{path}: no level {level}; the store has levels 0..{len(datasets) - 1}")
    times = meta.get("times_s")
    n = meta.get("n_frames")
    if not isinstance(times, list) or not is_int(n) or len(times) != n:
        raise CorruptFileError(path, "xafm metadata: times_s must list one time per frame (n_frames)")
    comp = datasets[level]["path"]
    arr = array_of(path, g, comp)
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) != 3:
        raise CorruptFileError(path, f"array {comp!r} must be 3-D (t, y, x), found {shape}")
    if shape[0] < n:
        raise CorruptFileError(path, f"array {comp!r} holds {shape[0]} frames, the metadata lists {n}")
    if shape[0] > n:
        warnings.warn(f"{path}: {shape[0] - n} frames beyond the metadata (an interrupted append?) are ignored", XafmWarning, stacklevel=3)
    shape = (n,) + shape[1:]
    check_extents(path, arr, comp, shape)  # the frame count is backed by times_s; y, x by chunks
    dtype = np_dtype(arr)
    data = ZarrArraySource(root, comp, shape, dtype)

    def side(kind: str, out_dtype: Any) -> dict[str, Any]:
        out = {}
        for nm, p in (meta.get(kind) or {}).items():
            a = array_of(path, g, join(p, comp))
            if tuple(a.shape[1:]) != shape[1:] or a.shape[0] < n:
                warnings.warn(f"{path}: {kind[:-1]} {nm!r} has shape {tuple(a.shape)}, data has {shape}; not attached", XafmWarning, stacklevel=4)
                continue
            out[nm] = ZarrArraySource(root, join(p, comp), shape, np_dtype(a), out_dtype=out_dtype)
        return out

    masks, layers = side("masks", bool), side("layers", None)
    pixel = meta.get("pixel_size_nm")
    if not isinstance(pixel, list) or len(pixel) != 2:
        raise CorruptFileError(path, "xafm metadata: pixel_size_nm must be [y, x]")
    f = 2**level
    attrs: dict[str, Any] = conventions.attrs_from_json(meta.get("attrs"))
    if level:
        attrs["ome_zarr_level"] = level
    recs = [r for r in (meta.get("provenance") or []) if isinstance(r, dict)]
    recs.append(provenance.make_record("read", path=path, format=NAME, reader=READER, level=level))
    # where the level's first pixel lies: a crop's origin (plus, for a reduced level, the
    # centre of the pixels it reduces), as the level's NGFF translation states it
    _, translation = ngff.scale_translation(path, datasets[level].get("coordinateTransformations"), 3)
    ds = model.assemble(
        data,
        pixel_size_nm=(float(pixel[0]) * f, float(pixel[1]) * f),
        origin_nm=(translation[1], translation[2]),
        times=times,
        channel=name,
        units=str(meta.get("units", "nm")),
        frame_metadata=meta.get("frame_metadata") or None,
        masks=masks,
        layers=layers,
        attrs=attrs,
        provenance=recs,
    )
    chunking.declare_stored(ds[name].variable, dict(zip(conventions.DIMS, arr.chunks)))
    return ds


# ======================================================================================
# other tools' stores
# ======================================================================================
def foreign_layout(path: str, g: Any, ome: dict[str, Any], level: int) -> dict[str, Any]:
    """The array of ``level`` and what its axes are: time, channel, z, y, x and others,
    the channel names, and the physical scale and translation of every axis."""
    ms = ome["multiscales"][0]
    datasets = ngff.dataset_entries(path, ms)
    if level >= len(datasets):
        raise FormatError(f"{path}: no level {level}; the store has levels 0..{len(datasets) - 1}")
    comp = datasets[level]["path"]
    arr = array_of(path, g, comp)
    shape = tuple(int(s) for s in arr.shape)
    check_extents(path, arr, comp)  # before coordinates of any axis are built
    axes = ngff.axis_info(path, ms, len(shape))
    spaces = [i for i, a in enumerate(axes) if a["type"] == "space"]
    if len(spaces) < 2:
        raise CorruptFileError(path, f"an image needs at least 2 space axes, found {[a['name'] for a in axes]}")
    iy, ix = spaces[-2], spaces[-1]
    it = next((i for i, a in enumerate(axes) if a["type"] == "time"), None)
    ic = next((i for i, a in enumerate(axes) if a["type"] == "channel"), None)
    iz = spaces[-3] if len(spaces) >= 3 else None
    n_c = shape[ic] if ic is not None else 1
    labels: list[Any] = []
    omero = ome.get("omero")
    if isinstance(omero, Mapping) and isinstance(omero.get("channels"), list):
        labels = [c.get("label") if isinstance(c, Mapping) else None for c in omero["channels"]]
    names = [str(labels[i]) if i < len(labels) and labels[i] is not None else f"C{i}" for i in range(n_c)]
    scale, translation = ngff.scale_translation(path, datasets[level].get("coordinateTransformations"), len(shape))
    s2, t2 = ngff.scale_translation(path, ms.get("coordinateTransformations"), len(shape))
    scale, translation = scale * s2, translation * s2 + t2
    return {"comp": comp, "arr": arr, "shape": shape, "axes": axes, "it": it, "ic": ic, "iz": iz, "iy": iy, "ix": ix,
            "names": names, "scale": scale, "translation": translation}


def read_foreign(path: str, g: Any, prefix: str, ome: dict[str, Any], version: str | None, channel: str | None, level: int) -> xr.Dataset:
    """Another tool's image (pyramid ``level``) with its own dims, in xafm's foreign order."""
    lay = foreign_layout(path, g, ome, level)
    shape, axes, names = lay["shape"], lay["axes"], lay["names"]
    it, ic, iz, iy, ix = lay["it"], lay["ic"], lay["iz"], lay["iy"], lay["ix"]
    fixed: dict[int, int] = {}
    if channel is not None:
        if channel not in names:
            raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
        c_index: int | None = names.index(channel)
    else:
        c_index = 0 if len(names) == 1 else None
    if ic is not None and c_index is not None:
        fixed[ic] = c_index
    if iz is not None and shape[iz] == 1:
        fixed[iz] = 0
    others = [i for i in range(len(shape)) if i not in (it, ic, iz, iy, ix)]
    for i in others:
        if shape[i] == 1:
            fixed[i] = 0
    others = [i for i in others if i not in fixed]
    # output dims in xafm's foreign order: time, z, channel, (others), y, x
    layout: list[int | None] = [it]
    dims = ["time"]
    for i, d in ((iz, "z"), (ic, "channel")):
        if i is not None and i not in fixed:
            layout.append(i)
            dims.append(d)
    for i in others:
        layout.append(i)
        dims.append(axes[i]["name"])
    layout += [iy, ix]
    dims += ["y", "x"]
    root = root_of(path)
    comp = join(prefix, lay["comp"])
    dtype = np_dtype(lay["arr"])
    src = ZarrArraySource(root, comp, shape, dtype, layout=tuple(layout), fixed=fixed)

    def physical(i: int | None, table: dict[str, float]) -> tuple[float, float]:
        if i is None:
            return 1.0, 0.0
        f = ngff.unit_factor(axes[i]["unit"], table) or 1.0
        return float(lay["scale"][i]) * f, float(lay["translation"][i]) * f

    dy, oy = physical(iy, ngff.SPACE_NM)
    dx, ox = physical(ix, ngff.SPACE_NM)
    dt, ot = physical(it, ngff.TIME_S)
    n_t = shape[it] if it is not None else 1
    dt = dt if dt > 0 else 1.0
    times = np.arange(n_t) * dt
    dy, dx = (dy if dy > 0 else 1.0), (dx if dx > 0 else 1.0)
    unitless = [axes[i] for i in (iy, ix) if ngff.unit_factor(axes[i]["unit"], ngff.SPACE_NM) is None]
    if unitless:
        found = ", ".join(f"{a['name']!r}: {a['unit']!r}" if a["unit"] is not None else f"{a['name']!r}: none" for a in unitless)
        warnings.warn(
            f"{path}: the NGFF axes give no length unit ({found}), so no physical pixel size; "
            f"their scale is taken as nm: {dy:g} x {dx:g} nm per pixel",
            XafmWarning,
            stacklevel=3,
        )
    recs = [provenance.make_record("read", path=path, format=NAME, reader=READER, ngff_version=version, level=level)]
    coords: dict[str, xr.Variable] = {}
    if "channel" in dims:
        coords["channel"] = model.variable(("channel",), np.array(names), index=True)
    if "z" in dims:
        dz, oz = physical(iz, ngff.SPACE_NM)
        coords["z"] = model.variable(("z",), oz + np.arange(shape[iz]) * (dz if dz > 0 else 1.0), {"units": "nm"}, index=True)
    var = conventions.MULTI_CHANNEL_NAME if "channel" in dims else conventions.safe_channel(names[c_index or 0])
    ds = model.assemble(
        src,
        dims=tuple(dims),
        channel=var,
        units="",
        pixel_size_nm=(dy, dx),
        origin_nm=(oy, ox),
        times=times + ot,
        coords=coords,
        attrs={"ngff_version": str(version)} if version else None,
        provenance=recs,
    )
    chunks = tuple(lay["arr"].chunks)
    chunking.declare_stored(ds[var].variable, {d: (chunks[a] if a is not None else 1) for d, a in zip(dims, layout)})
    return ds
