"""OME-Zarr (NGFF 0.5 on Zarr v3 by default, NGFF 0.4 on Zarr v2 on request).

Layout xafm writes (see docs/formats.md)::

    stack.ome.zarr/            image group: ome.multiscales, ome.omero, xafm (our metadata)
      0/ 1/ ...                pyramid levels, dims (t, y, x), 2x down in y and x per level
      labels/<mask>/0 ...      each mask as an NGFF label image (uint8 0/1)
      layers/<layer>/0 ...     each kept layer as an NGFF image group of its own

Level 0 is written from the stack chunk by chunk (in parallel on dask's scheduler, a
``dask.distributed`` cluster included: every task writes whole chunks, or whole shards,
that no other task touches); each further level is computed from the level below as it
lies in the store, so no level is ever held in memory. New stores are written beside the
destination and renamed into place; ``mode="a"`` appends frames in place and restores the
arrays' previous shape if the append fails.

Reading is lazy: a :class:`ZarrArraySource` keeps a path and an array name and opens the
array on each read, so dask graphs built on it pickle to distributed workers.
"""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from .._version import __version__
from ..exceptions import (
    ChannelError,
    CorruptFileError,
    FormatError,
    OutputExistsError,
    StackError,
    WriteError,
    XafmError,
    XafmWarning,
)
from ..core import blocks, chunks as chunking
from ..core.blocks import is_dask, raw_data
from ..core.contract import Format, Probe
from ..core.lazy import LazyArray
from ..core.output import atomic_output
from . import _bundle

NAME = "zarr"
XAFM_KEY = "xafm"
FORMAT_VERSION = 1
VERSIONS = ("0.4", "0.5")
MODES = ("w-", "w", "a")
METHODS = ("mean", "nearest", "max", "min")
#: Target bytes of one chunk when ``chunks`` is not given, and the largest y/x chunk edge.
CHUNK_BYTES = 4 * 2**20
MAX_EDGE = 1024
LABELS, LAYERS = "labels", "layers"
MASK_COLOR = [255, 0, 0, 128]

#: NGFF (UDUNITS-2) unit names in nm and s.
SPACE_NM = {
    "angstrom": 0.1, "attometer": 1e-9, "centimeter": 1e7, "decimeter": 1e8, "exameter": 1e27,
    "femtometer": 1e-6, "foot": 3.048e8, "gigameter": 1e18, "hectometer": 1e11, "inch": 2.54e7,
    "kilometer": 1e12, "megameter": 1e15, "meter": 1e9, "micrometer": 1e3, "micron": 1e3, "mile": 1.609344e12,
    "millimeter": 1e6, "nanometer": 1.0, "parsec": 3.0856776e25, "petameter": 1e24, "picometer": 1e-3,
    "terameter": 1e21, "yard": 9.144e8, "yoctometer": 1e-15, "yottameter": 1e33, "zeptometer": 1e-12,
    "zettameter": 1e30,
}
TIME_S = {
    "attosecond": 1e-18, "centisecond": 1e-2, "day": 86400.0, "decisecond": 0.1, "exasecond": 1e18,
    "femtosecond": 1e-15, "gigasecond": 1e9, "hectosecond": 1e2, "hour": 3600.0, "kilosecond": 1e3,
    "megasecond": 1e6, "microsecond": 1e-6, "millisecond": 1e-3, "minute": 60.0, "nanosecond": 1e-9,
    "petasecond": 1e15, "picosecond": 1e-12, "second": 1.0, "terasecond": 1e12, "yoctosecond": 1e-24,
    "yottasecond": 1e24, "zeptosecond": 1e-21, "zettasecond": 1e21,
}


# ======================================================================================
# small helpers
# ======================================================================================
def _zarr():
    import zarr

    return zarr


def _open_array(root: str, component: str, mode: str = "r") -> Any:
    return _zarr().open_array(store=root, path=component, mode=mode)


def _node_name(name: str) -> str:
    """A mask/layer name as a Zarr node name: percent-encoded, no leading ``__``."""
    enc = conventions.encode_name(name)
    return "%5F" + enc[1:] if enc.startswith("__") else enc


def _native(dtype: Any) -> np.dtype:
    return np.dtype(dtype).newbyteorder("=")


def _is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer))


def _fill_value(dtype: np.dtype) -> Any:
    return float("nan") if dtype.kind == "f" else 0


