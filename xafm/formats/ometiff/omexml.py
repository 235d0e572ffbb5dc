"""OME-XML (schema 2016-06) for OME-TIFF: the namespace, the pixel type and unit tables, the
document xafm writes (Image, Pixels, Channel, TiffData and Plane elements, the ``xafm/stack``
MapAnnotation), and reading any tool's document back (parsing with the namespace
normalised, length units to nm, time units to s, the annotation)."""

from __future__ import annotations

import functools
import re
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Mapping

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
    """The document's root; elements of other schema versions are put in :data:`OME_NS`.

    The ``Plane`` elements (one per plane: most of a long series' document) are not made
    elements when they are all plain (self-closing, attributes only): :func:`cut_planes`
    takes them out of the text, and :func:`planes` gives each Pixels element's as columns.
    """
    cut = cut_planes(xml) if isinstance(xml, str) else None
    try:
        root = ET.fromstring((cut[0] if cut else xml).encode("utf-8") if isinstance(xml, str) else xml)
    except ET.ParseError as exc:
        if cut is not None:  # what was cut was not what it seemed: the whole document
            return parse(path, xml.encode("utf-8") if isinstance(xml, str) else xml)
        raise CorruptFileError(path, f"OME-XML does not parse: {exc}") from None
    # other schema versions share the element names we use: every element is put in
    # OME_NS, also those without a namespace (``xmlns=""``), so that xafm sees each
    # TiffData and UUID that a reader matching names alone (tifffile) would follow
    for el in root.iter():
        if isinstance(el.tag, str) and not el.tag.startswith(f"{{{OME_NS}}}"):
            el.tag = q(el.tag.split("}", 1)[1] if el.tag.startswith("{") else el.tag)
    if cut is not None:
        pixels = list(root.iter(q("Pixels")))
        if len(pixels) != len(cut[1]):  # a Pixels start the text search did not see as one
            return parse(path, xml.encode("utf-8") if isinstance(xml, str) else xml)
        for pix, table in zip(pixels, cut[1]):
            if table.n:
                _CUT_PLANES[pix] = table
    return root


