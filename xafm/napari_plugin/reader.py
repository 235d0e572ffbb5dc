"""The napari reader: any file xafm reads becomes one Image layer per channel (and a
Labels layer per mask), lazily, in nm and s.

napari calls :func:`get_reader` with a path; it answers None for what xafm cannot read
(the registry's content check, never an exception for a foreign file) and otherwise a
function returning layer-data tuples ``(data, kwargs, layer_type)``. The data are the
stacks of ``xafm.open(path, lazy=True)`` as :class:`~xafm.napari_plugin.arrays.FrameArray`
(lazy indexing without dask: no graph per fetch), so napari reads a frame when it shows
it; only the contrast limits look at values, in a few sampled frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model
from ..core.blocks import is_dask
from .arrays import FrameArray

LayerData = tuple[Any, dict[str, Any], str]

#: Frames (evenly spread over the stack) the contrast limits are computed from: enough
#: for a representative z-scale, few enough that opening a long video reads little.
CONTRAST_FRAMES = 8

#: The registry's name patterns (regular expressions) as the globs napari matches
#: file names with; a format whose pattern is not here is reachable by suffix only.
PATTERN_GLOBS = {r"\.\d{3}$": "*.[0-9][0-9][0-9]"}

#: Units of the dims xafm defines; other dims take their coordinate's ``units`` attr.
DIM_UNITS = {conventions.TIME: "s", conventions.Y: "nm", conventions.X: "nm"}


def filename_patterns() -> list[str]:
    """The globs the manifest's reader declares: every suffix and name pattern of every
    readable format in the table (``tests/test_napari.py`` keeps the manifest in step)."""
    from .. import registry

    out: dict[str, None] = {}
    for fmt in registry.readable():
        out.update(dict.fromkeys(f"*{s}" for s in fmt.suffixes))
        out.update(dict.fromkeys(PATTERN_GLOBS[p] for p in fmt.patterns if p in PATTERN_GLOBS))
    return list(out)


def colormap() -> dict[str, Any]:
    """The ``xafm_afm`` colormap as napari takes it without importing napari here: a
    dict of napari ``Colormap`` fields (256 RGBA colours of the matplotlib LUT)."""
    from ..render import colormaps

    lut = colormaps.get(colormaps.AFM)(np.linspace(0.0, 1.0, 256))
    return {"colors": lut, "name": colormaps.AFM, "display_name": "xafm AFM"}


# --------------------------------------------------------------------------------------
# napari's entry points
# --------------------------------------------------------------------------------------
def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's ``get_reader``: :func:`read_layers` if xafm reads ``path``, else None.

    A list of paths (napari's "stack" of several files) is not xafm's: a video of
    frame files is opened as their folder.
    """
    from .. import registry

    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)) or registry.identify(path) is None:
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Layer-data tuples for ``path``: an Image per channel, then a Labels per mask."""

    from .. import registry

    if isinstance(path, (list, tuple)):
        (path,) = path
    path = os.fspath(path)
    fmt = registry.find(path)
    stem = _stem(path, fmt.suffix_match(os.path.basename(path.rstrip("/\\")).lower()))
    out: list[LayerData] = []
    seen_masks: set[str] = set()
    for channel, da, sample in _channel_stacks(path):
        out.append(image_layer(da, name=f"{stem} {channel}", channel=channel, path=path, format=fmt.name, sample=sample))
        for mask_name, mask in model.masks(da).items():
            if mask_name not in seen_masks:
                seen_masks.add(mask_name)
                out.append(labels_layer(da, mask, name=f"{stem} mask {mask_name}"))
    return out


# --------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------
def image_layer(da: xr.DataArray, *, name: str, channel: str, path: str = "", format: str = "", sample: xr.DataArray | None = None) -> LayerData:
    """One channel's stack as an Image layer: scale and translate per dim (s, nm), the
    AFM colormap, the exports' z-scale over sampled frames of ``sample`` (the same stack
    indexed lazily without dask, so only those frames are read; default ``da``), xafm's
    attrs as metadata."""
    from ..render.colorscale import zscale

    times = model.times_s(da) if conventions.TIME in da.dims else np.zeros(1)
    interval, even = frame_interval(times)
    kwargs = {
        **_geometry(da),
        "name": name,
        "colormap": colormap(),
        "contrast_limits": list(zscale(_sampled(da if sample is None else sample))),
        "metadata": {
            **da.attrs,
            "xafm": {
                "path": path,
                "format": format,
                "channel": channel,
                "units": str(da.attrs.get("units", "")),
                "time_s": times.tolist(),
                "frame_interval_s": interval,
                "even_times": even,
            },
        },
    }
    return _layer_data(da), kwargs, "image"


def labels_layer(da: xr.DataArray, mask: xr.DataArray, *, name: str) -> LayerData:
    """A mask as a Labels layer (1 inside, 0 outside) on the stack's grid."""
    mask = mask.transpose(*[d for d in da.dims if d in mask.dims])
    return _layer_data(mask, np.uint8), {**_geometry(da, mask.dims), "name": name}, "labels"


