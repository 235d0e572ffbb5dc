"""Multi-file OME-TIFF sets (docs/formats.md, "Multi-file OME-TIFF sets"): an OME-XML
document whose ``TiffData`` elements name other files by ``UUID`` and ``FileName``, held in
every member TIFF, in one master TIFF, or in a ``.companion.ome`` file that binary-only
members point at (``<BinaryOnly MetadataFile=... UUID=.../>``).

Opening a set reads the document and the header of every member (to check that each exists,
carries the UUID the document gives it, and has the pages and page shape the document says);
no pixel data. The planes become ``(member path, page index)`` pairs in a
:class:`.pages.TiffPlanesArray`, which opens a member only when one of its planes is read.
Member names are resolved in the folder of the file holding the document; absolute names
and ``..`` are refused.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ...core import sources
from ...core.paths import check_openable
from ...exceptions import CorruptFileError, UnsafeFileError
from .._tiffsource import open_tiff
from . import omexml
from .names import TIFF_MAGIC
from .omexml import q
from .pages import TiffPlanesArray

#: Largest companion file read (a lying or absurd file must not be parsed whole).
MAX_COMPANION_BYTES = 64 * 2**20
#: Suffix of the companion file Bio-Formats writes beside binary-only members.
COMPANION_SUFFIX = ".companion.ome"
#: The OME root element at the start of an XML document (after a prolog and comments).
_OME_ROOT = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:[\w.-]+:)?OME[\s>/]", re.S)
#: The UUID attribute of a document's OME root element.
_ROOT_UUID = re.compile(r"<(?:[\w.-]+:)?OME\b[^>]*?\sUUID\s*=\s*[\"']([^\"']*)[\"']", re.S)
#: Planes a set may describe beyond those its TiffData cover (a lying Size must not make
#: xafm build a list of a billion missing planes).
MAX_UNCOVERED_PLANES = 2**16


def looks_like_companion(head: bytes) -> bool:
    """Whether the first bytes of a file are an XML document whose root is ``OME``."""
    return bool(_OME_ROOT.match(head)) and b"openmicroscopy.org/Schemas/OME/" in head


def is_companion_file(path: str) -> bool:
    """A file that is not a TIFF and is an OME-XML document by content or by its name."""
    try:
        with sources.open_binary(path, block_size=4096) as fh:  # a URL: its first 8 kB
            head = fh.read(4096)
    except OSError:
        return False
    if head.startswith(TIFF_MAGIC):
        return False
    return looks_like_companion(head) or path.lower().endswith(COMPANION_SUFFIX)


def member_path(origin: str, folder: str, name: str | None, what: str) -> str:
    """``name`` (a ``FileName`` or ``MetadataFile``) inside ``folder``; absolute paths,
    drive letters and ``..`` are refused (:class:`UnsafeFileError` naming the reference:
    a file reads only its own folder), ``/`` and ``\\`` both separate folders."""
    parts = re.split(r"[\\/]", name or "")
    if not name or not name.strip() or name[0] in "/\\" or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\0" in name:
        raise UnsafeFileError(origin, f"{what} {name!r} is not a file name inside the set's folder {folder} (empty or absolute names and '..' are refused)")
    return sources.join(folder, *[p for p in parts if p not in ("", ".")])


def _same(a: str, b: str) -> bool:
    if sources.is_url(a) or sources.is_url(b):
        return a == b
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def root_uuid(description: str | bytes | None) -> str | None:
    """The UUID of the OME root element in a TIFF description (None without one)."""
    if description is None:
        return None
    text = description.decode("utf-8", "replace") if isinstance(description, (bytes, bytearray)) else str(description)
    m = _ROOT_UUID.search(text[:65536])
    return m.group(1).strip() if m else None


class OmeSet:
    """The OME-XML of a set (``root``) and where its planes live.

    ``origin`` is the file the user opened (named in errors and provenance), ``xml_path``
    the file holding the document (the origin, a master TIFF or a companion), ``holder``
    that file when it is a TIFF whose own pages the document may map (``None`` for a
    companion).
    """

    def __init__(self, origin: str, xml_path: str, root: ET.Element, holder: str | None):
        self.origin, self.xml_path, self.root, self.holder = origin, xml_path, root, holder
        self.folder = sources.parent(xml_path)
        self.images = root.findall(q("Image"))
        self.members: dict[str, dict[str, Any]] = {}
        #: files known by UUID whatever their name now (the holder, the file opened)
        self.known: dict[str, str] = {}
        uuid = (root.get("UUID") or "").strip()
        if holder is not None and uuid:
            self.known[uuid] = holder
        if not self.images:
            raise CorruptFileError(origin, f"the OME-XML of the set in {xml_path} describes no image")

    # ----------------------------------------------------------------------------------
    def _member(self, path: str, name: str, want_uuid: str | None) -> dict[str, Any]:
        """Pages, first page shape and dtype of a member, after checking that it exists and
        carries ``want_uuid``; each member is opened once per set."""
        key = sources.absolute(path)
        if key in self.members:
            got = self.members[key]
        else:
            import tifffile

            check_openable(path, folder=False)  # a FIFO as a member: refused, never waited on
            if not sources.isfile(path):
                raise CorruptFileError(self.origin, f"member {name!r} of the OME-TIFF set {self.xml_path} is missing (no file {path})")
            try:
                with open_tiff(path) as tf:
                    # shape and dtype of every page (headers only): images of a set may
                    # share files, each with pages of its own type (Bio-Formats' %t sets)
                    pages = [(tuple(page.shape), None if page.dtype is None else np.dtype(page.dtype).newbyteorder("=")) for page in tf.pages]
                    got = {"path": key, "n_pages": len(pages), "pages": pages, "uuid": root_uuid(tf.pages.first.description)}
            except (tifffile.TiffFileError, ValueError, OSError, IndexError) as exc:
                raise CorruptFileError(self.origin, f"member {name!r} of the OME-TIFF set {self.xml_path} is not a readable TIFF ({path}: {exc})") from None
            self.members[key] = got
        if want_uuid and got["uuid"] and got["uuid"] != want_uuid:
            raise CorruptFileError(
                self.origin,
                f"member {name!r} of the OME-TIFF set {self.xml_path} carries UUID {got['uuid']}, the set's OME-XML expects {want_uuid} (a file of another set?)",
            )
        return got

    def _source(self, data: ET.Element) -> tuple[str, str, str | None]:
        """The file a ``TiffData`` element points at (path, name for messages, UUID)."""
        ref = data.find(q("UUID"))
        if ref is None:
            if self.holder is None:
                raise CorruptFileError(self.origin, f"a TiffData of the companion {self.xml_path} names no file (no UUID element)")
            return self.holder, sources.name(self.holder), None
        want = (ref.text or "").strip() or None
        name = ref.get("FileName")
        if want is not None and want in self.known:
            return self.known[want], sources.name(self.known[want]), want  # whatever its name now
        if name is None:
            raise CorruptFileError(self.origin, f"a TiffData of {self.xml_path} names UUID {want} without a FileName")
        if self.holder is not None and name.lower() == sources.name(self.holder).lower():
            return self.holder, name, want  # its own name (tifffile's rule too), whatever the folder
        return member_path(self.origin, self.folder, name, "member FileName"), name, want

    def references_other_files(self) -> bool:
        """Whether some TiffData points at a file other than the holder."""
        for data in self.root.iter(q("TiffData")):
            path, _, _ = self._source(data)
            if self.holder is None or not _same(path, self.holder):
                return True
        return False

    def planes(self, index: int) -> dict[str, Any]:
        """Lead axes (slowest first), their sizes, the page axes and shape, the dtype and
        ``(file, page)`` per plane (None: no TiffData covers it) of OME Image ``index``."""
        image = self.images[index]
        pix = image.find(q("Pixels"))
        if pix is None:
            raise CorruptFileError(self.origin, f"OME Image {index} of the set has no Pixels element")
        order = pix.get("DimensionOrder", "XYZCT")
        if len(order) != 5 or order[:2] != "XY" or sorted(order[2:]) != ["C", "T", "Z"]:
            raise CorruptFileError(self.origin, f"OME DimensionOrder {order!r} is not XY followed by Z, C and T")
        try:
            size = {d: int(pix.get(f"Size{d}", "1")) for d in "XYZCT"}
            spp = max(int(c.get("SamplesPerPixel", "1")) for c in pix.findall(q("Channel"))) if pix.findall(q("Channel")) else 1
        except ValueError as exc:
            raise CorruptFileError(self.origin, f"OME Pixels sizes are not integers: {exc}") from None
        if min(size.values()) < 1 or spp < 1 or size["C"] % spp:
            raise CorruptFileError(self.origin, f"OME Pixels sizes {size} (SamplesPerPixel {spp}) are not positive whole numbers of planes")
        size["C"] //= spp
        lead = order[2:][::-1]  # slowest first: "TCZ" for XYZCT
        lead_shape = tuple(size[d] for d in lead)
        n_planes = int(np.prod(lead_shape, dtype=np.int64))
        found: dict[int, tuple[str, int]] = {}
        for data in pix.findall(q("TiffData")):
            path, name, want = self._source(data)
            member = self._member(path, name, want)
            try:
                ifd = int(data.get("IFD", "0"))
                first = tuple(int(data.get(f"First{d}", "0")) for d in lead)
                count_text = data.get("PlaneCount", data.get("NumPlanes"))
                count = int(count_text) if count_text is not None else (1 if "IFD" in data.attrib else member["n_pages"] - ifd)
            except ValueError as exc:
                raise CorruptFileError(self.origin, f"a TiffData of {self.xml_path} has a value that is not an integer: {exc}") from None
            if ifd < 0 or count < 0 or ifd + count > member["n_pages"]:
                raise CorruptFileError(self.origin, f"a TiffData asks for pages {ifd}..{ifd + count - 1} of {name!r}, which has {member['n_pages']}")
            if any(not 0 <= f < n for f, n in zip(first, lead_shape)):
                raise CorruptFileError(self.origin, f"a TiffData starts at plane {dict(zip(lead, first))}, outside the image's {dict(zip(lead, lead_shape))}")
            start = int(np.ravel_multi_index(first, lead_shape))
            if start + count > n_planes:
                raise CorruptFileError(self.origin, f"a TiffData maps {count} planes from plane {start}, past the image's {n_planes}")
            for k in range(count):
                found[start + k] = (member["path"], ifd + k)  # one str per member: pickled once
                self._check_page(name, member["pages"][ifd + k], ifd + k, size, spp, pix.get("Type"))
        if not found:
            raise CorruptFileError(self.origin, f"OME Image {index} of the set in {self.xml_path} maps no planes (no TiffData)")
        if n_planes - len(found) > MAX_UNCOVERED_PLANES:
            raise CorruptFileError(self.origin, f"OME Image {index} says {n_planes} planes, its TiffData cover only {len(found)}")
        first_file, first_page = found[min(found)]
        page_shape, dtype = self.members[first_file]["pages"][first_page]  # checked: not None
        page_axes = "YX" if len(page_shape) == 2 else "YXS"
        return {
            "lead": lead, "lead_shape": lead_shape, "page_axes": page_axes, "page_shape": page_shape,
            "dtype": dtype, "planes": [found.get(i) for i in range(n_planes)],
        }  # fmt: skip

    def _check_page(self, name: str, page: tuple[tuple[int, ...], np.dtype], index: int, size: dict[str, int], spp: int, ome_type: str | None) -> None:
        """A page a TiffData maps has the image's plane shape and pixel type."""
        shape, dtype = page
        if dtype is None:
            raise CorruptFileError(self.origin, f"page {index} of member {name!r} has a pixel type tifffile cannot decode")
        want_shape = (size["Y"], size["X"]) if spp == 1 else (size["Y"], size["X"], spp)
        if shape != want_shape:
            raise CorruptFileError(self.origin, f"page {index} of member {name!r} has shape {shape}, the set's OME-XML says {want_shape}")
        have = omexml.OME_TYPES.get(dtype)
        if ome_type is not None and have is not None and have != ome_type:
            raise CorruptFileError(self.origin, f"page {index} of member {name!r} holds {dtype} pixels, the set's OME-XML says Type {ome_type!r}")

    # ----------------------------------------------------------------------------------
    def layout(self, series: int) -> dict[str, Any]:
        """What :func:`.foreign.describe_series` needs for OME Image ``series``."""
        from ...exceptions import FormatError

        if not isinstance(series, (int, np.integer)) or not 0 <= series < len(self.images):
            raise FormatError(f"{self.origin}: no OME image {series!r}; the set holds {len(self.images)} (series=0..{len(self.images) - 1})")
        p = self.planes(int(series))
        return {"axes": p["lead"] + p["page_axes"], "shape": p["lead_shape"] + p["page_shape"], "planes": p["planes"], "page_axes": p["page_axes"], "dtype": p["dtype"]}

    def describe(self) -> dict[str, Any]:
        """What the package's ``_describe`` gives for a single file: the document, and one
        lazy ``(planes, y, x)`` source per image (as xafm's own files are read)."""
        series = []
        for i in range(len(self.images)):
            p = self.planes(i)
            if p["page_axes"] != "YX":
                break  # xafm's own images are grayscale; RGB sets go to the foreign reader
            n = int(np.prod(p["lead_shape"], dtype=np.int64))
            series.append((TiffPlanesArray(self.origin, p["planes"], (n,), p["page_shape"], p["dtype"]), p["lead"] + "YX"))
        pix = self.images[0].find(q("Pixels"))
        chans = pix.findall(q("Channel")) if pix is not None else []
        channels = [{"name": c.get("Name") or f"C{j}", "index": j} for j, c in enumerate(chans)] or [{"name": "C0", "index": 0}]
        return {"root": self.root, "images": self.images, "series": series, "channels": channels, "set": self}


