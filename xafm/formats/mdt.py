"""NT-MDT ``.mdt`` files (Nova, Nova PX, Image Analysis): a container of frames.

A 33-byte file header (magic ``01 B0 93 FF``, the size of the frames, the last frame's
index) is followed by frames, each with a 22-byte header (size, type, version, date).
Two frame types hold images: *scanned* frames (type 0: int16 values with an offset, step
and unit code for each axis) and *MDA* frames (type 106: a self-describing array; a 2-D
array with one measured quantity is an image, e.g. a probe current map). Other frames
(text, spectroscopy, curves, palettes) are not images: they are neither listed nor read,
and a file holding no image at all raises :class:`~xafm.exceptions.NotAnImageError`.

Every image frame is a channel, named after its title (``1F:Iprobe``), else its signal
(``Height``); a name two frames share gets the frame's number, ``Height (2)``. The default
is the first scanned height (topography) frame, else the first image in a length unit,
else the first image. NT-MDT stores the bottom row first (the y coordinate grows with the
row index, and Gwyddion and SurfaceTopography flip it), so rows are flipped to put the top
of the image in row 0. Layout, units and sources: docs/formats.md ("NT-MDT .mdt").
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import NotAnImageError, reading
from . import _mdt_layout as layout
from ._channels import pick_channel

NAME = "mdt"


def identify(probe: Probe) -> bool:
    """The file starts with NT-MDT's magic bytes ``01 B0 93 FF``."""
    return probe.head.startswith(layout.MAGIC)


def _images(path: str) -> list[layout.Image]:
    """The file's image frames; NotAnImageError when it holds none."""
    with reading(path, "reading the NT-MDT frames"):
        contents = layout.read_contents(path)
    if not contents.images:
        kinds = sorted(set(contents.kinds))
        why = f" ({'; '.join(contents.problems)})" if contents.problems else ""
        raise NotAnImageError(
            path, f"this is a spectroscopy file (its NT-MDT frames hold no image frame, only {', '.join(kinds) or 'no frames'}{why}); xafm reads images"
        )
    return contents.images


def channels(path: str | os.PathLike[str]) -> list[str]:
    return [img.name for img in _images(os.fspath(path))]


def _default(images: list[layout.Image]) -> list[str]:
    """Names in the order ``channel=None`` tries them: scanned heights, then any image in a
    length unit, then the first image."""
    scanned_height = [i.name for i in images if i.kind == "scanned" and i.is_height]
    lengths = [i.name for i in images if i.is_height]
    return scanned_height + lengths + [images[0].name]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one image frame lazily: only the frame headers are read here."""
    path = os.fspath(path)
    images = _images(path)
    img = pick_channel(path, {i.name: i for i in images}, channel, _default(images))
    nm = img.values_in_nm()
    scale, add = img.scale, img.add
    if nm is not None:
        scale, add = scale * nm, add * nm
    data = RawFramesArray(
        path,
        offset=img.offset,
        n_frames=1,
        frame_shape=img.shape,
        raw_dtype=img.raw_dtype,
        scale=scale,
        add=add if add != 0 else None,
        out_dtype=np.float64,
        flip_y=True,
    )
    name = conventions.safe_channel(img.name)
    fm = {"start_epoch_ms": img.details.get("start_epoch_ms")}
    acquisition = {
        "format": "NT-MDT MDT",
        "channel": img.name,
        "title": img.title,
        "frame_kind": img.kind,
        "raw_dtype": img.raw_dtype,
        "raw_unit": img.unit,
        "value_scale": img.scale,
        "value_offset": img.add,
        "data_offset": img.offset,
        "pixels": [img.shape[1], img.shape[0]],
        **img.details,
    }
    return model.assemble(
        data,
        pixel_size_nm=img.pixel_nm,
        channel=name,
        units="nm" if nm is not None else img.unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=img.name)],
    )


FORMAT = Format(
    name=NAME,
    description="NT-MDT image",
    suffixes=(".mdt",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
