"""The binary layout of NT-MDT ``.mdt`` files, parsed into the images they hold.

Kept apart from :mod:`xafm.formats.mdt` (the format's public face) so that each stays
short. Every offset, size and count a header states is checked against the frame and the
file before it is used; nothing here reads pixel data. The layout, with its sources, is in
docs/formats.md ("NT-MDT .mdt").
"""

from __future__ import annotations

import datetime as _dt
import math
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from ..core import sources
from ..exceptions import CorruptFileError
from ._units import length_unit_nm

MAGIC = b"\x01\xb0\x93\xff"
#: The file header: magic, u32 size of what follows it, 4 reserved, u16 last frame index,
#: 18 reserved, and one more byte (documented as 32 bytes; frames start at byte 33).
FILE_HEADER = 33
#: Every frame starts with: u32 size (this header included), u16 type, 2 version bytes,
#: six u16 (year, month, day, hour, minute, second), u16 size of the variables.
FRAME_HEADER = 22
_FRAME_HEADER = struct.Struct("<IH2B6HH")
#: Scanned frames: three axis scales (f32 offset, f32 step, i16 unit code) ...
_AXIS_SCALES = struct.Struct("<ffhffhffh")
#: ... then s_mode (ADC channel), s_dev (STM/AFM), s_nx, s_ny: what xafm needs at least.
SCANNED_VARS_MIN = _AXIS_SCALES.size + 6
_SCAN_VARS = struct.Struct("<BBHH")
#: The rest of the scan variables xafm keeps as metadata (when the frame holds them).
_SCAN_MORE = struct.Struct("<HfHBBBBBBfffBBiiB")
_SCAN_MORE_NAMES = (
    "ndacq", "step_length_A", "adt", "adc_gain_amp_log10", "adc_index", "s16", "s17", "scan_dir",
    "power_of_2", "velocity_A_per_s", "setpoint", "bias_voltage_V", "draw", None, "x_offset_dac", "y_offset_dac", "nl_corr",
)  # fmt: skip
#: After the variables: u16 mode, u16 nx, u16 ny, u16 number of spectroscopy dots.
_FRAME_MODE = struct.Struct("<HHHH")
#: The dots (point spectroscopy) block, when there are dots: a 14-byte header and 16 bytes a dot.
DOTS_HEADER, DOT_BYTES = 14, 16
#: MDA frames: u32 header size, u32 size of what precedes the data, two 16-byte GUIDs,
#: 4 status bytes, then eight u32: name, comment (XML), view info, spec, source info and
#: variables sizes, data offset, data size.
_MDA_HEAD = struct.Struct("<II32x4x8I")
_MDA_ARRAY = struct.Struct("<QIII")
#: One MDA calibration (an axis or a measured quantity): u32 total size, u32 struct size,
#: then u32 name, comment and unit lengths, u64 SI unit code, f64 accuracy, 8 bytes
#: (function id and dimensions), f64 bias, f64 scale, u64 min index, u64 max index, i32
#: data type, u32 author length; the four strings follow the struct.
_CALIBRATION = struct.Struct("<II3IQd8xddQQiI")
MAX_PIXELS = 2**15

