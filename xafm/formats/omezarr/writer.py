"""Writing a new store, atomically, and the pieces an append shares with it.

A new store is written into a hidden folder beside the destination and renamed into place
(:func:`xafm.core.output.atomic_output`): level 0 of the stack, its masks and layers chunk
by chunk (:mod:`.store`), each further level from the one below (:mod:`.pyramid`), then
the group attributes: NGFF metadata (:mod:`.ngff`) and xafm's own beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ...core import conventions, model, provenance
from ...core.output import atomic_output
from ...exceptions import OutputExistsError, StackError
from .. import _bundle
from . import ngff
from .geometry import level_geometry, level_shape
from .layout import FORMAT_VERSION, LABELS, LAYERS, NAME, XAFM_KEY, join, node_name
from .pyramid import build_level
from .store import Range, Target, native, store, zarr


def stack_content(da: xr.DataArray, raw: bool) -> dict[str, Any]:
    """What is written of a stack: values, masks, layers and the metadata."""
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
        "dtype": native(data.dtype),
    }


def fill_value(dtype: np.dtype) -> Any:
    """What a chunk never written reads as: NaN for floats, 0 for integers."""
    return float("nan") if dtype.kind == "f" else 0


def create_array(group: Any, name: str, shape: tuple, dtype: np.dtype, chunks: tuple, shards: tuple | None, spec: ngff.NgffVersion) -> None:
    group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value(dtype), **spec.array_keywords(shards))


def image_items(content: dict[str, Any]) -> list[tuple[str, xr.DataArray, np.dtype, str]]:
    """(group path, values, dtype, method) of every image written: the stack, masks, layers."""
    items = [("", content["data"], content["dtype"], content["method"])]
    items += [(f"{LABELS}/{node_name(n)}", m, np.dtype(np.uint8), "max" if content["method"] != "nearest" else "nearest") for n, m in content["masks"].items()]
    items += [(f"{LAYERS}/{node_name(n)}", v, native(v.dtype), content["method"]) for n, v in content["layers"].items()]
    return items


def write_levels(root: str, items: list, shape: tuple, chunks: tuple, shards: tuple | None, levels: int, t0: int) -> Range | None:
    """Level 0 of every image from the stack, then each further level from the one below."""
    window = None
    n = shape[0] - t0
    for i, (prefix, obj, dtype, _method) in enumerate(items):
        unit = shards or chunks
        values = obj if obj.dtype == dtype or dtype != np.uint8 else obj.astype(np.uint8)
        rng = store(values, Target(root, join(prefix, "0")), t0, unit, dtype, stats=(i == 0))
        if i == 0:
            window = rng
    for k in range(1, levels):
        for prefix, _obj, dtype, method in items:
            build_level(root, join(prefix, str(k - 1)), join(prefix, str(k)), k, shape, chunks, shards, method, dtype, t0, n)
    return window


def write_group_attrs(g: Any, spec: ngff.NgffVersion, levels: int, xafm_meta: dict, window: Any) -> None:
    """The attributes of the image group, its labels and layers: NGFF and ``xafm``."""
    times, pixel, method = np.asarray(xafm_meta["times_s"], dtype=np.float64), tuple(xafm_meta["pixel_size_nm"]), xafm_meta["method"]
    mask_method = "nearest" if method == "nearest" else "max"
    if xafm_meta["masks"]:
        lab = g.require_group(LABELS)
        lab.attrs.update(spec.group_attrs(labels=[p.split("/", 1)[1] for p in xafm_meta["masks"].values()]))
        for name, path in xafm_meta["masks"].items():
            g[path].attrs.update(
                spec.group_attrs(multiscales=[ngff.multiscale(spec, name, levels, mask_method, times, pixel)], **{"image-label": ngff.image_label(spec)})
            )
    if xafm_meta["layers"]:
        lay = g.require_group(LAYERS)
        lay.attrs.update({XAFM_KEY: {"layers": list(xafm_meta["layers"])}})
        for name, path in xafm_meta["layers"].items():
            g[path].attrs.update(spec.group_attrs(multiscales=[ngff.multiscale(spec, name, levels, method, times, pixel)]))
    ome = spec.group_attrs(
        multiscales=[ngff.multiscale(spec, xafm_meta["channel"], levels, method, times, pixel)],
        omero=ngff.omero(spec, xafm_meta["channel"], window),
    )
    g.attrs.update({**ome, XAFM_KEY: xafm_meta})


def _write_new(content: dict[str, Any], root: str, *, chunks: tuple, shards: tuple | None, levels: int, spec: ngff.NgffVersion, record: dict) -> None:
    shape = tuple(content["data"].shape)
    g = zarr().open_group(root, mode="w-", zarr_format=spec.zarr_format)
    items = image_items(content)
    for prefix, _obj, dtype, _m in items:
        sub = g.require_group(prefix) if prefix else g  # creates labels/ and layers/ too
        for k in range(levels):
            ck, sk = level_geometry(chunks, shards, level_shape(shape, k))
            create_array(sub, str(k), level_shape(shape, k), dtype, ck, sk, spec)
    window = write_levels(root, items, shape, chunks, shards, levels, 0)
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
        "masks": {n: f"{LABELS}/{node_name(n)}" for n in content["masks"]},
        "layers": {n: f"{LAYERS}/{node_name(n)}" for n in content["layers"]},
        "levels": levels,
        "method": content["method"],
        "window": list(window) if window else None,
    }
    write_group_attrs(g, spec, levels, xafm_meta, window)


def _looks_like_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def write_new(content: dict[str, Any], path: Path, *, chunks: tuple, shards: tuple | None, levels: int, spec: ngff.NgffVersion, mode: str, raw: bool) -> None:
    """A new store at ``path`` (replacing a Zarr store there with ``mode="w"``), atomically."""
    if mode == "w" and path.exists() and not _looks_like_zarr(path):
        raise OutputExistsError(path, "exists and is not a Zarr store; refusing to replace it")
    record = provenance.make_record(
        "export", format=NAME, path=os.fspath(path), raw=bool(raw), version=spec.version, levels=levels, method=content["method"],
        chunks=list(chunks), shards=list(shards) if shards else None,
    )
    with atomic_output(path, overwrite=(mode == "w")) as tmp:
        _write_new(content, os.path.abspath(tmp), chunks=chunks, shards=shards, levels=levels, spec=spec, record=record)
