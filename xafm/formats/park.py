"""Park Systems TIFF (``.tif``, ``.tiff``; SmartScan, XEI): docs/formats.md, "Park Systems
TIFF".

The TIFF page of a Park file is an 8-bit thumbnail for image viewers; the measurement is in
Park's private tags of the first IFD: 50432 the magic number ``0x0E031301``, 50433 the
version (1 or 2), 50434 the data (little-endian int16, int32 or float32, ``ny`` rows of
``nx`` values, the bottom row first), 50435 a binary header (little-endian, UTF-16 texts)
with the size, scan size, gain, scale, offset and unit; spectroscopy files add 50438 (the
spectroscopy header) and 50439 (the curves). Values are ``gain * (raw * scale + offset)``
in the header's unit (lengths into nm). The tags are read with tifffile, which leaves the
data tag's value unread; the data are read lazily from the tag's file offset.

A file whose header says it is a line profile, or spectroscopy without an image of the
scan area, is refused with :class:`~xafm.exceptions.NotAnImageError`; spectroscopy files
that carry the image scanned before the curves (``park_forcecurve.tiff``) open as that
image.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import struct
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import HEAD_BYTES, Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import ChannelError, CorruptFileError, NotAnImageError, XafmWarning
from ._tiffsource import open_tiff
from ._units import length_unit_nm
from .ometiff.names import TIFF_MAGIC
from .tiff import first_ifd_codes

NAME = "park"
MAGIC = 0x0E031301
VERSIONS = {0x01000001: 1, 0x01000002: 2}
TAG_MAGIC, TAG_VERSION, TAG_DATA, TAG_HEADER, TAG_COMMENTS = 50432, 50433, 50434, 50435, 50436
TAG_SPECT_HEADER, TAG_SPECT_DATA = 50438, 50439
IMAGE_2D, LINE_PROFILE, SPECTROSCOPY = 0, 1, 2
IMAGE_TYPES = {IMAGE_2D: "2-D mapped image", LINE_PROFILE: "line profile", SPECTROSCOPY: "spectroscopy"}
#: The header's data type code (version 2; version 1 is always int16) -> numpy dtype.
DATA_TYPES = {0: "<i2", 1: "<i4", 2: "<f4"}
MAX_PIXELS = 2**15

#: The image header (tag 50435): (offset, name, kind); kind is a struct code or ``"u<n>"``
#: for a UTF-16LE text of n characters. Version 1 ends at byte 284.
HEADER_V1: tuple[tuple[int, str, str], ...] = (
    (0, "image_type", "I"),
    (4, "source_name", "u32"),
    (68, "image_mode", "u8"),
    (84, "lpf_strength", "d"),
    (92, "auto_flatten", "i"),
    (96, "ac_track", "i"),
    (100, "x_pixels", "I"),
    (104, "y_pixels", "I"),
    (108, "scan_angle_deg", "d"),
    (116, "sine_scan", "i"),
    (120, "overscan_rate", "d"),
    (128, "forward", "i"),
    (132, "scan_up", "i"),
    (136, "swap_xy", "i"),
    (140, "x_scan_size_um", "d"),
    (148, "y_scan_size_um", "d"),
    (156, "x_offset_um", "d"),
    (164, "y_offset_um", "d"),
    (172, "scan_rate_hz", "d"),
    (180, "set_point", "d"),
    (188, "set_point_unit", "u8"),
    (204, "tip_bias_v", "d"),
    (212, "sample_bias_v", "d"),
    (220, "data_gain", "d"),
    (228, "z_scale", "d"),
    (236, "z_offset", "d"),
    (244, "z_unit", "u8"),
    (260, "data_min", "i"),
    (264, "data_max", "i"),
    (268, "data_avg", "i"),
    (272, "compression", "i"),
    (276, "log_scale", "i"),
    (280, "squared", "i"),
)
#: Version 2 continues; fields past the end of a shorter header are left out.
HEADER_V2: tuple[tuple[int, str, str], ...] = (
    (284, "z_servo_gain", "d"),
    (292, "z_scanner_range", "d"),
    (300, "xy_voltage_mode", "u8"),
    (316, "z_voltage_mode", "u8"),
    (332, "xy_servo_mode", "u8"),
    (348, "data_type", "I"),
    (352, "pdd_regions_x", "i"),
    (356, "pdd_regions_y", "i"),
    (360, "ncm_amplitude", "d"),
    (368, "ncm_frequency_hz", "d"),
    (376, "head_rotation_deg", "d"),
    (384, "cantilever_name", "u16"),
    (416, "ncm_drive_percent", "d"),
    (424, "intensity_factor", "d"),
    (432, "head_tilt_deg", "d"),
    (440, "log_amp_offset", "d"),
    (448, "tip_sample_distance", "d"),
    (456, "z_servo_nc_gain", "d"),
    (464, "z_servo_p_gain", "d"),
    (472, "z_servo_i_gain", "d"),
    (480, "tapping", "i"),
    (484, "data_min_v2", "d"),
    (492, "data_max_v2", "d"),
    (500, "stage_x", "d"),
    (508, "stage_y", "d"),
    (516, "sample_x", "d"),
    (524, "sample_y", "d"),
    (532, "image_quality_index", "d"),
)
#: The header must reach the data type (version 2) or the last version-1 field.
HEADER_NEEDED = {1: 284, 2: 352}
#: The spectroscopy header (tag 50438): 8 channel records of 96 bytes (name u32, unit u8,
#: gain d, is-x-axis i, is-y-axis i), then these.
SPECT_CHANNELS, SPECT_CHANNEL_BYTES = 8, 96
SPECT_FIELDS: tuple[tuple[int, str, str], ...] = (
    (768, "channels", "i"),
    (776, "points_per_curve", "i"),
    (780, "curves", "i"),
    (940, "has_reference_image", "i"),
    (976, "force_constant_n_per_m", "d"),
    (984, "sensitivity_v_per_um", "d"),
    (1052, "spectroscopy_type", "i"),
)
SPECT_TYPES = {
    0: "FD / IV (old)",
    1: "indenter (old)",
    2: "force-distance",
    3: "current-voltage",
    4: "nano indenter",
    5: "photocurrent",
    6: "current-distance",
    7: "thermal analysis",
    8: "amplitude-distance",
    9: "polarisation-field",
}


# --------------------------------------------------------------------------------------
# which files
# --------------------------------------------------------------------------------------
def _first_ifd_entry(head: bytes, code: int) -> tuple[int, int, int] | None:
    """``(type, count, value)`` of tag ``code`` in the first IFD of a classic TIFF, for a
    value that fits in the entry (Park's magic does); None when ``head`` does not hold it."""
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    bo = "<" if head[:2] == b"II" else ">"
    if struct.unpack(bo + "H", head[2:4])[0] != 42:
        return None
    offset = struct.unpack(bo + "I", head[4:8])[0]
    if offset + 2 > len(head):
        return None
    count = struct.unpack(bo + "H", head[offset : offset + 2])[0]
    for i in range(min(count, (len(head) - offset - 2) // 12)):
        at = offset + 2 + 12 * i
        tag, typ, n = struct.unpack(bo + "HHI", head[at : at + 8])
        if tag == code:
            value = struct.unpack(bo + ("H" if typ == 3 else "I"), head[at + 8 : at + (10 if typ == 3 else 12)])[0]
            return typ, n, value
    return None


def identify(probe: Probe) -> bool:
    """A TIFF whose first IFD holds Park's magic number in tag 50432 (read from the first
    bytes, so a truncated Park file is still known; tifffile when the IFD lies further)."""
    head = probe.head
    if not head.startswith(TIFF_MAGIC):
        return False
    entry = _first_ifd_entry(head, TAG_MAGIC)
    if entry is not None:
        return entry[1] == 1 and entry[2] == MAGIC
    with open_tiff(probe.path) as tf:  # the IFD lies past the first bytes (or a BigTIFF)
        tag = tf.pages.first.tags.get(TAG_MAGIC)
        return tag is not None and tag.value == MAGIC


# --------------------------------------------------------------------------------------
# the headers
# --------------------------------------------------------------------------------------
def _text(raw: bytes) -> str:
    return raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0].strip()


def decode_fields(raw: bytes, fields: tuple[tuple[int, str, str], ...], base: int = 0) -> dict[str, Any]:
    """The fields of a little-endian header that lie wholly inside ``raw``."""
    out: dict[str, Any] = {}
    for offset, name, kind in fields:
        at = base + offset
        if kind.startswith("u"):
            size = 2 * int(kind[1:])
            if at + size <= len(raw):
                out[name] = _text(raw[at : at + size])
            continue
        size = struct.calcsize("<" + kind)
        if at + size <= len(raw):
            value = struct.unpack_from("<" + kind, raw, at)[0]
            out[name] = value if not isinstance(value, float) or math.isfinite(value) else None
    return out


def spectroscopy_summary(raw: bytes) -> dict[str, Any]:
    """What the spectroscopy header (tag 50438) says: its channels and curve counts."""
    channels = []
    for i in range(SPECT_CHANNELS):
        rec = decode_fields(raw, ((0, "name", "u32"), (64, "unit", "u8"), (80, "gain", "d")), base=i * SPECT_CHANNEL_BYTES)
        if rec.get("name"):
            channels.append(rec)
    out = decode_fields(raw, SPECT_FIELDS)
    out["channel_records"] = channels
    if "spectroscopy_type" in out:
        out["spectroscopy_kind"] = SPECT_TYPES.get(out["spectroscopy_type"])
    return out


def _finite(path: str, header: dict[str, Any], name: str) -> float:
    value = header.get(name)
    if value is None:
        raise CorruptFileError(path, f"the Park header's {name} is not a finite number")
    return float(value)


# --------------------------------------------------------------------------------------
# the file's layout
# --------------------------------------------------------------------------------------
def _tag_bytes(tag: Any) -> bytes:
    value = tag.value
    if isinstance(value, str):
        return value.encode("latin-1", errors="replace")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return np.asarray(value, dtype=np.uint8).tobytes()


def layout(path: str) -> dict[str, Any]:
    """Everything :func:`read` needs, from the tags only (the thumbnail and the data stay
    unread): the decoded header, the data's offset and type, and what the file is."""
    import tifffile

    try:
        with open_tiff(path) as tf:
            fh = tf.filehandle
            size = int(fh.size)
            fh.seek(0)
            codes = first_ifd_codes(fh.read(HEAD_BYTES))
            if len(tf.pages) == 0:
                raise CorruptFileError(path, "the TIFF has no pages")
            page = tf.pages.first
            tags = page.tags

            def tag(code: int, what: str, required: bool = True) -> Any:
                found = tags.get(code)
                if found is None and code in codes:
                    raise CorruptFileError(path, f"tag {code} ({what}) points past the end of the {size}-byte file (truncated file?)")
                if found is None and required:
                    raise CorruptFileError(path, f"a Park Systems TIFF without tag {code} ({what})")
                return found

            magic = tags.get(TAG_MAGIC)
            if magic is None:
                raise CorruptFileError(path, f"not a Park Systems TIFF: its first page has no tag {TAG_MAGIC} (Park's magic number)")
            if magic.value != MAGIC:
                raise CorruptFileError(path, f"tag {TAG_MAGIC} is {magic.value!r}, not Park's magic number {MAGIC:#010x}")
            version_code = tag(TAG_VERSION, "the version").value
            version = VERSIONS.get(version_code) if isinstance(version_code, int) else None
            if version is None:
                raise CorruptFileError(path, f"Park TIFF version {version_code!r}, which xafm does not know (it reads 0x01000001 and 0x01000002)")
            raw_header = _tag_bytes(tag(TAG_HEADER, "the image header"))
            data_tag = tag(TAG_DATA, "the data", required=False)
            spect_tag = tag(TAG_SPECT_HEADER, "the spectroscopy header", required=False)
            spect_raw = _tag_bytes(spect_tag) if spect_tag is not None else None
            comment_tag = tag(TAG_COMMENTS, "comments", required=False)
            comment = _tag_bytes(comment_tag) if comment_tag is not None else None
            data_place = None
            if data_tag is not None:
                nbytes = int(data_tag.count) * int(struct.calcsize(tifffile.TIFF.DATA_FORMATS[data_tag.dtype][-1]))
                data_place = (int(data_tag.valueoffset), nbytes)
            tiff_info = {"software": page.software or None, "datetime": tags.valueof(306), "thumbnail_shape": list(page.shape)}
    except (tifffile.TiffFileError, ValueError, struct.error, OSError, KeyError) as exc:
        if isinstance(exc, CorruptFileError):
            raise
        raise CorruptFileError(path, f"not a readable TIFF: {type(exc).__name__}: {exc}") from None

    if len(raw_header) < HEADER_NEEDED[version]:
        raise CorruptFileError(path, f"the Park header (tag {TAG_HEADER}) is {len(raw_header)} bytes; version {version} needs {HEADER_NEEDED[version]}")
    header = decode_fields(raw_header, HEADER_V1 + (HEADER_V2 if version == 2 else ()))
    spect = spectroscopy_summary(spect_raw) if spect_raw is not None else None
    lay = {"version": version, "version_code": version_code, "header": header, "header_bytes": len(raw_header), "spectroscopy": spect,
           "comment": _comment_text(comment), "tiff": tiff_info, "size": size}  # fmt: skip
    _check_image(path, lay, data_place)
    return lay


def _comment_text(raw: bytes | None) -> str | None:
    if not raw:
        return None
    if len(raw) % 2 == 0 and raw[1:2] == b"\x00":
        return _text(raw) or None
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip() or None


def _check_image(path: str, lay: dict[str, Any], data_place: tuple[int, int] | None) -> None:
    """Decide whether the file holds an image, and check the data against the header and
    the file size; fills in ``dtype``, ``shape``, ``offset``."""
    header, spect = lay["header"], lay["spectroscopy"]
    kind = header["image_type"]
    if kind == LINE_PROFILE:
        raise NotAnImageError(path, "this is a line-profile file (Park Systems header image type 1, a line profile); xafm reads images")
    if kind not in IMAGE_TYPES:
        raise CorruptFileError(path, f"Park header image type {kind}, which is none of {IMAGE_TYPES}")
    code = header.get("data_type", 0) if lay["version"] == 2 else 0
    if code not in DATA_TYPES:
        raise CorruptFileError(path, f"Park header data type {code}, which is none of 0 (int16), 1 (int32), 2 (float32)")
    dtype = np.dtype(DATA_TYPES[code])
    nx, ny = header["x_pixels"], header["y_pixels"]
    if data_place is not None and data_place[0] + data_place[1] > lay["size"]:
        raise CorruptFileError(
            path, f"the data (tag {TAG_DATA}) end at byte {data_place[0] + data_place[1]}, past the end of the {lay['size']}-byte file (truncated file?)"
        )
    if kind == SPECTROSCOPY:
        what = (spect or {}).get("spectroscopy_kind") or "spectroscopy"
        curves = (spect or {}).get("curves")
        said_none = spect is not None and spect.get("has_reference_image") == 0
        fits = data_place is not None and 0 < nx <= MAX_PIXELS and 0 < ny <= MAX_PIXELS and data_place[1] == nx * ny * dtype.itemsize
        if said_none or not fits:
            n = f" ({curves} curves)" if isinstance(curves, int) and curves > 0 else ""
            raise NotAnImageError(path, f"this is a spectroscopy file (Park Systems {what}{n}, without an image of the scan area); xafm reads images")
    if data_place is None:
        raise CorruptFileError(path, f"a Park Systems image without its data (tag {TAG_DATA})")
    if not (0 < nx <= MAX_PIXELS and 0 < ny <= MAX_PIXELS):
        raise CorruptFileError(path, f"image size {nx} x {ny} pixels (Park header) is not plausible")
    if data_place[1] != nx * ny * dtype.itemsize:
        raise CorruptFileError(
            path,
            f"the data (tag {TAG_DATA}) hold {data_place[1]} bytes, but the header says {nx} x {ny} {dtype.name} values ({nx * ny * dtype.itemsize} bytes)",
        )
    lay.update(dtype=dtype, shape=(ny, nx), offset=data_place[0])


# --------------------------------------------------------------------------------------
# scaling and metadata
# --------------------------------------------------------------------------------------
def scaling(path: str, header: dict[str, Any]) -> tuple[float, float, str]:
    """``(scale, add, units)``: values are ``raw * scale + add`` in ``units``.

    The header's value is ``gain * (raw * z_scale + z_offset)`` in ``z_unit`` (a z_scale of
    0 means 1, a missing unit µm, as Gwyddion and SurfaceTopography read it); a length
    unit is converted to nm, any other unit is kept as the header gives it.
    """
    gain, z_scale, z_offset = (_finite(path, header, k) for k in ("data_gain", "z_scale", "z_offset"))
    if z_scale == 0:
        z_scale = 1.0
    unit = header.get("z_unit") or "um"
    per_nm = length_unit_nm(unit)
    factor, units = (per_nm, "nm") if per_nm is not None else (1.0, unit)
    return gain * factor * z_scale, gain * factor * z_offset, units


def _pixel_nm(path: str, header: dict[str, Any], shape: tuple[int, int]) -> tuple[float, float]:
    """``(dy, dx)`` in nm from the scan size in µm (its magnitude, as Gwyddion reads it)."""
    ny, nx = shape
    sizes = [abs(header.get(k) or 0.0) * 1e3 for k in ("y_scan_size_um", "x_scan_size_um")]
    if not all(s > 0 for s in sizes):
        warnings.warn(f"{path}: the Park header states no scan size; using 1 nm per pixel", XafmWarning, stacklevel=4)
        return 1.0, 1.0
    return sizes[0] / ny, sizes[1] / nx


def _epoch_ms(text: Any) -> float | None:
    """The TIFF DateTime ``2022:10:15 17:07:06``, read as UTC (it carries no time zone)."""
    try:
        stamp = _dt.datetime.strptime(str(text).strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=_dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp() * 1000.0


def channel_name(header: dict[str, Any]) -> str:
    """The header's source name (``Z Height``, ``Topography``), valid as a variable name."""
    return conventions.safe_channel(header.get("source_name") or "height")


# --------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------
def channels(path: str | os.PathLike[str]) -> list[str]:
    return [channel_name(layout(os.fspath(path))["header"])]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The image of a Park Systems TIFF (one channel), lazily; only the tags are read here.

    Rows are flipped so row 0 is the top of the image: the file stores the bottom line
    first (the thumbnail page, drawn with row 0 at the top, matches the flipped data).
    """
    path = os.fspath(path)
    lay = layout(path)
    header = lay["header"]
    name = channel_name(header)
    if channel is not None and channel not in (name, header.get("source_name")):
        raise ChannelError(f"{path}: no channel {channel!r}; available: {[name]}")
    scale, add, units = scaling(path, header)
    ny, nx = lay["shape"]
    data = RawFramesArray(
        path, offset=lay["offset"], n_frames=1, frame_shape=(ny, nx), raw_dtype=lay["dtype"],
        scale=scale, add=add if add else None, out_dtype=np.float64, flip_y=True,
    )  # fmt: skip
    rate = header.get("scan_rate_hz")
    rate = float(rate) if isinstance(rate, float) and rate > 0 else None
    stamp = lay["tiff"]["datetime"]
    fm = {
        "line_rate": rate,
        "frame_duration_s": ny / rate if rate else None,
        "scan_direction": "up" if header.get("scan_up") else "down",
        "line_direction": "forward" if header.get("forward") else "backward",
        "start_epoch_ms": _epoch_ms(stamp),
    }
    acquisition = {
        "format": "Park Systems TIFF",
        "version": f"{lay['version_code']:#010x}",
        "image_type": IMAGE_TYPES[header["image_type"]],
        "channel": header.get("source_name"),
        "mode": header.get("image_mode"),
        "date": stamp,
        "software": lay["tiff"]["software"],
        "scan_rate_hz": rate,
        "scan_size_um": [header.get("x_scan_size_um"), header.get("y_scan_size_um")],
        "data_type": lay["dtype"].name,
        "value_scale": scale,
        "value_offset": add,
        "thumbnail_shape": lay["tiff"]["thumbnail_shape"],
        "comment": lay["comment"],
        "header": header,
        "spectroscopy": lay["spectroscopy"],
    }
    return model.assemble(
        data,
        pixel_size_nm=_pixel_nm(path, header, (ny, nx)),
        channel=name,
        units=units,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=name)],
    )


FORMAT = Format(
    name=NAME,
    description="Park Systems TIFF image",
    # plain TIFF suffixes: the content check (Park's tags) tells these from other TIFF files
    suffixes=(".tif", ".tiff"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
