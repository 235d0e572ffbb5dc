"""Writing OME-TIFF: the stack, then each kept layer and mask, as OME images of one plane
per frame, streamed frame by frame with tifffile; BigTIFF when the file may exceed 4 GiB;
the OME-XML (:mod:`.omexml`, stored as UTF-8) and playNano's private tags on the first
page; the pixel size also in every page's resolution tags (pixels per centimetre), for
readers that know plain TIFF only."""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import xarray as xr

from ..._version import __version__
from ...core import conventions, model
from ...core.blocks import in_memory_or_frames
from ...core.output import atomic_output
from ...exceptions import StackError
from .. import _bundle
from .names import NAME, TAG_LAYERS, TAG_PROVENANCE
from .omexml import OME_TYPES, ome_xml

#: Stay clear of the 4 GiB classic-TIFF limit (headers, IFDs and the XML need room too).
BIGTIFF_THRESHOLD = 2**32 - 2**25
#: TIFF ResolutionUnit 3: XResolution/YResolution count pixels per centimetre.
RESOLUTION_UNIT_CM = 3
_UINT32_MAX = 2**32 - 1


def _ascii_json(text: str) -> str:
    return json.dumps(json.loads(text), ensure_ascii=True)


def _kept_frame_metadata(fm: list[dict]) -> list[dict]:
    """The per-frame metadata the annotation keeps: each frame's ``timestamp`` is its
    Plane's ``DeltaT`` and its pixel size the image's (checked equal), so neither is
    repeated (a reader would parse them for every frame, for nothing); no list at all when
    nothing else is left."""
    dropped = ("timestamp", _bundle.FRAME_PIXEL_SIZE_KEY)
    kept = [{k: v for k, v in f.items() if k not in dropped} for f in fm]
    return kept if any(kept) else []


def resolution_tags(dy: float, dx: float) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """XResolution and YResolution (pixels per cm as TIFF rationals) for a pixel of
    ``dy`` x ``dx`` nm; None when a rational of 32-bit terms cannot hold one of them
    (pixels under 2.4 pm or over 4e16 nm)."""
    out = []
    for nm in (dx, dy):
        per_cm = Fraction(1e7 / nm)
        if not 1 / _UINT32_MAX <= per_cm <= _UINT32_MAX:
            return None
        per_cm = per_cm.limit_denominator(max(1, min(_UINT32_MAX, int(_UINT32_MAX / per_cm))))
        if per_cm.numerator == 0 or per_cm.numerator > _UINT32_MAX:
            return None
        out.append((per_cm.numerator, per_cm.denominator))
    return out[0], out[1]


def _tiff_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype in OME_TYPES:
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    raise StackError(f"OME-TIFF cannot store dtype {dtype}")


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    raw: bool = False,
    overwrite: bool = False,
    bigtiff: bool | None = None,
    fsync: bool = True,
) -> Path:
    """Write the stack as OME-TIFF, one page per frame, streamed; BigTIFF when needed;
    ``fsync=False`` skips making it durable before it is reported written (scratch output)."""
    import tifffile

    path = Path(path)
    content = _bundle.bundle_content(da, raw=raw, fmt=NAME, path=path)
    dy, dx = model.pixel_size_nm(da)
    fm = json.loads(content.frame_metadata_json)
    sizes = [f.get(_bundle.FRAME_PIXEL_SIZE_KEY) for f in fm]
    numeric = np.array([s if isinstance(s, (int, float)) else np.nan for s in sizes], dtype=np.float64)
    if not np.all(np.isclose(numeric, dx, rtol=1e-6)):
        bad = [s for s, ok in zip(sizes, np.isclose(numeric, dx, rtol=1e-6)) if not ok]
        raise StackError(
            f"frames have different pixel sizes ({sorted(set(map(str, bad)))[:5]} nm vs {dx} nm); "
            "OME-TIFF holds one pixel size per image: resample or split the stack first"
        )
    series: list[tuple[str, str, xr.DataArray, np.dtype]] = [
        (content.channel, content.channel, content.data, _tiff_dtype(content.data.dtype))
    ]
    series += [(f"layer:{conventions.decode_name(k)}", content.channel, v, _tiff_dtype(v.dtype)) for k, v in content.layers.items()]
    series += [(f"mask:{conventions.decode_name(k)}", "mask", v, np.dtype(np.uint8)) for k, v in content.masks.items()]
    n_t, n_y, n_x = (int(s) for s in content.data.shape)
    shape = (n_t, n_y, n_x)
    # JSON with \\uXXXX escapes: exact names and values survive whatever a tool does to
    # non-ASCII text, and control characters (which XML cannot hold) too
    annotation = {
        "provenance_json": _ascii_json(content.provenance_json),
        "frame_metadata_json": json.dumps(_kept_frame_metadata(fm), ensure_ascii=True),
        "xafm_attrs_json": _ascii_json(content.attrs_json),
        "channel_json": json.dumps(content.channel),
        "images_json": json.dumps([["data", content.channel]] + [["layer", conventions.decode_name(k)] for k in content.layers] + [["mask", conventions.decode_name(k)] for k in content.masks]),
    }
    if content.state_backups_json:
        annotation["state_backups_json"] = content.state_backups_json
    xml = ome_xml([(n, c, t) for n, c, _, t in series], shape, dy, dx, content.times, annotation, content.origin_nm).encode("utf-8")
    resolution = resolution_tags(dy, dx)
    total = sum(int(np.prod(shape)) * t.itemsize for *_, t in series) + len(xml) + 64 * shape[0] * len(series)
    if bigtiff is None:
        bigtiff = total > BIGTIFF_THRESHOLD
    layer_names = json.dumps([conventions.decode_name(k) for k in content.layers], ensure_ascii=False).encode("utf-8")
    extratags = [
        (TAG_PROVENANCE, 7, None, content.provenance_json.encode("utf-8"), True),
        (TAG_LAYERS, 7, None, layer_names, True),
    ]
    with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff, byteorder="<") as tw:
        for i, (_, _, obj, dtype) in enumerate(series):
            tw.write(
                in_memory_or_frames(obj, dtype),
                shape=shape,
                dtype=dtype,
                photometric="minisblack",
                description=xml if i == 0 else None,
                metadata=None,
                extratags=extratags if i == 0 else None,
                software=f"xafm {__version__}",
                resolution=resolution,
                resolutionunit=RESOLUTION_UNIT_CM if resolution else None,
            )
    return path