# ======================================================================================
# chunk geometry
# ======================================================================================
def _as_triple(value: Any, what: str, shape: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """``chunks``/``shards`` as (t, y, x): an int (frames, whole frames), a 3-tuple or a dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        alias = {"t": "time", "time": "time", "y": "y", "x": "x"}
        unknown = [k for k in value if k not in alias]
        if unknown:
            raise FormatError(f"{what} keys must be among 'time', 'y', 'x'; got {unknown}")
        got = {alias[k]: v for k, v in value.items()}
        value = tuple(got.get(d, None) for d in conventions.DIMS)
        value = tuple(shape[i] if v is None else v for i, v in enumerate(value))
    elif _is_int(value):
        value = (int(value), shape[1], shape[2])
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise FormatError(f"{what} must be an int, a (time, y, x) tuple or a dict, got {value!r}") from None
    if len(out) != 3 or any(v < 1 for v in out):
        raise FormatError(f"{what} must be three positive ints (time, y, x), got {value!r}")
    return out  # type: ignore[return-value]


def default_chunks(shape: tuple[int, int, int], dtype: Any) -> tuple[int, int, int]:
    """Whole frames up to ``MAX_EDGE`` pixels a side, as many frames as fit in ``CHUNK_BYTES``."""
    n, ny, nx = shape
    cy, cx = min(ny, MAX_EDGE), min(nx, MAX_EDGE)
    ct = max(1, CHUNK_BYTES // (cy * cx * np.dtype(dtype).itemsize))
    return (max(1, min(n, ct)), cy, cx)


def _level_geometry(chunks: tuple, shards: tuple | None, shape_k: tuple) -> tuple[tuple, tuple | None]:
    """Chunk and shard shape of one pyramid level (capped to the level, shards kept multiples)."""
    ck = (chunks[0],) + tuple(max(1, min(c, s)) for c, s in zip(chunks[1:], shape_k[1:]))
    if shards is None:
        return ck, None
    sk = (shards[0],) + tuple(
        min(sh, -(-s // c) * c) for sh, c, s in zip(shards[1:], ck[1:], shape_k[1:])
    )
    return ck, sk


def _aligned(n: int, unit: int, start: int = 0) -> tuple[int, ...]:
    """Block sizes covering ``[start, start+n)`` whose edges fall on multiples of ``unit``."""
    edges = [start] + list(range((start // unit + 1) * unit, start + n, unit)) + [start + n]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:]) if b > a)


def _level_shape(shape: tuple[int, int, int], k: int) -> tuple[int, int, int]:
    return (shape[0], shape[1] >> k, shape[2] >> k)


# ======================================================================================
# parallel, chunk-aligned writing
# ======================================================================================
class _Target:
    """Picklable handle on one Zarr array: opened inside each task, never kept open."""

    def __init__(self, root: str, component: str):
        self.root, self.component = root, component

    def write(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        _open_array(self.root, self.component, "r+")[region] = block


def _finite_range(block: np.ndarray) -> tuple[float, float] | None:
    if block.dtype.kind == "f":
        fin = block[np.isfinite(block)]
        if fin.size == 0:
            return None
        return float(fin.min()), float(fin.max())
    if block.size == 0:
        return None
    return float(block.min()), float(block.max())


def _write_block(block: np.ndarray, target: _Target, region: tuple[slice, ...], dtype: np.dtype, stats: bool):
    """One dask task: write one chunk-aligned block; return its finite min/max if asked."""
    block = np.asarray(block).astype(dtype, copy=False)
    target.write(region, block)
    return _finite_range(block) if stats else None


def _merge_ranges(ranges: Any) -> tuple[float, float] | None:
    got = [r for r in ranges if r is not None]
    if not got:
        return None
    return min(r[0] for r in got), max(r[1] for r in got)


def _store_dask(arr: Any, target: _Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool) -> tuple[float, float] | None:
    """Write a dask array at time offset ``t0``: one task per write unit (chunk or shard)."""
    import dask

    n, ny, nx = arr.shape
    arr = arr.rechunk((_aligned(n, unit[0], t0), _aligned(ny, unit[1]), _aligned(nx, unit[2])))
    edges = [np.cumsum((0,) + c) for c in arr.chunks]
    tasks = []
    blocks = arr.to_delayed()
    for idx in np.ndindex(*blocks.shape):
        region = tuple(
            slice(int(e[i]) + (t0 if ax == 0 else 0), int(e[i + 1]) + (t0 if ax == 0 else 0))
            for ax, (e, i) in enumerate(zip(edges, idx))
        )
        tasks.append(dask.delayed(_write_block, pure=False)(blocks[idx], target, region, dtype, stats, dask_key_name=f"xafm-zarr-write-{uuid.uuid4().hex}"))
    return _merge_ranges(dask.compute(*tasks)) if tasks else None


def _store_local(obj: xr.DataArray, target: _Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool) -> tuple[float, float] | None:
    """Write a numpy- or lazily-backed stack block by block in this process."""
    arr = _open_array(target.root, target.component, "r+")
    frame_bytes = max(1, int(np.prod(obj.shape[1:])) * dtype.itemsize)
    per_block = max(unit[0], blocks.BLOCK_BYTES // frame_bytes // unit[0] * unit[0])
    ranges = []
    a = 0
    for size in _aligned(obj.shape[0], per_block, t0):
        block = np.asarray(obj[a : a + size].values).astype(dtype, copy=False)
        arr[t0 + a : t0 + a + size] = block
        if stats:
            ranges.append(_finite_range(block))
        a += size
    return _merge_ranges(ranges)


def _store(obj: xr.DataArray, target: _Target, t0: int, unit: tuple[int, int, int], dtype: np.dtype, stats: bool = False) -> tuple[float, float] | None:
    if is_dask(obj):
        return _store_dask(raw_data(obj), target, t0, unit, dtype, stats)
    return _store_local(obj, target, t0, unit, dtype, stats)


def _downsample_block(block: np.ndarray, method: str, dtype: np.dtype) -> np.ndarray:
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


def _build_level(root: str, src: str, dst: str, k: int, shape: tuple, chunks: tuple, shards: tuple | None, method: str, dtype: np.dtype, t0: int, n: int) -> None:
    """Level ``k`` frames ``[t0, t0+n)`` from level ``k-1`` in the store, streamed task by task.

    Each task reads a (t, 2h, 2w) region of the level below (four of its chunks) and writes
    one whole chunk (or shard) of level ``k``.
    """
    prev_shape = _level_shape(shape, k - 1)
    shape_k = _level_shape(shape, k)
    ck, sk = _level_geometry(chunks, shards, shape_k)
    unit = sk or ck
    source = ZarrArraySource(root, src, prev_shape, dtype)
    in_chunks = (_aligned(n, unit[0], t0), _aligned(2 * shape_k[1], 2 * unit[1]), _aligned(2 * shape_k[2], 2 * unit[2]))
    sub = _source_window(source, t0, n, shape_k, in_chunks)
    out = sub.map_blocks(
        _downsample_block,
        method,
        dtype,
        chunks=tuple(tuple(c // (1 if ax == 0 else 2) for c in cs) for ax, cs in enumerate(sub.chunks)),
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype),
    )
    _store_dask(out, _Target(root, dst), t0, unit, dtype, stats=False)


def _source_window(source: "ZarrArraySource", t0: int, n: int, shape_k: tuple, in_chunks: tuple) -> Any:
    """Level k-1 frames [t0, t0+n), trimmed to (2*ny_k, 2*nx_k), chunked for aligned output."""
    import dask.array as dsa

    window = _Window(source, t0, n, 2 * shape_k[1], 2 * shape_k[2])
    return dsa.from_array(window, chunks=in_chunks, lock=False, asarray=True,
                          name=f"xafm-zarr-read-{uuid.uuid4().hex}", meta=np.empty((0, 0, 0), source.dtype), inline_array=True)


class _Window(LazyArray):
    """A (t0.., 0.., 0..) corner window of a stored array."""

    def __init__(self, source: "ZarrArraySource", t0: int, n: int, ny: int, nx: int):
        self.source, self.t0 = source, t0
        self.path, self.dtype, self.shape = source.path, source.dtype, (n, ny, nx)

    def _read(self, key: tuple) -> np.ndarray:
        kt = key[0]
        if isinstance(kt, slice):
            a, b, s = kt.indices(self.shape[0])
            kt = slice(a + self.t0, b + self.t0, s)
        elif _is_int(kt):
            kt = int(kt) % self.shape[0] + self.t0
        else:
            kt = np.asarray(kt) % self.shape[0] + self.t0
        ky = np.arange(self.shape[1])[key[1]] if not isinstance(key[1], slice) else slice(*key[1].indices(self.shape[1]))
        kx = np.arange(self.shape[2])[key[2]] if not isinstance(key[2], slice) else slice(*key[2].indices(self.shape[2]))
        return self.source._read((kt, ky, kx))


# ======================================================================================
# metadata
# ======================================================================================
def _axes() -> list[dict[str, str]]:
    return [
        {"name": "t", "type": "time", "unit": "second"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]


def _time_scale(times: np.ndarray) -> float:
    if times.size > 1:
        step = float(np.median(np.diff(times)))
        if math.isfinite(step) and step > 0:
            return step
    return 1.0


def _multiscale(version: str, name: str, levels: int, method: str, times: np.ndarray, pixel: tuple[float, float]) -> dict[str, Any]:
    dy, dx = pixel
    dt = _time_scale(times)
    t_origin = float(times[0]) if times.size else 0.0
    datasets = []
    for k in range(levels):
        f = 2**k
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": [dt, dy * f, dx * f]}]
        shift = 0.0 if method == "nearest" else (f - 1) / 2
        translation = [t_origin, dy * shift, dx * shift]
        if any(v != 0 for v in translation):
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ms: dict[str, Any] = {
        "axes": _axes(),
        "datasets": datasets,
        "name": name,
        "type": method,
        "metadata": {
            "description": f"2x{method} downsampling in y and x per level (time kept)",
            "method": f"{__name__}.write",
            "version": __version__,
        },
    }
    if version == "0.4":
        ms = {"version": "0.4", **ms}
    return ms


def _omero(channel: str, window: tuple[float, float] | None, version: str) -> dict[str, Any]:
    lo, hi = window if window is not None else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    return {
        "channels": [
            {
                "label": channel,
                "color": "FFFFFF",
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
        ],
        "rdefs": {"defaultT": 0, "defaultZ": 0, "model": "greyscale"},
        **({"version": "0.4"} if version == "0.4" else {}),
    }


def _ome_attrs(version: str, **content: Any) -> dict[str, Any]:
    """NGFF content under ``ome`` (0.5) or at the top level (0.4)."""
    if version == "0.5":
        return {"ome": {"version": "0.5", **content}}
    return dict(content)


def _get_ome(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(NGFF content, version) of a group's attributes, for every NGFF version."""
    if isinstance(attrs.get("ome"), Mapping):
        ome = dict(attrs["ome"])
        return ome, str(ome.get("version")) if ome.get("version") is not None else None
    ms = attrs.get("multiscales")
    version = None
    if isinstance(ms, list) and ms and isinstance(ms[0], Mapping):
        version = ms[0].get("version")
    return dict(attrs), str(version) if version is not None else None


# ======================================================================================
# writing
# ======================================================================================
def _stack_content(da: xr.DataArray, raw: bool) -> dict[str, Any]:
    da = model.check_stack(da, "to_ome_zarr")
    dy, dx = model.pixel_size_nm(da)
    data, layers, masks = _bundle.written_parts(da, raw)
    if data.dtype.kind not in "iuf":
        raise StackError(f"OME-Zarr stores numeric stacks; got dtype {data.dtype}")
    fm = model.frame_metadata(da, with_timestamp=False)
    return {
        "da": da,
        "data": data,
        "layers": layers,
        "masks": masks,
        "pixel": (dy, dx),
        "times": model.times_s(da),
        "frame_metadata": conventions.jsonable(fm) if any(fm) else None,
        "channel": model.channel_of(da),
        "units": str(da.attrs.get("units", "")),
        "attrs": conventions.jsonable(model.user_attrs(da)),
        "dtype": _native(data.dtype),
    }


def _create(group: Any, name: str, shape: tuple, dtype: np.dtype, chunks: tuple, shards: tuple | None, zarr_format: int) -> None:
    zarr = _zarr()
    kwargs: dict[str, Any] = {"fill_value": _fill_value(dtype)}
    if zarr_format == 3:
        kwargs["compressors"] = zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        kwargs["dimension_names"] = ["t", "y", "x"]
        if shards is not None:
            kwargs["shards"] = shards
    else:
        import numcodecs

        kwargs["compressors"] = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, **kwargs)


