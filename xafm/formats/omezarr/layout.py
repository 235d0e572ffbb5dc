"""Where things are in a store xafm writes: the format's name, the groups of masks and
layers, the node names of masks and layers, and the key of xafm's own attributes."""

from __future__ import annotations

from ...core import conventions

#: The format's name in the format table and in provenance records.
NAME = "zarr"
#: The group attribute beside the NGFF metadata that holds xafm's own (docs/formats.md).
XAFM_KEY = "xafm"
#: Version of the layout of :data:`XAFM_KEY`; a store without it is read as another tool's.
FORMAT_VERSION = 1
#: The NGFF labels group (one label image per mask) and xafm's group of kept layers.
LABELS, LAYERS = "labels", "layers"


def node_name(name: str) -> str:
    """A mask/layer name as a Zarr node name: percent-encoded, no leading ``__``."""
    enc = conventions.encode_name(name)
    return "%5F" + enc[1:] if enc.startswith("__") else enc


def join(*parts: str) -> str:
    """A path inside the store from its parts, the empty ones left out."""
    return "/".join(p for p in parts if p)
