"""Nanonis ``.sxm`` scan files: an ASCII header of ``:TAG:`` blocks, then raw channel frames.

The header ends with ``:SCANIT_END:``; the binary part starts after the two bytes
``\\x1a\\x04``. Each ``:DATA_INFO:`` row (a signal) holds one frame per recorded direction
(``both`` = forward then backward), in table order, each ``SCAN_PIXELS`` x by y values of
``SCANIT_TYPE`` (usually big-endian float32). Values are physical (SI units); lengths are
converted m -> nm. Frames are turned into the image as shown by Nanonis and Gwyddion:
backward frames are mirrored in x and ``SCAN_DIR up`` frames flipped in y (the first line
recorded is the bottom one). Channels are named ``<signal>_forward`` / ``<signal>_backward``;
the default is ``Z_forward``. See docs/formats.md.
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

NAME = "sxm"
MAGIC = b":NANONIS_VERSION:"
END_TAG = b":SCANIT_END:"
DATA_MARK = b"\x1a\x04"
#: Real headers are a few kB; a file whose header does not end within this is refused.
MAX_HEADER = 4 * 2**20
#: Bytes between ``:SCANIT_END:`` and the data marker (Nanonis writes a few newlines).
MAX_GAP = 4096
MAX_PIXELS = 2**15

_TYPES = {"FLOAT": "f4", "INT": "i4", "UINT": "u4", "DOUBLE": "f8"}
_BYTE_ORDER = {"MSBFIRST": ">", "LSBFIRST": "<"}
#: Length units to nm: values in these units become nm.
LENGTH_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "nm": 1.0, "pm": 1e-3, "Å": 0.1, "\u212b": 0.1}


# --------------------------------------------------------------------------------------
# header
# --------------------------------------------------------------------------------------
def _read_header(path: str) -> tuple[dict[str, list[str]], int, int]:
    """The header's tags (name -> value lines), the data offset and the file size."""
    head, end, size = read_until(path, END_TAG, limit=MAX_HEADER, extra=MAX_GAP, starts=(MAGIC,))
    if not head.startswith(MAGIC):
        raise CorruptFileError(path, "not a Nanonis SXM file (no :NANONIS_VERSION: at the start)")
    if end < 0:
        what = "the file ends" if size <= MAX_HEADER else f"{MAX_HEADER} bytes"
        raise CorruptFileError(path, f"header end tag :SCANIT_END: not found before {what} (truncated header?)")
    mark = head.find(DATA_MARK, end, end + len(END_TAG) + MAX_GAP)
    if mark < 0:
        raise CorruptFileError(path, "data start marker \\x1a\\x04 not found after :SCANIT_END:")
    tags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in head[:end].decode("latin-1").splitlines():
        line = raw.strip()
        if raw.startswith(":") and len(line) >= 3 and line.endswith(":"):
            current = tags.setdefault(line[1:-1], [])
            continue
        if current is None:
            raise CorruptFileError(path, f"header line {line[:40]!r} before the first tag")
        if line:
            current.append(raw.rstrip("\r\n"))
    return tags, mark + len(DATA_MARK), size


def _one(tags: dict[str, list[str]], name: str) -> str | None:
    lines = tags.get(name)
    return lines[0].strip() if lines else None


def _numbers(path: str, tags: dict[str, list[str]], name: str, n: int, kind=float) -> list:
    text = _one(tags, name)
    if text is None:
        raise CorruptFileError(path, f"header tag :{name}: is missing")
    parts = text.split()
    try:
        vals = [kind(float(p)) if kind is int else kind(p) for p in parts[:n]]
    except (ValueError, OverflowError):
        raise CorruptFileError(path, f":{name}: {text!r} is not {n} numbers") from None
    if len(vals) != n:
        raise CorruptFileError(path, f":{name}: {text!r} is not {n} numbers")
    return vals


def _data_info(path: str, tags: dict[str, list[str]]) -> list[dict[str, Any]]:
    lines = tags.get("DATA_INFO")
    if not lines:
        raise CorruptFileError(path, "header tag :DATA_INFO: (the channel table) is missing")

    def split(line: str) -> list[str]:
        parts = [p.strip() for p in line.strip().split("\t")] if "\t" in line.strip() else line.split()
        return [p for p in parts if p]

    cols = split(lines[0])
    need = ("Name", "Unit", "Direction")
    if any(c not in cols for c in need):
        raise CorruptFileError(path, f":DATA_INFO: header {cols} lacks the columns {list(need)}")
    rows = []
    for line in lines[1:]:
        vals = split(line)
        if len(vals) < len(cols):
            raise CorruptFileError(path, f":DATA_INFO: row {line.strip()!r} has {len(vals)} fields, expected {len(cols)}")
        row = dict(zip(cols, vals))
        direction = row["Direction"].lower()
        if direction not in ("both", "forward", "backward"):
            raise CorruptFileError(path, f":DATA_INFO: channel {row['Name']!r} has unknown direction {row['Direction']!r}")
        row["Direction"] = direction
        rows.append(row)
    if not rows:
        raise CorruptFileError(path, ":DATA_INFO: lists no channels")
    return rows


