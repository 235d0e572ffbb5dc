"""Asylum Research / Igor Pro binary wave (``.ibw``), read with igor2.

An Asylum image is one version-5 wave of shape (points, lines, channels) stored
column-major (points fastest), with one dimension label per channel (``HeightRetrace``,
``AmplitudeRetrace``, ...) and the instrument settings as ``Key: value`` lines in the
wave note. Asylum writes force curves, force maps and spectra as waves too; they are
refused with ``NotAnImageError`` from the wave's own header facts (:func:`not_an_image`).
See docs/formats.md for the layout, the rule and the choices made here.

igor2 is LGPL-3.0, so it is imported only inside the functions that parse a file.
"""

from __future__ import annotations

import os
import re
import struct
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.lazy import RawFramesArray
from ..exceptions import ChannelError, CorruptFileError, NotAnImageError
from ._units import length_unit_nm

NAME = "ibw"

BIN_HEADER5 = "hhiiii4i4iiii"  # 64 bytes; the byte order is prefixed at use
WAVE_HEADER5_SIZE = 320
HEADERS_SIZE = 64 + WAVE_HEADER5_SIZE
LABEL_BYTES = 32  # MAX_DIM_LABEL_CHARS + 1
#: Igor numeric type codes (without the complex bit 0x01).
IGOR_TYPES = {0x02: "f4", 0x04: "f8", 0x08: "i1", 0x10: "i2", 0x20: "i4", 0x48: "u1", 0x50: "u2", 0x60: "u4"}
HEIGHT_PREFERENCE = ("HeightRetrace", "HeightTrace", "Height")
#: Gwyddion's channel-name -> unit table for Asylum files (name prefix, unit; None = wave units).
_UNIT_BY_PREFIX = (
    ("Height", "m"), ("ZSensor", "m"), ("Deflection", "m"), ("Amplitude", "m"), ("Phase", "deg"),
    ("Current", "A"), ("Frequency", "Hz"), ("Capacitance", "F"), ("Potential", "V"),
    ("Count", None), ("QFactor", None),
)
_IGOR_EPOCH_TO_UNIX_S = 2082844800  # 1904-01-01 -> 1970-01-01


def _igor2() -> Any:
    try:
        from igor2 import binarywave
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching
        raise ImportError(
            "reading .ibw files needs the igor2 package (LGPL-3.0): `pip install igor2` or `pip install xafm[ibw]`"
        ) from exc
    return binarywave


