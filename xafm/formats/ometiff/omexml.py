"""OME-XML (schema 2016-06) for OME-TIFF: the namespace, the pixel type and unit tables, the
document xafm writes (Image, Pixels, Channel, TiffData and Plane elements, the ``xafm/stack``
MapAnnotation), and reading any tool's document back (parsing with the namespace
normalised, length units to nm, time units to s, the annotation)."""

from __future__ import annotations

import functools
import re
import uuid
import xml.etree.ElementTree as ET

import numpy as np

from ..._version import __version__
from ...exceptions import CorruptFileError

OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
ANNOTATION_NS = "xafm/stack"

OME_TYPES = {
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
    np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16", np.dtype(np.uint32): "uint32",
    np.dtype(np.float32): "float", np.dtype(np.float64): "double",
}
#: Length units of the OME enumeration, in nm.
LENGTH_NM = {
    "Ym": 1e33, "Zm": 1e30, "Em": 1e27, "Pm": 1e24, "Tm": 1e21, "Gm": 1e18, "Mm": 1e15,
    "km": 1e12, "hm": 1e11, "dam": 1e10, "m": 1e9, "dm": 1e8, "cm": 1e7, "mm": 1e6,
    "µm": 1e3, "\u03bcm": 1e3, "um": 1e3, "nm": 1.0, "pm": 1e-3, "fm": 1e-6, "am": 1e-9,
    "zm": 1e-12, "ym": 1e-15, "Å": 0.1, "\u212b": 0.1, "thou": 25400.0, "li": 2116666.67,
    "in": 2.54e7, "ft": 3.048e8, "yd": 9.144e8, "mi": 1.609344e12, "ua": 1.495978707e20,
    "ly": 9.4607304725808e24, "pc": 3.0856776e25, "pt": 352777.78, "pixel": None, "reference frame": None,
}
TIME_S = {
    "Ys": 1e24, "Zs": 1e21, "Es": 1e18, "Ps": 1e15, "Ts": 1e12, "Gs": 1e9, "Ms": 1e6, "ks": 1e3,
    "hs": 1e2, "das": 10.0, "s": 1.0, "ds": 0.1, "cs": 0.01, "ms": 1e-3, "µs": 1e-6, "\u03bcs": 1e-6,
    "ns": 1e-9, "ps": 1e-12, "fs": 1e-15, "as": 1e-18, "zs": 1e-21, "ys": 1e-24,
    "min": 60.0, "h": 3600.0, "d": 86400.0,
}


# --------------------------------------------------------------------------------------
# the document xafm writes
# --------------------------------------------------------------------------------------
@functools.cache
def _xml_invalid() -> re.Pattern[str]:
    # compiled when first written (a few ms): reading and the format table need not
    return re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """Drop what XML 1.0 cannot hold (control characters, non-characters); display only."""
    return _xml_invalid().sub("\ufffd", text)


def _quoteattr(text: str) -> str:
    from xml.sax.saxutils import quoteattr  # imported when writing: it imports urllib.request

    return quoteattr(text)


def _escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def _name_attr(text: str) -> str:
    """A display name as a quoted attribute value without character references: tabs and
    line breaks become spaces (``quoteattr`` would write ``&#10;``, which Bio-Formats
    mangles), everything else is kept as UTF-8 or as a named entity (``&amp;``)."""
    return _quoteattr(re.sub("[\t\n\r]", " ", _xml_safe(text)))


def _fmt(v: float) -> str:
    return repr(float(v))


def plane_position(origin: tuple[float, float]) -> str:
    """A Plane's ``PositionX``/``PositionY`` (nm) for a crop's ``origin`` (y, x); none for
    a whole scan (OME's positions are optional, and 0 would claim a stage position)."""
    y0, x0 = origin
    if not (y0 or x0):
        return ""
    return f' PositionX="{_fmt(x0)}" PositionXUnit="nm" PositionY="{_fmt(y0)}" PositionYUnit="nm"'


def pixels_xml(
    index: int, name: str, dtype: np.dtype, shape: tuple[int, int, int], dy: float, dx: float, times: np.ndarray, first_ifd: int,
    planes: bool = True, origin: tuple[float, float] = (0.0, 0.0),
) -> str:
    """The Pixels element of one image: its Channel, TiffData and (``planes``) one Plane per
    frame, at the stack's ``origin``."""
    n_t, n_y, n_x = shape
    inc = float(np.median(np.diff(times))) if n_t > 1 else None
    attrs = (
        f'ID="Pixels:{index}" DimensionOrder="XYCZT" Type="{OME_TYPES[dtype]}" '
        f'SizeX="{n_x}" SizeY="{n_y}" SizeZ="1" SizeC="1" SizeT="{n_t}" BigEndian="false" '
        f'PhysicalSizeX="{_fmt(dx / 1e3)}" PhysicalSizeXUnit="\u00b5m" '
        f'PhysicalSizeY="{_fmt(dy / 1e3)}" PhysicalSizeYUnit="\u00b5m"'
    )
    if inc is not None and inc > 0:
        attrs += f' TimeIncrement="{_fmt(inc)}" TimeIncrementUnit="s"'
    position = plane_position(origin)
    plane_xml = "".join(
        f'<Plane TheZ="0" TheC="0" TheT="{t}" DeltaT="{_fmt(times[t])}" DeltaTUnit="s"{position}/>' for t in range(n_t)
    ) if planes else ""
    return (
        f"<Pixels {attrs}>"
        f'<Channel ID="Channel:{index}:0" Name={_name_attr(name)} SamplesPerPixel="1"><LightPath/></Channel>'
        f'<TiffData IFD="{first_ifd}" PlaneCount="{n_t}"/>'
        f"{plane_xml}</Pixels>"
    )