def _image_items(content: dict[str, Any]) -> list[tuple[str, xr.DataArray, np.dtype, str]]:
    """(group path, values, dtype, method) of every image written: the stack, masks, layers."""
    items = [("", content["data"], content["dtype"], content["method"])]
    items += [(f"{LABELS}/{_node_name(n)}", m, np.dtype(np.uint8), "max" if content["method"] != "nearest" else "nearest") for n, m in content["masks"].items()]
    items += [(f"{LAYERS}/{_node_name(n)}", v, _native(v.dtype), content["method"]) for n, v in content["layers"].items()]
    return items


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _write_levels(root: str, items: list, shape: tuple, chunks: tuple, shards: tuple | None, levels: int, t0: int) -> tuple[float, float] | None:
    """Level 0 of every image from the stack, then each further level from the one below."""
    window = None
    n = shape[0] - t0
    for i, (prefix, obj, dtype, _method) in enumerate(items):
        unit = shards or chunks
        values = obj if obj.dtype == dtype or dtype != np.uint8 else obj.astype(np.uint8)
        rng = _store(values, _Target(root, _join(prefix, "0")), t0, unit, dtype, stats=(i == 0))
        if i == 0:
            window = rng
    for k in range(1, levels):
        for prefix, _obj, dtype, method in items:
            _build_level(root, _join(prefix, str(k - 1)), _join(prefix, str(k)), k, shape, chunks, shards, method, dtype, t0, n)
    return window


