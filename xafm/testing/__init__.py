"""Writers of synthetic instrument files, for tests and benchmarks: one module per format.

xafm only reads vendor formats; these writers exist so that tests can build files of any
size and shape (long videos, several channels, every file version, damaged headers)
without shipping large binaries. They follow the layouts in ``docs/formats.md``; the
test suite and ``bench/`` take every synthetic file from here.
"""

from __future__ import annotations

from .asd import ASD_TEXT_CODECS, write_asd
from .gwy import gwy_component, gwy_container, write_gwy
from .h5jpk import write_h5jpk
from .ibw import IBW_TYPE_CODES, write_ibw
from .jpk import jpk_slot_tags, write_jpk
from .nanoscope import patch_nanoscope_header, write_nanoscope, write_nanoscope_force
from .playnano import (
    playnano_frame_metadata,
    playnano_provenance,
    write_playnano_h5,
    write_playnano_npz,
    write_playnano_ome_tiff,
)
from .sxm import write_sxm
from .topostats import write_topostats
from .wsxm import write_wsxm

__all__ = [
    "ASD_TEXT_CODECS",
    "IBW_TYPE_CODES",
    "gwy_component",
    "gwy_container",
    "jpk_slot_tags",
    "patch_nanoscope_header",
    "playnano_frame_metadata",
    "playnano_provenance",
    "write_asd",
    "write_gwy",
    "write_h5jpk",
    "write_ibw",
    "write_jpk",
    "write_nanoscope",
    "write_nanoscope_force",
    "write_playnano_h5",
    "write_playnano_npz",
    "write_playnano_ome_tiff",
    "write_sxm",
    "write_topostats",
    "write_wsxm",
]
