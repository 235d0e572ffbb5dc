"""TopoStats output files (``.topostats``): HDF5, read lazily with h5py.

Root members: ``image`` (the flattened height image, nm, 2-D float), ``pixel_to_nm_scaling``
(scalar), ``topostats_file_version`` (<= 0.3) or ``topostats_version``; newer files add
``image_original`` (before flattening), ``filename``, ``img_path``, grain masks
(``grain_masks/<direction>``, 2-D) and ``image_grain_crops/<direction>/full_mask_tensor``
(H, W, classes). See docs/formats.md.

Channels are the 2-D float images of the image's shape; boolean or integer arrays of that
shape become masks; a (H, W, C) mask tensor gives one mask per class 1..C-1 (class 0 is the
background).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import bounding_box, outer_index
from ..exceptions import ChannelError, CorruptFileError, reading
from ._h5guard import check_stored
from ._hdf5 import HDF5_LOCK, H5Direct, has_member, identify_with, open_dataset, open_h5, open_raw

NAME = "topostats"
DEFAULT_CHANNEL = "image"
MAX_OBJECTS = 100_000
MAX_TEXT_BYTES = 2**20


class H5FrameArray(H5Direct):
    """A 2-D (or one plane of a 3-D) HDF5 dataset seen as one frame, opened per read (read
    by byte range after the first read: :class:`~._hdf5.H5Direct`)."""

    def __init__(
        self, path: str, name: str, shape: tuple[int, int], dtype: Any, plane: int | None = None, out_dtype: Any = None, stored_shape: tuple[int, ...] | None = None
    ):
        self.path, self.name, self.plane = path, name, plane
        self.frame_shape = (int(shape[0]), int(shape[1]))
        self.stored_shape = stored_shape if stored_shape is not None else self.frame_shape
        self.shape = (1,) + self.frame_shape
        self.dtype = np.dtype(out_dtype if out_dtype is not None else dtype)

    def _read(self, key: tuple) -> np.ndarray:
        bounds, rel = bounding_box(key, self.shape)
        if any(b.stop <= b.start for b in bounds):
            return np.empty(outer_index(np.empty(self.shape, np.uint8), key).shape, self.dtype)
        sel = bounds[1:] + ((self.plane,) if self.plane is not None else ())
        direct = self.read_direct(bounds[1:] + ((slice(self.plane, self.plane + 1),) if self.plane is not None else ()))
        if direct is not None:
            block = direct[..., 0] if self.plane is not None else direct
        else:
            with HDF5_LOCK, open_raw(self.path) as f:
                ds = open_dataset(f, self.name, self.path, self.stored_shape)
                block = np.asarray(ds[sel])
                self.keep_layout(ds)
        block = block[None]
        out = outer_index(block, rel)
        return (out != 0) if self.dtype == bool else np.asarray(out, dtype=self.dtype)


def _scan(path: str) -> dict[str, Any]:
    """Shapes, dtypes and small scalars of every dataset (no array values are read).

    Every dataset's declared size is checked against its storage first
    (:func:`~._h5guard.check_stored`).
    """
    import h5py

    info: dict[str, Any] = {"datasets": {}, "scalars": {}}
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        names: list[str] = []
        f.visit(lambda n: names.append(n) if len(names) <= MAX_OBJECTS else True)
        if len(names) > MAX_OBJECTS:
            raise CorruptFileError(path, f"more than {MAX_OBJECTS} HDF5 objects: not a TopoStats file")
        for raw_name in names:
            obj = f.get(raw_name, getclass=False)
            # h5py gives bytes for names that are not UTF-8 (a damaged file): keep text keys
            name = raw_name if isinstance(raw_name, str) else bytes(raw_name).decode("utf-8", "replace")
            if not isinstance(obj, h5py.Dataset):
                continue
            shape = tuple(int(s) for s in obj.shape) if obj.shape is not None else ()
            dtype = obj.dtype
            check_stored(obj, path)
            info["datasets"][name] = (shape, dtype)
            if shape == () or (len(shape) == 1 and shape[0] <= 16 and dtype.kind in "iuf"):
                if dtype.kind in "OSU" and obj.id.get_storage_size() > MAX_TEXT_BYTES:
                    continue
                info["scalars"][name] = _plain(values.value(obj, limit=MAX_TEXT_BYTES))
    return info


def _plain(v: Any) -> Any:
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, np.ndarray):
        return v.tolist() if v.size <= 16 else f"<array {v.shape}>"
    if isinstance(v, np.generic):
        return v.item()
    return v


def _layout(path: str, info: dict[str, Any]) -> dict[str, Any]:
    ds = info["datasets"]
    if DEFAULT_CHANNEL not in ds:
        raise CorruptFileError(path, "no 'image' dataset: not a TopoStats file")
    shape, dtype = ds[DEFAULT_CHANNEL]
    if len(shape) != 2 or dtype.kind not in "iuf" or min(shape) < 1:
        raise CorruptFileError(path, f"'image' must be a 2-D numeric array, found shape {shape} dtype {dtype}")
    chans: dict[str, tuple] = {}
    masks: dict[str, tuple] = {}
    for name, (s, dt) in sorted(ds.items()):
        if name == DEFAULT_CHANNEL:
            continue
        if dt.kind in "biu":
            if s == shape:
                masks[name] = (name, None, dt)
            elif len(s) == 3 and s[:2] == shape and 2 <= s[2] <= 64:
                for c in range(1, s[2]):
                    masks[f"{name}/class_{c}"] = (name, c, dt)
        elif dt.kind == "f" and s == shape:
            chans[name] = (name, dt)
    return {"shape": shape, "channels": chans, "masks": masks}


def identify(probe: Probe) -> bool:
    """HDF5 with TopoStats' ``image`` and its pixel size or version members."""
    keys = ("pixel_to_nm_scaling", "topostats_file_version", "topostats_version")
    return identify_with(probe, lambda f, _: has_member(f, DEFAULT_CHANNEL) and any(has_member(f, k) for k in keys))


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    chans = _layout(path, _scan(path))["channels"]
    return [DEFAULT_CHANNEL] + [c for c in chans if c != DEFAULT_CHANNEL]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """One image of a TopoStats file (the flattened ``image`` by default), lazily, with its masks."""
    path = os.fspath(path)
    info = _scan(path)
    lay = _layout(path, info)
    names = [DEFAULT_CHANNEL] + [c for c in lay["channels"] if c != DEFAULT_CHANNEL]
    channel = DEFAULT_CHANNEL if channel is None else channel
    if channel not in names:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
    shape = lay["shape"]
    _, dtype = info["datasets"][channel]
    data = H5FrameArray(path, channel, shape, dtype, out_dtype=np.float64 if dtype.kind != "f" else dtype, stored_shape=shape)
    scalars = info["scalars"]
    px = scalars.get("pixel_to_nm_scaling")
    if isinstance(px, list) and len(px) == 1:
        px = px[0]
    if isinstance(px, bool) or not isinstance(px, (int, float)) or not (math.isfinite(px) and px > 0):
        raise CorruptFileError(path, f"pixel_to_nm_scaling must be a positive number, found {px!r}")
    masks = {
        name: H5FrameArray(path, src, shape, dt, plane=plane, out_dtype=bool, stored_shape=info["datasets"][src][0])
        for name, (src, plane, dt) in lay["masks"].items()
    }
    layers = {}
    if channel == DEFAULT_CHANNEL and "image_original" in lay["channels"]:
        _, odt = lay["channels"]["image_original"]
        layers["raw"] = H5FrameArray(path, "image_original", shape, odt, out_dtype=np.float64 if odt.kind != "f" else odt, stored_shape=shape)
    version = scalars.get("topostats_file_version", scalars.get("topostats_version"))
    acquisition = {
        "format": "TopoStats HDF5",
        "topostats_version": version,
        "channels": names,
        "members": sorted(info["datasets"]),
        **{k: v for k, v in scalars.items() if k not in ("pixel_to_nm_scaling",) and "/" not in k},
    }
    return model.assemble(
        data,
        pixel_size_nm=float(px),
        times=[0.0],
        channel=conventions.safe_channel(channel),
        units="nm",
        masks=masks,
        layers=layers,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=channel)],
    )


FORMAT = Format(
    name=NAME,
    description="TopoStats HDF5",
    suffixes=(".topostats",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