# --------------------------------------------------------------------------------------
# finding the document
# --------------------------------------------------------------------------------------
def _read_document(origin: str, path: str) -> tuple[ET.Element, str | None]:
    """The OME-XML root of a companion (XML) or master (TIFF) file, and the path of the
    TIFF holding it (None for XML)."""
    import tifffile

    check_openable(path, folder=False)
    if not sources.isfile(path):
        raise CorruptFileError(origin, f"the metadata file of this OME-TIFF set is missing (no file {path})")
    with sources.open_binary(path, block_size=sources.SMALL_BLOCK) as fh:
        size = sources.file_size(fh)
        head = fh.read(4)
        if head not in TIFF_MAGIC:
            if size > MAX_COMPANION_BYTES:
                raise CorruptFileError(origin, f"the companion {path} is {size} bytes; xafm parses companions up to {MAX_COMPANION_BYTES}")
            fh.seek(0)
            return omexml.parse(origin if _same(origin, path) else f"{origin} (companion {path})", fh.read()), None
    try:
        with open_tiff(path) as tf:
            xml = tf.ome_metadata if tf.is_ome else None
    except (tifffile.TiffFileError, ValueError) as exc:
        raise CorruptFileError(origin, f"the metadata file {path} of this OME-TIFF set is not a readable TIFF: {exc}") from None
    if not xml:
        raise CorruptFileError(origin, f"the metadata file {path} of this OME-TIFF set holds no OME-XML")
    return omexml.parse(origin, xml), path


