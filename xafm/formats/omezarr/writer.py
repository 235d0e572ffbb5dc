"""Writing a new store, atomically, and the pieces an append shares with it.

A new store is written into a hidden folder beside the destination and renamed into place
(:func:`xafm.core.output.atomic_output`): level 0 of the stack, its masks and layers chunk
by chunk (:mod:`.store`), each further level from the one below (:mod:`.pyramid`), then
the group attributes: NGFF metadata (:mod:`.ngff`) and xafm's own beside it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ...core import conventions, model, provenance, remote_output, sources
from ...core.blocks import is_dask, raw_data
from ...core.contract import Probe
from ...core.output import OutputKind, atomic_output
from ...core.writable import check_writable
from ...exceptions import StackError
from .. import _bundle
from . import ngff
from .display import Display, legacy, zscale_of
from .geometry import level_geometry, level_shape
from .layout import FORMAT_VERSION, LABELS, LAYERS, NAME, XAFM_KEY, join, node_paths
from .pyramid import build_level, fused
from .store import Target, native, settled_on_failure, store, store_of, zarr


def stack_content(da: xr.DataArray, raw: bool, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What is written of a stack (to ``path``): values, masks, layers and the metadata."""
    da = check_writable(da, "to_ome_zarr", path)
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
        "origin": model.origin_nm(da),
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
    """An array whose every chunk is written, also one equal to the fill value: a reader
    checks a declared extent by the chunk holding its last element (:mod:`.extents`)."""
    group.create_array(
        name, shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value(dtype), config={"write_empty_chunks": True}, **spec.array_keywords(shards)
    )


class Item(NamedTuple):
    """One image written: the stack (``kind`` "image"), a mask or a layer."""

    kind: str
    name: str
    prefix: str
    values: xr.DataArray
    dtype: np.dtype
    method: str


def image_items(content: dict[str, Any], masks: dict[str, str], layers: dict[str, str]) -> list[Item]:
    """Every image written: the stack, then the masks and layers at their group paths."""
    method = content["method"]
    mask_method = "max" if method != "nearest" else "nearest"
    items = [Item("image", content["channel"], "", content["data"], content["dtype"], method)]
    items += [Item("mask", n, masks[n], m, np.dtype(np.uint8), mask_method) for n, m in content["masks"].items()]
    items += [Item("layer", n, layers[n], v, native(v.dtype), method) for n, v in content["layers"].items()]
    return items


def write_levels(root: str, items: list[Item], shape: tuple, chunks: tuple, shards: tuple | None, levels: int, t0: int) -> dict[str, Display]:
    """Level 0 of every image from the stack, each further level from the one below (as
    level 0 is written when :func:`.pyramid.fused`, else read back from the store);
    returns the display window of the new frames of the stack (key ``""``) and of each
    layer (key: its name)."""
    shown: dict[str, Display] = {}
    n = shape[0] - t0
    unit = shards or chunks
    rest: list[Item] = []  # the images whose further levels are read back from the store
    for it in items:
        values = it.values if it.values.dtype == it.dtype or it.dtype != np.uint8 else it.values.astype(np.uint8)
        component = join(it.prefix, "0")
        below = tuple(join(it.prefix, str(k)) for k in range(1, levels))
        if not fused(shape, unit, levels, it.dtype.itemsize, is_dask(values)):
            below, rest = (), rest + [it]
        target = Target(root, component, below, it.method)
        if it.kind == "mask":
            store(values, target, t0, unit, it.dtype)
            continue
        # values in memory: their z-scale is computed while they are written (the writes wait on the disk)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xafm-zscale") as pool:
            ahead = pool.submit(zscale_of, values, root, component, t0, it.dtype) if isinstance(raw_data(values), np.ndarray) else None
            try:
                written = store(values, target, t0, unit, it.dtype, stats=True, histogram=True)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                raise
            zscale = ahead.result() if ahead is not None else zscale_of(values, root, component, t0, it.dtype, written.histogram)
        shown["" if it.kind == "image" else it.name] = Display(zscale, written.range)
    for k in range(1, levels):
        for it in rest:
            build_level(root, join(it.prefix, str(k - 1)), join(it.prefix, str(k)), k, shape, chunks, shards, it.method, it.dtype, t0, n)
    return shown


def stored_origin(meta: dict[str, Any]) -> tuple[float, float]:
    """The (y, x) origin in nm kept in the ``xafm`` attributes (stores written before crops
    kept their place have none: 0)."""
    return model.check_origin(meta.get(conventions.ORIGIN_KEY))


def displays(meta: dict[str, Any]) -> dict[str, Display]:
    """The display windows kept in the ``xafm`` attributes (stack: key ``""``)."""
    stored = meta.get("display")
    if not isinstance(stored, dict):  # written before the z-scale: only the stack's range
        return {"": legacy(meta)}
    return {k: Display.from_json(v) for k, v in stored.items()}


