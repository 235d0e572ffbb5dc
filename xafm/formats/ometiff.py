"""OME-TIFF (``.ome.tif``): one plane per frame, OME-XML 2016-06, streamed page by page.

xafm writes the stack as OME Image 0 (``TiffData`` IFD 0, one plane per frame,
``PhysicalSizeX/Y`` in µm as playNano does, ``TimeIncrement`` and per-plane ``DeltaT`` in
s, the channel name), then each kept layer and mask as a further OME Image of the same
size (so Bio-Formats shows them as extra series). A ``MapAnnotation`` carries the
provenance, per-frame metadata and attrs as JSON; the provenance (playNano's object) is
also in private TIFF tag 65000 and the JSON list of layer names in tag 65001.

Reading accepts OME-TIFF from any tool (docs/formats.md): every dim OME
and tifffile know is kept, named ``time``, ``z``, ``channel``, ``sample``, ... in the order
(time, z, channel, others, y, x); length-1 dims other than time are dropped; ``channel=``
selects one channel by name; physical sizes convert to nm and DeltaT to s.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import xarray as xr

from .._version import __version__
from ..core import conventions, model, provenance
from ..core.blocks import in_memory_or_frames
from ..core.contract import Format, Probe
from ..core.lazy import DimView, LazyArray, RawFramesArray, outer_index
from ..core.output import atomic_output
from ..exceptions import ChannelError, CorruptFileError, FormatError, StackError, XafmWarning
from . import _bundle

NAME = "tif"
#: The first bytes of a classic and of a BigTIFF file, either byte order.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
ANNOTATION_NS = "xafm/stack"
TAG_PROVENANCE = 65000
TAG_LAYERS = 65001
#: Stay clear of the 4 GiB classic-TIFF limit (headers, IFDs and the XML need room too).
BIGTIFF_THRESHOLD = 2**32 - 2**25

OME_TYPES = {
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
    np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16", np.dtype(np.uint32): "uint32",
    np.dtype(np.float32): "float", np.dtype(np.float64): "double",
}
_FROM_OME_TYPES = {v: k for k, v in OME_TYPES.items()}
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
# writing
# --------------------------------------------------------------------------------------
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """Drop what XML 1.0 cannot hold (control characters, non-characters); display only."""
    return _XML_INVALID.sub("\ufffd", text)


def _fmt(v: float) -> str:
    return repr(float(v))


def _pixels_xml(index: int, name: str, dtype: np.dtype, shape: tuple[int, int, int], dy: float, dx: float, times: np.ndarray, first_ifd: int, planes: bool = True) -> str:
    n_t, n_y, n_x = shape
    inc = float(np.median(np.diff(times))) if n_t > 1 else None
    attrs = (
        f'ID="Pixels:{index}" DimensionOrder="XYCZT" Type="{OME_TYPES[dtype]}" '
        f'SizeX="{n_x}" SizeY="{n_y}" SizeZ="1" SizeC="1" SizeT="{n_t}" BigEndian="false" '
        f'PhysicalSizeX="{_fmt(dx / 1e3)}" PhysicalSizeXUnit="&#181;m" '
        f'PhysicalSizeY="{_fmt(dy / 1e3)}" PhysicalSizeYUnit="&#181;m"'
    )
    if inc is not None and inc > 0:
        attrs += f' TimeIncrement="{_fmt(inc)}" TimeIncrementUnit="s"'
    plane_xml = "".join(
        f'<Plane TheZ="0" TheC="0" TheT="{t}" DeltaT="{_fmt(times[t])}" DeltaTUnit="s"/>' for t in range(n_t)
    ) if planes else ""
    return (
        f"<Pixels {attrs}>"
        f'<Channel ID="Channel:{index}:0" Name={quoteattr(_xml_safe(name))} SamplesPerPixel="1"><LightPath/></Channel>'
        f'<TiffData IFD="{first_ifd}" PlaneCount="{n_t}"/>'
        f"{plane_xml}</Pixels>"
    )


def _ome_xml(images: list[tuple[str, str, np.dtype]], shape: tuple[int, int, int], dy: float, dx: float, times: np.ndarray, annotation: dict[str, str]) -> str:
    parts = []
    for i, (image_name, channel, dtype) in enumerate(images):
        parts.append(
            f'<Image ID="Image:{i}" Name={quoteattr(_xml_safe(image_name))}>'
            # Plane/DeltaT on the stack's image only: playNano collects every Plane in the
            # document as its frame times
            + _pixels_xml(i, channel, dtype, shape, dy, dx, times, i * shape[0], planes=i == 0)
            + '<AnnotationRef ID="Annotation:0"/></Image>'
        )
    values = "".join(f"<M K={quoteattr(k)}>{escape(_xml_safe(v))}</M>" for k, v in annotation.items())
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{OME_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{OME_NS} {OME_NS}/ome.xsd" '
        f'UUID="urn:uuid:{uuid.uuid4()}" Creator={quoteattr("xafm " + __version__)}>'
        + "".join(parts)
        + f'<StructuredAnnotations><MapAnnotation ID="Annotation:0" Namespace="{ANNOTATION_NS}">'
        f"<Value>{values}</Value></MapAnnotation></StructuredAnnotations></OME>"
    )
    # TIFF's ImageDescription is ASCII: non-ASCII becomes XML character references.
    return xml.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _ascii_json(text: str) -> str:
    return json.dumps(json.loads(text), ensure_ascii=True)


def _tiff_dtype(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype == bool:
        return np.dtype(np.uint8)
    if dtype in OME_TYPES:
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    raise StackError(f"OME-TIFF cannot store dtype {dtype}")


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    raw: bool = False,
    overwrite: bool = False,
    bigtiff: bool | None = None,
) -> Path:
    """Write the stack as OME-TIFF, one page per frame, streamed; BigTIFF when needed."""
    import tifffile

    path = Path(path)
    content = _bundle.bundle_content(da, raw=raw, fmt=NAME, path=path)
    dy, dx = model.pixel_size_nm(da)
    fm = json.loads(content.frame_metadata_json)
    sizes = [f.get(_bundle.FRAME_PIXEL_SIZE_KEY) for f in fm]
    numeric = np.array([s if isinstance(s, (int, float)) else np.nan for s in sizes], dtype=np.float64)
    if not np.all(np.isclose(numeric, dx, rtol=1e-6)):
        bad = [s for s, ok in zip(sizes, np.isclose(numeric, dx, rtol=1e-6)) if not ok]
        raise StackError(
            f"frames have different pixel sizes ({sorted(set(map(str, bad)))[:5]} nm vs {dx} nm); "
            "OME-TIFF holds one pixel size per image: resample or split the stack first"
        )
    series: list[tuple[str, str, xr.DataArray, np.dtype]] = [
        (content.channel, content.channel, content.data, _tiff_dtype(content.data.dtype))
    ]
    series += [(f"layer:{conventions.decode_name(k)}", content.channel, v, _tiff_dtype(v.dtype)) for k, v in content.layers.items()]
    series += [(f"mask:{conventions.decode_name(k)}", "mask", v, np.dtype(np.uint8)) for k, v in content.masks.items()]
    shape = tuple(content.data.shape)
    # JSON with \\uXXXX escapes: exact names and values survive the ASCII-only XML
    annotation = {
        "provenance_json": _ascii_json(content.provenance_json),
        "frame_metadata_json": _ascii_json(content.frame_metadata_json),
        "xafm_attrs_json": _ascii_json(content.attrs_json),
        "channel_json": json.dumps(content.channel),
        "images_json": json.dumps([["data", content.channel]] + [["layer", conventions.decode_name(k)] for k in content.layers] + [["mask", conventions.decode_name(k)] for k in content.masks]),
    }
    if content.state_backups_json:
        annotation["state_backups_json"] = content.state_backups_json
    xml = _ome_xml([(n, c, t) for n, c, _, t in series], shape, dy, dx, content.times, annotation)
    total = sum(int(np.prod(shape)) * t.itemsize for *_, t in series) + len(xml) + 64 * shape[0] * len(series)
    if bigtiff is None:
        bigtiff = total > BIGTIFF_THRESHOLD
    layer_names = json.dumps([conventions.decode_name(k) for k in content.layers], ensure_ascii=False).encode("utf-8")
    extratags = [
        (TAG_PROVENANCE, 7, None, content.provenance_json.encode("utf-8"), True),
        (TAG_LAYERS, 7, None, layer_names, True),
    ]
    with atomic_output(path, overwrite=overwrite) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff, byteorder="<") as tw:
        for i, (_, _, obj, dtype) in enumerate(series):
            tw.write(
                in_memory_or_frames(obj, dtype),
                shape=shape,
                dtype=dtype,
                photometric="minisblack",
                description=xml if i == 0 else None,
                metadata=None,
                extratags=extratags if i == 0 else None,
                software=f"xafm {__version__}",
            )
    return path


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
class TiffPagesArray(LazyArray):
    """Pages of one series, read with tifffile (for compressed or scattered pages)."""

    def __init__(self, path: str, series: int, page_indices: np.ndarray, frame_shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.series = path, series
        self.page_indices = np.asarray(page_indices).reshape(-1)
        self.lead_shape = tuple(np.asarray(page_indices).shape)
        self.shape = self.lead_shape + tuple(frame_shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def _read(self, key: tuple) -> np.ndarray:
        import tifffile

        n_lead = len(self.lead_shape)
        grid = outer_index(np.arange(self.page_indices.size).reshape(self.lead_shape), key[:n_lead])
        flat = np.asarray(grid).reshape(-1)
        with tifffile.TiffFile(self.path) as tf:
            pages = tf.series[self.series].pages
            frames = [pages[int(self.page_indices[i])].asarray() for i in flat]
        arr = np.stack(frames).reshape(np.shape(grid) + self.shape[n_lead:]) if frames else np.empty(np.shape(grid) + self.shape[n_lead:], self.dtype)
        return np.array(outer_index(arr, (slice(None),) * np.ndim(grid) + tuple(key[n_lead:])), dtype=self.dtype)


def _q(tag: str) -> str:
    return f"{{{OME_NS}}}{tag}"


def _parse_ome(path: str, xml: str) -> ET.Element:
    try:
        root = ET.fromstring(xml.encode("utf-8") if isinstance(xml, str) else xml)
    except ET.ParseError as exc:
        raise CorruptFileError(path, f"OME-XML does not parse: {exc}") from None
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    if ns != OME_NS:
        # other schema versions share the element names we use; rewrite the namespace
        for el in root.iter():
            if el.tag.startswith("{"):
                el.tag = _q(el.tag.split("}", 1)[1])
    return root


def _length_nm(path: str, value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    factor = LENGTH_NM.get(unit or "µm", "?")
    if factor == "?":
        raise CorruptFileError(path, f"unknown OME length unit {unit!r}")
    if factor is None:
        return None
    v = float(value) * factor
    return v if np.isfinite(v) and v > 0 else None


def _time_s(path: str, value: str | None, unit: str | None) -> float | None:
    if value is None:
        return None
    factor = TIME_S.get(unit or "s")
    if factor is None:
        raise CorruptFileError(path, f"unknown OME time unit {unit!r}")
    return float(value) * factor


def _annotation(root: ET.Element) -> dict[str, str]:
    for ann in root.iter(_q("MapAnnotation")):
        if ann.get("Namespace") == ANNOTATION_NS:
            return {m.get("K"): (m.text or "") for m in ann.iter(_q("M"))}
    return {}


def _series_source(tf: Any, path: str, index: int) -> tuple[LazyArray, str]:
    s = tf.series[index]
    dtype = np.dtype(s.dtype)
    axes = s.axes
    if s.dataoffset is not None and not getattr(s.keyframe, "is_subsampled", False):
        frame_shape = s.shape[-2:]
        n = int(np.prod(s.shape[:-2])) if len(s.shape) > 2 else 1
        raw = dtype.newbyteorder(tf.byteorder)
        arr: LazyArray = RawFramesArray(path, offset=s.dataoffset, n_frames=n, frame_shape=frame_shape, raw_dtype=raw)
    else:
        n = int(np.prod(s.shape[:-2])) if len(s.shape) > 2 else 1
        arr = TiffPagesArray(path, index, np.arange(n), s.shape[-2:], dtype)
    return arr, axes


class _Reshaped(LazyArray):
    """A (frames, y, x) source seen with several leading dims (e.g. C, Z, T)."""

    def __init__(self, base: LazyArray, lead: tuple[int, ...], order: tuple[int, ...]):
        self.base, self.lead, self.order = base, lead, order
        self.path = base.path
        self.dtype = base.dtype
        self.shape = tuple(lead[i] for i in order) + tuple(base.shape[1:])

    def _read(self, key: tuple) -> np.ndarray:
        n = len(self.lead)
        grid = np.arange(int(np.prod(self.lead))).reshape(self.lead).transpose(self.order)
        sel = outer_index(grid, key[:n])
        flat = np.asarray(sel).reshape(-1)
        if flat.size == 0:
            return np.empty(np.shape(sel) + outer_index(np.empty(self.base.shape[1:], np.uint8), key[n:]).shape, self.dtype)
        if flat.size == 1 or np.all(np.diff(flat) == 1):
            # consecutive planes (the usual time slice): one read of a slice, one copy
            got = self.base._read((slice(int(flat[0]), int(flat[-1]) + 1),) + tuple(key[n:]))
            return got.reshape(np.shape(sel) + got.shape[1:])
        order = np.argsort(flat)
        got = self.base._read((flat[order],) + tuple(key[n:]))
        out = np.empty_like(got)
        out[order] = got
        return out.reshape(np.shape(sel) + got.shape[1:])


def identify(probe: Probe) -> bool:
    """A TIFF whose first page's description is OME-XML."""
    if not probe.head.startswith(TIFF_MAGIC):
        return False
    import tifffile

    with tifffile.TiffFile(probe.path) as tf:
        return bool(tf.is_ome)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    info = _describe(path)
    if not _annotation(info["root"]):  # another tool's file: as read_foreign names them
        return list(_foreign_layout(path, info["images"], 0)["names"])
    return [c["name"] for c in info["channels"]]


