"""Bruker / Digital Instruments Nanoscope images: ``.spm`` and numbered ``.001``, ``.002``...

A text header of ``\\*Section`` lines and ``\\Key: value`` lines runs from ``\\*File list``
to ``\\*File list end``; each ``\\*Ciao image list`` section describes one image channel
(``@2:Image Data: S [Height] "Height"``) stored as little-endian 2- or 4-byte integers at
``Data offset``. Values are ``raw * hard / 2**(8*bytes_per_pixel) * sensitivity``: ``hard``
is the value of ``@2:Z scale: V [Sens. Zscan] (... V/LSB) 439.9866 V`` (volts over the
full integer range) and ``sensitivity`` the ``@Sens. Zscan: V 15.068 nm/V`` line it names,
which also gives the unit. Rows are stored bottom line first and are flipped so row 0 is
the top of the image (as Gwyddion, pySPM-based AFMReader and TopoStats show it).
See docs/formats.md.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import ChannelError, CorruptFileError
from ._text import read_until

NAME = "nanoscope"
MAGIC = b"\\*File list"
END = b"\\*File list end"
#: Real headers are 8-80 kB; a file whose header does not end within this is refused.
MAX_HEADER = 4 * 2**20
MAX_PIXELS = 2**15
IMAGE_SECTIONS = ("Ciao image list", "AFM image list", "NCAFM image list")
#: Units of lengths as Nanoscope writes them (``~m`` is µm), in nm.
LENGTH_NM = {"nm": 1.0, "~m": 1e3, "um": 1e3, "µm": 1e3, "\u03bcm": 1e3, "pm": 1e-3, "mm": 1e6, "m": 1e9, "Å": 0.1, "A": 0.1}
#: Channels tried, in order, when none is asked for.
HEIGHT_NAMES = ("Height", "Height Sensor", "ZSensor", "Z Sensor", "Height Trace", "Topography")
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_VALUE_RE = re.compile(r"^\s*([VCS])(?:\s+\[([^\]]*)\])?(?:\s+\(([^)]*)\))?\s*(.*?)\s*$")


@dataclass
class Section:
    name: str
    values: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, value: str) -> None:
        self.values.setdefault(key, value)
        self.folded.setdefault(key.lower(), value)

    def get(self, key: str) -> str | None:
        """Keys change case between versions (``Scan size`` / ``Scan Size``)."""
        return self.folded.get(key.lower())


@dataclass
class Header:
    sections: list[Section]
    end: int  # byte offset just past ``\*File list end``
    size: int  # file size

    def first(self, *names: str) -> list[Section]:
        return [s for s in self.sections if s.name in names]

    def lookup(self, key: str, prefer: tuple[str, ...] = ()) -> str | None:
        """A key's value from the preferred sections first, then any non-image section."""
        order = self.first(*prefer) + [s for s in self.sections if s.name not in prefer and s.name not in IMAGE_SECTIONS]
        for sec in order:
            if sec.get(key) is not None:
                return sec.get(key)
        return None


@dataclass
class Layer:
    section: Section
    group: str
    name: str  # unique channel name


def _parse_header(path: str) -> Header:
    head, end, size = read_until(path, END, limit=MAX_HEADER, starts=(MAGIC,))
    if head.startswith(b"?*File list"):
        raise CorruptFileError(path, "Nanoscope files with ASCII data ('?*File list') are not supported")
    if head.startswith(b"\\*Force file list"):
        raise CorruptFileError(path, "this is a Nanoscope force-curve file, not an image")
    if not head.startswith(MAGIC):
        raise CorruptFileError(path, "not a Nanoscope file (no '\\*File list' at the start)")
    if end < 0:
        what = "the file ends" if size <= MAX_HEADER else f"{MAX_HEADER} bytes"
        raise CorruptFileError(path, f"header end '\\*File list end' not found before {what} (truncated header?)")
    sections: list[Section] = []
    for raw in re.split(r"\r\n|\n|\r", head[:end].decode("latin-1")):
        if raw.startswith("\\*"):
            sections.append(Section(raw[2:].strip()))
            continue
        if not raw.startswith("\\"):
            continue  # blank or stray text (e.g. a multi-line note): carries no key
        if not sections:
            raise CorruptFileError(path, "header line before the first section")
        body = raw[1:]
        start = 3 if re.match(r"@\d+:", body) else 0
        m = re.compile(r":(\s|$)").search(body, start)
        if m is None:
            continue  # a line without a value: nothing to keep
        key, value = body[: m.start()].strip(), body[m.end():].strip()
        sections[-1].add(key, value)
    return Header(sections, end + len(END), size)


def _layers(header: Header) -> list[Layer]:
    layers: list[Layer] = []
    taken: set[str] = set()
    for sec in header.first(*IMAGE_SECTIONS):
        key = next((k for k in sec.values if re.fullmatch(r"@\d+:Image Data", k)), None)
        if key is None:
            continue
        group = key[1 : key.index(":")]
        m = re.match(r'^\s*S\s*\[([^\]]*)\]\s*"([^"]*)"', sec.values[key])
        base = (m.group(2) or m.group(1)) if m else sec.values[key].strip()
        base = conventions.safe_channel(base or "channel")
        name = base
        if name in taken:
            retrace = (sec.get("Line direction") or "").lower() == "retrace"
            name = f"{base}_retrace" if retrace else (f"{base}_lift" if group == "3" else base)
            n = 2
            while name in taken:
                name, n = f"{base}_{n}", n + 1
        taken.add(name)
        layers.append(Layer(sec, group, name))
    return layers


def _value(path: str, key: str, text: str | None) -> tuple[str | None, float, str]:
    """``V [soft] (hard scale) value unit`` -> (soft scale name, value, unit)."""
    if text is None:
        raise CorruptFileError(path, f"header value {key!r} is missing")
    m = _VALUE_RE.match(text)
    if m is None or m.group(1) != "V":
        raise CorruptFileError(path, f"header value {key}: {text!r} is not of the form 'V [soft] (hard) value unit'")
    rest = m.group(4).split(None, 1)
    try:
        value = float(rest[0])
    except (ValueError, IndexError):
        raise CorruptFileError(path, f"header value {key}: {text!r} has no number") from None
    if not math.isfinite(value):
        raise CorruptFileError(path, f"header value {key}: {text!r} is not finite")
    soft = (m.group(2) or "").strip() or None
    return soft, value, rest[1].strip() if len(rest) > 1 else ""


def _int(path: str, sec: Section, key: str, default: int | None = None) -> int:
    text = sec.get(key)
    if text is None:
        if default is not None:
            return default
        raise CorruptFileError(path, f"image section lacks {key!r}")
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        raise CorruptFileError(path, f"{key}: {text!r} is not an integer") from None


def _scan_size(path: str, text: str | None) -> tuple[float, float, float]:
    """``Scan size: 15 15 ~m`` (or one number) -> (x, y) in nm."""
    parts = (text or "").split()
    nums: list[float] = []
    for p in parts[:2]:
        try:
            nums.append(float(p))
        except ValueError:
            break
    unit = parts[len(nums)] if len(parts) > len(nums) else None
    if not nums or unit not in LENGTH_NM:
        raise CorruptFileError(path, f"Scan size {text!r} is not 'x [y] unit' with a length unit")
    sx = nums[0]
    sy = nums[1] if len(nums) > 1 else sx
    f = LENGTH_NM[unit]
    if not all(math.isfinite(v) and v > 0 for v in (sx, sy)):
        raise CorruptFileError(path, f"Scan size {text!r} must be positive")
    return sx * f, sy * f, f


