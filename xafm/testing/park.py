"""Synthetic Park Systems TIFF files, for the tests of xafm's Park reader (docs/formats.md,
"Park Systems TIFF").

Written with tifffile as Park's software lays them out: one 8-bit page (a thumbnail of the
image, top row first), and the measurement in Park's private tags of that page: 50432 the
magic number, 50433 the version, 50434 the raw values (type BYTE), 50435 the image header
(type UNDEFINED, little-endian, texts in UTF-16LE); spectroscopy files add 50438 (the
spectroscopy header) and 50439 (the curves). The header offsets are written here from
the layout table in docs/formats.md, independently of the reader's own table.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

MAGIC = 0x0E031301
VERSION_CODES = {1: 0x01000001, 2: 0x01000002}
DATA_TYPE_CODES = {"int16": 0, "int32": 1, "float32": 2}
#: Park's image header is 580 bytes in version 2 (356 in version 1).
HEADER_SIZES = {1: 356, 2: 580}
SPECT_HEADER_SIZE = 1160


def _put_text(buf: bytearray, offset: int, chars: int, text: str) -> None:
    raw = text.encode("utf-16-le")[: 2 * chars]
    buf[offset : offset + len(raw)] = raw


def park_header(
    *,
    version: int = 2,
    image_type: int = 0,
    source_name: str = "Topography",
    image_mode: str = "NCM",
    nx: int = 16,
    ny: int = 16,
    scan_size_um: tuple[float, float] = (1.0, 1.0),
    scan_rate_hz: float = 1.0,
    forward: bool = True,
    scan_up: bool = False,
    gain: float = 1.0,
    z_scale: float = 1.0,
    z_offset: float = 0.0,
    z_unit: str = "um",
    data_type: str = "float32",
    cantilever: str = "NCHR",
    size: int | None = None,
) -> bytes:
    """Park's image header (tag 50435) with the given fields, zero elsewhere."""
    buf = bytearray(HEADER_SIZES.get(version, 580) if size is None else size)
    full = bytearray(max(len(buf), 580))
    struct.pack_into("<I", full, 0, image_type)
    _put_text(full, 4, 32, source_name)
    _put_text(full, 68, 8, image_mode)
    struct.pack_into("<II", full, 100, nx, ny)
    struct.pack_into("<iii", full, 128, int(forward), int(scan_up), 0)
    struct.pack_into("<dddd", full, 140, scan_size_um[0], scan_size_um[1], 0.0, 0.0)
    struct.pack_into("<d", full, 172, scan_rate_hz)
    _put_text(full, 188, 8, "V")
    struct.pack_into("<ddd", full, 220, gain, z_scale, z_offset)
    _put_text(full, 244, 8, z_unit)
    if version >= 2:
        struct.pack_into("<dd", full, 284, 1.0, 1.0)
        _put_text(full, 300, 8, "High")
        _put_text(full, 316, 8, "High")
        _put_text(full, 332, 8, "on")
        struct.pack_into("<I", full, 348, DATA_TYPE_CODES[data_type])
        _put_text(full, 384, 16, cantilever)
    buf[:] = full[: len(buf)]
    return bytes(buf)


def spectroscopy_header(
    *, channels: tuple[tuple[str, str], ...] = (("Force", "nN"), ("Z Scan", "um")), points: int = 64, curves: int = 3, has_reference_image: bool = False
) -> bytes:
    """A force-distance spectroscopy header (tag 50438): channel names and units, curve counts."""
    buf = bytearray(SPECT_HEADER_SIZE)
    for i, (name, unit) in enumerate(channels[:8]):
        _put_text(buf, i * 96, 32, name)
        _put_text(buf, i * 96 + 64, 8, unit)
        struct.pack_into("<d", buf, i * 96 + 80, 1.0)
    struct.pack_into("<iiii", buf, 768, len(channels), 0, points, curves)
    struct.pack_into("<i", buf, 940, int(has_reference_image))
    struct.pack_into("<dd", buf, 976, 40.0, 60.0)
    struct.pack_into("<i", buf, 1052, 2)
    return bytes(buf)


def _thumbnail(display: np.ndarray) -> np.ndarray:
    v = np.asarray(display, dtype=np.float64)
    span = float(np.ptp(v)) if v.size else 0.0
    return np.zeros(v.shape, np.uint8) if not np.isfinite(span) or span == 0 else ((v - v.min()) / span * 255).astype(np.uint8)


def write_park(
    path: str | os.PathLike[str],
    raw: Any = None,
    *,
    version: int = 2,
    image_type: int = 0,
    with_data: bool = True,
    header: bytes | None = None,
    spectroscopy: bytes | None = None,
    software: str = "Park Systems SmartScan",
    datetime: str = "2024:05:06 07:08:09",
    magic: int = MAGIC,
    **fields: Any,
) -> str | os.PathLike[str]:
    """Write a Park Systems TIFF; returns ``path``.

    ``raw`` is the stored values, ``(ny, nx)`` in file order (the **bottom** row first),
    of the header's data type (``float32``, ``int16`` or ``int32``; version 1 is int16).
    ``fields`` go to :func:`park_header` (``gain``, ``z_scale``, ``z_offset``, ``z_unit``,
    ``scan_size_um``, ``source_name``, ...); ``header`` replaces the header bytes whole.
    ``with_data=False`` leaves out tag 50434 (a spectroscopy-only file). ``spectroscopy``
    adds tag 50438 with these bytes and a tag 50439 of curves.
    """
    import tifffile

    data_type = fields.pop("data_type", "int16" if version == 1 else "float32")
    if raw is None:
        raw = np.zeros((fields.get("ny", 16), fields.get("nx", 16)), dtype=data_type)
    raw = np.asarray(raw, dtype=np.dtype(data_type).newbyteorder("<"))
    ny, nx = raw.shape
    fields.setdefault("nx", nx)
    fields.setdefault("ny", ny)
    if header is None:
        header = park_header(version=version, image_type=image_type, data_type=data_type, **fields)
    extratags: list[tuple[int, int, int, Any, bool]] = [
        (50432, 4, 1, magic, True),
        (50433, 4, 1, VERSION_CODES.get(version, version), True),
    ]
    if with_data:
        extratags.append((50434, 1, raw.nbytes, raw.tobytes(), True))
    extratags.append((50435, 7, len(header), header, True))
    if spectroscopy is not None:
        extratags.append((50438, 7, len(spectroscopy), spectroscopy, True))
        curves = np.linspace(-1.0, 1.0, 256, dtype="<f4").tobytes()
        extratags.append((50439, 1, len(curves), curves, True))
    thumb = _thumbnail(raw[::-1]) if raw.size else np.zeros((1, 1), np.uint8)
    tifffile.imwrite(path, thumb, photometric="minisblack", metadata=None, software=software, datetime=datetime, extratags=extratags)
    return path
