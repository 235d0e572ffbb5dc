"""Synthetic multi-file OME-TIFF sets, written with tifffile and OME-XML built here from the
OME-TIFF specification (schema 2016-06), for the tests of xafm's set reader
(``docs/formats.md``, "Multi-file OME-TIFF sets").

Two layouts, as Bio-Formats writes them: every member carries the whole document (each
member's root ``UUID`` its own, its ``TiffData`` naming every member by ``UUID`` and
``FileName``), or a ``.companion.ome`` file holds the document and each member TIFF only a
``BinaryOnly`` element pointing at it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_OME_TYPES = {"int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "float32": "float", "float64": "double"}


def _root(doc_uuid: str, body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{OME_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd" UUID="{doc_uuid}" Creator="xafm.testing">{body}</OME>'
    )


def write_ome_tiff_set(
    folder: str | os.PathLike[str],
    planes: Any,
    *,
    stem: str = "set",
    dimension_order: str = "XYZCT",
    planes_per_file: int = 1,
    companion: bool = False,
    pixel_size_nm: tuple[float, float] = (1.0, 1.0),
    times_s: Any = None,
    channel_names: list[str] | None = None,
    page_count: bool = True,
) -> dict[str, Any]:
    """Write ``planes`` as an OME-TIFF set in ``folder``; returns ``{"members": [paths],
    "companion": path or None, "uuids": [member UUIDs]}``.

    ``planes`` has the lead dims slowest first as ``dimension_order`` gives them (for
    ``XYZCT``: ``(T, C, Z, Y, X)``); files hold ``planes_per_file`` consecutive planes
    each (``{stem}_{i}.ome.tif``). ``companion`` writes ``{stem}.companion.ome`` and
    binary-only members; otherwise every member holds the whole document. ``times_s``
    gives one ``DeltaT`` per T; ``page_count=False`` leaves ``PlaneCount`` out (then a
    ``TiffData`` with an ``IFD`` covers one plane, as the specification says).
    """
    import tifffile

    folder = Path(folder)
    arr = np.asarray(planes)
    lead = dimension_order[2:][::-1]  # slowest first, e.g. "TCZ"
    if arr.ndim != 5:
        raise ValueError("planes must be 5-D: the three lead dims of dimension_order, then y, x")
    sizes = dict(zip(lead, arr.shape[:3]))
    n_y, n_x = arr.shape[3:]
    flat = arr.reshape(-1, n_y, n_x)
    n = flat.shape[0]
    chunks = [list(range(i, min(n, i + planes_per_file))) for i in range(0, n, planes_per_file)]
    names = [f"{stem}_{i}.ome.tif" for i in range(len(chunks))]
    uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in chunks]
    companion_uuid = f"urn:uuid:{uuid.uuid4()}"
    tiffdata = []
    for name, member_uuid, chunk in zip(names, uuids, chunks):
        first = dict(zip(lead, np.unravel_index(chunk[0], arr.shape[:3])))
        count = f' PlaneCount="{len(chunk)}"' if page_count or len(chunk) != 1 else ""
        tiffdata.append(
            f'<TiffData FirstZ="{first["Z"]}" FirstC="{first["C"]}" FirstT="{first["T"]}" IFD="0"{count}>'
            f"<UUID FileName={quoteattr(name)}>{member_uuid}</UUID></TiffData>"
        )
    channel_names = channel_names or [f"C{c}" for c in range(sizes["C"])]
    channels = "".join(f'<Channel ID="Channel:0:{c}" Name={quoteattr(channel_names[c])} SamplesPerPixel="1"/>' for c in range(sizes["C"]))
    plane_xml = ""
    if times_s is not None:
        times = np.asarray(times_s, dtype=np.float64)
        plane_xml = "".join(
            f'<Plane TheZ="{z}" TheC="{c}" TheT="{t}" DeltaT="{float(times[t])!r}" DeltaTUnit="s"/>'
            for t in range(sizes["T"]) for c in range(sizes["C"]) for z in range(sizes["Z"])
        )  # fmt: skip
    dy, dx = pixel_size_nm
    pixels = (
        f'<Pixels ID="Pixels:0" DimensionOrder="{dimension_order}" Type="{_OME_TYPES[arr.dtype.name]}" '
        f'SizeX="{n_x}" SizeY="{n_y}" SizeZ="{sizes["Z"]}" SizeC="{sizes["C"]}" SizeT="{sizes["T"]}" BigEndian="false" '
        f'PhysicalSizeX="{float(dx)!r}" PhysicalSizeXUnit="nm" PhysicalSizeY="{float(dy)!r}" PhysicalSizeYUnit="nm">'
        f"{channels}{''.join(tiffdata)}{plane_xml}</Pixels>"
    )
    body = f'<Image ID="Image:0" Name="{stem}">{pixels}</Image>'
    companion_path = None
    if companion:
        companion_path = folder / f"{stem}.companion.ome"
        companion_path.write_text(_root(companion_uuid, body), encoding="utf-8")
    members = []
    for name, member_uuid, chunk in zip(names, uuids, chunks):
        if companion:
            xml = _root(member_uuid, f'<BinaryOnly MetadataFile="{stem}.companion.ome" UUID="{companion_uuid}"/>')
        else:
            xml = _root(member_uuid, body)
        tifffile.imwrite(folder / name, flat[chunk], description=xml.encode("utf-8"), metadata=None, photometric="minisblack")
        members.append(folder / name)
    return {"members": members, "companion": companion_path, "uuids": uuids, "companion_uuid": companion_uuid}
