"""Nanosurf ``.nid`` files (easyScan 2, FlexAFM, DriveAFM, NaioAFM / NaioSTM controllers):
an INI-like text header, the two bytes ``#!``, then the raw data blocks.

The header's ``[DataSet]`` section lists groups (``Gr0-Name=Scan forward``) and, per group,
its channels (``Gr0-Ch1=DataSet-0:1``), each a section that gives the block's size
(``Points``, ``Lines``, ``SaveBits``), its lateral extent (``Dim0Range``, ``Dim1Range``) and
its value scale (``Dim2Min``, ``Dim2Range``, ``Dim2Unit``). Blocks follow ``#!`` in that
order. Values are ``Dim2Min + (raw + 2**(bits-1)) / 2**bits * Dim2Range`` for signed data
(Nanosurf's own reader); lengths become nm. The file stores the bottom line first (as
Gwyddion reads it): rows are flipped so that row 0 is the top. Channels are named
``<group> (<Dim2Name>)`` (``Scan forward (Z-Axis)``); the default is the first scan's
``Z-Axis``. Spectroscopy files (no image frame) raise :class:`NotAnImageError`. See
docs/formats.md.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import CorruptFileError, NotAnImageError
from ._channels import pick_channel
from ._text import read_until
from ._units import length_unit_nm

NAME = "nid"
MAGIC = b"[DataSet]"
DATA_MARK = b"#!"
#: Real headers are 15-35 kB; a file whose header does not end within this is refused.
MAX_HEADER = 4 * 2**20
#: Largest number of points per line or of lines a block may declare.
MAX_SIDE = 2**20
#: ``SaveOrder`` -> numpy byte order (Nanosurf's readers and Gwyddion know only Intel).
_BYTE_ORDER = {"intel": "<"}
#: Channel asked for by ``channel=None`` (by ``Dim2Name``), in order.
DEFAULT_SIGNALS = ("Z-Axis", "Topography", "Z-Axis Sensor", "Z-AxisSensor", "Height")


@dataclass(frozen=True)
class Block:
    """One data block as the header describes it."""

    group: str
    section: str
    signal: str
    unit: str
    points: int
    lines: int
    bits: int
    signed: bool
    order: str
    z_min: float
    z_range: float
    x_range: float
    x_unit: str
    y_range: float
    y_unit: str
    offset: int
    spectroscopy: bool

    @property
    def nbytes(self) -> int:
        return self.points * self.lines * self.bits // 8

    @property
    def is_image(self) -> bool:
        """A scan frame (``Scan forward``, ``2nd scan backward``, ...) of at least two lines
        over a lateral area in length units."""
        return (
            "scan" in self.group.lower()
            and not self.spectroscopy
            and self.lines >= 2
            and length_unit_nm(self.x_unit) is not None
            and length_unit_nm(self.y_unit) is not None
            and self.x_range > 0
            and self.y_range > 0
        )

    @property
    def name(self) -> str:
        return f"{self.group} ({self.signal})"


# --------------------------------------------------------------------------------------
# header
# --------------------------------------------------------------------------------------
def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_header(path: str) -> tuple[dict[str, dict[str, str]], int, int]:
    """The header's sections (name -> key -> value), the data offset and the file size."""
    head, end, size = read_until(path, DATA_MARK, limit=MAX_HEADER, starts=(MAGIC,))
    if not head.startswith(MAGIC):
        raise CorruptFileError(path, "not a Nanosurf NID file (no [DataSet] at the start)")
    if end < 0:
        what = "the file ends" if size <= MAX_HEADER else f"{MAX_HEADER} bytes"
        raise CorruptFileError(path, f"header end marker '#!' not found before {what} (truncated header?)")
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in _decode(head[:end]).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None:
            raise CorruptFileError(path, f"header line {line[:40]!r} before the first [section]")
        key, sep, value = line.partition("=")
        if not sep:
            raise CorruptFileError(path, f"header line {line[:40]!r} has no '='")
        if key.startswith("--"):  # "-- Scan --=--------" sub-headings of [DataSet-Info]
            continue
        current.setdefault(key.strip(), value.strip())
    return sections, end + len(DATA_MARK), size


def _int(path: str, section: str, values: dict[str, str], key: str, lo: int, hi: int) -> int:
    text = values.get(key)
    try:
        v = int(str(text).strip())
    except ValueError:
        raise CorruptFileError(path, f"[{section}] {key}={text!r} is not a whole number") from None
    if not lo <= v <= hi:
        raise CorruptFileError(path, f"[{section}] {key}={v} is outside {lo}..{hi}")
    return v


