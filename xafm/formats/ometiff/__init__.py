"""OME-TIFF (``.ome.tif``, ``.ome.tiff``, and ``.tif``/``.tiff`` whose first page holds
OME-XML): one plane per frame, OME-XML 2016-06 stored as UTF-8, streamed page by page.

xafm writes the stack as OME Image 0 (``TiffData`` IFD 0, one plane per frame,
``PhysicalSizeX/Y`` in µm as playNano does, ``TimeIncrement`` and per-plane ``DeltaT`` in
s, a crop's origin as per-plane ``PositionX/Y`` in nm, the channel name), then each kept layer and mask as a further OME Image of the same
size (so Bio-Formats shows them as extra series). A ``MapAnnotation`` carries the
provenance, per-frame metadata and attrs as JSON; the provenance (playNano's object) is
also in private TIFF tag 65000 and the JSON list of layer names in tag 65001. Every page's
resolution tags carry the pixel size too (pixels per cm), for plain TIFF readers.

Reading accepts OME-TIFF from any tool (docs/formats.md): every dim OME
and tifffile know is kept, named ``time``, ``z``, ``channel``, ``sample``, ... in the order
(time, z, channel, others, y, x); length-1 dims other than time are dropped; ``channel=``
selects one channel by name; physical sizes convert to nm and DeltaT to s.

Multi-file sets (``TiffData`` naming other files by UUID and file name, binary-only TIFFs
with a ``.companion.ome``) open from any member or from the companion, which is a
read-only format of its own (``ome-companion``, :data:`COMPANION`).

This module is the format's face (content check, channel list, the reader that sends a
file to the right one, the declaration); the work is done in:

- :mod:`.omexml`: the OME-XML document, written and parsed, and its units;
- :mod:`.writer`: the writer (images of data, layers and masks, BigTIFF, private tags);
- :mod:`.pages`: the lazy page and plane arrays, and the checks a page passes;
- :mod:`.own`: reading a file xafm wrote;
- :mod:`.foreign`: reading other tools' files;
- :mod:`.sets`: multi-file sets (``TiffData`` naming other files, ``.companion.ome``);
- :mod:`.names`: the format name, TIFF magic and private tags.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import xarray as xr

from ...core.contract import Format, Probe
from ...exceptions import CorruptFileError
from .._tiffsource import open_tiff
from . import foreign, omexml, own, sets
from .names import NAME, OTHER_TIFF_DIALECTS, TIFF_MAGIC
from .pages import series_source, uniform_series
from .writer import write


def identify(probe: Probe) -> bool:
    """A TIFF whose first page's description is OME-XML."""
    if not probe.head.startswith(TIFF_MAGIC):
        return False
    with open_tiff(probe.path) as tf:
        return bool(tf.is_ome)


def identify_companion(probe: Probe) -> bool:
    """An XML document whose root is OME (a ``.companion.ome`` of a multi-file set)."""
    return not probe.head.startswith(TIFF_MAGIC) and sets.looks_like_companion(probe.head)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    info = _describe(path)
    if not omexml.annotation(info["root"]):  # another tool's file: as read_foreign names them
        return list(foreign.layout(path, info["images"], 0, info.get("set"), info["root"])["names"])
    return [c["name"] for c in info["channels"]]


def _describe(path: str) -> dict[str, Any]:
    """The parsed OME-XML (``root``, its ``images``), the lazy planes of each series (as
    xafm's own files are read) and the first image's channels; for a file of a multi-file
    set (or its companion) the set's, with ``set`` (:class:`.sets.OmeSet`)."""
    import tifffile

    if sets.is_companion_file(path):
        return sets.from_companion(path).describe()
    try:
        with open_tiff(path) as tf:
            if not tf.is_ome or not tf.ome_metadata:
                codes = set(tf.pages.first.tags.keys()) if len(tf.pages) else set()
                what = next((w for code, w in OTHER_TIFF_DIALECTS.items() if code in codes), None)
                raise CorruptFileError(path, "TIFF has no OME-XML: not an OME-TIFF" + (f"; its tags say it is {what}" if what else ""))
            root = omexml.parse(path, tf.ome_metadata)
            the_set = sets.from_tiff(path, root)
            if the_set is not None:
                return the_set.describe()
            images = root.findall(omexml.q("Image"))
            own = bool(omexml.annotation(root))
            # xafm's own files: their pages, found without tifffile's series where they
            # are uniform; other tools' files: nothing here (foreign.layout reads the series)
            fast = uniform_series(tf, path, images) if own and images else None
            if not images or (own and fast is None and len(tf.series) < 1):
                raise CorruptFileError(path, "OME-XML describes no image")
            info: dict[str, Any] = {"root": root, "images": images, "series": fast or []}
            for i in range(0 if fast or not own else min(len(images), len(tf.series))):
                info["series"].append(series_source(tf, path, i))
            pix = images[0].find(omexml.q("Pixels"))
            if pix is None:
                raise CorruptFileError(path, "OME Image has no Pixels element")
            info["channels"] = [
                {"name": c.get("Name") or f"C{j}", "index": j} for j, c in enumerate(pix.findall(omexml.q("Channel")))
            ] or [{"name": "C0", "index": 0}]
            return info
    except (tifffile.TiffFileError, ValueError, struct.error) as exc:
        raise CorruptFileError(path, f"not a readable TIFF: {exc}") from None


def read(path: str | os.PathLike[str], *, channel: str | None = None, series: int = 0) -> xr.Dataset:
    """An xafm OME-TIFF as the stack it was written from; any other OME-TIFF with its dims.

    ``series`` picks the OME Image of another tool's file (xafm's own files use Image 0).
    """
    path = os.fspath(path)
    info = _describe(path)
    ann = omexml.annotation(info["root"])
    if not ann:  # another tool's OME-TIFF
        return foreign.read_foreign(path, info["root"], info["images"], channel=channel, series=series, the_set=info.get("set"))
    return own.read_own(path, info, ann, channel=channel)


FORMAT = Format(
    name=NAME,
    description="OME-TIFF",
    # plain TIFF suffixes too: the content check tells OME-TIFF from other TIFF (xafm.formats.tiff)
    suffixes=(".ome.tif", ".ome.tiff", ".tif", ".tiff"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
COMPANION = Format(
    name="ome-companion",
    description="OME-TIFF set (companion OME-XML)",
    suffixes=(sets.COMPANION_SUFFIX,),
    lazy=True,
    identify=identify_companion,
    read=read,
    channels=channels,
)
FORMATS = (FORMAT, COMPANION)
