"""Appending frames in place to a store xafm wrote, with rollback.

The new frames are checked against the store (frame shape, dtype, pixel size, origin of
the y/x coordinates, channel, units, masks and layers, times after the last stored one); then every array is grown, the
new frames are written (all levels, masks, layers) and the group attributes rewritten in
one metadata write. The display windows grow to the union of the stored ones and those of
the new frames (never narrower than the exact z-scale of all frames; no stored frame is
read again). If anything fails before that, every array is shrunk back to its old
length: the store reads exactly as before. Chunks, shards, levels, method and NGFF
version come from the store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ...core import provenance
from ...exceptions import CorruptFileError, FormatError, StackError, WriteError, XafmError
from . import ngff
from .display import Display
from .layout import NAME, XAFM_KEY, join
from .store import np_dtype, open_array, root_of, settle_io, store_of, zarr
from .writer import displays, image_items, stored_origin, write_group_attrs, write_levels

#: How far (in pixels) the new frames' origin may lie from the stored one: float rounding only.
ORIGIN_ATOL = 1e-6


def _problems(content: dict[str, Any], meta: dict[str, Any], g: Any, shape0: tuple, origin: tuple[float, float]) -> list[str]:
    """Why the new frames cannot be appended to the stored ones (empty: they can)."""
    new = content["data"]
    problems = []
    if tuple(new.shape[1:]) != shape0[1:]:
        problems.append(f"frame shape {tuple(new.shape[1:])} != stored {shape0[1:]}")
    stored_dtype = np_dtype(g["0"])
    if content["dtype"] != stored_dtype:
        problems.append(f"dtype {content['dtype']} != stored {stored_dtype} (use .astype first)")
    if not np.allclose(content["pixel"], meta["pixel_size_nm"], rtol=1e-6, atol=0):
        problems.append(f"pixel size {content['pixel']} nm != stored {tuple(meta['pixel_size_nm'])} nm")
    # one origin for all frames: the NGFF translation is per level, not per frame
    if not np.allclose(content["origin"], origin, rtol=0, atol=ORIGIN_ATOL * min(meta["pixel_size_nm"])):
        problems.append(
            f"origin (y, x) {tuple(content['origin'])} nm != stored {origin} nm (frames cropped elsewhere "
            "cannot share the store's coordinates; crop them like the stored ones, or write a new store)"
        )
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
    return problems


def append(content: dict[str, Any], path: Path | str, *, da: xr.DataArray) -> None:
    """Append the frames of ``content`` (of the stack ``da``) to the store at ``path``."""
    root = root_of(path)
    zr = zarr()
    try:
        g = zr.open_group(store_of(root, "r+"), mode="r+")
    except Exception as exc:
        raise FormatError(f"{path}: cannot append: not a Zarr group ({type(exc).__name__}: {exc})") from None
    attrs = g.attrs.asdict()
    meta = attrs.get(XAFM_KEY)
    _, version = ngff.read_ome(attrs)
    spec = ngff.NGFF.get(version or "")  # None for a version xafm does not write
    if not isinstance(meta, dict) or spec is None:
        raise FormatError(f"{path}: appending works on OME-Zarr stores xafm wrote (NGFF {'/'.join(ngff.VERSIONS)} with xafm metadata)")
    n_old = int(meta["n_frames"])
    shape0 = tuple(g["0"].shape)
    if shape0[0] < n_old:
        raise CorruptFileError(path, f"array 0 has {shape0[0]} frames, the metadata lists {n_old}")
    n_new = int(content["data"].shape[0])
    try:
        origin = stored_origin(meta)
    except StackError as exc:
        raise CorruptFileError(path, f"xafm metadata: {exc}") from None
    problems = _problems(content, meta, g, shape0, origin)
    if problems:
        raise StackError(f"{path}: cannot append: " + "; ".join(problems))
    old_times = np.asarray(meta["times_s"], dtype=np.float64)

    levels, method = int(meta["levels"]), str(meta["method"])
    content["method"] = method
    a0 = g["0"]
    chunks = tuple(a0.chunks)  # the inner chunks when sharded
    shards = tuple(a0.shards) if getattr(a0, "shards", None) else None
    n_total = n_old + n_new
    items = image_items(content, dict(meta.get("masks") or {}), dict(meta.get("layers") or {}))  # the stored paths (older stores: other keys)
    arrays = [join(it.prefix, str(k)) for it in items for k in range(levels)]
    old_shapes = {name: tuple(g[name].shape) for name in arrays}
    try:
        for name in arrays:
            g[name].resize((n_total,) + old_shapes[name][1:])
        shown = write_levels(root, items, (n_total,) + shape0[1:], chunks, shards, levels, n_old)
    except BaseException as exc:
        settle_io()  # no write in flight while the arrays shrink back
        for name in arrays:
            try:
                open_array(root, name, "r+").resize((n_old,) + old_shapes[name][1:])
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
    old = displays(meta)
    merged = {k: old.get(k, Display(None, None)).merged(d) for k, d in shown.items()}
    meta.pop("window", None)  # an older store's finite range, now in "display"
    meta.update(
        {
            "n_frames": n_total,
            "times_s": [float(t) for t in old_times] + [float(t) for t in content["times"]],
            "frame_metadata": fm if any(fm) else None,
            "provenance": list(meta.get("provenance") or []) + [record],
            "display": {k: d.to_json() for k, d in merged.items()},
        }
    )
    write_group_attrs(g, spec, levels, meta)