def _write_new(content: dict[str, Any], root: str, *, chunks: tuple, shards: tuple | None, levels: int, version: str, record: dict) -> None:
    zarr = _zarr()
    zf = 3 if version == "0.5" else 2
    shape = tuple(content["data"].shape)
    g = zarr.open_group(root, mode="w-", zarr_format=zf)
    items = _image_items(content)
    for prefix, _obj, dtype, _m in items:
        sub = g.require_group(prefix) if prefix else g  # creates labels/ and layers/ too
        for k in range(levels):
            ck, sk = _level_geometry(chunks, shards, _level_shape(shape, k))
            _create(sub, str(k), _level_shape(shape, k), dtype, ck, sk, zf)
    window = _write_levels(root, items, shape, chunks, shards, levels, 0)
    xafm_meta = {
        "format_version": FORMAT_VERSION,
        "channel": content["channel"],
        "units": content["units"],
        "pixel_size_nm": list(content["pixel"]),
        "n_frames": shape[0],
        "times_s": [float(t) for t in content["times"]],
        "frame_metadata": content["frame_metadata"],
        "attrs": content["attrs"],
        "provenance": provenance.records(content["da"]) + [record],
        "masks": {n: f"{LABELS}/{_node_name(n)}" for n in content["masks"]},
        "layers": {n: f"{LAYERS}/{_node_name(n)}" for n in content["layers"]},
        "levels": levels,
        "method": content["method"],
        "window": list(window) if window else None,
    }
    _write_group_attrs(g, content, version, levels, xafm_meta, window)


def _write_group_attrs(g: Any, content: dict[str, Any], version: str, levels: int, xafm_meta: dict, window: Any) -> None:
    times, pixel, method = np.asarray(xafm_meta["times_s"], dtype=np.float64), tuple(xafm_meta["pixel_size_nm"]), xafm_meta["method"]
    mask_method = "nearest" if method == "nearest" else "max"
    if xafm_meta["masks"]:
        lab = g.require_group(LABELS)
        lab.attrs.update(_ome_attrs(version, labels=[p.split("/", 1)[1] for p in xafm_meta["masks"].values()]))
        for name, path in xafm_meta["masks"].items():
            image_label: dict[str, Any] = {"colors": [{"label-value": 1, "rgba": MASK_COLOR}], "source": {"image": "../../"}}
            if version == "0.4":
                image_label = {"version": "0.4", **image_label}
            g[path].attrs.update(
                _ome_attrs(version, multiscales=[_multiscale(version, name, levels, mask_method, times, pixel)], **{"image-label": image_label})
            )
    if xafm_meta["layers"]:
        lay = g.require_group(LAYERS)
        lay.attrs.update({XAFM_KEY: {"layers": list(xafm_meta["layers"])}})
        for name, path in xafm_meta["layers"].items():
            g[path].attrs.update(_ome_attrs(version, multiscales=[_multiscale(version, name, levels, method, times, pixel)]))
    ome = _ome_attrs(
        version,
        multiscales=[_multiscale(version, xafm_meta["channel"], levels, method, times, pixel)],
        omero=_omero(xafm_meta["channel"], window, version),
    )
    g.attrs.update({**ome, XAFM_KEY: xafm_meta})


