"""Synthetic OME-Zarr images as other tools write them, for the tests of xafm's reader of
foreign stores (``docs/formats.md``, "OME-Zarr", "Reading").

xafm's own stores come from ``da.afm.to_ome_zarr``. This writer deliberately does not use
:mod:`xafm.formats.omezarr.ngff`: it spells out NGFF 0.4 and 0.5 on its own, so that the
reader is tested against metadata it did not write itself.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

#: The Zarr format each NGFF version is stored in.
ZARR_FORMATS: dict[str, Literal[2, 3]] = {"0.4": 2, "0.5": 3}


def write_foreign_ome_zarr(
    root: str | os.PathLike[str],
    version: str,
    axes: list[dict[str, Any]],
    data: np.ndarray,
    transforms: list[dict[str, Any]],
    *,
    omero: dict[str, Any] | None = None,
) -> Any:
    """Write ``data`` as a one-level NGFF image at ``root`` (replacing what is there);
    returns the zarr group.

    ``version`` is ``"0.4"`` (Zarr v2: metadata at the top of ``.zattrs``, a ``"version"``
    in the multiscale, ``/``-separated chunk keys) or ``"0.5"`` (Zarr v3: metadata under
    ``ome`` with one ``"version"``, the axis names as ``dimension_names``). ``axes`` are
    the NGFF axes of ``data`` (``{"name", "type", "unit"}``), ``transforms`` the
    coordinate transformations of its one dataset ``s0`` (stored as one chunk), and
    ``omero`` an optional omero block (``{"channels": [{"label": ...}, ...]}``).
    """
    import zarr

    zf = ZARR_FORMATS[version]
    g = zarr.open_group(os.fspath(root), mode="w", zarr_format=zf)
    kw = {"dimension_names": [a["name"] for a in axes]} if zf == 3 else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    a = g.create_array("s0", shape=data.shape, dtype=data.dtype, chunks=data.shape, **kw)
    a[...] = data
    ms = {"axes": axes, "datasets": [{"path": "s0", "coordinateTransformations": transforms}], "name": "img"}
    content: dict[str, Any] = {"multiscales": [ms if zf == 3 else {"version": "0.4", **ms}]}
    if omero:
        content["omero"] = omero
    g.attrs.update({"ome": {"version": "0.5", **content}} if zf == 3 else content)
    return g
