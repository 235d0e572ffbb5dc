"""What xafm's OME-TIFF files are known by beside their OME-XML: the format name and reader
that provenance records carry, the TIFF magic, and the private TIFF tags (playNano's
provenance object, the layer names); and the tags by which other formats' TIFF files are
told apart (:data:`OTHER_TIFF_DIALECTS`)."""

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
#: First-page tags of TIFF dialects that other formats read (neither OME-TIFF nor plain
#: TIFF claims such a file), and what the file then is.
OTHER_TIFF_DIALECTS = {
    32834: "a JPK image (JPK grid tags)",
    32848: "a JPK image (JPK channel tag)",
    50432: "a Park Systems image (Park tags)",
    50434: "a Park Systems image (Park tags)",
}