def _looks_like_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    shards: Any = None,
    levels: int = 1,
    method: str = "mean",
    mode: str = "w-",
    version: str = "0.5",
    append_dim: str | None = None,
    overwrite: bool | None = None,
    raw: bool = False,
) -> Path:
    """Write (or append to) an OME-Zarr image; returns the path.

    Parameters
    ----------
    chunks, shards
        Chunk (and, for NGFF 0.5, shard) shape: ``(time, y, x)``, a dict, or an int (frames
        of whole frames). Default chunks: whole frames up to 1024 px a side, ~4 MiB.
    levels, method
        Pyramid levels (2x down in y and x each) and the reduction: mean, nearest, max, min.
    mode
        ``"w-"`` fails if ``path`` exists, ``"w"`` replaces a Zarr store, ``"a"`` with
        ``append_dim="time"`` appends frames to a store xafm wrote (or creates it).
    version
        ``"0.5"`` (Zarr v3) or ``"0.4"`` (Zarr v2).
    overwrite
        ``True`` is ``mode="w"`` (the keyword the other writers use).
    raw
        Write the kept layer ``raw`` instead of the values.
    """
    version = str(version)
    if version not in VERSIONS:
        raise FormatError(f"version must be one of {VERSIONS}, got {version!r}")
    if overwrite and mode == "w-":
        mode = "w"
    if mode not in MODES:
        raise FormatError(f"mode must be one of {MODES}, got {mode!r}")
    if append_dim is not None and append_dim not in ("time", "t"):
        raise FormatError(f"append_dim must be 'time' (frames are appended), got {append_dim!r}")
    if append_dim is not None and mode != "a":
        raise FormatError(f"append_dim={append_dim!r} needs mode='a'")
    if method not in METHODS:
        raise FormatError(f"method must be one of {METHODS}, got {method!r}")
    if not _is_int(levels) or isinstance(levels, bool) or levels < 1:
        raise FormatError(f"levels must be a positive int, got {levels!r}")
    content = _stack_content(da, raw)
    content["method"] = method
    shape = tuple(int(s) for s in content["data"].shape)
    path = Path(path).expanduser()
    appending = mode == "a" and path.exists()
    if appending and append_dim is None:
        raise FormatError(f"{path} exists: mode='a' appends frames and needs append_dim='time' (or use mode='w' to replace it)")
    if not appending and min(shape[1], shape[2]) >> (levels - 1) < 1:
        raise StackError(f"{levels} levels halve {shape[1]}x{shape[2]} frames below one pixel; use at most {min(shape[1], shape[2]).bit_length()}")
    if version == "0.4" and shards is not None:
        raise FormatError("shards need Zarr v3: use version='0.5'")
    ch = _as_triple(chunks, "chunks", shape) or default_chunks(shape, content["dtype"])
    sh = _as_triple(shards, "shards", shape)
    if sh is not None and any(s % c for s, c in zip(sh, ch)):
        raise FormatError(f"shards {sh} must be whole multiples of chunks {ch}")

    if appending:
        _append(content, path, da=da)
        return path
    if mode == "w" and path.exists() and not _looks_like_zarr(path):
        raise OutputExistsError(path, "exists and is not a Zarr store; refusing to replace it")
    record = provenance.make_record(
        "export", format=NAME, path=os.fspath(path), raw=bool(raw), version=version, levels=levels, method=method,
        chunks=list(ch), shards=list(sh) if sh else None,
    )
    with atomic_output(path, overwrite=(mode == "w")) as tmp:
        _write_new(content, os.path.abspath(tmp), chunks=ch, shards=sh, levels=levels, version=version, record=record)
    return path


# --------------------------------------------------------------------------------------
# appending
# --------------------------------------------------------------------------------------
def _append(content: dict[str, Any], path: Path, *, da: xr.DataArray) -> None:
    zarr = _zarr()
    root = os.path.abspath(path)
    try:
        g = zarr.open_group(root, mode="r+")
    except Exception as exc:
        raise FormatError(f"{path}: cannot append: not a Zarr group ({type(exc).__name__}: {exc})") from None
    attrs = g.attrs.asdict()
    meta = attrs.get(XAFM_KEY)
    ome, version = _get_ome(attrs)
    if not isinstance(meta, dict) or version not in VERSIONS:
        raise FormatError(f"{path}: appending works on OME-Zarr stores xafm wrote (NGFF 0.4/0.5 with xafm metadata)")
    n_old = int(meta["n_frames"])
    shape0 = tuple(g["0"].shape)
    if shape0[0] < n_old:
        raise CorruptFileError(path, f"array 0 has {shape0[0]} frames, the metadata lists {n_old}")
    new = content["data"]
    n_new = int(new.shape[0])
    problems = []
    if tuple(new.shape[1:]) != shape0[1:]:
        problems.append(f"frame shape {tuple(new.shape[1:])} != stored {shape0[1:]}")
    stored_dtype = _np_dtype(g["0"])
    if content["dtype"] != stored_dtype:
        problems.append(f"dtype {content['dtype']} != stored {stored_dtype} (use .astype first)")
    if not np.allclose(content["pixel"], meta["pixel_size_nm"], rtol=1e-6, atol=0):
        problems.append(f"pixel size {content['pixel']} nm != stored {tuple(meta['pixel_size_nm'])} nm")
    if content["channel"] != meta.get("channel") or content["units"] != meta.get("units"):
        problems.append(f"channel/units {content['channel']!r}/{content['units']!r} != stored {meta.get('channel')!r}/{meta.get('units')!r}")
    if set(content["masks"]) != set(meta.get("masks") or {}) or set(content["layers"]) != set(meta.get("layers") or {}):
        problems.append(
            f"masks/layers {sorted(content['masks'])}/{sorted(content['layers'])} != stored "
            f"{sorted(meta.get('masks') or {})}/{sorted(meta.get('layers') or {})}"
        )
    old_times = np.asarray(meta["times_s"], dtype=np.float64)
    if old_times.size and content["times"][0] <= old_times[-1]:
        problems.append(
            f"the new frames start at t={content['times'][0]} s, not after the stored last frame "
            f"t={old_times[-1]} s; shift them first, e.g. da.assign_coords(time=da.time + offset)"
        )
    if problems:
        raise StackError(f"{path}: cannot append: " + "; ".join(problems))

    levels, method = int(meta["levels"]), str(meta["method"])
    content["method"] = method
    a0 = g["0"]
    chunks = tuple(a0.chunks)  # the inner chunks when sharded
    shards = tuple(a0.shards) if getattr(a0, "shards", None) else None
    n_total = n_old + n_new
    items = _image_items(content)
    arrays = [_join(prefix, str(k)) for prefix, *_ in items for k in range(levels)]
    old_shapes = {name: tuple(g[name].shape) for name in arrays}
    try:
        for name in arrays:
            g[name].resize((n_total,) + old_shapes[name][1:])
        window = _write_levels(root, items, (n_total,) + shape0[1:], chunks, shards, levels, n_old)
    except BaseException as exc:
        for name in arrays:
            try:
                _open_array(root, name, "r+").resize((n_old,) + old_shapes[name][1:])
            except Exception:  # pragma: no cover - best effort; metadata still says n_old
                pass
        if isinstance(exc, (XafmError, KeyboardInterrupt, SystemExit)):
            raise
        raise WriteError(path, f"appending failed; the store still holds its {n_old} frames: {type(exc).__name__}: {exc}") from exc

    old_fm = meta.get("frame_metadata") or [{} for _ in range(n_old)]
    new_fm = content["frame_metadata"] or [{} for _ in range(n_new)]
    fm = list(old_fm) + list(new_fm)
    record = provenance.make_record(
        "export", format=NAME, path=os.fspath(path), mode="a", frames=[n_old, n_total],
        appended_provenance=provenance.records(da),
    )
    old_window = meta.get("window")
    merged = _merge_ranges([tuple(old_window) if old_window else None, window])
    meta.update(
        {
            "n_frames": n_total,
            "times_s": [float(t) for t in old_times] + [float(t) for t in content["times"]],
            "frame_metadata": fm if any(fm) else None,
            "provenance": list(meta.get("provenance") or []) + [record],
            "window": list(merged) if merged else None,
        }
    )
    _write_group_attrs(g, content, version, levels, meta, merged)