def _describe(path: str) -> dict[str, Any]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.is_ome or not tf.ome_metadata:
                raise CorruptFileError(path, "TIFF has no OME-XML: not an OME-TIFF")
            root = _parse_ome(path, tf.ome_metadata)
            images = root.findall(_q("Image"))
            if not images or len(tf.series) < 1:
                raise CorruptFileError(path, "OME-XML describes no image")
            info: dict[str, Any] = {"root": root, "images": images, "series": []}
            for i in range(min(len(images), len(tf.series))):
                info["series"].append(_series_source(tf, path, i))
            pix = images[0].find(_q("Pixels"))
            info["channels"] = [
                {"name": c.get("Name") or f"C{j}", "index": j} for j, c in enumerate(pix.findall(_q("Channel")))
            ] or [{"name": "C0", "index": 0}]
            return info
    except (tifffile.TiffFileError, ValueError, struct_error()) as exc:
        raise CorruptFileError(path, f"not a readable TIFF: {exc}") from None


def struct_error() -> type:
    import struct

    return struct.error


def read(path: str | os.PathLike[str], *, channel: str | None = None, series: int = 0) -> xr.Dataset:
    """An xafm OME-TIFF as the stack it was written from; any other OME-TIFF with its dims.

    ``series`` picks the OME Image of another tool's file (xafm's own files use Image 0).
    """
    path = os.fspath(path)
    info = _describe(path)
    root, images = info["root"], info["images"]
    ann = _annotation(root)
    if not ann:  # another tool's OME-TIFF
        return _read_foreign(path, root, images, channel=channel, series=series)
    pix = images[0].find(_q("Pixels"))
    sizes = {d: int(pix.get(f"Size{d}", "1")) for d in "TZC"}
    order = pix.get("DimensionOrder", "XYZCT")[2:]  # fastest first, e.g. "ZCT"
    base, axes = info["series"][0]
    n_planes = int(np.prod(base.shape[:-2])) if base.ndim > 2 else 1
    if n_planes != sizes["T"] * sizes["Z"] * sizes["C"]:
        raise CorruptFileError(path, f"OME-XML says {sizes} planes, the TIFF series holds {n_planes}")
    base = base if base.ndim == 3 else RawOrPages3D(base)
    dx = _length_nm(path, pix.get("PhysicalSizeX"), pix.get("PhysicalSizeXUnit"))
    dy = _length_nm(path, pix.get("PhysicalSizeY"), pix.get("PhysicalSizeYUnit")) or dx
    dx = dx or dy or 1.0
    dy = dy or dx
    # planes come slowest-last in DimensionOrder; lead dims in (T, Z, C) order
    lead_slow_first = tuple(reversed(order))  # e.g. ("T", "C", "Z")
    lead_sizes = tuple(sizes[d] for d in lead_slow_first)
    want = ("T", "Z", "C")
    perm = tuple(lead_slow_first.index(d) for d in want)
    full = _Reshaped(base, lead_sizes, perm)  # dims T, Z, C, Y, X

    names = [c["name"] for c in info["channels"]]
    if channel is not None and channel not in names:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")

    # DeltaT of the planes of the first Z/C, in s
    deltas: dict[int, float] = {}
    for plane in pix.findall(_q("Plane")):
        if int(plane.get("TheZ", 0)) == 0 and int(plane.get("TheC", 0)) == 0 and plane.get("DeltaT") is not None:
            deltas[int(plane.get("TheT", 0))] = _time_s(path, plane.get("DeltaT"), plane.get("DeltaTUnit"))
    if len(deltas) == sizes["T"]:
        times = np.array([deltas[t] for t in range(sizes["T"])])
    else:
        inc = _time_s(path, pix.get("TimeIncrement"), pix.get("TimeIncrementUnit")) or 1.0
        times = np.arange(sizes["T"]) * (inc if inc > 0 else 1.0)

    # an xafm file: one image per layer/mask
    return _read_xafm(path, info, ann, full, times, (dy, dx))


class RawOrPages3D(LazyArray):
    """A 2-D series (one plane) seen as one frame."""

    def __init__(self, base: LazyArray):
        self.base, self.path, self.dtype = base, base.path, base.dtype
        self.shape = (1,) + tuple(base.shape[-2:])

    def _read(self, key: tuple) -> np.ndarray:
        return self.base._read(key)


def _read_xafm(path: str, info: dict, ann: dict[str, str], full: _Reshaped, times: np.ndarray, pixel: tuple[float, float]) -> xr.Dataset:
    data = _Squeezed(full)
    layers: dict[str, Any] = {}
    masks: dict[str, Any] = {}
    try:
        kinds = json.loads(ann.get("images_json") or "[]")
    except ValueError:
        raise CorruptFileError(path, "images_json annotation is not valid JSON") from None
    for i, entry in enumerate(kinds[1:], start=1):
        if i >= len(info["series"]) or not (isinstance(entry, list) and len(entry) == 2):
            break
        kind, name = str(entry[0]), str(entry[1])
        src, _ = info["series"][i]
        src = src if src.ndim == 3 else RawOrPages3D(src)
        if kind == "layer":
            layers[conventions.encode_name(name)] = src
        elif kind == "mask":
            src.dtype = np.dtype(bool)
            masks[conventions.encode_name(name)] = src
    attrs = json.loads(ann.get("xafm_attrs_json") or "{}")
    attrs["pixel_size_y_nm"] = pixel[0]
    return _bundle.assemble_bundle(
        path,
        NAME,
        channel_asked=None,  # read() checked it against the OME channel names
        data=data,
        layers=layers,
        masks=masks,
        timestamps=times,
        frame_metadata_json=ann.get("frame_metadata_json"),
        provenance_json=ann.get("provenance_json"),
        state_backups_json=ann.get("state_backups_json"),
        pixel_size_nm=pixel[1],
        channel=json.loads(ann["channel_json"]) if ann.get("channel_json") else None,
        attrs_json=json.dumps(attrs),
        reader=__name__,
    )