def _frames(path: str, tags: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One entry per stored frame, in file order: name, signal, unit, direction."""
    frames = []
    for row in _data_info(path, tags):
        dirs = ("forward", "backward") if row["Direction"] == "both" else (row["Direction"],)
        for d in dirs:
            frames.append({"name": f"{row['Name']}_{d}", "signal": row["Name"], "unit": row["Unit"], "direction": d, "info": row})
    return frames


def _epoch_ms(tags: dict[str, list[str]]) -> float | None:
    """REC_DATE (dd.mm.yyyy) + REC_TIME, read as UTC (the file carries no time zone)."""
    date, time = _one(tags, "REC_DATE"), _one(tags, "REC_TIME")
    if not date:
        return None
    m = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", date)
    t = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", time or "0:00:00")
    if not m or not t:
        return None
    try:
        stamp = _dt.datetime(
            int(m.group(3)), int(m.group(2)), int(m.group(1)), int(t.group(1)), int(t.group(2)), int(t.group(3)),
            tzinfo=_dt.UTC,
        )
    except ValueError:
        return None
    frac = float("0." + t.group(4)) if t.group(4) else 0.0
    return stamp.timestamp() * 1000.0 + frac * 1000.0


def _float_or_none(text: str | None) -> float | None:
    try:
        v = float(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None
    return v if v is not None and math.isfinite(v) else None


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """The header starts with ``:NANONIS_VERSION:``."""
    return probe.head.startswith(MAGIC)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    tags, _, _ = _read_header(path)
    return [f["name"] for f in _frames(path, tags)]


def _pick(path: str, frames: list[dict[str, Any]], channel: str | None) -> int:
    names = [f["name"] for f in frames]
    if channel is None:
        for i, f in enumerate(frames):
            if f["signal"] == "Z" and f["direction"] == "forward":
                return i
        for i, f in enumerate(frames):
            if f["unit"] in LENGTH_NM:
                return i
        return 0
    if channel in names:
        return names.index(channel)
    # a bare signal name means its forward frame (or its only one)
    for i, f in enumerate(frames):
        if f["signal"] == channel and (f["direction"] == "forward" or f["info"]["Direction"] != "both"):
            return i
    raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one channel lazily: only the header is read here."""
    path = os.fspath(path)
    tags, offset, size = _read_header(path)
    type_text = _one(tags, "SCANIT_TYPE") or "FLOAT MSBFIRST"
    parts = type_text.upper().split()
    if len(parts) != 2 or parts[0] not in _TYPES or parts[1] not in _BYTE_ORDER:
        raise CorruptFileError(path, f"unsupported :SCANIT_TYPE: {type_text!r} (known: FLOAT/INT/UINT/DOUBLE, MSBFIRST/LSBFIRST)")
    raw_dtype = np.dtype(_BYTE_ORDER[parts[1]] + _TYPES[parts[0]])
    nx, ny = _numbers(path, tags, "SCAN_PIXELS", 2, int)
    if not (0 < nx <= MAX_PIXELS and 0 < ny <= MAX_PIXELS):
        raise CorruptFileError(path, f":SCAN_PIXELS: {nx} x {ny} is not a plausible image size")
    rx, ry = _numbers(path, tags, "SCAN_RANGE", 2)
    if not all(math.isfinite(v) and v > 0 for v in (rx, ry)):
        raise CorruptFileError(path, f":SCAN_RANGE: {rx} {ry} must be two positive lengths (m)")
    frames = _frames(path, tags)
    frame_bytes = nx * ny * raw_dtype.itemsize
    need = offset + len(frames) * frame_bytes
    if need > size:
        raise CorruptFileError(
            path,
            f"file is {size} bytes but the header describes {len(frames)} frames of {nx}x{ny} "
            f"{raw_dtype.name} ending at byte {need} (truncated, or the header lies)",
        )
    index = _pick(path, frames, channel)
    frame = frames[index]
    unit = frame["unit"]
    factor = LENGTH_NM.get(unit)
    up = (_one(tags, "SCAN_DIR") or "").lower()
    data = RawFramesArray(
        path,
        offset=offset + index * frame_bytes,
        n_frames=1,
        frame_shape=(ny, nx),
        raw_dtype=raw_dtype,
        scale=factor,
        out_dtype=np.float64,
        flip_y=up == "up",
        flip_x=frame["direction"] == "backward",
    )
    scan_time = (_one(tags, "SCAN_TIME") or "").split()
    t_fwd = _float_or_none(scan_time[0]) if scan_time else None
    t_bwd = _float_or_none(scan_time[1]) if len(scan_time) > 1 else t_fwd
    per_line = (t_fwd or 0.0) + (t_bwd or 0.0)
    line_rate = 1.0 / per_line if per_line > 0 else None
    acq_time = _float_or_none(_one(tags, "ACQ_TIME"))
    duration = acq_time if acq_time and acq_time > 0 else (ny / line_rate if line_rate else None)
    fm = {
        "line_rate": line_rate,
        "frame_duration_s": duration,
        "scan_direction": up if up in ("up", "down") else None,
        "start_epoch_ms": _epoch_ms(tags),
    }
    acquisition = {
        "format": "Nanonis SXM",
        "nanonis_version": _one(tags, "NANONIS_VERSION"),
        "channel": frame["name"],
        "signal": frame["signal"],
        "direction": frame["direction"],
        "raw_unit": unit,
        "scan_pixels": [nx, ny],
        "scan_range_m": [rx, ry],
        "header": {k: "\n".join(v) for k, v in tags.items()},
    }
    return model.assemble(
        data,
        pixel_size_nm=(ry * 1e9 / ny, rx * 1e9 / nx),
        channel=conventions.safe_channel(frame["name"]),
        units="nm" if factor is not None else unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=frame["name"])],
    )


FORMAT = Format(
    name=NAME,
    description="Nanonis SXM",
    suffixes=('.sxm',),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
