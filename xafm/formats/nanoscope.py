"""Bruker / Digital Instruments Nanoscope images, every version, recognised by content.

A text header of ``\\*Section`` lines and ``\\Key: value`` lines runs from ``\\*File list``
to ``\\*File list end``; each ``\\*Ciao image list`` section describes one image channel
(``@2:Image Data: S [ZSensor] "Height Sensor"``) stored as little-endian integers at
``Data offset``. The stored sample size comes from ``Data length`` and the image size
(from version 9.2 on data are 4-byte whatever ``Bytes/pixel`` says); ``Bytes/pixel``
still fixes the scale: values are ``raw * hard / 2**(8 * Bytes/pixel) * sensitivity``
(:func:`~xafm.formats._nanoscope_header.z_scale`). Rows are stored bottom line first
and are flipped so row 0 is the top of the image (as Gwyddion shows it). Force-curve
files are refused with :class:`~xafm.exceptions.NotAnImageError`. See docs/formats.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import ChannelError, CorruptFileError, NotAnImageError
from . import _nanoscope_header as hdr
from ._nanoscope_header import IMAGE_SECTIONS, MAGICS, Header, Section

NAME = "nanoscope"
MAX_PIXELS = 2**15
#: Channels tried, in order, when none is asked for (Bruker's names).
HEIGHT_NAMES = ("Height Sensor", "ZSensor", "Z Sensor", "Height", "Height Trace", "Topography")


@dataclass
class Layer:
    section: Section
    group: str  # the ``@2`` of ``@2:Image Data``
    base: str  # Bruker's channel name
    name: str  # unique channel name
    direction: str  # "trace", "retrace" or ""
    interleave: bool


def _layers(path: str, header: Header) -> list[Layer]:
    """Every image channel, with trace/retrace (and interleave) duplicates named apart."""
    found: list[Layer] = []
    for sec in header.first(*IMAGE_SECTIONS):
        key = next((k for k in sec.values if re.fullmatch(r"@\d+:Image Data", k)), None)
        if key is None:
            continue
        group = key[1 : key.index(":")]
        m = re.match(r'^\s*S\s*\[([^\]]*)\]\s*"([^"]*)"', sec.values[key])
        base = (m.group(2) or m.group(1)) if m else sec.values[key].strip()
        direction = (sec.get("Line direction") or "").strip().lower()
        interleave = (sec.get("Scan line") or "").strip().lower() == "interleave" or group == "3"
        found.append(Layer(sec, group, conventions.safe_channel(base.strip() or "channel"), "", direction, interleave))
    counts: dict[str, int] = {}
    for layer in found:
        counts[layer.base] = counts.get(layer.base, 0) + 1
    taken: set[str] = set()
    for layer in found:
        name = layer.base
        if counts[layer.base] > 1:  # Height and Height: Height_trace, Height_retrace
            parts = ["interleave"] * layer.interleave + [layer.direction] * (layer.direction in ("trace", "retrace"))
            name = "_".join([layer.base, *parts]) if parts else layer.base
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}_{n}", n + 1
        layer.name = unique
        taken.add(unique)
    if not found:
        _refuse_force_data(path, header)
    return found


def _refuse_force_data(path: str, header: Header) -> None:
    """A file with no image channel that holds force curves is not an image file."""
    mode = (header.lookup("Operating mode", prefer=("Ciao scan list",)) or "").strip().lower()
    context = (header.lookup("Start context", prefer=("File list",)) or "").strip().upper()
    if header.first(*hdr.FORCE_SECTIONS) or mode.startswith("force") or context in ("FOL", "FVOL"):
        raise NotAnImageError(path, hdr.FORCE_CURVES)
    raise CorruptFileError(path, "the header describes no image channel ('@2:Image Data' in a '\\*Ciao image list')")


def _header(path: str) -> tuple[Header, list[Layer]]:
    header = hdr.parse_header(path)
    mode = (header.lookup("Operating mode", prefer=("Ciao scan list",)) or "").strip().lower()
    if mode == "force":  # single force curves, whatever the sections are called
        raise NotAnImageError(path, hdr.FORCE_CURVES)
    return header, _layers(path, header)


def _check_complete(path: str, header: Header) -> None:
    """The file must hold every byte its header promises (a header copied without its
    data says so here, not as a size mismatch)."""
    file_list = next(iter(header.first("File list", "EC File list")), Section("File list"))
    block = hdr.integer(path, file_list, "Data length", 0)
    ends = [block]
    for sec in header.first(*IMAGE_SECTIONS, *hdr.FORCE_SECTIONS):
        if sec.get("Data offset") is not None and sec.get("Data length") is not None:
            ends.append(hdr.integer(path, sec, "Data offset") + hdr.integer(path, sec, "Data length"))
    promised = max(ends)
    if promised > header.size:
        raise CorruptFileError(
            path,
            f"file is truncated: the header promises {promised} bytes ({block}-byte header block and "
            f"{len(ends) - 1} data blocks) but the file holds {header.size} bytes",
        )


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """The header's first line: ``\\*File list`` (also the electrochemistry, force and
    ASCII variants, so that those are refused with a reason rather than not recognised)."""
    return probe.head.startswith(MAGICS)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    return [layer.name for layer in _header(path)[1]]


def _pick(path: str, layers: list[Layer], channel: str | None) -> Layer:
    names = [layer.name for layer in layers]
    if channel is None:
        for want in HEIGHT_NAMES:
            group = [layer for layer in layers if layer.base == want]
            if group:
                return next((layer for layer in group if not layer.interleave), group[0])
        return layers[0]
    if channel in names:
        return layers[names.index(channel)]
    folded = [layer for layer in layers if layer.name.lower() == str(channel).lower()]
    if len(folded) == 1:
        return folded[0]
    same = [layer.name for layer in layers if layer.base.lower() == str(channel).lower()]
    if same:
        raise ChannelError(f"{path}: channel {channel!r} is ambiguous in this file; pick one of {same}")
    raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")


def _geometry(path: str, header: Header, sec: Section, samps: int, lines: int, length: int) -> tuple[int, int, int, float, float]:
    """(samps, lines, stored bytes per sample, pixel y, pixel x) in nm.

    The stored sample size is ``Data length / (samps x lines)`` (2 or 4). ``Scan Size``
    gives the scan area's x and y lengths (a scan list ``Aspect Ratio`` other than 1:1
    shortens a y that merely repeats x); a frame holding fewer lines than the scan
    list's ``Lines`` (an interrupted capture) keeps the full frame's line spacing.
    """
    sx, sy = hdr.scan_size(path, sec.get("Scan size") or header.lookup("Scan size", prefer=("Ciao scan list",)))
    scan = next(iter(header.first("Ciao scan list")), Section("Ciao scan list"))
    aspect = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*:\s*(\d+(?:\.\d*)?)\s*", scan.get("Aspect Ratio") or "")
    if aspect and sx == sy and 0 < float(aspect.group(1)) != float(aspect.group(2)) > 0:
        sy = sx * float(aspect.group(2)) / float(aspect.group(1))  # fast:slow, e.g. 2:1
    g_samps, g_lines = hdr.integer(path, scan, "Samps/line", samps), hdr.integer(path, scan, "Lines", lines)
    full_lines = lines
    stored = next((b for b in (2, 4) if length == samps * lines * b), 0)
    if not stored and min(samps, lines, g_samps, g_lines) > 0:
        # Some files (v5.30) hold the true size only in the scan list; keep square pixels.
        stored = next((b for b in (2, 4) if length == g_samps * g_lines * b), 0)
        if stored:
            sx, sy = sx * g_samps / samps, sy * g_lines / lines
            samps, lines = g_samps, g_lines
            full_lines = lines
    elif 0 < lines < g_lines:
        full_lines = g_lines
    if not (0 < samps <= MAX_PIXELS and 0 < lines <= MAX_PIXELS):
        raise CorruptFileError(path, f"image size {samps} x {lines} (Samps/line x Number of lines) is not plausible")
    if not stored:
        raise CorruptFileError(
            path, f"Data length {length} does not match {samps} x {lines} pixels of 2 or 4 bytes ({samps * lines * 2} or {samps * lines * 4})"
        )
    return samps, lines, stored, sy / full_lines, sx / samps


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one image channel lazily: only the header is read here."""
    path = os.fspath(path)
    header, layers = _header(path)
    _check_complete(path, header)
    layer = _pick(path, layers, channel)
    sec = layer.section
    offset, length = hdr.integer(path, sec, "Data offset"), hdr.integer(path, sec, "Data length")
    samps, lines = hdr.integer(path, sec, "Samps/line"), hdr.integer(path, sec, "Number of lines")
    samps, lines, stored, pixel_y, pixel_x = _geometry(path, header, sec, samps, lines, length)
    qbpp = hdr.integer(path, sec, "Bytes/pixel", 2)
    if qbpp not in (2, 4):
        raise CorruptFileError(path, f"Bytes/pixel {qbpp} is not supported (2 or 4)")
    if offset < header.end:
        raise CorruptFileError(path, f"Data offset {offset} points into the header (which ends at byte {header.end})")
    scale, unit, details = hdr.z_scale(path, header, sec, layer.group, qbpp)
    data = RawFramesArray(
        path,
        offset=offset,
        n_frames=1,
        frame_shape=(lines, samps),
        raw_dtype="<i2" if stored == 2 else "<i4",
        scale=scale,
        out_dtype=np.float64,
        flip_y=True,
    )
    file_list = next(iter(header.first("File list", "EC File list")), Section("File list"))
    scan_rate = hdr.number(header.lookup("Scan rate", prefer=("Ciao scan list",)))
    scan_rate = scan_rate if scan_rate and scan_rate > 0 else None
    direction = (sec.get("Frame direction") or "").strip().lower()
    fm = {
        "line_rate": scan_rate,
        "frame_duration_s": lines / scan_rate if scan_rate else None,
        "scan_direction": direction if direction in ("up", "down") else None,
        "start_epoch_ms": hdr.epoch_ms(file_list.get("Date")),
        "line_direction": layer.direction or None,
    }
    kept: dict[str, dict[str, str]] = {}
    for s in header.sections:
        if s.name in IMAGE_SECTIONS and s is not sec:
            continue
        kept.setdefault(s.name, s.values)
    acquisition: dict[str, Any] = {
        "format": "Bruker Nanoscope",
        "version": file_list.get("Version"),
        "date": file_list.get("Date"),
        "channel": layer.name,
        "bruker_channel": layer.base,
        "image_data": sec.get(f"@{layer.group}:Image Data"),
        "scan_rate_hz": scan_rate,
        "scan_size_nm": [pixel_x * samps, pixel_y * lines],
        "samps_per_line": samps,
        "lines": lines,
        "bytes_per_pixel": stored,
        "scale_per_lsb": scale,
        **details,
        "header": kept,
    }
    return model.assemble(
        data,
        pixel_size_nm=(pixel_y, pixel_x),
        channel=layer.name,
        units=unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=layer.name)],
    )


FORMAT = Format(
    name=NAME,
    description="Bruker Nanoscope image",
    suffixes=(".spm", ".di", ".pfc"),
    patterns=(r"\.\d{3}$",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
