"""The napari writers: an Image layer (and any Labels layers saved with it, as masks)
to OME-TIFF, OME-Zarr or the HDF5 bundle, through xafm's own writers.

The layer is rebuilt as an xafm stack: the y/x ``scale`` is the pixel size (nm), the
y/x ``translate`` the origin, the time axis the real frame times when the layer came
from xafm (``metadata['xafm']['time_s']``) and otherwise ``translate + scale * i``.
Each writer takes napari's multi-layer call ``(path, [(data, kwargs, type), ...])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model
from ..exceptions import StackError, WriteError

LayerData = tuple[Any, dict[str, Any], str]


def write_ome_tiff(path: str, layer_data: list[LayerData]) -> list[str]:
    """napari writer: OME-TIFF (``.ome.tif``)."""
    return write_layers("tif", path, layer_data)


def write_ome_zarr(path: str, layer_data: list[LayerData]) -> list[str]:
    """napari writer: OME-Zarr (``.ome.zarr``)."""
    return write_layers("zarr", path, layer_data)


def write_h5(path: str, layer_data: list[LayerData]) -> list[str]:
    """napari writer: xafm's (playNano-compatible) HDF5 bundle (``.h5``)."""
    return write_layers("h5", path, layer_data)


def write_layers(fmt: str, path: str, layer_data: list[LayerData]) -> list[str]:
    """Write the one Image layer of ``layer_data`` (Labels layers as its masks)."""
    from .. import registry

    images = [layer for layer in layer_data if layer[2] == "image"]
    if len(images) != 1:
        raise WriteError(path, f"xafm writes one Image layer per file, got {len(images)} (and {len(layer_data) - len(images)} other layers)")
    labels = [layer for layer in layer_data if layer[2] == "labels"]
    try:
        da = stack_from_layer(*images[0][:2], labels=labels)
    except StackError as exc:
        raise WriteError(path, f"the layer {images[0][1].get('name')!r} is not an xafm stack: {exc}") from exc
    return [str(registry.write(fmt, da, path, overwrite=True))]


def stack_from_layer(data: Any, kwargs: dict[str, Any], *, labels: Sequence[LayerData] = ()) -> xr.DataArray:
    """An xafm stack from an Image layer's data and kwargs (napari's ``as_layer_data_tuple``
    or xafm's reader's): a 2-D image becomes one frame."""
    data = data[0] if isinstance(data, list) else data  # a multiscale layer: its full resolution
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise StackError(f"xafm writes (time, y, x) stacks; the layer has {data.ndim} dims (axis labels {kwargs.get('axis_labels')})")
    n = data.shape[0]
    scale = _per_axis(kwargs.get("scale"), 1.0, data.ndim)
    translate = _per_axis(kwargs.get("translate"), 0.0, data.ndim)
    meta = kwargs.get("metadata") or {}
    own: dict[str, Any] = meta["xafm"] if isinstance(meta.get("xafm"), dict) else {}
    times = own.get("time_s")
    if times is None or len(times) != n:
        times = translate[0] + scale[0] * np.arange(n)
    masks = {}
    for mask_data, mask_kwargs, _ in labels:
        mask = np.asarray(mask_data)
        mask = mask[None] if mask.ndim == 2 else mask
        if mask.shape != data.shape:
            raise StackError(f"the Labels layer {mask_kwargs.get('name')!r} has shape {mask.shape}, the image {data.shape}")
        masks[str(mask_kwargs.get("name") or "mask")] = mask != 0
    return model.stack(
        data,
        pixel_size_nm=(scale[1], scale[2]),
        origin_nm=(translate[1], translate[2]),
        times=np.asarray(times, dtype=np.float64),
        channel=_channel_name(own.get("channel") or meta.get("channel") or "height"),
        units=str(own.get("units") or meta.get("units") or "nm"),
        masks=masks or None,
        attrs=_user_attrs(meta),
    )


def _per_axis(values: Any, default: float, ndim: int) -> list[float]:
    """napari's per-axis values for a (time, y, x) array; a 2-D layer's get a time entry."""
    if values is None:
        return [default] * ndim
    out = [float(v) for v in values]
    return [default, *out] if len(out) == ndim - 1 else out[-ndim:]


def _channel_name(name: Any) -> str:
    """The channel as a netCDF-safe name (a channel like ``5-FAM/pH 9.0`` loses its ``/``)."""
    name = str(name)
    try:
        return conventions.check_netcdf_name(name, "channel")
    except StackError:
        return conventions.check_netcdf_name(name.replace("/", "_").strip() or "height", "channel")


def _user_attrs(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata xafm's writers can carry: the reader's attrs that are not xafm's own
    (``xafm.stack`` sets those) and hold strings or numbers."""
    return {
        k: v
        for k, v in meta.items()
        if k != "xafm" and k not in conventions.OWN_ATTRS and isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }
