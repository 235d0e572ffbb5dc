"""Synthetic NT-MDT ``.mdt`` files, as ``docs/formats.md`` ("NT-MDT .mdt") describes them.

``write_mdt`` joins frames built by ``scanned_frame``, ``mda_frame``, ``text_frame`` and
``raw_frame``. Pixel arrays are given in file order (the first stored row first: the bottom
line of the image, which readers show last).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"\x01\xb0\x93\xff"
#: MDA data type codes by numpy type.
MDA_TYPE_CODES = {"i1": -1, "u1": 1, "<i2": -2, "<u2": 2, "<i4": -4, "<u4": 4, "<i8": -8, "<u8": 8, "<f4": -5892, "<f8": -13320}
DATE = (2023, 4, 5, 11, 46, 5)


def _frame(frame_type: int, body: bytes, *, var_size: int = 0, version: tuple[int, int] = (7, 3), date: tuple[int, ...] = DATE) -> bytes:
    """A frame: the 22-byte header (size including itself, type, version, date, variables
    size), then its body."""
    return struct.pack("<IH2B6HH", 22 + len(body), frame_type, *version, *date, var_size) + body


def scanned_frame(
    raw,
    *,
    x_step: float = 2.0,
    y_step: float = 2.0,
    xy_unit: int = -1,
    z_step: float = 0.5,
    z_offset: float = 0.0,
    z_unit: int = -1,
    adc_channel: int = 0,
    title: str | None = "Height",
    dots: int = 0,
    var_size: int = 107,
    frame_type: int = 0,
    xml: str = "",
    date: tuple[int, ...] = DATE,
) -> bytes:
    """A scanned-data frame (type 0) holding ``raw`` (int16, rows x columns, file order).

    The variables block (``var_size`` bytes, at least 36) starts with the x, y, z axis
    scales (f32 offset, f32 step, i16 unit code), then the ADC channel, device mode and the
    scan size; the frame mode (mode, nx, ny, number of dots), an optional dots block
    (14-byte header + 16 bytes a dot), the int16 raster, the title (u32 length + cp1251)
    and the XML comment (u32 length + UTF-16LE) follow.
    """
    raw = np.ascontiguousarray(raw, dtype="<i2")
    ny, nx = raw.shape
    scales = struct.pack("<ffhffhffh", 0.0, x_step, xy_unit, 0.0, y_step, xy_unit, z_offset, z_step, z_unit)
    scan = struct.pack("<BBHH", adc_channel, 1, nx, ny)
    more = struct.pack("<HfHBBBBBBfffBBiiB", 0, 1.0, 0, 0, 0, 0, 0, 0, 0, 1e4, 0.1, 0.2, 0, 0, 0, 0, 0)
    variables = (scales + scan + more).ljust(var_size, b"\x00")[:var_size]
    body = variables + struct.pack("<HHHH", 0, nx, ny, dots)
    if dots:
        body += struct.pack("<iiih", 10, 16, 0, -1) + b"".join(struct.pack("<ffii", float(i), float(i), 0, 0) for i in range(dots))
    body += raw.tobytes()
    if title is not None:
        text = title.encode("cp1251")
        body += struct.pack("<I", len(text)) + text
        comment = xml.encode("utf-16-le")
        body += struct.pack("<I", len(comment)) + comment
    return _frame(frame_type, body, var_size=var_size, date=date)


def _calibration(name: str, unit: str, *, scale: float, bias: float, lo: int, hi: int, data_type: int, comment: str = "", pad: int = 36) -> bytes:
    """One MDA calibration: u32 total and struct sizes, the 76-byte struct (+ ``pad``
    unused bytes, as Nova writes 112), then name, comment, unit and author strings."""
    strings = [s.encode("utf-8") for s in (name, comment, unit, "")]
    fields = struct.pack("<3IQd8xddQQiI", len(strings[0]), len(strings[1]), len(strings[2]), 0x1, 0.0, bias, scale, lo, hi, data_type, len(strings[3]))
    struct_part = fields + b"\x00" * pad
    body = struct_part + b"".join(strings)
    return struct.pack("<II", 8 + len(body), len(struct_part)) + body


def mda_frame(
    values,
    *,
    x_scale: float = 0.01,
    y_scale: float = 0.01,
    xy_unit: str = "um",
    z_scale: float = 1.0,
    z_bias: float = 0.0,
    z_unit: str = "nA",
    title: str = "1F:Iprobe",
    xml: str = "<?xml version=\"1.0\"?><FrameComment/>",
    dims: int = 2,
    measurands: int = 1,
    date: tuple[int, ...] = DATE,
) -> bytes:
    """An MDA frame (type 106) holding ``values`` (rows x columns in file order, of the
    MDA type of their numpy dtype) as a 2-D array with one measurand.

    ``dims`` / ``measurands`` other than 2 / 1 write a frame of that shape (a curve with
    1 / 1, a cube with 3 / 1) whose data are ``values`` flattened.
    """
    values = np.asarray(values)
    code = MDA_TYPE_CODES[values.dtype.str if values.dtype.itemsize > 1 else values.dtype.str[1:]]
    ny, nx = values.shape if values.ndim == 2 else (1, values.size)
    name = title.encode("utf-8")
    comment = xml.encode("utf-16-le")
    axes = [("x", xy_unit, x_scale, 0.0, nx), ("y", xy_unit, y_scale, 0.0, ny), ("z", xy_unit, 1.0, 0.0, 1)][:dims]
    cals = [_calibration(n, u, scale=s, bias=b, lo=0, hi=k - 1, data_type=-8) for n, u, s, b, k in axes]
    cals += [_calibration(z_unit, z_unit, scale=z_scale, bias=z_bias, lo=0, hi=2**64 - 1, data_type=code)] * measurands
    array = struct.pack("<QIII", values.size, values.dtype.itemsize * measurands, dims, measurands)
    variables = struct.pack("<II", 8 + len(array) + sum(map(len, cals)), len(array)) + array + b"".join(cals)
    data = np.ascontiguousarray(values).tobytes()
    tot = 76 + len(name) + len(comment) + len(variables)
    head = struct.pack("<II", 76, tot) + b"\x11" * 32 + b"\x00" * 4
    head += struct.pack("<8I", len(name), len(comment), 0, 0, 0, len(variables), 0, len(data))
    return _frame(106, head + name + comment + variables + data + b"\x00" * 4, date=date)


def text_frame(text: str = "text text text") -> bytes:
    """A text frame (type 3): a u16 length, 16 zero bytes, the text; xafm skips it."""
    raw = text.encode("utf-8")
    return _frame(3, struct.pack("<H", len(raw)) + b"\x00" * 16 + raw + b"\x00" * 4, var_size=10)


def raw_frame(frame_type: int, payload: bytes = b"\x00" * 64) -> bytes:
    """Any other frame (spectroscopy 1, curves 190 / 201, palette 107) with a given body."""
    return _frame(frame_type, payload)


def write_mdt(path, frames: list[bytes], *, stated_size: int | None = None, last_frame: int | None = None) -> Path:
    """Write an ``.mdt`` file: the 33-byte file header (magic, u32 size of the frames,
    4 reserved bytes, u16 index of the last frame, 19 reserved bytes), then ``frames``.

    ``stated_size`` / ``last_frame`` claim other values than the true ones (to build
    lying headers).
    """
    body = b"".join(frames)
    size = len(body) if stated_size is None else stated_size
    last = len(frames) - 1 if last_frame is None else last_frame
    path = Path(path)
    path.write_bytes(MAGIC + struct.pack("<I4xH", size, last) + b"\x00" * 19 + body)
    return path