class Planes:
    """The ``Plane`` elements of one Pixels element, in document order, as columns of
    their attributes' text: ``columns`` (name -> value or None per plane) for elements
    parsed one by one, or (a run cut from the text, :func:`cut_planes`) the UTF-8 bytes of
    the run and where each value starts and ends, read by numpy a column at a time."""

    def __init__(self, n: int, columns: dict[str, list[str | None]] | None = None, *,
                 buf: np.ndarray | None = None, words: np.ndarray | None = None, names: list[str] | None = None,
                 starts: np.ndarray | None = None, ends: np.ndarray | None = None):
        self.n = n
        self._columns = columns
        self._buf, self._starts, self._ends = buf, starts, ends
        self._word_view = words
        self.names = list(columns) if columns is not None else list(names or [])

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def _span(self, name: str, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        j = self.names.index(name)
        assert self._starts is not None and self._ends is not None
        st, en = self._starts[:, j], self._ends[:, j]
        return (st, en) if rows is None else (st[rows], en[rows])

    def _joined(self, name: str, rows: np.ndarray | None) -> tuple[bytes, int]:
        """The values of ``rows`` (all: None) joined by spaces, and the longest's length."""
        st, en = self._span(name, rows)
        lengths = en - st
        if not len(lengths):
            return b"", 0
        assert self._buf is not None
        longest = int(lengths.max())
        if self._word_view is not None and longest <= 8 * WORDS:
            # the words from each value's start (a few gathers of one number per value),
            # as a byte matrix, blanked past each value's end: a row per value
            m = (longest + 7) // 8
            grid = np.stack([self._word_view[st + 8 * i] for i in range(m)], axis=1).astype("<u8").view(np.uint8)
            grid = np.where(np.arange(8 * m)[None, :] < lengths[:, None], grid, np.uint8(32))
            text = np.concatenate([grid, np.full((len(st), 1), 32, np.uint8)], axis=1)
            return text.tobytes(), longest
        # a ragged gather: every byte of every value, then a space after each value
        total = int(lengths.sum())
        src = np.repeat(st - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)
        out = np.full(total + len(lengths), 32, np.uint8)
        out[np.arange(total) + np.repeat(np.arange(len(lengths)), lengths)] = self._buf[src]
        return out.tobytes(), longest

    def strings(self, name: str, rows: np.ndarray | None = None) -> list[str | None]:
        """One attribute's values (of ``rows``), None where a plane has none."""
        if name not in self.names:
            return [None] * (self.n if rows is None else len(rows))
        if self._columns is not None:
            col = self._columns[name]
            return col if rows is None else [col[i] for i in rows]
        assert self._buf is not None
        raw = self._buf.tobytes()
        st, en = self._span(name, rows)
        return [raw[i:j].decode("utf-8", "replace") for i, j in zip(st.tolist(), en.tolist())]

    def _one_value(self, name: str, rows: np.ndarray | None) -> str | None:
        """The value every one of ``rows`` (all: None) has, compared as bytes; None when
        they differ (or the planes are elements)."""
        if self._columns is not None or name not in self.names:
            return None
        st, en = self._span(name, rows)
        if not len(st):
            return None
        width = int(en[0] - st[0])
        assert self._buf is not None
        if not (np.all(en - st == width) and _all_same(self._buf, self._word_view, st, width)):
            return None
        return self._buf[st[0] : st[0] + width].tobytes().decode("utf-8", "replace")

    def uniques(self, name: str, rows: np.ndarray) -> set[str | None]:
        """The distinct values of ``rows`` (units: usually one)."""
        one = self._one_value(name, rows)
        return {one} if one is not None else set(self.strings(name, rows))

    def ints(self, path: str, name: str, default: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """An integer attribute (``default`` where absent) and where it is one (a plane
        whose value is not an integer is left out by the caller)."""
        if name not in self.names:
            return np.full(self.n, default, np.int64), np.ones(self.n, bool)
        if self._columns is None:
            value = self._one_value(name, None)
            if value is not None:  # one value on every plane (TheZ, TheC): parsed once
                try:
                    return np.full(self.n, int(value), np.int64), np.ones(self.n, bool)
                except ValueError:
                    return np.full(self.n, default, np.int64), np.zeros(self.n, bool)
            text, longest = self._joined(name, None)
            if longest <= 18:  # numpy clamps what overflows int64
                try:
                    got = np.fromstring(text, dtype=np.int64, sep=" ")
                except ValueError:
                    got = None
                if got is not None and len(got) == self.n:
                    return got, np.ones(self.n, bool)
        out, ok = np.full(self.n, default, np.int64), np.ones(self.n, bool)
        for i, v in enumerate(self.strings(name)):
            if v is not None:
                try:
                    out[i] = int(v)
                except (ValueError, OverflowError):
                    ok[i] = False
        return out, ok

    def floats(self, path: str, name: str, rows: np.ndarray) -> np.ndarray:
        """A number attribute of the planes ``rows`` (NaN where absent)."""
        if name not in self.names:
            return np.full(len(rows), np.nan)
        if self._columns is None:
            text, _ = self._joined(name, rows)
            try:
                got = np.fromstring(text, dtype=np.float64, sep=" ")
            except ValueError:
                got = None
            if got is not None and len(got) == len(rows):
                return got
        vals = self.strings(name, rows)
        try:
            return np.array([float(v) if v is not None else np.nan for v in vals], dtype=np.float64)
        except ValueError:
            bad = next(v for v in vals if v is not None and not _is_float(v))
            raise CorruptFileError(path, f"Plane {name} {bad!r} is not a number") from None

    def scaled(self, path: str, name: str, rows: np.ndarray, table: Mapping[str, float | None], default: str, what: str) -> np.ndarray:
        """``name`` of the planes ``rows`` times the factor of its unit attribute
        (``name + "Unit"``, ``default`` where absent); NaN where absent or unitless."""
        values = self.floats(path, name, rows)
        unit_name = name + "Unit"
        units = self.uniques(unit_name, rows) if unit_name in self.names else {None}
        factors: dict[str | None, float] = {}
        for u in units:
            key = u or default
            if key not in table:
                raise CorruptFileError(path, f"unknown OME {what} unit {u!r}")
            f = table[key]
            factors[u] = np.nan if f is None else f
        if len(factors) == 1:
            return values * next(iter(factors.values()))
        return values * np.array([factors[u] for u in self.strings(unit_name, rows)])


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: Planes cut from documents by :func:`parse`, by their Pixels element (gone with it).
_CUT_PLANES: weakref.WeakKeyDictionary[ET.Element, Planes] = weakref.WeakKeyDictionary()
#: A plane's start and first attribute name, a further attribute, the end of one plane
#: and the start of the next, the end of the last (what lies between the quoted values).
_FIRST = re.compile(rb"<Plane\s+([\w.:-]+)\s*=\s*")
_NEXT = re.compile(rb"\s+([\w.:-]+)\s*=\s*")
_BETWEEN = re.compile(rb"\s*/>\s*<Plane\s+([\w.:-]+)\s*=\s*")
_LAST = re.compile(rb"\s*/>")
#: Documents with fewer planes than this are parsed whole (nothing to gain).
MIN_CUT = 16
#: Values up to this many 8-byte words long are read as rows of words (longer: byte by byte).
WORDS = 4


def _run_table(run: str) -> Planes | None:
    """The planes of one run of Plane elements (nothing else between them) when every
    plane has the same attributes in the same order, in double quotes, without references
    or line breaks in a value (what xafm, tifffile and Bio-Formats write); None for any
    other run (the document is then parsed whole).

    The run alternates between what separates the quoted values and the values; the
    first plane's separators are checked as text, every other plane's against the first
    plane's with numpy, position by position."""
    n = run.count("<Plane")
    if run.count("<") != n or "&" in run or "\t" in run or "\n" in run or "\r" in run:
        return None  # another element among the planes, a reference, a line break
    raw = run.encode("utf-8")
    padded = raw + bytes(8 * WORDS + 8)  # WORDS words (8 bytes) from every position of the run
    buf = np.frombuffer(padded, np.uint8)
    words = np.ndarray((len(raw) + 8 * WORDS,), dtype="<u8", buffer=padded, offset=0, strides=(1,))
    quotes = np.flatnonzero(buf[: len(raw)] == 34)
    if not len(quotes) or len(quotes) % (2 * n):
        return None
    k = len(quotes) // (2 * n)
    opens, closes = quotes[0::2], quotes[1::2]
    # the separators: before the first value, between values, after the last
    seps = [raw[: opens[0]]] + [raw[closes[j] + 1 : opens[j + 1]] for j in range(min(k, len(opens) - 1))] + [raw[closes[-1] + 1 :]]
    head = _FIRST.fullmatch(seps[0])
    if head is None or _LAST.fullmatch(seps[-1]) is None:
        return None
    names = [head.group(1).decode()]
    for sep in seps[1:k]:
        m = _NEXT.fullmatch(sep)
        if m is None:
            return None
        names.append(m.group(1).decode())
    if n > 1:
        m = _BETWEEN.fullmatch(seps[k])
        if m is None or m.group(1).decode() != names[0]:
            return None
    if len(set(names)) != k:
        return None
    # every plane's separators the same as the first plane's: the gaps between values,
    # class by class (after value j of each plane), of one length and the same bytes
    gap_start, gap_len = closes[:-1] + 1, opens[1:] - closes[:-1] - 1
    for j in range(k if n > 1 else k - 1):
        starts, lengths = gap_start[j::k], gap_len[j::k]
        if not (np.all(lengths == lengths[0]) and _all_same(buf, words, starts, int(lengths[0]))):
            return None
    return Planes(n, buf=buf, words=words, names=names, starts=(opens + 1).reshape(n, k), ends=closes.reshape(n, k))


def _all_same(buf: np.ndarray, words: np.ndarray | None, starts: np.ndarray, width: int) -> bool:
    """Whether the ``width`` bytes from each of ``starts`` are the same everywhere; spans
    of up to 16 bytes compared as one or two words (``words``: the 8 bytes from each
    position as one integer, an unaligned view), longer ones byte by byte."""
    if width == 0 or len(starts) < 2:
        return True
    if width <= 16 and words is not None:  # one or two (overlapping) words cover the span
        tail = np.uint64(2 ** (8 * min(width, 8)) - 1) if width < 8 else np.uint64(2**64 - 1)
        first = words[starts] & tail
        if not np.all(first == first[0]):
            return False
        if width > 8:
            last = words[starts + (width - 8)]
            return bool(np.all(last == last[0]))
        return True
    grid = buf[starts[:, None] + np.arange(width)[None, :]]
    return bool(np.all(grid == grid[:1]))


def cut_planes(xml: str) -> tuple[str, list[Planes]] | None:
    """The document without its Plane elements, and each Pixels element's planes (in
    document order); None when the planes are few, not all plain or not in one run at the
    end of their Pixels, or the text holds what a text search could misread (comments,
    CDATA, DOCTYPE, instructions, prefixed names)."""
    total = xml.count("<Plane")
    if total < MIN_CUT or xml.find("<!") >= 0 or xml.find("<?", 2) >= 0:
        return None
    # (prefixed names, "<ome:Pixels": parse finds more Pixels than this search and parses
    # the whole document; a Plane closed by "</Plane" or outside a run has a "<" the run
    # check counts, or is one this search does not see inside a Pixels element)
    kept, tables, at, seen = [], [], 0, 0
    while True:
        start = xml.find("<Pixels", at)
        if start < 0:
            break
        if xml[start + 7 : start + 8] not in (" ", "\t", "\n", "\r", ">", "/"):
            return None
        tag_end = xml.find("<", start + 1)
        if tag_end < 0 or xml[start:tag_end].rstrip().endswith("/>"):  # no children
            stop = tag_end if tag_end >= 0 else len(xml)
            kept.append(xml[at:stop])
            tables.append(Planes(0, {}))
            at = stop
            continue
        end = xml.find("</Pixels", start)
        if end < 0:
            return None
        first = xml.find("<Plane", start, end)
        if xml.find(":Plane", start, first if first >= 0 else end) >= 0:
            return None  # a prefixed Plane before the run
        if first < 0:
            tables.append(Planes(0, {}))
            kept.append(xml[at:end])
        else:
            table = _run_table(xml[first:end].rstrip())
            if table is None:
                return None
            seen += table.n
            tables.append(table)
            kept.append(xml[at:first])
        at = end
    if seen != total:
        return None  # a Plane outside a Pixels element
    kept.append(xml[at:])
    return "".join(kept), tables


def planes(pix: ET.Element) -> Planes:
    """The Plane elements of a Pixels element as columns (those :func:`parse` cut, or the
    elements themselves)."""
    table = _CUT_PLANES.get(pix)
    if table is not None:
        return table
    els = pix.findall(q("Plane"))
    columns: dict[str, list[str | None]] = {}
    for i, el in enumerate(els):
        for k, v in el.attrib.items():
            columns.setdefault(k, [None] * len(els))[i] = v
    return Planes(len(els), columns)


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


def _first_rows(keep: np.ndarray, tt: np.ndarray, n_t: int, first_wins: bool) -> np.ndarray:
    """Plane number (of ``keep``, in order) of each T, the first or the last; -1: none."""
    rows = np.full(n_t, -1, np.int64)
    order = keep if first_wins else keep[::-1]
    ts, at = np.unique(tt[order], return_index=True)
    rows[ts] = order[at]
    return rows


def plane_rows(path: str, table: Planes, n_t: int, channel: int) -> np.ndarray:
    """Plane number of each T's first plane at Z 0 and ``channel`` (-1: none); planes
    whose TheZ/TheC/TheT are not integers are left out."""
    (tz, okz), (tc, okc), (tt, okt) = (table.ints(path, a) for a in ("TheZ", "TheC", "TheT"))
    keep = np.flatnonzero(okz & okc & okt & (tz == 0) & (tc == channel) & (tt >= 0) & (tt < n_t))
    return _first_rows(keep, tt, n_t, True)


def plane_times(path: str, table: Planes, n_t: int, *, channel: int, first_wins: bool = True) -> np.ndarray | None:
    """DeltaT in s of each T's first plane at Z 0 and ``channel`` that states one; None
    unless every T has one (``first_wins=False``: the last, as xafm's own reader took)."""
    if n_t < 1 or table.n < n_t or "DeltaT" not in table:
        return None
    (tz, okz), (tc, okc), (tt, okt) = (table.ints(path, a) for a in ("TheZ", "TheC", "TheT"))
    if table._columns is not None and None in table._columns["DeltaT"]:
        has = np.array([v is not None for v in table._columns["DeltaT"]])
    else:
        has = np.ones(table.n, bool)
    keep = np.flatnonzero(okz & okc & okt & has & (tz == 0) & (tc == channel) & (tt >= 0) & (tt < n_t))
    rows = _first_rows(keep, tt, n_t, first_wins)
    if (rows < 0).any():
        return None
    return table.scaled(path, "DeltaT", rows, TIME_S, "s", "time")


def origin_of_rows(path: str, table: Planes, rows: np.ndarray) -> tuple[float, float] | None:
    """(y, x) in nm where every one of the planes ``rows`` states the same position (a
    crop's origin, or a stage position); None when one states none (or one in pixels, a
    reference frame or an unknown unit) or they differ (a stage that moved)."""
    if (rows < 0).any() or not len(rows):
        return None
    xy = []
    for axis in ("X", "Y"):
        name = "Position" + axis
        if name not in table:
            return None
        picked = table.strings(name, rows) if table._columns is not None else None
        if picked is not None and None in picked:
            return None
        units = table.uniques(name + "Unit", rows) if name + "Unit" in table else {None}
        if any((u or "reference frame") not in LENGTH_NM for u in units):
            return None  # an unknown unit: no position (as position_nm says)
        try:
            v = table.scaled(path, name, rows, LENGTH_NM, "reference frame", "length")
        except CorruptFileError:
            bad = next((p for p in table.strings(name, rows) if p is not None and not _is_float(p)), None)
            raise CorruptFileError(path, f"Plane position {bad!r} is not a number") from None
        if not np.all(np.isfinite(v)):
            return None
        xy.append(v)
    x, y = xy
    if not (np.all(x == x[0]) and np.all(y == y[0])):
        return None
    return float(y[0]), float(x[0])