class _Squeezed(LazyArray):
    """T, 1, 1, Y, X seen as T, Y, X."""

    def __init__(self, full: _Reshaped):
        self.full, self.path, self.dtype = full, full.path, full.dtype
        self.shape = (full.shape[0],) + tuple(full.shape[3:])

    def _read(self, key: tuple) -> np.ndarray:
        return self.full._read((key[0], 0, 0) + tuple(key[1:]))


# --------------------------------------------------------------------------------------
# other tools' OME-TIFF (and the labeled-dataset helper shared with the nd2 reader)
# --------------------------------------------------------------------------------------
#: xafm dim names for tifffile's axis letters (the modulo letters follow tifffile).
AXIS_NAMES = {
    "T": "time", "Z": "z", "C": "channel", "S": "sample", "Y": "y", "X": "x", "A": "angle",
    "P": "phase", "R": "tile", "H": "lifetime", "E": "lambda", "L": "exposure", "V": "event",
    "Q": "other", "M": "mosaic", "I": "sequence",
}


class TiffPlanesArray(LazyArray):
    """The planes (pages) of one OME series, decoded by tifffile; files opened per read.

    ``planes`` holds ``(file, page index)`` per plane in C order over ``lead_shape``
    (``None`` for a plane the file lacks: read as zeros, as Bio-Formats does).
    """

    def __init__(self, path: str, planes: list[tuple[str, int] | None], lead_shape: tuple[int, ...], page_shape: tuple[int, ...], dtype: Any):
        self.path = path
        self.planes = planes
        self.lead_shape = tuple(int(n) for n in lead_shape)
        self.page_shape = tuple(int(n) for n in page_shape)
        self.shape = self.lead_shape + self.page_shape
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def _read(self, key: tuple) -> np.ndarray:
        import tifffile

        n = len(self.lead_shape)
        grid = outer_index(np.arange(len(self.planes)).reshape(self.lead_shape), key[:n])
        flat = np.asarray(grid).reshape(-1)
        page_key = tuple(key[n:])
        page_out = outer_index(np.empty(self.page_shape, np.uint8), page_key).shape
        out = np.zeros((flat.size,) + page_out, self.dtype)
        by_file: dict[str, list[tuple[int, int]]] = {}
        for i, plane in enumerate(flat):
            src = self.planes[int(plane)]
            if src is not None:
                by_file.setdefault(src[0], []).append((i, src[1]))
        for file, items in by_file.items():
            with tifffile.TiffFile(file) as tf:
                for i, index in items:
                    page = tf.pages[index]
                    _check_page(file, page, tf.filehandle.size, self.page_shape, self.dtype)
                    arr = page.asarray()
                    out[i] = outer_index(np.asarray(arr).reshape(self.page_shape), page_key)
        return out.reshape(np.shape(grid) + page_out)


