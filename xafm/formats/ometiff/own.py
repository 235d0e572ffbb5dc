"""Reading an OME-TIFF xafm wrote (one with the ``xafm/stack`` MapAnnotation) back as the
stack it was written from: Image 0 is the data, the further images its layers and masks,
and the annotation holds the provenance, per-frame metadata, attrs and exact names."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ...core import conventions
from ...exceptions import ChannelError, CorruptFileError
from .. import _bundle
from . import omexml
from .names import NAME, READER
from .omexml import pixel_size_nm, q, time_s
from .pages import RawOrPages3D, Reshaped, Squeezed


def read_own(path: str, info: dict[str, Any], ann: dict[str, str], *, channel: str | None) -> xr.Dataset:
    """The stack of an xafm OME-TIFF; ``info`` is what the package's ``_describe`` found,
    ``ann`` the annotation's key/value pairs."""
    images = info["images"]
    pix = images[0].find(q("Pixels"))
    sizes = {d: int(pix.get(f"Size{d}", "1")) for d in "TZC"}
    order = pix.get("DimensionOrder", "XYZCT")[2:]  # fastest first, e.g. "ZCT"
    base, _ = info["series"][0]
    n_planes = int(np.prod(base.shape[:-2])) if base.ndim > 2 else 1
    if n_planes != sizes["T"] * sizes["Z"] * sizes["C"]:
        raise CorruptFileError(path, f"OME-XML says {sizes} planes, the TIFF series holds {n_planes}")
    base = base if base.ndim == 3 else RawOrPages3D(base)
    dy, dx = pixel_size_nm(path, pix) or (1.0, 1.0)
    # planes come slowest-last in DimensionOrder; lead dims in (T, Z, C) order
    lead_slow_first = tuple(reversed(order))  # e.g. ("T", "C", "Z")
    lead_sizes = tuple(sizes[d] for d in lead_slow_first)
    want = ("T", "Z", "C")
    perm = tuple(lead_slow_first.index(d) for d in want)
    full = Reshaped(base, lead_sizes, perm)  # dims T, Z, C, Y, X

    names = [c["name"] for c in info["channels"]]
    if channel is not None and channel not in names:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")

    # DeltaT of the planes of the first Z/C, in s (a later plane of the same T wins)
    times = omexml.plane_times(path, omexml.planes(pix), sizes["T"], channel=0, first_wins=False)
    if times is None:
        inc = time_s(path, pix.get("TimeIncrement"), pix.get("TimeIncrementUnit")) or 1.0
        times = np.arange(sizes["T"]) * (inc if inc > 0 else 1.0)

    # an xafm file: one image per layer/mask
    return _assemble(path, info, ann, full, times, (dy, dx))


def _assemble(path: str, info: dict, ann: dict[str, str], full: Reshaped, times: np.ndarray, pixel: tuple[float, float]) -> xr.Dataset:
    data = Squeezed(full)
    layers: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    try:
        kinds = json.loads(ann.get("images_json") or "[]")
    except ValueError:
        raise CorruptFileError(path, "images_json annotation is not valid JSON") from None
    for i, entry in enumerate(kinds[1:], start=1):
        if i >= len(info["series"]) or not (isinstance(entry, list) and len(entry) == 2):
            break
        kind, name = str(entry[0]), str(entry[1])
        src, _ = info["series"][i]
        src = src if src.ndim == 3 else RawOrPages3D(src)
        if kind == "layer":
            layers[conventions.encode_name(name)] = src
        elif kind == "mask":
            src.dtype = np.dtype(bool)
            masks[conventions.encode_name(name)] = src
    attrs = json.loads(ann.get("xafm_attrs_json") or "{}")
    attrs["pixel_size_y_nm"] = pixel[0]
    return _bundle.assemble_bundle(
        path,
        NAME,
        channel_asked=None,  # read_own() checked it against the OME channel names
        data=data,
        layers=layers,
        masks=masks,
        timestamps=times,
        frame_metadata_json=ann.get("frame_metadata_json"),
        provenance_json=ann.get("provenance_json"),
        state_backups_json=ann.get("state_backups_json"),
        pixel_size_nm=pixel[1],
        channel=json.loads(ann["channel_json"]) if ann.get("channel_json") else None,
        attrs_json=json.dumps(attrs),
        reader=READER,
    )
