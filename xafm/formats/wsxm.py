"""WSxM images (``.stp``, ``.top``): a text header of ``[Section]`` / ``Key: value`` lines
ending with ``[Header end]``, then one image of little-endian numbers.

``Image Data Type`` gives the numbers: ``double`` / ``float`` hold values in the unit of
``Z Amplitude`` (converted to nm for lengths); ``short`` / ``integer`` (16-bit) hold counts
that public readers (Gwyddion, SciFiReaders) scale so their range spans ``Z Amplitude``,
which xafm does too (the factor needs the frame's min/max, found when values are read).
WSxM stores the bottom row first and each row right to left (WSxM's own description, and
Gwyddion's reader and writer), so the frame is rotated 180 degrees to put row 0 at the top
and x increasing to the right. The one channel is named after ``Acquisition channel``.
See docs/formats.md.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import ChannelError, CorruptFileError
from ._text import read_until

NAME = "wsxm"
MAGIC = b"WSxM file copyright"
HEADER_END = b"[Header end]"
#: Real headers are a few kB; a file whose header does not end within this is refused.
MAX_HEADER = 4 * 2**20
MAX_PIXELS = 2**15
#: ``Image Data Type`` -> little-endian numpy type. Gwyddion reads ``integer`` as 16-bit too;
#: the ``-data`` spellings are those SciFiReaders knows.
DATA_TYPES = {
    "double": "<f8", "float": "<f4", "float-data": "<f4",
    "short": "<i2", "integer": "<i2", "short-data": "<i2", "unsignedshort": "<u2",
    "integer-data": "<i4", "signedinteger": "<i4",
}
LENGTH_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "nm": 1.0, "pm": 1e-3, "Å": 0.1, "\u212b": 0.1}


class RangeScaledFramesArray(RawFramesArray):
    """Integer frames scaled so their value range spans ``z_range`` (WSxM ``short`` data).

    The factor depends on the frame's raw min/max, so it is found on the first read (one
    pass over the single frame) and kept; opening the file reads nothing.
    """

    def __init__(self, path: str | os.PathLike, *, z_range: float, **kwargs: Any):
        super().__init__(path, out_dtype=np.float64, **kwargs)
        self.z_range = float(z_range)
        self.factor: float | None = None

    def _find_factor(self) -> float:
        if self.factor is None:
            full = super()._read((slice(None), slice(None), slice(None)))
            lo, hi = float(np.min(full)), float(np.max(full))
            self.factor = self.z_range / (hi - lo) if hi > lo else 1.0
        return self.factor

    def _read(self, key: tuple) -> np.ndarray:
        factor = self._find_factor()
        out = super()._read(key)
        out *= factor
        return out


def _split_value(text: str | None) -> tuple[float | None, str]:
    """``59.7449 nm`` -> (59.7449, "nm")."""
    parts = (text or "").split(None, 1)
    try:
        v = float(parts[0])
    except (ValueError, IndexError):
        return None, ""
    return (v if math.isfinite(v) else None), parts[1].strip() if len(parts) > 1 else ""


def _parse_header(path: str) -> tuple[dict[str, dict[str, str]], int, int, int | None]:
    """(sections, data offset, file size, stated header size)."""
    head, end, size = read_until(path, HEADER_END, limit=MAX_HEADER, extra=2, starts=(MAGIC,))
    if not head.startswith(MAGIC):
        raise CorruptFileError(path, "not a WSxM file (no 'WSxM file copyright' at the start)")
    first_lines = head[:200].splitlines()
    if len(first_lines) < 2 or b"SxM Image file" not in first_lines[1]:
        kind = first_lines[1][:40].decode("latin-1") if len(first_lines) > 1 else "?"
        raise CorruptFileError(path, f"a WSxM file, but not an image ({kind!r}); only 'SxM Image file' is read")
    if end < 0:
        what = "the file ends" if size <= MAX_HEADER else f"{MAX_HEADER} bytes"
        raise CorruptFileError(path, f"header end marker '[Header end]' not found before {what} (truncated header?)")
    # the data start right after the marker's line; the stated header size is not trusted
    # (Gwyddion notes that some programs miscalculate it)
    offset = end + len(HEADER_END)
    if head[offset : offset + 2] == b"\r\n":
        offset += 2
    elif head[offset : offset + 1] in (b"\n", b"\r"):
        offset += 1
    m = re.search(rb"Image header size:\s*(\d+)", head[:end])
    stated = int(m.group(1)) if m else None
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in re.split(r"\r\n|\n|\r", head[:end].decode("latin-1")):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
            continue
        if current is None or ":" not in line:
            continue  # pre-header lines and blank lines
        key, value = line.split(":", 1)
        current.setdefault(key.strip(), value.strip())
    return sections, offset, size, stated


def _get(sections: dict[str, dict[str, str]], section: str, key: str) -> str | None:
    val = sections.get(section, {}).get(key)
    if val is None:  # tolerate a key filed under another section
        for sec in sections.values():
            if key in sec:
                return sec[key]
    return val


def _positive_int(path: str, sections: dict[str, dict[str, str]], key: str) -> int:
    text = _get(sections, "General Info", key)
    try:
        n = int((text or "").split()[0])
    except (ValueError, IndexError):
        raise CorruptFileError(path, f"'{key}' is missing or not an integer ({text!r})") from None
    if not 0 < n <= MAX_PIXELS:
        raise CorruptFileError(path, f"'{key}: {n}' is not a plausible image size")
    return n


def _channel_name(sections: dict[str, dict[str, str]]) -> str:
    return conventions.safe_channel(_get(sections, "General Info", "Acquisition channel") or "Topography")


def _epoch_ms(text: str | None) -> float | None:
    """``18/06/2021, 14:12:26.398`` (day first), read as UTC (no time zone is stored)."""
    m = re.match(r"\s*(\d{1,2})/(\d{1,2})/(\d{4}),?\s+(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", text or "")
    if not m:
        return None
    try:
        stamp = _dt.datetime(
            int(m.group(3)), int(m.group(2)), int(m.group(1)), int(m.group(4)), int(m.group(5)), int(m.group(6)),
            tzinfo=_dt.UTC,
        )
    except ValueError:
        return None
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    return stamp.timestamp() * 1000.0 + frac * 1000.0


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """The header starts with ``WSxM file copyright``."""
    return probe.head.startswith(MAGIC)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    sections, *_ = _parse_header(path)
    return [_channel_name(sections)]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open the file's one image lazily: only the header is read here."""
    path = os.fspath(path)
    sections, offset, size, stated = _parse_header(path)
    name = _channel_name(sections)
    if channel is not None and channel != name:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {[name]}")
    ncols = _positive_int(path, sections, "Number of columns")
    nrows = _positive_int(path, sections, "Number of rows")
    type_text = (_get(sections, "General Info", "Image Data Type") or "short").strip()
    type_code = DATA_TYPES.get(type_text.lower())
    if type_code is None:
        raise CorruptFileError(path, f"unknown Image Data Type {type_text!r}; known: {sorted(DATA_TYPES)}")
    raw_dtype = np.dtype(type_code)
    need = offset + nrows * ncols * raw_dtype.itemsize
    if need > size:
        raise CorruptFileError(
            path,
            f"file is {size} bytes but {nrows} x {ncols} {type_text} values after the header end at byte {need} "
            "(truncated, or the header lies)",
        )
    lengths = []
    for key in ("X Amplitude", "Y Amplitude"):
        v, unit = _split_value(_get(sections, "Control", key))
        if v is None or v <= 0 or unit not in LENGTH_NM:
            raise CorruptFileError(path, f"'{key}' is missing or not a positive length ({_get(sections, 'Control', key)!r})")
        lengths.append(v * LENGTH_NM[unit])
    z_amp, z_unit = _split_value(_get(sections, "General Info", "Z Amplitude"))
    if z_amp is None:
        z_unit = "nm"  # Gwyddion's fallback: values taken as nm
    factor = LENGTH_NM.get(z_unit)
    units = "nm" if factor is not None else (z_unit or "a.u.")
    common: dict[str, Any] = dict(offset=offset, n_frames=1, frame_shape=(nrows, ncols), raw_dtype=raw_dtype, flip_y=True, flip_x=True)
    if raw_dtype.kind == "f":
        data: Any = RawFramesArray(path, scale=factor, out_dtype=np.float64, **common)
    else:
        z_range = (z_amp if z_amp is not None and z_amp > 0 else 1.0) * (factor or 1.0)
        data = RangeScaledFramesArray(path, z_range=z_range, **common)
    line_rate, rate_unit = _split_value(_get(sections, "Control", "X-Frequency"))
    if line_rate is not None and (line_rate <= 0 or rate_unit not in ("Hz", "")):
        line_rate = None
    y_dir = (_get(sections, "General Info", "Y scanning direction") or "").strip().lower()
    fm = {
        "line_rate": line_rate,
        "frame_duration_s": nrows / line_rate if line_rate else None,
        "scan_direction": y_dir if y_dir in ("up", "down") else None,
        "start_epoch_ms": _epoch_ms(_get(sections, "General Info", "Acquisition time")),
    }
    acquisition = {
        "format": "WSxM",
        "channel": name,
        "image_data_type": type_text,
        "z_amplitude": _get(sections, "General Info", "Z Amplitude"),
        "stated_header_size": stated,
        "data_offset": offset,
        "header": sections,
    }
    return model.assemble(
        data,
        pixel_size_nm=(lengths[1] / nrows, lengths[0] / ncols),
        channel=name,
        units=units,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=name)],
    )


FORMAT = Format(
    name=NAME,
    description="WSxM",
    suffixes=('.stp', '.top'),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