def from_companion(path: str) -> OmeSet:
    """The set a ``.companion.ome`` (or other OME-XML) file describes."""
    root, _ = _read_document(path, path)
    if root.find(q("BinaryOnly")) is not None:
        raise CorruptFileError(path, "this OME-XML is itself BinaryOnly: it points at another metadata file")
    if root.find(f"{q('Image')}/{q('Pixels')}/{q('TiffData')}") is None:
        raise CorruptFileError(path, "an OME-XML document without TiffData (pixels in BinData, or none) is not the companion of an OME-TIFF set")
    return OmeSet(path, path, root, None)


def from_tiff(path: str, root: ET.Element) -> OmeSet | None:
    """The set a TIFF belongs to, from the OME-XML of its first page; None when the
    document describes this file alone."""
    binary = root.find(q("BinaryOnly"))
    if binary is None:
        if root.find(q("Image")) is None:
            return None  # no image at all: the single-file reader says so
        the_set = OmeSet(path, path, root, path)
        return the_set if the_set.references_other_files() else None
    meta = member_path(path, sources.parent(path), binary.get("MetadataFile"), "BinaryOnly MetadataFile")
    doc, holder = _read_document(path, meta)
    if doc.find(q("BinaryOnly")) is not None:
        raise CorruptFileError(path, f"its metadata file {meta} is BinaryOnly too")
    want, got = (binary.get("UUID") or "").strip(), (doc.get("UUID") or "").strip()
    if want and got and want != got:
        raise CorruptFileError(path, f"BinaryOnly names metadata UUID {want}, but {meta} carries {got} (the file of another set?)")
    the_set = OmeSet(path, meta, doc, holder)
    own_uuid = (root.get("UUID") or "").strip()
    if own_uuid:
        the_set.known[own_uuid] = path
    named = [the_set._source(d) for d in doc.iter(q("TiffData"))]
    if not any(_same(p, path) or (own_uuid and u == own_uuid) for p, _, u in named):
        raise CorruptFileError(path, f"its metadata file {meta} does not list this file among the set's members")
    return the_set