def _headers(path: str) -> dict[str, Any]:
    """Parse and check the v5 headers ourselves, so igor2 never sees a lying file, and refuse
    a sound wave that is not an image (:func:`not_an_image`) before its data are touched."""
    with sources.open_binary(path, block_size=sources.SMALL_BLOCK) as fh:
        size = sources.file_size(fh)
        head = fh.read(HEADERS_SIZE)
        if len(head) < 2:
            raise CorruptFileError(path, f"file is {size} bytes, too short for an Igor binary wave")
        little = head[0] != 0
        bo = "<" if little else ">"
        version = struct.unpack(bo + "h", head[:2])[0]
        if version in (1, 2, 3):
            n = CHECKSUMMED[version]
            if len(head) < n or int(np.frombuffer(head[:n], dtype=bo + "u2").sum()) & 0xFFFF:
                raise CorruptFileError(path, f"header checksum does not match: damaged Igor binary wave (version {version})")
            raise NotAnImageError(
                path, f"this is a curve or spectrum file (an Igor version-{version} binary wave, which holds only 1-D waves); xafm reads images"
            )
        if version != 5:
            raise CorruptFileError(path, f"not an Igor binary wave (unknown version {version})")
        if len(head) < HEADERS_SIZE:
            raise CorruptFileError(path, f"file is {size} bytes; the version-5 headers need {HEADERS_SIZE}")
        if int(np.frombuffer(head, dtype=bo + "u2").sum()) & 0xFFFF:
            raise CorruptFileError(path, "header checksum does not match: damaged Igor binary wave")
        h = struct.unpack(bo + BIN_HEADER5, head[:64])
        wfm_size, formula_size, note_size, data_e_units_size = h[2:6]
        dim_e_units, dim_labels = h[6:10], h[10:14]
        sizes = [wfm_size, formula_size, note_size, data_e_units_size, *dim_e_units, *dim_labels]
        if any(s < 0 for s in sizes):
            raise CorruptFileError(path, f"negative section size in the header: {sizes}")
        n_dim = struct.unpack(bo + "4i", head[64 + 68 : 64 + 84])
        wave_type = struct.unpack(bo + "h", head[64 + 16 : 64 + 18])[0]
        npnts = struct.unpack(bo + "i", head[64 + 12 : 64 + 16])[0]
        if any(n < 0 for n in n_dim):
            raise CorruptFileError(path, f"negative wave dimension in {tuple(n_dim)}")
        k = next((i for i, n in enumerate(n_dim) if n == 0), 4)
        dims = list(n_dim[:k])
        if any(n_dim[k:]) or k == 0:
            raise CorruptFileError(path, f"wave dimensions {tuple(n_dim)} are not a wave's (a zero before a non-zero size, or no points)")
        if wave_type & 0x01:
            raise CorruptFileError(path, "complex waves are not AFM images; not supported")
        code = IGOR_TYPES.get(wave_type)
        if code is None:
            raise CorruptFileError(path, f"unsupported Igor data type 0x{wave_type:x} (text or unknown)")
        dtype = np.dtype(bo + code)
        count = int(np.prod(dims, dtype=np.int64))
        if count != npnts or count * dtype.itemsize != wfm_size - WAVE_HEADER5_SIZE:
            raise CorruptFileError(
                path, f"wave dimensions {tuple(dims)} x {dtype.itemsize} bytes disagree with npnts={npnts} / wfmSize={wfm_size}"
            )
        end = 64 + sum(sizes)
        if end > size:
            raise CorruptFileError(path, f"file is {size} bytes; its header describes {end}")
        fh.seek(64 + wfm_size + formula_size)
        note = fh.read(note_size)
        fh.seek(data_e_units_size, os.SEEK_CUR)
        e_units = [fh.read(n) for n in dim_e_units]
        labels_raw = fh.read(sum(dim_labels))
        footer = _asylum_footer(fh, size, end)
    units = [
        (e or head[64 + 152 + 4 * i : 64 + 156 + 4 * i]).split(b"\0", 1)[0].decode("latin-1").strip()
        for i, e in enumerate(e_units)
    ]
    labels = _labels(labels_raw, dim_labels)
    why = not_an_image(dims, units, labels, _parse_note(note), footer)
    if why is not None:
        raise NotAnImageError(path, f"this is a {why[0]} file ({why[1]}); xafm reads images")
    return {
        "byteorder": bo,
        "dtype": dtype,
        "dims": dims,
        "sizes": dict(zip(("wfm", "formula", "note", "data_e_units"), sizes[:4])),
        "dim_labels": labels,
        "dim_units": units,
        "footer": footer,
    }


def _asylum_footer(fh: Any, size: int, end: int) -> dict[str, str]:
    """Asylum's ``Key:value;`` footer after the wave's sections, which ends in
    ``NNNN MFP3D`` (NNNN: the footer's length in bytes, counted from the end of the file)."""
    if size - end < 10:
        return {}
    fh.seek(size - 10)
    tail = fh.read(10)
    m = re.fullmatch(rb"(\d{4}) MFP3D", tail)
    if m is None or not 10 < int(m.group(1)) <= size - end:
        return {}
    fh.seek(size - int(m.group(1)))
    text = fh.read(int(m.group(1)) - 10).decode("latin-1")
    out = {}
    for item in text.split(";"):
        key, sep, value = item.partition(":")
        if sep and re.fullmatch(r"\w+", key.strip()):
            out[key.strip()] = value.strip()
    return out


#: Signal names of Asylum force curves (the labels of a force curve's columns).
FORCE_SIGNALS = frozenset({"Raw", "Defl", "ZSnsr", "LVDT", "Force", "Sep", "Ind", "DeflV", "Amp", "Phas", "Time"})
#: Note keys of a force curve's segment table (split points; 1 extend, -1 retract, 0 dwell).
FORCE_NOTE_KEYS = ("Indexes", "Direction")
_TIME_UNITS = frozenset({"s", "ms", "us", "\u00b5s", "ns", "sec"})


