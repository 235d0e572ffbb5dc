"""xafm's napari plugin (npe2): a reader for every file xafm reads and writers to
OME-TIFF, OME-Zarr and the HDF5 bundle. ``xafm/napari.yaml`` is the manifest; napari
finds it through the ``napari.manifest`` entry point. Nothing here imports napari or
npe2: layers are plain layer-data tuples, so xafm works without either installed.
See ``docs/napari.md``.
"""

from __future__ import annotations

from .reader import get_reader, read_layers
from .writer import write_h5, write_ome_tiff, write_ome_zarr

#: The manifest's file name inside the ``xafm`` package (the entry point's value).
MANIFEST = "napari.yaml"

__all__ = ["MANIFEST", "get_reader", "read_layers", "write_h5", "write_ome_tiff", "write_ome_zarr"]