def _layer_data(da: xr.DataArray, dtype: Any = None) -> Any:
    """What napari indexes: a dask stack's dask array (given by a caller), else a
    :class:`FrameArray` that reads each frame napari asks for, and nothing before."""
    if is_dask(da):
        return da.data if dtype is None else da.data.astype(dtype)
    return FrameArray(da, dtype)


def frame_interval(times: np.ndarray) -> tuple[float, bool]:
    """The mean frame interval (s; 1 for a single frame or unusable times) and whether
    the frames are evenly spaced (napari's time axis is even; ``metadata['xafm']['time_s']``
    keeps the real times)."""
    if times.size < 2:
        return 1.0, True
    mean = float((times[-1] - times[0]) / (times.size - 1))
    if not (np.isfinite(mean) and mean > 0):
        return 1.0, False
    return mean, bool(np.allclose(np.diff(times), mean, rtol=1e-3, atol=0))


def _geometry(da: xr.DataArray, dims: tuple[Any, ...] | None = None) -> dict[str, Any]:
    dims = tuple(da.dims) if dims is None else tuple(dims)
    dy, dx = model.pixel_size_nm(da)
    oy, ox = model.origin_nm(da)
    scale, translate, units = [], [], []
    for dim in dims:
        if dim == conventions.Y:
            step, start = dy, oy
        elif dim == conventions.X:
            step, start = dx, ox
        elif dim == conventions.TIME:
            times = model.times_s(da)
            step, start = frame_interval(times)[0], float(times[0]) if times.size else 0.0
        else:
            step, start = _axis(da, str(dim))
        scale.append(step)
        translate.append(start)
        units.append(DIM_UNITS.get(str(dim)) or str(da.coords[dim].attrs.get("units", "pixel") if dim in da.coords else "pixel"))
    return {"scale": scale, "translate": translate, "units": units, "axis_labels": [str(d) for d in dims]}


def _axis(da: xr.DataArray, dim: str) -> tuple[float, float]:
    """Step and start of another dim (z): its coordinate if numeric and even, else pixels."""
    c = da.coords[dim].values if dim in da.coords else np.array([])
    if c.size and np.issubdtype(c.dtype, np.number) and np.all(np.isfinite(c)):
        step = float((c[-1] - c[0]) / (c.size - 1)) if c.size > 1 else 1.0
        if step > 0 and (c.size < 2 or np.allclose(np.diff(c), step, rtol=1e-3)):
            return step, float(c[0])
    return 1.0, 0.0


def _sampled(da: xr.DataArray) -> xr.DataArray:
    """At most :data:`CONTRAST_FRAMES` frames, evenly spread (first and last included)."""
    if conventions.TIME not in da.dims or da.sizes[conventions.TIME] <= CONTRAST_FRAMES:
        return da
    n = da.sizes[conventions.TIME]
    return da.isel({conventions.TIME: np.unique(np.linspace(0, n - 1, CONTRAST_FRAMES).round().astype(int))})


def _channel_stacks(path: str) -> list[tuple[str, xr.DataArray, xr.DataArray]]:
    """(channel name, stack, stack) for every channel: a ``channel`` dim split into its
    positions, else each channel the file lists opened on its own; the stack twice (the
    layer's and the contrast limits' sample), for callers of the earlier (dask, sample)
    pair.

    The stack is what ``xafm.open(path, lazy=True)`` gives: xarray's lazy indexing of
    xafm's readers, which reads just the frames asked for (dask would read a whole chunk,
    often the whole file, for any frame of it, and build a graph per fetch). Each channel
    is opened once."""
    import xafm

    indexed = _indexed(path, {})
    first = indexed  # napari indexes it per frame (FrameArray): no dask graph per fetch
    if "channel" in first.dims:
        names = [str(v) for v in first.coords["channel"].values] if "channel" in first.coords else [str(i) for i in range(first.sizes["channel"])]
        return [(name, first.isel(channel=i), indexed.isel(channel=i)) for i, name in enumerate(names)]
    default = model.channel_of(first)
    out = []
    for channel in xafm.channels(path):
        if channel == default:
            out.append((channel, first, indexed))
        else:
            other = _indexed(path, {"channel": channel})
            out.append((channel, other, other))
    if not any(channel == default for channel, _, _ in out):  # a reader whose default is not listed
        out.insert(0, (default, first, indexed))
    return out


def _indexed(path: str, options: dict[str, Any]) -> xr.DataArray:
    """The stack through xarray's lazy indexing (no dask, nothing read yet)."""
    import xafm

    return xafm.open(path, lazy=True, **options)


def _stem(path: str, suffix_length: int) -> str:
    name = os.path.basename(path.rstrip("/\\"))
    return name[:-suffix_length] if 0 < suffix_length < len(name) else Path(name).stem or name