# ======================================================================================
# reading
# ======================================================================================
class ZarrArraySource(LazyArray):
    """One stored Zarr array seen through a layout, opened on every read.

    ``layout`` gives, per output dim, the stored axis it shows or ``None`` for a new
    length-1 axis; ``fixed`` pins stored axes to one index; ``shape`` may be shorter than
    the stored array along an axis (frames an interrupted append left beyond the metadata).
    """

    def __init__(self, root: str, component: str, shape: tuple[int, ...], dtype: Any, *, layout: tuple | None = None, fixed: Mapping[int, int] | None = None, out_dtype: Any = None):
        self.path = os.fspath(root)
        self.component = component
        self.layout = tuple(range(len(shape))) if layout is None else tuple(layout)
        self.fixed = dict(fixed or {})
        self.stored_ndim = len([a for a in self.layout if a is not None]) + len(self.fixed)
        self.shape = tuple(int(shape[a]) if a is not None else 1 for a in self.layout)
        self.stored_dtype = np.dtype(dtype)
        self.dtype = np.dtype(out_dtype) if out_dtype is not None else _native(dtype)

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
            elif _is_int(k):
                k = int(k) + (n if k < 0 else 0)
                if not 0 <= k < n:
                    raise IndexError(f"index {key[o]} out of range for size {n}")
            else:
                k = np.asarray(k, dtype=np.intp)
                k = np.where(k < 0, k + n, k)
            stored[ax] = k
        if any(isinstance(k, slice) and k.stop <= k.start for k in stored) or any(isinstance(k, np.ndarray) and k.size == 0 for k in stored):
            shape = []
            for o, ax in enumerate(self.layout):
                k = key[o]
                if not _is_int(k):
                    shape.append(len(np.arange(self.shape[o])[k]) if isinstance(k, slice) else len(k))
            return np.empty(shape, self.dtype)
        arr = _open_array(self.path, self.component)
        data = np.asarray(arr.oindex[tuple(stored)])
        present = [ax for ax in range(self.stored_ndim) if not _is_int(stored[ax])]
        want = [ax for o, ax in enumerate(self.layout) if ax is not None and not _is_int(key[o])]
        data = np.transpose(data, [present.index(ax) for ax in want])
        pos = 0
        for o, ax in enumerate(self.layout):
            k = key[o]
            if _is_int(k):
                if ax is None and int(k) not in (0, -1):
                    raise IndexError(f"index {k} out of range for size 1")
                continue
            if ax is None:
                m = len(np.arange(1)[k]) if isinstance(k, slice) else len(k)
                data = np.repeat(np.expand_dims(data, pos), m, axis=pos)
            pos += 1
        return data.astype(self.dtype, copy=False)


def identify(probe: Probe) -> bool:
    """A Zarr group whose attributes carry NGFF metadata (any version): ``ome`` or
    ``multiscales`` (or bioformats2raw's layout). A plain store from ``to_zarr`` has none."""
    v3 = probe.member("zarr.json")
    if v3 is not None:
        attrs = json.loads(v3).get("attributes") or {}
        return isinstance(attrs, dict) and ("ome" in attrs or "multiscales" in attrs)
    v2 = probe.member(".zattrs")
    if v2 is not None:
        attrs = json.loads(v2)
        return isinstance(attrs, dict) and ("multiscales" in attrs or "bioformats2raw.layout" in attrs)
    return False


