"""What xafm's OME-TIFF files are known by beside their OME-XML: the format name and reader
that provenance records carry, the TIFF magic, and the private TIFF tags (playNano's
provenance object, the layer names)."""

from __future__ import annotations

NAME = "tif"
#: The reader named in provenance records: the package, whichever of its modules reads.
READER = "xafm.formats.ometiff"
#: The first bytes of a classic and of a BigTIFF file, either byte order.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: playNano's provenance object (UTF-8 JSON, type UNDEFINED), on the first page.
TAG_PROVENANCE = 65000
#: The JSON list of layer names, as playNano writes it.
TAG_LAYERS = 65001