def not_an_image(
    dims: list[int], units: list[str], labels: list[list[str]], notes: dict[str, str], footer: dict[str, str]
) -> tuple[str, str] | None:
    """Why a sound wave is not an image: ``(kind, facts)``, or None for an image.

    An image has 2 or 3 dims; dims 0 and 1 (points, lines) are lengths or unscaled; dim 2,
    if any, indexes channels (no unit); no signal labels on dims 0 and 1 (Asylum labels an
    image's channels on dim 2); no force-curve segment table in the note unless dim 2 labels
    image channels; and Asylum's footer, when present, does not say ``IsImage:0``.
    docs/formats.md gives the facts.
    """
    facts = []
    shape = " x ".join(str(n) for n in dims)
    if len(dims) == 1:
        facts.append(f"a 1-D wave of {dims[0]} points")
    elif len(dims) == 4:
        facts.append(f"a 4-D wave of {shape}")
    for i in range(min(len(dims), 2)):
        unit = units[i]
        if unit and length_unit_nm(unit) is None:
            what = "time" if unit in _TIME_UNITS else "not a length"
            facts.append(f"dimension {i} ({dims[i]} samples) is in {unit!r}, {what}")
    if len(dims) >= 3 and units[2]:
        facts.append(f"dimension 2 ({dims[2]} samples) is in {units[2]!r}, not a channel index")
    # labels of dims 0 and 1 (and of a 4-D wave's last dim) name signals, not image channels
    signal_dims = [0, 1, 3] if len(dims) == 4 else [0, 1]
    signals = [name for i in signal_dims if i < len(dims) for name in labels[i][1:] if name]
    if signals:
        more = ", ..." if len(signals) > 6 else ""
        facts.append(f"its columns are the signals {', '.join(signals[:6])}{more}")
    # the note's segment table decides only for waves without image channels on dim 2: an
    # analysed force map (Adhesion, YoungsModulus, ... on dim 2) is an image
    image_channels = len(dims) == 3 and any(labels[2][1:])
    segments = all(key in notes for key in FORCE_NOTE_KEYS)
    if segments and not image_channels:
        facts.append(f"the note has a force curve's segment table ({'/'.join(FORCE_NOTE_KEYS)})")
    if footer.get("IsImage") == "0":
        facts.append("Asylum's footer says IsImage:0")
    if not facts:
        return None
    force = segments or any(name in FORCE_SIGNALS for name in signals)
    if not force:
        kind = "spectroscopy"
    elif len(dims) >= 3:
        kind = "force-map"
    else:
        kind = "force-curve"
    return kind, f"{shape} wave: " + "; ".join(facts) if len(dims) in (2, 3) else "; ".join(facts)


def _labels(raw: bytes, sizes: tuple[int, ...]) -> list[list[str]]:
    """Dimension labels: fixed 32-byte NUL-terminated fields (igor2 mangles the tails)."""
    out, pos = [], 0
    for n in sizes:
        block = raw[pos : pos + n]
        pos += n
        out.append([block[i : i + LABEL_BYTES].split(b"\0", 1)[0].decode("latin-1") for i in range(0, len(block) - LABEL_BYTES + 1, LABEL_BYTES)])
    return out


def _parse_note(note: bytes | str) -> dict[str, str]:
    text = note.decode("latin-1") if isinstance(note, bytes) else str(note)
    out: dict[str, str] = {}
    for line in re.split(r"\r\n|\r|\n", text):
        if ":" in line:
            key, value = line.split(":", 1)
            if key.strip():
                out[key.strip()] = value.strip()
    return out