def _open_image(path: str) -> tuple[Any, str, dict[str, Any], str | None, dict[str, Any]]:
    """(group, group path in the store, NGFF content, version, all attrs) of the image."""
    zarr = _zarr()
    root = os.path.abspath(path)
    try:
        g = zarr.open_group(root, mode="r")
    except Exception as exc:
        raise CorruptFileError(path, f"not a readable Zarr group: {type(exc).__name__}: {exc}") from None
    attrs = g.attrs.asdict()
    ome, version = _get_ome(attrs)
    prefix = ""
    if "multiscales" not in ome and ("bioformats2raw.layout" in ome or "bioformats2raw.layout" in attrs):
        prefix = "0"  # bioformats2raw: the first image is the group "0"
        try:
            g = g["0"]
        except KeyError:
            raise CorruptFileError(path, "bioformats2raw layout without the image group '0'") from None
        attrs = g.attrs.asdict()
        ome, version = _get_ome(attrs)
    if "plate" in ome or "well" in ome:
        raise CorruptFileError(path, "an NGFF plate/well, not an image: open one image inside it (e.g. plate.zarr/A/1/0)")
    if not isinstance(ome.get("multiscales"), list) or not ome["multiscales"] or not isinstance(ome["multiscales"][0], Mapping):
        raise CorruptFileError(
            path,
            "no NGFF 'multiscales' metadata: not an OME-Zarr image "
            "(for a store written by xarray's to_zarr use xr.open_dataarray(path, engine='zarr'))",
        )
    return g, prefix, ome, version, attrs


def _levels(path: str, ms: Mapping[str, Any]) -> list[dict[str, Any]]:
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise CorruptFileError(path, "multiscales has no datasets")
    out = []
    for d in datasets:
        if not isinstance(d, Mapping) or not isinstance(d.get("path"), str):
            raise CorruptFileError(path, f"dataset entry without a path: {d!r:.100}")
        out.append(dict(d))
    return out