def _float(path: str, section: str, values: dict[str, str], key: str, default: float | None = None) -> float:
    text = values.get(key)
    if text is None and default is not None:
        return default
    try:
        v = float(str(text).strip())
    except ValueError:
        raise CorruptFileError(path, f"[{section}] {key}={text!r} is not a number") from None
    if not math.isfinite(v):
        raise CorruptFileError(path, f"[{section}] {key}={text!r} is not finite")
    return v


def _blocks(path: str, sections: dict[str, dict[str, str]], data_offset: int) -> list[Block]:
    """Every data block the ``[DataSet]`` section lists, in file order, with its offset."""
    ds = sections.get("DataSet", {})
    n_groups = _int(path, "DataSet", ds, "GroupCount", 0, 1024)
    blocks: list[Block] = []
    offset = data_offset
    for g in range(n_groups):
        group = ds.get(f"Gr{g}-Name", f"Group {g}")
        n_channels = _int(path, "DataSet", ds, f"Gr{g}-Count", 0, 4096) if f"Gr{g}-Count" in ds else 0
        for c in range(n_channels):
            ref = ds.get(f"Gr{g}-Ch{c}")
            if ref is None:  # channel slots may be left out (Ch0, Ch1, Ch3, Ch7)
                continue
            sec = sections.get(ref)
            if sec is None:
                raise CorruptFileError(path, f"[DataSet] Gr{g}-Ch{c}={ref} names a section the header lacks")
            bits = _int(path, ref, sec, "SaveBits", 8, 64)
            if bits not in (8, 16, 32, 64):
                raise CorruptFileError(path, f"[{ref}] SaveBits={bits} is not 8, 16, 32 or 64")
            mode = sec.get("SaveMode", "Binary")
            order = sec.get("SaveOrder", "Intel").lower()
            if mode.lower() != "binary" or order not in _BYTE_ORDER:
                raise CorruptFileError(path, f"[{ref}] SaveMode={mode}, SaveOrder={sec.get('SaveOrder')}: only binary Intel (little-endian) data is known")
            block = Block(
                group=group, section=ref, signal=sec.get("Dim2Name", ref), unit=sec.get("Dim2Unit", ""),
                points=_int(path, ref, sec, "Points", 1, MAX_SIDE), lines=_int(path, ref, sec, "Lines", 1, MAX_SIDE),
                bits=bits, signed=sec.get("SaveSign", "Signed").lower() != "unsigned", order=_BYTE_ORDER[order],
                z_min=_float(path, ref, sec, "Dim2Min", 0.0), z_range=_float(path, ref, sec, "Dim2Range", 1.0),
                x_range=_float(path, ref, sec, "Dim0Range", 0.0), x_unit=sec.get("Dim0Unit", ""),
                y_range=_float(path, ref, sec, "Dim1Range", 0.0), y_unit=sec.get("Dim1Unit", ""),
                offset=offset, spectroscopy=any(k.startswith("LineDim") for k in sec),
            )  # fmt: skip
            blocks.append(block)
            offset += block.nbytes
    if not blocks:
        raise CorruptFileError(path, "[DataSet] lists no data blocks")
    return blocks


def _layout(path: str) -> tuple[dict[str, dict[str, str]], list[Block]]:
    """The header and its blocks, checked against the file size; only image blocks are
    returned, and a file without any is refused as not an image."""
    sections, data_offset, size = _read_header(path)
    blocks = _blocks(path, sections, data_offset)
    end = blocks[-1].offset + blocks[-1].nbytes
    if end > size:
        raise CorruptFileError(
            path,
            f"file is {size} bytes but the header describes {len(blocks)} data blocks of "
            f"{end - data_offset} bytes from byte {data_offset}, ending at byte {end} (truncated)",
        )
    images = [b for b in blocks if b.is_image]
    if not images:
        groups = sorted({b.group for b in blocks})
        spectro = any(b.spectroscopy or "spec" in b.group.lower() for b in blocks)
        what = "spectra" if spectro else "spectra or sweeps"
        raise NotAnImageError(path, f"this is a spectroscopy file (Nanosurf NID {what}: the data {groups} hold no scanned image); xafm reads images")
    return sections, images