#: deflate/LZW/zstd rarely beat ~1000:1; a page claiming more is a lying header.
MAX_COMPRESSION_RATIO = 1100


def _check_page(path: str, page: Any, file_size: int, page_shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a page whose strips/tiles lie outside the file or whose size is implausible,
    before tifffile allocates buffers from those numbers."""
    offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
    if len(offsets) != len(counts):
        raise CorruptFileError(path, f"page {page.index}: {len(offsets)} strip offsets but {len(counts)} byte counts")
    stored = 0
    for o, c in zip(offsets, counts):
        if o < 0 or c < 0 or o + c > file_size:
            raise CorruptFileError(path, f"page {page.index}: a strip/tile at byte {o} of {c} bytes lies outside the {file_size}-byte file")
        stored += c
    nbytes = int(np.prod(page.shape, dtype=np.int64)) * max(np.dtype(page.dtype).itemsize if page.dtype is not None else 1, 1)
    if int(np.prod(page.shape, dtype=np.int64)) != int(np.prod(page_shape, dtype=np.int64)):
        raise CorruptFileError(path, f"page {page.index} has shape {page.shape}, the series expects {page_shape}")
    if page.compression == 1 and nbytes > file_size or nbytes > stored * MAX_COMPRESSION_RATIO + 2**16:
        raise CorruptFileError(path, f"page {page.index} decodes to {nbytes} bytes from {stored} stored bytes")


def _series_planes(path: str, s: Any) -> tuple[str, tuple[int, ...], list[tuple[str, int] | None], str]:
    """Unsqueezed axes/shape of a tifffile series and where each plane lives."""
    axes, shape = s.get_axes(False), tuple(int(n) for n in s.get_shape(False))
    k = len(axes)
    while k > 0 and axes[k - 1] in "YXS":
        k -= 1
    page_axes = axes[k:]
    if "Y" not in page_axes or "X" not in page_axes:
        raise CorruptFileError(path, f"OME series axes {axes!r} have no Y/X image plane")
    planes: list[tuple[str, int] | None] = []
    for page in s.pages:
        if page is None:
            planes.append(None)
            continue
        index = page.index
        if not isinstance(index, (int, np.integer)):
            raise CorruptFileError(path, f"OME plane in a sub-IFD ({index}) is not supported")
        planes.append((os.path.abspath(page.parent.filehandle.path), int(index)))
    n_lead = int(np.prod(shape[:k], dtype=np.int64))
    if n_lead != len(planes):
        raise CorruptFileError(path, f"OME series {axes}{shape} needs {n_lead} planes, the file has {len(planes)}")
    return axes, shape, planes, page_axes


#: Largest provenance tag xafm parses (a lying count must not make it read gigabytes).
MAX_TAG_BYTES = 64 * 2**20


def _tag_provenance(path: str) -> tuple[list[dict], dict]:
    """playNano's provenance from private tag 65000 (its OME-TIFFs carry nothing else)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            tag = tf.pages[0].tags.get(TAG_PROVENANCE)
            if tag is None or tag.count > MAX_TAG_BYTES:
                return [], {}
            raw = tag.value
        obj = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else str(raw))
    except (ValueError, UnicodeDecodeError, tifffile.TiffFileError):
        return [], {}
    return provenance.from_playnano(obj) if isinstance(obj, dict) else ([], {})