FRAME_TYPES = {
    0: "scanned", 1: "spectroscopy", 3: "text", 105: "old MDA", 106: "MDA", 107: "palette",
    190: "curves (new spectroscopy)", 201: "curves",
}  # fmt: skip
SCANNED, MDA = 0, 106
#: Unit codes of the scanned frames' axis scales (NT-MDT's MDTUnit enumeration).
UNITS = {
    -10: "1/cm", -5: "m", -4: "cm", -3: "mm", -2: "µm", -1: "nm", 0: "Å", 1: "nA", 2: "V", 3: "",
    4: "kHz", 5: "deg", 6: "%", 7: "°C", 8: "V", 9: "s", 10: "ms", 11: "µs", 12: "ns", 13: "", 14: "px",
    20: "A", 21: "mA", 22: "µA", 23: "nA", 24: "pA", 25: "V", 26: "mV", 27: "µV", 28: "nV", 29: "pV",
    30: "N", 31: "mN", 32: "µN", 33: "nN", 34: "pN",
}  # fmt: skip
#: The signal a scanned frame recorded, by its ADC channel (s_mode).
ADC_SIGNALS = (
    "Height", "DFL", "Lateral F", "Bias V", "Current", "FB-Out", "MAG", "MAG*Sin", "MAG*Cos", "RMS",
    "CalcMag", "Phase1", "Phase2", "CalcPhase", "Ex1", "Ex2", "HvX", "HvY", "Snap Back",
)  # fmt: skip
#: MDA data type codes (bytes, plus 256 x mantissa bits for floats, negative = signed).
MDA_TYPES = {
    -1: "i1", 1: "u1", -2: "<i2", 2: "<u2", -4: "<i4", 4: "<u4", -8: "<i8", 8: "<u8",
    -(4 + 23 * 256): "<f4", -(8 + 52 * 256): "<f8",
}  # fmt: skip
#: MDA SI unit codes, for calibrations that carry no unit text.
SI_UNITS = {0x1: "", 0x101: "m", 0x100001: "A", 0xFFFD010200: "V", 0x1000001: "s"}


@dataclass
class Image:
    """One image frame: where its values are, how to scale them, and what it is."""

    frame: int  # index of the frame in the file (0-based)
    kind: str  # "scanned" or "MDA"
    title: str
    offset: int
    shape: tuple[int, int]  # rows, columns as stored
    raw_dtype: str
    scale: float
    add: float
    unit: str  # unit of the values after scale and add
    pixel_nm: tuple[float, float]  # y, x
    is_height: bool
    details: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def values_in_nm(self) -> float | None:
        """nm per value unit when the values are lengths (heights), else None."""
        return length_unit_nm(self.unit)


@dataclass
class Contents:
    """What a file holds: its image frames and the type of every frame."""

    size: int
    frame_types: list[int]
    kinds: list[str]  # what each frame is, in words ("text", "MDA curve", ...)
    images: list[Image]
    problems: list[str]  # frames that look like images but cannot be read as ones


def _text(raw: bytes) -> str:
    """Titles and units are UTF-8 in newer files and cp1251 in older ones."""
    raw = raw.split(b"\x00", 1)[0]
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("cp1251", errors="replace").strip()


def _read_at(path: str, fh: BinaryIO, pos: int, n: int, limit: int, what: str) -> bytes:
    if n < 0 or pos + n > limit:
        raise CorruptFileError(path, f"{what} ({n} bytes at byte {pos}) runs past byte {limit}, the end of its frame")
    fh.seek(pos)
    got = fh.read(n)
    if len(got) != n:
        raise CorruptFileError(path, f"file ends inside {what} at byte {pos + len(got)}")
    return got


def _epoch_ms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    """The frame's date and time, read as UTC (the file stores no time zone)."""
    try:
        return _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.UTC).timestamp() * 1000.0
    except (ValueError, OverflowError):
        return None


def read_contents(path: str) -> Contents:
    """Walk the frames of ``path`` and describe its images; raise CorruptFileError when the
    file header or a frame claims more than the file holds."""
    with sources.open_binary(path, block_size=sources.SMALL_BLOCK) as fh:
        size = sources.file_size(fh)
        head = fh.read(FILE_HEADER)
        if not head.startswith(MAGIC):
            raise CorruptFileError(path, "not an NT-MDT file (no magic bytes 01 B0 93 FF at the start)")
        if len(head) < FILE_HEADER:
            raise CorruptFileError(path, f"file is {size} bytes, shorter than the {FILE_HEADER}-byte NT-MDT file header")
        stated, last = struct.unpack_from("<I4xH", head, 4)
        if FILE_HEADER + stated > size:
            raise CorruptFileError(
                path, f"file is {size} bytes but its header says {FILE_HEADER} + {stated} = {FILE_HEADER + stated} (truncated)"
            )
        end = FILE_HEADER + stated
        n_frames = last + 1
        if n_frames * FRAME_HEADER > stated:
            raise CorruptFileError(path, f"header claims {n_frames} frames, more than {stated} bytes of frames can hold")
        types: list[int] = []
        kinds: list[str] = []
        images: list[Image] = []
        problems: list[str] = []
        pos = FILE_HEADER
        for index in range(n_frames):
            if pos + FRAME_HEADER > end:
                raise CorruptFileError(path, f"frame {index} of {n_frames} starts at byte {pos}, past the end of the data (byte {end})")
            fh.seek(pos)
            fsize, ftype, v0, v1, *date, var_size = _FRAME_HEADER.unpack(fh.read(FRAME_HEADER))
            if fsize < FRAME_HEADER or pos + fsize > end:
                raise CorruptFileError(
                    path, f"frame {index} at byte {pos} claims {fsize} bytes, but the data end at byte {end} (truncated?)"
                )
            types.append(ftype)
            frame = {"index": index, "start": pos, "end": pos + fsize, "type": ftype, "var_size": var_size,
                     "version": f"{v0}.{v1}", "date": date, "start_epoch_ms": _epoch_ms(*date)}  # fmt: skip
            frame["kind"] = FRAME_TYPES.get(ftype, f"type {ftype}")
            image: Image | None = None
            if ftype == SCANNED:
                image = _scanned(path, fh, frame, problems)
            elif ftype == MDA:
                image = _mda(path, fh, frame, problems)
            if image is not None:
                images.append(image)
            kinds.append("image" if image is not None else frame["kind"])
            pos += fsize
    _name(images)
    return Contents(size, types, kinds, images, problems)


def _scanned(path: str, fh: BinaryIO, frame: dict[str, Any], problems: list[str]) -> Image | None:
    """A scanned-data frame: int16 values in a raster of frame-mode nx x ny, after the
    variables (axis scales first) and the optional dots block, then the title."""
    start, end, var_size, index = frame["start"], frame["end"], frame["var_size"], frame["index"]
    q = start + FRAME_HEADER
    if var_size < SCANNED_VARS_MIN:
        raise CorruptFileError(path, f"scanned frame {index} has {var_size} bytes of variables, fewer than the {SCANNED_VARS_MIN} its scales need")
    head = _read_at(path, fh, q, var_size + _FRAME_MODE.size, end, f"variables of scanned frame {index}")
    xo, xs, xu, yo, ys, yu, zo, zs, zu = _AXIS_SCALES.unpack_from(head, 0)
    adc, dev, s_nx, s_ny = _SCAN_VARS.unpack_from(head, _AXIS_SCALES.size)
    details: dict[str, Any] = {
        "x_scale": [xo, xs, xu], "y_scale": [yo, ys, yu], "z_scale": [zo, zs, zu],
        "adc_channel": adc, "device_mode": {0: "STM", 1: "AFM"}.get(dev, dev), "scan_pixels": [s_nx, s_ny],
    }  # fmt: skip
    if var_size >= SCANNED_VARS_MIN + _SCAN_MORE.size:
        values = _SCAN_MORE.unpack_from(head, SCANNED_VARS_MIN)
        details.update({k: v for k, v in zip(_SCAN_MORE_NAMES, values) if k})
    mode, nx, ny, ndots = _FRAME_MODE.unpack_from(head, var_size)
    details.update({"frame_mode": mode, "dots": ndots})
    data = q + var_size + _FRAME_MODE.size + (DOTS_HEADER + DOT_BYTES * ndots if ndots else 0)
    if nx * ny == 0:
        frame["kind"] = "scanned frame of spectroscopy points only"
        return None  # no raster
    if data + 2 * nx * ny > end:
        raise CorruptFileError(path, f"scanned frame {index}: {nx} x {ny} int16 values from byte {data} run past its end (byte {end})")
    title = ""
    after = data + 2 * nx * ny
    if end - after > 4:
        (n,) = struct.unpack("<I", _read_at(path, fh, after, 4, end, f"title length of frame {index}"))
        if 0 < n <= end - after - 4:
            title = _text(_read_at(path, fh, after + 4, n, end, f"title of frame {index}"))
    signal = ADC_SIGNALS[adc] if adc < len(ADC_SIGNALS) else ""
    details["signal"] = signal
    x_nm, y_nm = length_unit_nm(UNITS.get(xu)), length_unit_nm(UNITS.get(yu))
    if x_nm is None or y_nm is None:
        problems.append(f"scanned frame {index}: x/y unit codes {xu}/{yu} are not lengths")
        return None
    if not all(math.isfinite(s) and s != 0 for s in (xs, ys)):
        problems.append(f"scanned frame {index}: lateral steps {xs}, {ys} are not usable pixel sizes")
        return None
    z_unit = UNITS.get(zu, "")
    # a zero or undefined z step means raw DAC values (Gwyddion, SurfaceTopography)
    zs = zs if math.isfinite(zs) and zs != 0 else 1.0
    zo = zo if math.isfinite(zo) else 0.0
    return Image(
        frame=index, kind="scanned", title=title or signal, offset=data, shape=(ny, nx), raw_dtype="<i2",
        scale=zs, add=zo, unit=z_unit, pixel_nm=(abs(ys) * y_nm, abs(xs) * x_nm),
        is_height=adc == 0 or length_unit_nm(z_unit) is not None, details={**frame_info(frame), **details},
    )  # fmt: skip


def _mda(path: str, fh: BinaryIO, frame: dict[str, Any], problems: list[str]) -> Image | None:
    """An MDA (multidimensional array) frame: a header, the title and XML comment, then
    the array's axes (dimensions) and measured quantities (measurands), then the data."""
    start, end, index = frame["start"], frame["end"], frame["index"]
    q = start + FRAME_HEADER
    head_size, _tot, name_n, comment_n, view_n, spec_n, source_n, _var, data_offset, data_size = _MDA_HEAD.unpack(
        _read_at(path, fh, q, _MDA_HEAD.size, end, f"MDA header of frame {index}")
    )
    if head_size < _MDA_HEAD.size:
        raise CorruptFileError(path, f"MDA frame {index}: header size {head_size} is below {_MDA_HEAD.size}")
    r = q + head_size
    title = _text(_read_at(path, fh, r, name_n, end, f"title of MDA frame {index}")) if name_n else ""
    r += name_n + comment_n + spec_n + view_n + source_n + 4
    (struct_len,) = struct.unpack("<I", _read_at(path, fh, r, 4, end, f"array description of MDA frame {index}"))
    r += 4
    if struct_len < _MDA_ARRAY.size:
        raise CorruptFileError(path, f"MDA frame {index}: array description of {struct_len} bytes, below {_MDA_ARRAY.size}")
    array_size, cell_size, n_dims, n_meas = _MDA_ARRAY.unpack(_read_at(path, fh, r, _MDA_ARRAY.size, end, f"array of MDA frame {index}"))
    r += struct_len
    if (n_dims + n_meas) * _CALIBRATION.size > end - r:
        raise CorruptFileError(path, f"MDA frame {index} claims {n_dims} axes and {n_meas} measurands, more than its {end - r} bytes hold")
    calibrations = []
    for k in range(n_dims + n_meas):
        cal, r = _calibration(path, fh, r, end, f"calibration {k} of MDA frame {index}")
        calibrations.append(cal)
    details = {
        "array_size": array_size, "cell_size": cell_size, "dimensions": calibrations[:n_dims],
        "measurands": calibrations[n_dims:], "stated_data_offset": data_offset, "stated_data_size": data_size,
    }  # fmt: skip
    if not (n_dims == 2 and n_meas == 1):
        # curves (1 axis, or 2 measurands and no axis), Raman cubes (3 axes): not images
        frame["kind"] = {1: "MDA curve", 0: "MDA curve", 3: "MDA cube (spectra over an area)"}.get(n_dims, f"MDA array of {n_dims} axes")
        return None
    dx, dy, z = calibrations
    nx, ny = (int(c["max_index"]) - int(c["min_index"]) + 1 for c in (dx, dy))
    if not (0 < nx <= MAX_PIXELS and 0 < ny <= MAX_PIXELS):
        raise CorruptFileError(path, f"MDA frame {index}: image size {nx} x {ny} from the axis index ranges is not plausible")
    if z["data_type"] not in MDA_TYPES:
        problems.append(f"MDA frame {index}: data type {z['data_type']} is not supported")
        return None
    dtype = np.dtype(MDA_TYPES[z["data_type"]])
    if r + nx * ny * dtype.itemsize > end:
        raise CorruptFileError(path, f"MDA frame {index}: {nx} x {ny} {dtype.name} values from byte {r} run past its end (byte {end})")
    x_nm, y_nm = length_unit_nm(dx["unit"]), length_unit_nm(dy["unit"])
    if x_nm is None or y_nm is None or not all(math.isfinite(c["scale"]) and c["scale"] != 0 for c in (dx, dy)):
        problems.append(f"MDA frame {index}: axes {dx['unit']!r} / {dy['unit']!r} with steps {dx['scale']}, {dy['scale']} are not lateral lengths")
        return None
    scale = z["scale"] if math.isfinite(z["scale"]) else 1.0
    add = z["bias"] if math.isfinite(z["bias"]) else 0.0
    return Image(
        frame=index, kind="MDA", title=title, offset=r, shape=(ny, nx), raw_dtype=dtype.str, scale=scale, add=add,
        unit=z["unit"], pixel_nm=(abs(dy["scale"]) * y_nm, abs(dx["scale"]) * x_nm),
        is_height=length_unit_nm(z["unit"]) is not None, details={**frame_info(frame), **details},
    )  # fmt: skip