def _float(notes: dict[str, str], key: str) -> float | None:
    try:
        v = float(notes[key])
    except (KeyError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _canonical(title: str) -> str:
    name = re.sub(r"Mod\d*$", "", title)
    for suffix in ("Retrace", "Trace"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _channel_unit(title: str, notes: dict[str, str], wave_units: str) -> str:
    """Unit of one channel: the note's ``<Name>Unit`` entry, else Gwyddion's name table."""
    name = _canonical(title)
    if notes.get(name + "Unit"):
        return notes[name + "Unit"]
    stripped = name[3:] if name.startswith(("DAC", "Nap")) else name
    for prefix, unit in _UNIT_BY_PREFIX:
        if stripped.startswith(prefix):
            return wave_units if unit is None else unit
    return "V"


def _describe(path: str) -> dict[str, Any]:
    hdr = _headers(path)
    binarywave = _igor2()
    try:
        with sources.open_binary(path) as fh:  # igor2 parses it whole, data and all
            wave = binarywave.load(fh)["wave"]
    except (ValueError, struct.error, AssertionError, IndexError, KeyError) as exc:
        raise CorruptFileError(path, f"igor2 could not parse the wave: {type(exc).__name__}: {exc}") from None
    wh = wave["wave_header"]
    dims = hdr["dims"]
    n_points, n_lines = dims[0], dims[1]
    n_channels = dims[2] if len(dims) == 3 else 1
    labels = hdr["dim_labels"][2] if len(dims) == 3 else []
    names = [labels[i + 1] if i + 1 < len(labels) and labels[i + 1] else "" for i in range(n_channels)]
    labelled = [bool(n) for n in names]
    bname = bytes(wh.get("bname", b"")).split(b"\0", 1)[0].decode("latin-1") or "wave"
    if n_channels == 1 and not names[0]:
        names = [bname]
    names = [n or f"channel{i}" for i, n in enumerate(names)]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):  # duplicate labels: keep them apart
        if n in seen:
            names[i] = f"{n}#{i}"
        seen[n] = i
    # igor2's (and so AFMReader's) label strings keep bytes after the NUL, e.g.
    # 'DeflectionRetracee': accepted as aliases of the clean names
    aliases = {}
    if len(dims) == 3:
        mangled = list(wave.get("labels", [[], [], []])[2] or [])[1 : n_channels + 1]
        for clean, raw in zip(names, mangled):
            alias = raw.decode("latin-1", errors="replace") if isinstance(raw, bytes) else str(raw)
            if alias and alias != clean and alias not in names:
                aliases[alias] = clean
    notes = _parse_note(wave.get("note", b""))
    units_raw = wh.get("dataUnits")
    wave_units = b"".join(bytes(u) for u in np.atleast_1d(units_raw)).split(b"\0", 1)[0].decode("latin-1") if units_raw is not None else ""
    dim_units = []
    for row in np.atleast_2d(wh.get("dimUnits", np.zeros((4, 4), "S1"))):
        dim_units.append(b"".join(bytes(u) for u in row).split(b"\0", 1)[0].decode("latin-1"))
    sf_a = [float(v) for v in np.asarray(wh.get("sfA", [1.0] * 4), dtype=np.float64)]
    return {
        "hdr": hdr,
        "names": names,
        "labelled": labelled,
        "aliases": aliases,
        "notes": notes,
        "wave_units": wave_units,
        "dim_units": dim_units,
        "sfA": sf_a,
        "n_points": n_points,
        "n_lines": n_lines,
        "bname": bname,
        "creation": int(wh.get("creationDate", 0) or 0),
    }


#: Bytes the header checksum covers, by file version (binary header plus wave header; the
#: 126-byte WaveHeader2 of versions 1-3 includes its first 16 data bytes, Igor's TN003).
CHECKSUMMED = {1: 8 + 126, 2: 16 + 126, 3: 20 + 126, 5: HEADERS_SIZE}


def identify(probe: Probe) -> bool:
    """An Igor binary wave: a known version (1, 2, 3 or 5) in either byte order, and
    headers whose 16-bit words add up to zero, as Igor's checksum makes them."""
    head = probe.head
    if len(head) < 2:
        return False
    bo = "<" if head[0] != 0 else ">"
    n = CHECKSUMMED.get(struct.unpack(bo + "h", head[:2])[0])
    return n is not None and len(head) >= n and not int(np.frombuffer(head[:n], dtype=bo + "u2").sum()) & 0xFFFF


def channels(path: str | os.PathLike[str]) -> list[str]:
    return list(_describe(os.fspath(path))["names"])


def default_channel(names: list[str]) -> str:
    """The height channel: HeightRetrace, HeightTrace, Height, any *Height*, else the first."""
    for pref in HEIGHT_PREFERENCE:
        if pref in names:
            return pref
    for n in names:
        if "height" in n.lower():
            return n
    return names[0]


def _pixel_size(path: str, info: dict[str, Any]) -> tuple[tuple[float, float], str]:
    """(dy, dx) in nm: the note's scan sizes over the pixel counts, as AFMReader does."""
    notes = info["notes"]
    fast = _float(notes, "FastScanSize") or _float(notes, "ScanSize")
    slow = _float(notes, "SlowScanSize") or _float(notes, "ScanSize")
    if fast and slow and fast > 0 and slow > 0:
        return (slow * 1e9 / info["n_lines"], fast * 1e9 / info["n_points"]), "note ScanSize / pixels"
    out = []
    for axis in (1, 0):
        factor = length_unit_nm(info["dim_units"][axis])
        step = info["sfA"][axis] * (factor if factor is not None else 1.0)
        out.append(step if np.isfinite(step) and step > 0 else 1.0)
    return (out[0], out[1]), "wave scaling sfA"


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """One channel of an Asylum image wave, lazily (igor2 checks the file, the data are memory-mapped)."""
    path = os.fspath(path)
    info = _describe(path)
    names = info["names"]
    if channel is None:
        channel = default_channel(names)
    elif channel in info["aliases"]:
        channel = info["aliases"][channel]
    elif channel not in names:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
    index = names.index(channel)
    hdr = info["hdr"]
    notes = info["notes"]
    # Asylum labels name the quantity (Gwyddion's table); an unlabelled wave has its own units
    unit = _channel_unit(channel, notes, info["wave_units"]) if info["labelled"][index] else info["wave_units"]
    factor = length_unit_nm(unit)
    out_units = "nm" if factor is not None else unit
    raw_dtype = hdr["dtype"]
    out_dtype = raw_dtype.newbyteorder("=") if raw_dtype.kind == "f" else np.dtype(np.float64)
    n_lines, n_points = info["n_lines"], info["n_points"]
    # column-major (points, lines, channels) == C-order (channels, lines, points); Igor's
    # first line is the bottom one, so rows are flipped to put the top first (as AFMReader).
    data = RawFramesArray(
        path,
        offset=HEADERS_SIZE + index * n_lines * n_points * raw_dtype.itemsize,
        n_frames=1,
        frame_shape=(n_lines, n_points),
        raw_dtype=raw_dtype,
        scale=factor if factor not in (None, 1.0) else None,
        out_dtype=out_dtype if factor not in (None, 1.0) or raw_dtype.kind == "f" else None,
        flip_y=True,
    )
    pixel, pixel_source = _pixel_size(path, info)
    scan_rate = _float(notes, "ScanRate")
    fm: dict[str, Any] = {
        "line_rate": scan_rate,
        "frame_duration_s": (n_lines / scan_rate) if scan_rate else None,
        "scan_direction": {"0": "bottomUp", "1": "topDown"}.get(notes.get("ScanDown", "").strip()),
    }
    created = info["creation"]
    acquisition = {
        "format": "Igor binary wave v5",
        "wave_name": info["bname"],
        "channels": names,
        "channel_unit": unit,
        "wave_units": info["wave_units"],
        "dim_units": info["dim_units"],
        "sfA": info["sfA"],
        "pixel_size_source": pixel_source,
        "creation_date_igor_s": created,
        "creation_date_local": _igor_date(created),
        "note": notes,
    }
    return model.assemble(
        data,
        pixel_size_nm=pixel,
        times=[0.0],
        channel=conventions.safe_channel(channel),
        units=out_units,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=channel)],
    )


def _igor_date(seconds: int) -> str | None:
    """Igor stores local wall-clock seconds since 1904-01-01 (no time zone)."""
    import datetime as dt

    if seconds <= 0:
        return None
    try:
        return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(seconds) - _IGOR_EPOCH_TO_UNIX_S)).isoformat()
    except (OverflowError, ValueError):
        return None


FORMAT = Format(
    name=NAME,
    description="Asylum Research / Igor binary wave",
    suffixes=(".ibw",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