def _epoch_ms(text: str | None) -> float | None:
    """ms since the Unix epoch for an ISO 8601 date with a time zone (None without one)."""
    import datetime as dt

    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() * 1e3 if when.tzinfo is not None else None


def _foreign_layout(path: str, images: list[ET.Element], series: int) -> dict[str, Any]:
    """Axes, shape and planes of an OME series (tifffile's reading of the OME-XML)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not isinstance(series, (int, np.integer)) or not 0 <= series < len(tf.series):
                raise FormatError(f"{path}: no OME image {series!r}; the file holds {len(tf.series)} (series=0..{len(tf.series) - 1})")
            s = tf.series[series]
            axes, shape, planes, page_axes = _series_planes(path, s)
            dtype = np.dtype(s.dtype)
    except (tifffile.TiffFileError, ValueError, struct_error()) as exc:
        if isinstance(exc, FormatError):
            raise
        raise CorruptFileError(path, f"not a readable OME-TIFF: {exc}") from None
    if dtype.kind not in "iuf":
        raise CorruptFileError(path, f"OME pixel type {dtype} is not a real number type")
    image = images[series] if series < len(images) else images[0]
    pix = image.find(_q("Pixels"))
    if pix is None:
        raise CorruptFileError(path, "OME Image has no Pixels element")
    dims = tuple(AXIS_NAMES.get(a, f"dim_{a.lower()}") for a in axes)
    sizes = dict(zip(dims, shape))
    # channel names: OME Channel elements, padded to the C size
    n_c = sizes.get("channel", 1)
    chan_els = pix.findall(_q("Channel"))
    names = [(c.get("Name") or f"C{j}") for j, c in enumerate(chan_els[:n_c])]
    names += [f"C{j}" for j in range(len(names), n_c)]
    return {"axes": axes, "shape": shape, "planes": planes, "page_axes": page_axes, "dtype": dtype, "image": image,
            "pix": pix, "dims": dims, "sizes": sizes, "names": names, "chan_els": chan_els}


def _read_foreign(path: str, root: ET.Element, images: list[ET.Element], *, channel: str | None, series: int) -> xr.Dataset:
    lay = _foreign_layout(path, images, series)
    axes, shape, planes, page_axes, dtype = lay["axes"], lay["shape"], lay["planes"], lay["page_axes"], lay["dtype"]
    image, pix, names, chan_els = lay["image"], lay["pix"], lay["names"], lay["chan_els"]
    base_dims, sizes = lay["dims"], lay["sizes"]
    if any(p is None for p in planes):
        warnings.warn(f"{path}: {sum(p is None for p in planes)} OME planes are missing; read as zeros", XafmWarning, stacklevel=3)
    n_lead = len(axes) - len(page_axes)
    base = TiffPlanesArray(path, planes, shape[:n_lead], shape[n_lead:], dtype)
    n_c = sizes.get("channel", 1)
    fixed: dict[str, int] = {}
    if channel is not None:
        if channel not in names:
            raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
        c_index: int | None = names.index(channel)
    else:
        c_index = 0 if n_c == 1 else None
    if "channel" in sizes and c_index is not None:
        fixed["channel"] = c_index
    for d, n in sizes.items():
        if n == 1 and d not in ("time", "y", "x", "channel"):
            fixed[d] = 0
    out_dims = model.dim_order([d for d in base_dims if d not in fixed] + ([] if "time" in base_dims else ["time"]))
    data = DimView(base, base_dims, tuple(out_dims), fixed)

    # physical sizes (nm); without them one pixel is 1 nm, with a warning
    dx = _length_nm(path, pix.get("PhysicalSizeX"), pix.get("PhysicalSizeXUnit"))
    dy = _length_nm(path, pix.get("PhysicalSizeY"), pix.get("PhysicalSizeYUnit"))
    if dx is None and dy is None:
        warnings.warn(f"{path}: OME-XML gives no physical pixel size; using 1 nm per pixel", XafmWarning, stacklevel=3)
    dx = dx or dy or 1.0
    dy = dy or dx

    # times: DeltaT of the first plane of each T (at the selected channel), else TimeIncrement
    n_t = sizes.get("time", 1)
    want_c = c_index or 0
    deltas: dict[int, float] = {}
    for plane in pix.findall(_q("Plane")):
        try:
            tz, tc, tt = (int(plane.get(a, 0)) for a in ("TheZ", "TheC", "TheT"))
        except ValueError:
            continue
        if tz == 0 and tc == want_c and 0 <= tt < n_t and plane.get("DeltaT") is not None and tt not in deltas:
            deltas[tt] = _time_s(path, plane.get("DeltaT"), plane.get("DeltaTUnit"))
    recorded = None
    if n_t >= 1 and len(deltas) == n_t:
        recorded = np.array([deltas[t] for t in range(n_t)], dtype=np.float64)
        times, _ = model.times_or_index(path, recorded - recorded[0], n_t)
    else:
        inc = _time_s(path, pix.get("TimeIncrement"), pix.get("TimeIncrementUnit"))
        times = np.arange(n_t, dtype=np.float64) * (inc if inc and np.isfinite(inc) and inc > 0 else 1.0)
    start_ms = _epoch_ms(image.findtext(_q("AcquisitionDate")))
    frame_metadata = None
    if recorded is not None or start_ms is not None:
        frame_metadata = [
            {
                **({"delta_t_s": float(recorded[i])} if recorded is not None else {}),
                **({"start_epoch_ms": start_ms + 1e3 * float(recorded[i] if recorded is not None else times[i])} if start_ms is not None else {}),
            }
            for i in range(n_t)
        ]

    coords: dict[str, xr.Variable] = {}
    if "channel" in out_dims:
        coords["channel"] = xr.Variable(("channel",), np.array(names))
    if "z" in out_dims:
        dz = _length_nm(path, pix.get("PhysicalSizeZ"), pix.get("PhysicalSizeZUnit"))
        coords["z"] = (
            xr.Variable(("z",), np.arange(sizes["z"], dtype=np.float64) * dz, {"units": "nm"})
            if dz
            else xr.Variable(("z",), np.arange(sizes["z"]), {"long_name": "z index"})
        )
    for d in out_dims:
        if d not in coords and d not in conventions.DIMS:
            coords[d] = xr.Variable((d,), np.arange(sizes[d]))
    acquisition = {
        "format": "OME-TIFF",
        "creator": root.get("Creator"),
        "image": series,
        "image_name": image.get("Name"),
        "acquisition_date": image.findtext(_q("AcquisitionDate")),
        "pixels": dict(pix.attrib),
        "channels": [dict(c.attrib) for c in chan_els],
        "tiff_axes": axes,
        "tiff_shape": list(shape),
    }
    if "channel" in out_dims:
        name = conventions.MULTI_CHANNEL_NAME
    else:
        name = conventions.safe_channel(names[c_index or 0])
    earlier, pn_acquisition = _tag_provenance(path)
    if pn_acquisition:
        acquisition["playnano_acquisition"] = pn_acquisition
    recs = earlier + [provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=channel, series=int(series))]
    return model.assemble(
        data,
        dims=tuple(out_dims),
        channel=name,
        units="",
        pixel_size_nm=(dy, dx),
        times=times,
        coords=coords,
        frame_metadata=frame_metadata,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=recs,
    )


FORMAT = Format(
    name=NAME,
    description="OME-TIFF",
    suffixes=(".ome.tif", ".ome.tiff"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