def _transforms(path: str, transforms: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for t in transforms or []:
        if not isinstance(t, Mapping):
            continue
        for kind, target in (("scale", scale), ("translation", translation)):
            if t.get("type") == kind and kind in t:
                vals = t[kind]
                if not isinstance(vals, list) or len(vals) != ndim or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                    raise CorruptFileError(path, f"{kind} transform {vals!r:.80} does not match the {ndim} axes")
                if kind == "scale":
                    target *= np.asarray(vals, dtype=np.float64)
                else:
                    target[:] = target * 1 + np.asarray(vals, dtype=np.float64)
    return scale, translation


def _axis_info(path: str, ms: Mapping[str, Any], ndim: int) -> list[dict[str, Any]]:
    axes = ms.get("axes")
    if axes is None:  # NGFF <= 0.3: tczyx, trailing
        names = "tczyx"[5 - ndim:] if ndim <= 5 else None
        if names is None:
            raise CorruptFileError(path, f"{ndim}-D array without axes metadata")
        axes = [{"name": n} for n in names]
    if not isinstance(axes, list) or len(axes) != ndim:
        raise CorruptFileError(path, f"axes metadata lists {len(axes) if isinstance(axes, list) else '?'} axes, the array has {ndim} dims")
    out = []
    for a in axes:
        if isinstance(a, str):
            a = {"name": a}
        if not isinstance(a, Mapping) or not isinstance(a.get("name"), str):
            raise CorruptFileError(path, f"malformed axis {a!r:.80}")
        name = a["name"]
        kind = a.get("type") or {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}.get(name.lower())
        out.append({"name": name, "type": kind, "unit": a.get("unit")})
    return out


def _unit_factor(unit: Any, table: dict[str, float]) -> float | None:
    return table.get(str(unit).lower()) if unit is not None else None


def channels(path: str | os.PathLike) -> list[str]:
    path = os.fspath(path)
    g, _prefix, ome, _version, attrs = _open_image(path)
    meta = attrs.get(XAFM_KEY)
    if isinstance(meta, Mapping) and isinstance(meta.get("channel"), str):
        return [conventions.safe_channel(meta["channel"])]
    return _foreign_layout(path, g, ome, 0)["names"]


def read(path: str | os.PathLike[str], *, channel: str | None = None, level: int = 0) -> xr.Dataset:
    """An OME-Zarr image (pyramid ``level``) lazily: xafm's own stores as the stack they were written from, other tools' with their dims."""
    path = os.fspath(path)
    if not _is_int(level) or isinstance(level, bool) or level < 0:
        raise FormatError(f"level must be a non-negative int, got {level!r}")
    g, prefix, ome, version, attrs = _open_image(path)
    meta = attrs.get(XAFM_KEY)
    if isinstance(meta, Mapping) and meta.get("format_version") == FORMAT_VERSION:
        return _read_xafm(path, g, ome, dict(meta), channel, int(level))
    return _read_foreign(path, g, prefix, ome, version, channel, int(level))


def _array_of(path: str, g: Any, component: str) -> Any:
    zarr = _zarr()
    try:
        arr = g[component]
    except KeyError:
        raise CorruptFileError(path, f"the array {component!r} named in the metadata is missing") from None
    if not isinstance(arr, zarr.Array):
        raise CorruptFileError(path, f"{component!r} is a group, not an array")
    return arr


def _np_dtype(arr: Any) -> np.dtype:
    dt = arr.dtype
    return np.dtype(dt.to_native_dtype() if hasattr(dt, "to_native_dtype") else dt)


def _read_xafm(path: str, g: Any, ome: dict[str, Any], meta: dict[str, Any], channel: str | None, level: int) -> xr.Dataset:
    root = os.path.abspath(path)
    name = conventions.safe_channel(str(meta.get("channel") or "height"))
    if channel is not None and channel not in (name, meta.get("channel")):
        raise ChannelError(f"{path}: no channel {channel!r}; available: {[name]}")
    ms = ome["multiscales"][0]
    datasets = _levels(path, ms)
    if level >= len(datasets):
        raise FormatError(f"{path}: no level {level}; the store has levels 0..{len(datasets) - 1}")
    times = meta.get("times_s")
    n = meta.get("n_frames")
    if not isinstance(times, list) or not _is_int(n) or len(times) != n:
        raise CorruptFileError(path, "xafm metadata: times_s must list one time per frame (n_frames)")
    comp = datasets[level]["path"]
    arr = _array_of(path, g, comp)
    shape = tuple(int(s) for s in arr.shape)
    if len(shape) != 3:
        raise CorruptFileError(path, f"array {comp!r} must be 3-D (t, y, x), found {shape}")
    if shape[0] < n:
        raise CorruptFileError(path, f"array {comp!r} holds {shape[0]} frames, the metadata lists {n}")
    if shape[0] > n:
        warnings.warn(f"{path}: {shape[0] - n} frames beyond the metadata (an interrupted append?) are ignored", XafmWarning, stacklevel=3)
    shape = (n,) + shape[1:]
    dtype = _np_dtype(arr)
    data = ZarrArraySource(root, comp, shape, dtype)

    def side(kind: str, out_dtype: Any) -> dict[str, Any]:
        out = {}
        for nm, p in (meta.get(kind) or {}).items():
            a = _array_of(path, g, _join(p, comp))
            if tuple(a.shape[1:]) != shape[1:] or a.shape[0] < n:
                warnings.warn(f"{path}: {kind[:-1]} {nm!r} has shape {tuple(a.shape)}, data has {shape}; not attached", XafmWarning, stacklevel=4)
                continue
            out[nm] = ZarrArraySource(root, _join(p, comp), shape, _np_dtype(a), out_dtype=out_dtype)
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
    recs.append(provenance.make_record("read", path=path, format=NAME, reader=__name__, level=level))
    ds = model.assemble(
        data,
        pixel_size_nm=(float(pixel[0]) * f, float(pixel[1]) * f),
        times=times,
        channel=name,
        units=str(meta.get("units", "nm")),
        frame_metadata=meta.get("frame_metadata") or None,
        masks=masks,
        layers=layers,
        attrs=attrs,
        provenance=recs,
    )
    _, translation = _transforms(path, datasets[level].get("coordinateTransformations"), 3)
    if translation[1] or translation[2]:
        ds = ds.assign_coords(
            y=("y", ds.y.values + translation[1], ds.y.attrs),
            x=("x", ds.x.values + translation[2], ds.x.attrs),
        )
    chunking.declare_stored(ds[name].variable, dict(zip(conventions.DIMS, arr.chunks)))
    return ds


def _foreign_layout(path: str, g: Any, ome: dict[str, Any], level: int) -> dict[str, Any]:
    ms = ome["multiscales"][0]
    datasets = _levels(path, ms)
    if level >= len(datasets):
        raise FormatError(f"{path}: no level {level}; the store has levels 0..{len(datasets) - 1}")
    comp = datasets[level]["path"]
    arr = _array_of(path, g, comp)
    shape = tuple(int(s) for s in arr.shape)
    axes = _axis_info(path, ms, len(shape))
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
    scale, translation = _transforms(path, datasets[level].get("coordinateTransformations"), len(shape))
    s2, t2 = _transforms(path, ms.get("coordinateTransformations"), len(shape))
    scale, translation = scale * s2, translation * s2 + t2
    return {"comp": comp, "arr": arr, "shape": shape, "axes": axes, "it": it, "ic": ic, "iz": iz, "iy": iy, "ix": ix,
            "names": names, "scale": scale, "translation": translation}


def _read_foreign(path: str, g: Any, prefix: str, ome: dict[str, Any], version: str | None, channel: str | None, level: int) -> xr.Dataset:
    lay = _foreign_layout(path, g, ome, level)
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
    root = os.path.abspath(path)
    comp = _join(prefix, lay["comp"])
    dtype = _np_dtype(lay["arr"])
    src = ZarrArraySource(root, comp, shape, dtype, layout=tuple(layout), fixed=fixed)

    def physical(i: int | None, table: dict[str, float]) -> tuple[float, float]:
        if i is None:
            return 1.0, 0.0
        f = _unit_factor(axes[i]["unit"], table) or 1.0
        return float(lay["scale"][i]) * f, float(lay["translation"][i]) * f

    dy, oy = physical(iy, SPACE_NM)
    dx, ox = physical(ix, SPACE_NM)
    dt, ot = physical(it, TIME_S)
    n_t = shape[it] if it is not None else 1
    dt = dt if dt > 0 else 1.0
    times = np.arange(n_t) * dt
    dy, dx = (dy if dy > 0 else 1.0), (dx if dx > 0 else 1.0)
    recs = [provenance.make_record("read", path=path, format=NAME, reader=__name__, ngff_version=version, level=level)]
    coords: dict[str, xr.Variable] = {}
    if "channel" in dims:
        coords["channel"] = xr.Variable(("channel",), np.array(names))
    if "z" in dims:
        dz, oz = physical(iz, SPACE_NM)
        coords["z"] = xr.Variable(("z",), oz + np.arange(shape[iz]) * (dz if dz > 0 else 1.0), {"units": "nm"})
    var = conventions.MULTI_CHANNEL_NAME if "channel" in dims else conventions.safe_channel(names[c_index or 0])
    ds = model.assemble(
        src,
        dims=tuple(dims),
        channel=var,
        units="",
        pixel_size_nm=(dy, dx),
        times=times,
        coords=coords,
        attrs={"ngff_version": str(version)} if version else None,
        provenance=recs,
    )
    if oy or ox or ot:
        ds = ds.assign_coords(
            y=("y", ds.y.values + oy, ds.y.attrs), x=("x", ds.x.values + ox, ds.x.attrs), time=("time", ds.time.values + ot, ds.time.attrs)
        )
    chunks = tuple(lay["arr"].chunks)
    chunking.declare_stored(ds[var].variable, {d: (chunks[a] if a is not None else 1) for d, a in zip(dims, layout)})
    return ds


FORMAT = Format(
    name=NAME,
    description="OME-Zarr (NGFF 0.4 / 0.5)",
    suffixes=(".ome.zarr", ".zarr"),
    folder=True,
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
