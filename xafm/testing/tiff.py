"""Synthetic plain TIFF stacks and ImageJ hyperstacks as other tools write them, for the
tests of xafm's TIFF reader (``docs/formats.md``, "Plain TIFF and ImageJ hyperstacks").

Both are written with tifffile: ImageJ hyperstacks as ImageJ writes them (the
``ImageJ=`` description with ``unit``, ``spacing``, ``finterval``; the pixel size as
pixels per unit in XResolution/YResolution with ResolutionUnit 1), plain stacks as one
page per frame with no description, calibrated (resolution tags in a real unit) or not.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: nm per unit, for the units these writers accept.
_NM = {"nm": 1.0, "um": 1e3, "micron": 1e3, "mm": 1e6, "cm": 1e7, "inch": 2.54e7}
#: TIFF ResolutionUnit codes.
_RESOLUTION_UNIT = {"none": 1, "inch": 2, "cm": 3}


def write_imagej_tiff(
    path: str | os.PathLike[str],
    arr: Any,
    axes: str = "TZCYX",
    *,
    pixel_size_nm: tuple[float, float] | None = None,
    unit: str = "um",
    z_step_nm: float | None = None,
    frame_interval: float | None = None,
    time_unit: str | None = None,
    compression: str | None = None,
) -> str | os.PathLike[str]:
    """Write ``arr`` as an ImageJ hyperstack; returns ``path``.

    ``axes`` names the dims of ``arr`` in ImageJ's order (a subset of ``TZCYXS``).
    ``pixel_size_nm`` is ``(dy, dx)``, stored in ``unit`` (``"um"``, ``"nm"``, ``"micron"``,
    ...); ``z_step_nm`` becomes ImageJ's ``spacing``; ``frame_interval`` its ``finterval``,
    in ``time_unit`` (ImageJ's ``tunit``; seconds when None). No calibration is written
    when ``pixel_size_nm`` is None.
    """
    import tifffile

    meta: dict[str, Any] = {"axes": axes}
    resolution = None
    if pixel_size_nm is not None:
        per = _NM[unit]
        dy, dx = pixel_size_nm
        resolution = (per / dx, per / dy)
        meta["unit"] = unit
        if z_step_nm is not None:
            meta["spacing"] = z_step_nm / per
    if frame_interval is not None:
        meta["finterval"] = frame_interval
    if time_unit is not None:
        meta["tunit"] = time_unit
    tifffile.imwrite(path, np.asarray(arr), imagej=True, resolution=resolution, metadata=meta, compression=compression)
    return path


def write_plain_tiff(
    path: str | os.PathLike[str],
    frames: Any,
    *,
    pixel_size_nm: tuple[float, float] | None = None,
    resolution_unit: str = "cm",
    dpi: float | None = None,
    compression: str | None = None,
    byteorder: str = "<",
) -> str | os.PathLike[str]:
    """Write ``frames`` (frames, y, x) as a plain TIFF of one page per frame, with no
    ImageDescription; returns ``path``.

    ``pixel_size_nm`` (``(dy, dx)``) goes into the resolution tags as pixels per
    ``resolution_unit`` (``"cm"`` or ``"inch"``); ``dpi`` writes that many pixels per inch
    instead (what image editors write); neither writes the tags as 1/1 with no unit.
    """
    import tifffile

    frames = np.asarray(frames)
    resolution: tuple[float, float] | None = None
    unit = "none"
    if pixel_size_nm is not None:
        dy, dx = pixel_size_nm
        per = _NM[resolution_unit]
        resolution, unit = (per / dx, per / dy), resolution_unit
    elif dpi is not None:
        resolution, unit = (dpi, dpi), "inch"
    # ome=False: tifffile would write OME-XML into a file named .ome.tif
    with tifffile.TiffWriter(path, byteorder=byteorder, ome=False) as tw:  # type: ignore[arg-type]
        for frame in frames.reshape((-1,) + frames.shape[-2:]):
            tw.write(
                frame,
                photometric="minisblack",
                metadata=None,
                compression=compression,
                resolution=resolution,
                resolutionunit=_RESOLUTION_UNIT[unit],
                software="xafm.testing",
            )
    return path