def _named(images: list[Block]) -> dict[str, Block]:
    """Channel name -> block; a repeated name gets `` #2``, `` #3`` in file order."""
    out: dict[str, Block] = {}
    for b in images:
        name, n = b.name, 1
        while name in out:
            n += 1
            name = f"{b.name} #{n}"
        out[name] = b
    return out


def _defaults(named: dict[str, Block]) -> list[str]:
    """Default channels in order: the first scan group's height signals, then any length."""
    first_group = next(iter(named.values())).group
    out = [n for sig in DEFAULT_SIGNALS for n, b in named.items() if b.group == first_group and b.signal == sig]
    out += [n for n, b in named.items() if length_unit_nm(b.unit) is not None]
    return out


def _epoch_ms(info: dict[str, str]) -> float | None:
    """``Date`` (dd-mm-yyyy) + ``Time`` of ``[DataSet-Info]``, read as UTC."""
    m = re.fullmatch(r"(\d{1,2})-(\d{1,2})-(\d{4})", info.get("Date", ""))
    t = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})", info.get("Time", "0:00:00"))
    if not m or not t:
        return None
    try:
        stamp = _dt.datetime(int(m[3]), int(m[2]), int(m[1]), int(t[1]), int(t[2]), int(t[3]), tzinfo=_dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp() * 1000.0


def _seconds(text: str | None) -> float | None:
    """``Time/Line=500ms`` -> 0.5."""
    m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*(ms|s|us|µs)?\s*", text or "")
    if not m:
        return None
    try:
        v = float(m[1]) * {"ms": 1e-3, "us": 1e-6, "µs": 1e-6}.get(m[2] or "s", 1.0)
    except ValueError:
        return None
    return v if math.isfinite(v) and v > 0 else None


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """The header starts with the ``[DataSet]`` section and lists its groups."""
    head = probe.head
    return head.startswith(MAGIC) and b"GroupCount=" in head[:512]


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    _, images = _layout(path)
    return list(_named(images))


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one channel lazily: only the header is read here."""
    path = os.fspath(path)
    sections, images = _layout(path)
    named = _named(images)
    by_signal = {f"{b.signal}": b for b in reversed(images) if "forward" in b.group.lower()}
    choices = {**{k: v for k, v in by_signal.items() if k not in named}, **named}
    block = pick_channel(path, choices, channel, _defaults(named))
    name = next(n for n, b in named.items() if b is block)
    q = 2.0**block.bits
    step = block.z_range / q  # Nanosurf: min + (raw + q/2) / q * range for signed data
    add = block.z_min + (q / 2 * step if block.signed else 0.0)
    factor = length_unit_nm(block.unit)
    if factor is not None:
        step, add = step * factor, add * factor
    kind = ("i" if block.signed else "u") + str(block.bits // 8)
    data = RawFramesArray(
        path, offset=block.offset, n_frames=1, frame_shape=(block.lines, block.points),
        raw_dtype=block.order + kind, scale=step, add=add, out_dtype=np.float64, flip_y=True,
    )  # fmt: skip
    x_nm = block.x_range * (length_unit_nm(block.x_unit) or 1.0)
    y_nm = block.y_range * (length_unit_nm(block.y_unit) or 1.0)
    info = sections.get("DataSet-Info", {})
    direction = info.get("Scan direction", "").lower()
    per_line = _seconds(info.get("Time/Line"))
    fm = {
        "line_rate": 1.0 / per_line if per_line else None,
        "frame_duration_s": per_line * block.lines if per_line else None,
        "scan_direction": direction if direction in ("up", "down") else None,
        "start_epoch_ms": _epoch_ms(info),
    }
    acquisition = {
        "format": "Nanosurf NID",
        "channel": name,
        "group": block.group,
        "signal": block.signal,
        "raw_unit": block.unit,
        "section": block.section,
        "points_lines": [block.points, block.lines],
        "range": [block.x_range, block.y_range],
        "range_units": [block.x_unit, block.y_unit],
        "operating_mode": info.get("Op. mode"),
        "software_version": info.get("Software ver."),
        "info": info,
    }
    return model.assemble(
        data,
        pixel_size_nm=(y_nm / block.lines, x_nm / block.points),
        channel=conventions.safe_channel(name),
        units="nm" if factor is not None else block.unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=name)],
    )


FORMAT = Format(
    name=NAME,
    description="Nanosurf NID",
    suffixes=(".nid",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