def write_group_attrs(g: Any, spec: ngff.NgffVersion, levels: int, xafm_meta: dict) -> None:
    """The attributes of the image group, its labels and layers: NGFF and ``xafm``."""
    times, pixel, method = np.asarray(xafm_meta["times_s"], dtype=np.float64), tuple(xafm_meta["pixel_size_nm"]), xafm_meta["method"]
    origin = stored_origin(xafm_meta)
    mask_method = "nearest" if method == "nearest" else "max"
    shown = displays(xafm_meta)
    if xafm_meta["masks"]:
        lab = g.require_group(LABELS)
        lab.attrs.update(spec.group_attrs(labels=[p.split("/", 1)[1] for p in xafm_meta["masks"].values()]))
        for name, path in xafm_meta["masks"].items():
            g[path].attrs.update(
                spec.group_attrs(multiscales=[ngff.multiscale(spec, name, levels, mask_method, times, pixel, origin)], **{"image-label": ngff.image_label(spec)})
            )
    if xafm_meta["layers"]:
        lay = g.require_group(LAYERS)
        lay.attrs.update({XAFM_KEY: {"layers": list(xafm_meta["layers"])}})
        for name, path in xafm_meta["layers"].items():
            window = shown.get(name, Display(None, None)).omero_window()
            g[path].attrs.update(
                spec.group_attrs(multiscales=[ngff.multiscale(spec, name, levels, method, times, pixel, origin)], omero=ngff.omero(spec, name, window))
            )
    ome = spec.group_attrs(
        multiscales=[ngff.multiscale(spec, xafm_meta["channel"], levels, method, times, pixel, origin)],
        omero=ngff.omero(spec, xafm_meta["channel"], shown.get("", Display(None, None)).omero_window()),
    )
    g.attrs.update({**ome, XAFM_KEY: xafm_meta})


def _write_new(content: dict[str, Any], root: str, *, chunks: tuple, shards: tuple | None, levels: int, spec: ngff.NgffVersion, record: dict) -> None:
    shape = tuple(content["data"].shape)
    g = zarr().open_group(store_of(root, "w"), mode="w-", zarr_format=spec.zarr_format)
    items = image_items(content, content["mask_paths"], content["layer_paths"])
    for it in items:
        sub = g.require_group(it.prefix) if it.prefix else g  # creates labels/ and layers/ too
        for k in range(levels):
            ck, sk = level_geometry(chunks, shards, level_shape(shape, k))
            create_array(sub, str(k), level_shape(shape, k), it.dtype, ck, sk, spec)
    shown = write_levels(root, items, shape, chunks, shards, levels, 0)
    xafm_meta = {
        "format_version": FORMAT_VERSION,
        "channel": content["channel"],
        "units": content["units"],
        "pixel_size_nm": list(content["pixel"]),
        conventions.ORIGIN_KEY: list(content["origin"]),
        "n_frames": shape[0],
        "times_s": [float(t) for t in content["times"]],
        "frame_metadata": content["frame_metadata"],
        "attrs": content["attrs"],
        "provenance": provenance.records(content["da"]) + [record],
        "masks": content["mask_paths"],
        "layers": content["layer_paths"],
        "levels": levels,
        "method": content["method"],
        "display": {k: d.to_json() for k, d in shown.items()},
    }
    write_group_attrs(g, spec, levels, xafm_meta)


def _url_member(url: str, name: str) -> bytes | None:
    """The bytes of the object ``name`` under ``url`` (None if absent)."""
    fs, inner = sources.filesystem(url)
    try:
        return bytes(fs.cat_file(f"{inner.rstrip('/')}/{name}"))
    except FileNotFoundError:
        return None


def is_ome_zarr(p: Path | str) -> bool:
    """Whether the folder (or URL prefix) ``p`` is an OME-Zarr store (a Zarr group whose
    attributes carry NGFF image metadata, as xafm and other tools write them): the only
    folder that ``mode="w"`` replaces. A plain Zarr store or any other folder is left alone."""
    probe = Probe(p)
    member = (lambda name: _url_member(p, name)) if isinstance(p, str) and sources.is_url(p) else probe.member
    for spec in ngff.PROBE_ORDER:
        raw = member(spec.attrs_file)
        if raw is not None:
            try:
                return spec.marks_image(spec.attributes_in(json.loads(raw)))
            except ValueError:  # not JSON: not a store anyone can read
                return False
    return False


#: What the OME-Zarr writer replaces with ``mode="w"``.
STORE = OutputKind("a Zarr store with OME-Zarr metadata", folder=True, owns=is_ome_zarr)


def write_new(
    content: dict[str, Any], path: Path | str, *, chunks: tuple, shards: tuple | None, levels: int, spec: ngff.NgffVersion, mode: str, raw: bool,
    fsync: bool = True,
) -> None:
    """A new store at ``path`` (replacing an OME-Zarr store there with ``mode="w"``), atomically."""
    record = provenance.make_record(
        "export", format=NAME, path=os.fspath(path), raw=bool(raw), version=spec.version, levels=levels, method=content["method"],
        chunks=list(chunks), shards=list(shards) if shards else None,
    )
    content["mask_paths"] = node_paths(LABELS, content["masks"], path)
    content["layer_paths"] = node_paths(LAYERS, content["layers"], path)
    if isinstance(path, str):  # a URL: written where it lands (no rename in object stores)
        with remote_output.in_place(path, overwrite=(mode == "w"), owns=is_ome_zarr, noun=STORE.noun) as url, settled_on_failure():
            _write_new(content, url, chunks=chunks, shards=shards, levels=levels, spec=spec, record=record)
        return
    # on a failure, no write is in flight any more when atomic_output removes the temp
    with atomic_output(path, overwrite=(mode == "w"), kind=STORE, fsync=fsync) as tmp, settled_on_failure():
        _write_new(content, os.path.abspath(tmp), chunks=chunks, shards=shards, levels=levels, spec=spec, record=record)