def _calibration(path: str, fh: BinaryIO, r: int, end: int, what: str) -> tuple[dict[str, Any], int]:
    raw = _read_at(path, fh, r, _CALIBRATION.size, end, what)
    tot, slen, name_n, comment_n, unit_n, si, accuracy, bias, scale, lo, hi, dtype, author_n = _CALIBRATION.unpack(raw)
    if slen < _CALIBRATION.size - 8 or tot < 8 + slen + name_n + comment_n + unit_n + author_n or r + tot > end:
        raise CorruptFileError(path, f"{what}: sizes {tot} (total), {slen} (struct) and its strings do not fit at byte {r} (frame ends at byte {end})")
    s = r + 8 + slen
    name = _text(_read_at(path, fh, s, name_n, end, f"{what} name")) if name_n else ""
    unit = _text(_read_at(path, fh, s + name_n + comment_n, unit_n, end, f"{what} unit")) if unit_n else SI_UNITS.get(si, "")
    cal = {"name": name, "unit": unit, "si_unit_code": si, "accuracy": accuracy, "bias": bias, "scale": scale,
           "min_index": lo, "max_index": hi, "data_type": dtype}  # fmt: skip
    return cal, r + tot


def frame_info(frame: dict[str, Any]) -> dict[str, Any]:
    return {
        "frame_index": frame["index"], "frame_type": FRAME_TYPES.get(frame["type"], frame["type"]),
        "frame_version": frame["version"], "frame_date": "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*frame["date"]),
        "start_epoch_ms": frame["start_epoch_ms"],
    }  # fmt: skip


def _name(images: list[Image]) -> None:
    """Channel names: the frame's title (else its signal, else ``frame N``); a name two
    frames share gets the frame's number in the file, ``Height (2)``, as Gwyddion shows it."""
    bases = [img.title or f"frame {img.frame + 1}" for img in images]
    for img, base in zip(images, bases):
        img.name = base if bases.count(base) == 1 else f"{base} ({img.frame + 1})"