def _epoch_ms(text: str | None) -> float | None:
    """``12:34:38 PM Tue Jul 30 2019``, read as UTC (the header carries no time zone)."""
    m = re.match(
        r"\s*(\d{1,2}):(\d{2}):(\d{2})\s*([AaPp][Mm])?\s+(?:[A-Za-z]+\s+)?([A-Za-z]{3})[A-Za-z]*\s+(\d{1,2})\s+(\d{4})",
        text or "",
    )
    if not m:
        return None
    hour, minute, sec = int(m.group(1)), int(m.group(2)), int(m.group(3))
    ampm = (m.group(4) or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    month = _MONTHS.get(m.group(5).lower())
    if month is None:
        return None
    try:
        stamp = _dt.datetime(int(m.group(7)), month, int(m.group(6)), hour, minute, sec, tzinfo=_dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp() * 1000.0


def _float(text: str | None) -> float | None:
    try:
        v = float((text or "").split()[0])
    except (ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None


def _scaling(path: str, header: Header, layer: Layer, bpp: int) -> tuple[float, str, dict[str, Any]]:
    """(nm-or-unit per LSB, unit, details) for one image layer."""
    sec = layer.section
    zkey = f"@{layer.group}:Z scale"
    soft, hard, hard_unit = _value(path, zkey, sec.get(zkey))
    lsb = hard / float(2 ** (8 * bpp))
    details: dict[str, Any] = {"z_scale": sec.get(zkey), "bytes_per_pixel": bpp}
    sens_text = header.lookup(f"@{soft}", prefer=("Scanner list", "Microscope list", "Ciao scan list")) if soft else None
    if sens_text is None:
        details["sensitivity"] = None
        return lsb, hard_unit or "V", details
    _, sens, sens_unit = _value(path, f"@{soft}", sens_text)
    details["sensitivity"] = sens_text
    unit = sens_unit[:-2] if sens_unit.endswith("/V") else sens_unit
    unit = unit.replace("\xba", "deg").strip()
    if not unit:
        unit = "deg" if "phase" in (soft or "").lower() else "V"
    factor = LENGTH_NM.get(unit)
    if factor is not None:
        return lsb * sens * factor, "nm", details
    return lsb * sens, unit, details


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """The header's first line, ``\\*File list``."""
    return probe.head.startswith(MAGIC)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    return [layer.name for layer in _layers(_parse_header(path))]


def _pick(path: str, layers: list[Layer], channel: str | None) -> Layer:
    names = [layer.name for layer in layers]
    if not layers:
        raise CorruptFileError(path, "the header describes no image channel ('@2:Image Data' in a '\\*Ciao image list')")
    if channel is None:
        for want in HEIGHT_NAMES:
            if want in names:
                return layers[names.index(want)]
        return layers[0]
    if channel in names:
        return layers[names.index(channel)]
    raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one image channel lazily: only the header is read here."""
    path = os.fspath(path)
    header = _parse_header(path)
    layer = _pick(path, _layers(header), channel)
    sec = layer.section
    samps, lines = _int(path, sec, "Samps/line"), _int(path, sec, "Number of lines")
    offset, length = _int(path, sec, "Data offset"), _int(path, sec, "Data length")
    bpp = _int(path, sec, "Bytes/pixel", 2)
    if bpp not in (2, 4):
        raise CorruptFileError(path, f"Bytes/pixel {bpp} is not supported (2 or 4)")
    sx, sy, _ = _scan_size(path, sec.get("Scan size") or header.lookup("Scan size", prefer=("Ciao scan list",)))
    if length != samps * lines * bpp:
        # Some files (v5.30) hold the true size only in the scan list; keep square pixels.
        scan = header.first("Ciao scan list")
        g_samps = _int(path, scan[0], "Samps/line", samps) if scan else samps
        g_lines = _int(path, scan[0], "Lines", lines) if scan else lines
        if length == g_samps * g_lines * bpp:
            sx, sy = sx * g_samps / samps, sy * g_lines / lines
            samps, lines = g_samps, g_lines
    if not (0 < samps <= MAX_PIXELS and 0 < lines <= MAX_PIXELS):
        raise CorruptFileError(path, f"image size {samps} x {lines} (Samps/line x Number of lines) is not plausible")
    if length != samps * lines * bpp:
        raise CorruptFileError(
            path, f"Data length {length} does not match {samps} x {lines} pixels x {bpp} bytes ({samps * lines * bpp})"
        )
    if offset < header.end:
        raise CorruptFileError(path, f"Data offset {offset} points into the header (which ends at byte {header.end})")
    if offset + length > header.size:
        raise CorruptFileError(
            path, f"file is {header.size} bytes but channel {layer.name!r} ends at byte {offset + length} (truncated?)"
        )
    scale, unit, details = _scaling(path, header, layer, bpp)
    data = RawFramesArray(
        path,
        offset=offset,
        n_frames=1,
        frame_shape=(lines, samps),
        raw_dtype="<i2" if bpp == 2 else "<i4",
        scale=scale,
        out_dtype=np.float64,
        flip_y=True,
    )
    file_list = next(iter(header.first("File list")), Section("File list"))
    scan_rate = _float(header.lookup("Scan rate", prefer=("Ciao scan list",)))
    scan_rate = scan_rate if scan_rate and scan_rate > 0 else None
    direction = (sec.get("Frame direction") or "").strip().lower()
    fm = {
        "line_rate": scan_rate,
        "frame_duration_s": lines / scan_rate if scan_rate else None,
        "scan_direction": direction if direction in ("up", "down") else None,
        "start_epoch_ms": _epoch_ms(file_list.get("Date")),
        "line_direction": (sec.get("Line direction") or "").strip().lower() or None,
    }
    kept: dict[str, dict[str, str]] = {}
    for s in header.sections:
        if s.name in IMAGE_SECTIONS and s is not sec:
            continue
        kept.setdefault(s.name, s.values)
    acquisition = {
        "format": "Bruker Nanoscope",
        "version": file_list.get("Version"),
        "date": file_list.get("Date"),
        "channel": layer.name,
        "image_data": sec.get(f"@{layer.group}:Image Data"),
        "scan_rate_hz": scan_rate,
        "scan_size_nm": [sx, sy],
        "samps_per_line": samps,
        "lines": lines,
        "scale_per_lsb": scale,
        **details,
        "header": kept,
    }
    return model.assemble(
        data,
        pixel_size_nm=(sy / lines, sx / samps),
        channel=layer.name,
        units=unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=layer.name)],
    )


FORMAT = Format(
    name=NAME,
    description="Bruker Nanoscope image",
    suffixes=(".spm",),
    patterns=(r"\.\d{3}$",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