def ome_xml(
    images: list[tuple[str, str, np.dtype]], shape: tuple[int, int, int], dy: float, dx: float, times: np.ndarray, annotation: dict[str, str],
    origin: tuple[float, float] = (0.0, 0.0),
) -> str:
    """The whole document, to be stored as UTF-8 (what the OME-TIFF specification says
    ImageDescription holds, and what tifffile writes): one Image per ``(image name,
    channel name, dtype)``, all of ``shape``, and the MapAnnotation holding ``annotation``;
    the planes of the stack's image at ``origin`` (y, x in nm).

    It holds no numeric character references (``&#181;``): Bio-Formats mangles them in
    the TIFF comment, refuses the unit and falls back to its plain TIFF reader."""
    parts = []
    for i, (image_name, channel, dtype) in enumerate(images):
        parts.append(
            f'<Image ID="Image:{i}" Name={_name_attr(image_name)}>'
            # Plane/DeltaT on the stack's image only: playNano collects every Plane in the
            # document as its frame times
            + pixels_xml(i, channel, dtype, shape, dy, dx, times, i * shape[0], planes=i == 0, origin=origin)
            + '<AnnotationRef ID="Annotation:0"/></Image>'
        )
    values = "".join(f"<M K={_quoteattr(k)}>{_escape(_xml_safe(v))}</M>" for k, v in annotation.items())
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{OME_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd" '
        f'UUID="urn:uuid:{uuid.uuid4()}" Creator={_quoteattr("xafm " + __version__)}>'
        + "".join(parts)
        + f'<StructuredAnnotations><MapAnnotation ID="Annotation:0" Namespace="{ANNOTATION_NS}">'
        f"<Value>{values}</Value></MapAnnotation></StructuredAnnotations></OME>"
    )
    return xml


# --------------------------------------------------------------------------------------
# reading any tool's document
# --------------------------------------------------------------------------------------
def q(tag: str) -> str:
    """An element name in the OME namespace, as :func:`parse` leaves every element."""
    return f"{{{OME_NS}}}{tag}"


def parse(path: str, xml: str | bytes) -> ET.Element:
    """The document's root; elements of other schema versions are put in :data:`OME_NS`."""
    try:
        root = ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    except ET.ParseError as exc:
        raise CorruptFileError(path, f"OME-XML does not parse: {exc}") from None
    # other schema versions share the element names we use: every element is put in
    # OME_NS, also those without a namespace (``xmlns=""``), so that xafm sees each
    # TiffData and UUID that a reader matching names alone (tifffile) would follow
    for el in root.iter():
        if isinstance(el.tag, str) and not el.tag.startswith(f"{{{OME_NS}}}"):
            el.tag = q(el.tag.split("}", 1)[1] if el.tag.startswith("{") else el.tag)
    return root


def length_nm(path: str, value: str | None, unit: str | None) -> float | None:
    """An OME length in nm (µm when no unit is given); None when absent, not positive, or
    in pixels or a reference frame."""
    if value is None:
        return None
    if (unit or "µm") not in LENGTH_NM:
        raise CorruptFileError(path, f"unknown OME length unit {unit!r}")
    factor = LENGTH_NM[unit or "µm"]
    if factor is None:
        return None
    v = float(value) * factor
    return v if np.isfinite(v) and v > 0 else None


def position_nm(path: str, value: str | None, unit: str | None) -> float | None:
    """A Plane's ``PositionX``/``PositionY`` in nm; None when absent, not finite, or (as
    OME's default unit says when none is given) in a reference frame."""
    if value is None or (unit or "reference frame") not in LENGTH_NM:
        return None
    factor = LENGTH_NM[unit or "reference frame"]
    try:
        v = float(value) * factor if factor is not None else None
    except ValueError:
        raise CorruptFileError(path, f"Plane position {value!r} is not a number") from None
    return v if v is not None and np.isfinite(v) else None


def plane_origin(path: str, planes: list[ET.Element]) -> tuple[float, float] | None:
    """(y, x) in nm where every one of ``planes`` states the same position (a crop's origin,
    or a stage position); None when one states none or they differ (a stage that moved)."""
    found = set()
    for plane in planes:
        x = position_nm(path, plane.get("PositionX"), plane.get("PositionXUnit"))
        y = position_nm(path, plane.get("PositionY"), plane.get("PositionYUnit"))
        if x is None or y is None:
            return None
        found.add((y, x))
    return found.pop() if len(found) == 1 else None


def time_s(path: str, value: str | None, unit: str | None) -> float | None:
    """An OME time in s (s when no unit is given); None when absent."""
    if value is None:
        return None
    factor = TIME_S.get(unit or "s")
    if factor is None:
        raise CorruptFileError(path, f"unknown OME time unit {unit!r}")
    return float(value) * factor


def pixel_size_nm(path: str, pix: ET.Element) -> tuple[float, float] | None:
    """``(dy, dx)`` in nm from a Pixels element's PhysicalSizeY/X, either standing in for
    the other; None when it gives neither."""
    dx = length_nm(path, pix.get("PhysicalSizeX"), pix.get("PhysicalSizeXUnit"))
    dy = length_nm(path, pix.get("PhysicalSizeY"), pix.get("PhysicalSizeYUnit"))
    if dx is None:
        return None if dy is None else (dy, dy)
    return (dy if dy is not None else dx, dx)


def annotation(root: ET.Element) -> dict[str, str]:
    """The key/value pairs of xafm's MapAnnotation; empty for another tool's file."""
    for ann in root.iter(q("MapAnnotation")):
        if ann.get("Namespace") == ANNOTATION_NS:
            return {m.get("K") or "": (m.text or "") for m in ann.iter(q("M"))}
    return {}
