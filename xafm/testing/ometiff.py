"""Synthetic OME-TIFF files as other tools write them, for the tests of xafm's reader of
foreign OME-TIFF (``docs/formats.md``, "OME-TIFF from other tools").

xafm's own OME-TIFF files come from ``da.afm.to_ome_tiff``; playNano's from
:mod:`xafm.testing.playnano`.
"""

from __future__ import annotations

import os
from typing import Any


def write_foreign_ome_tiff(path: str | os.PathLike[str], arr: Any, axes: str, **meta: Any) -> str | os.PathLike[str]:
    """Write ``arr`` as tifffile writes an OME-TIFF (``ome=True``), the way microscope
    software does; returns ``path``.

    ``axes`` names the dims of ``arr`` in tifffile's letters (``"TZCYX"``, ``"TYXS"``,
    ...); a trailing ``S`` (samples per pixel) writes an RGB image, anything else
    grayscale. ``meta`` goes into the OME-XML as tifffile's metadata keys
    (``PhysicalSizeX``, ``PhysicalSizeXUnit``, ``TimeIncrement``,
    ``Channel={"Name": [...]}``, ``Plane={"DeltaT": [...], "DeltaTUnit": [...]}``, ...).
    """
    import tifffile

    tifffile.imwrite(path, arr, ome=True, metadata={"axes": axes, **meta}, photometric="rgb" if axes.endswith("S") else "minisblack")
    return path
