"""Gwyddion native files (``.gwy``), read with gwyfile.

A ``.gwy`` file is ``GWYP`` followed by one serialized ``GwyContainer``; each channel is a
``GwyDataField`` at ``/<id>/data`` (title at ``/<id>/data/title``, optional mask at
``/<id>/mask``, metadata container at ``/<id>/meta``). Values and real sizes are in the
base units of ``si_unit_z`` / ``si_unit_xy``. See docs/formats.md.

gwyfile trusts every size and string in the file, so the whole serialization is first
walked by :func:`check_structure` (bounded, allocation-free) before gwyfile parses it.
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.lazy import InMemoryArray
from ..exceptions import ChannelError, CorruptFileError, XafmWarning
from ._units import length_unit_nm

_FIXED = {"b": 1, "c": 1, "i": 4, "q": 8, "d": 8}
_ARRAY_ITEM = {"C": 1, "I": 4, "Q": 8, "D": 8}

NAME = "gwy"
MAGIC = b"GWYP"
MAX_DEPTH = 64


# --------------------------------------------------------------------------------------
# structure check
# --------------------------------------------------------------------------------------
def check_structure(path: str, buf: bytes) -> None:
    """Walk the serialization and raise ``CorruptFileError`` on anything out of bounds.

    Every loop consumes at least one byte per step and every count is checked against the
    bytes left, so a lying size can neither hang nor allocate.
    """
    if len(buf) < 4 or buf[:4] != MAGIC:
        raise CorruptFileError(path, "not a Gwyddion file (no GWYP magic)" if buf[:4] != b"GWYO" else "old GWYO Gwyddion 1 format is not supported")
    end = _check_object(path, buf, 4, len(buf), 0)
    if end != len(buf):
        warnings.warn(f"{path}: {len(buf) - end} bytes after the top-level object ignored", XafmWarning, stacklevel=3)


def _cstring(path: str, buf: bytes, pos: int, limit: int, what: str) -> tuple[str, int]:
    nul = buf.find(b"\0", pos, limit)
    if nul < 0:
        raise CorruptFileError(path, f"{what} at byte {pos} is not NUL-terminated inside its object")
    try:
        return buf[pos:nul].decode("utf-8"), nul + 1
    except UnicodeDecodeError:
        raise CorruptFileError(path, f"{what} at byte {pos} is not UTF-8") from None


def _check_object(path: str, buf: bytes, pos: int, limit: int, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise CorruptFileError(path, f"objects nested more than {MAX_DEPTH} deep")
    name, pos = _cstring(path, buf, pos, limit, "object name")
    if not name:
        raise CorruptFileError(path, f"empty object name at byte {pos - 1}")
    if pos + 4 > limit:
        raise CorruptFileError(path, f"object {name!r} size field runs past its container (byte {pos})")
    (size,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    end = pos + size
    if end > limit:
        raise CorruptFileError(path, f"object {name!r} claims {size} bytes; only {limit - pos} remain")
    while pos < end:
        cname, pos = _cstring(path, buf, pos, end, f"component name in {name!r}")
        if pos >= end:
            raise CorruptFileError(path, f"component {cname!r} of {name!r} has no type")
        t = chr(buf[pos])
        pos += 1
        if t in _FIXED:
            pos += _FIXED[t]
        elif t == "s":
            _, pos = _cstring(path, buf, pos, end, f"string {cname!r}")
        elif t == "o":
            pos = _check_object(path, buf, pos, end, depth + 1)
        elif t in "CIQDSO":
            if pos + 4 > end:
                raise CorruptFileError(path, f"array {cname!r} count runs past its object")
            (count,) = struct.unpack_from("<I", buf, pos)
            pos += 4
            if t in _ARRAY_ITEM:
                pos += count * _ARRAY_ITEM[t]
            elif count > end - pos:
                raise CorruptFileError(path, f"array {cname!r} claims {count} items; only {end - pos} bytes remain")
            elif t == "S":
                for _ in range(count):
                    _, pos = _cstring(path, buf, pos, end, f"string in {cname!r}")
            else:
                for _ in range(count):
                    pos = _check_object(path, buf, pos, end, depth + 1)
        else:
            raise CorruptFileError(path, f"component {cname!r} of {name!r} has unknown type {t!r}")
        if pos > end:
            raise CorruptFileError(path, f"component {cname!r} of {name!r} runs past the end of its object")
    return end


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _load(path: str) -> Any:
    from gwyfile.objects import GwyObject

    with sources.open_binary(path) as fh:  # read whole: one request for a URL
        buf = fh.read()
    check_structure(path, buf)
    try:
        obj = GwyObject.frombuffer(buf[4:])
    except (ValueError, struct.error, UnicodeDecodeError, NotImplementedError, AssertionError, TypeError) as exc:
        raise CorruptFileError(path, f"gwyfile could not parse it: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict) or getattr(obj, "name", "") != "GwyContainer":
        raise CorruptFileError(path, f"top-level object is {getattr(obj, 'name', type(obj).__name__)!r}, not a GwyContainer")
    return obj


def _fields(path: str, obj: Any) -> list[dict[str, Any]]:
    """The data fields in id order, with unique titles."""
    out = []
    for key, value in obj.items():
        m = re.fullmatch(r"/(\d+)/data", str(key))
        if not m or getattr(value, "name", None) != "GwyDataField":
            continue
        fid = int(m.group(1))
        title = obj.get(f"/{fid}/data/title")
        out.append({"id": fid, "title": str(title) if isinstance(title, str) and title else f"Channel {fid}", "field": value})
    out.sort(key=lambda f: f["id"])
    seen: set[str] = set()
    for f in out:
        if f["title"] in seen:
            f["title"] = f"{f['title']} ({f['id']})"
        seen.add(f["title"])
    return out


def identify(probe: Probe) -> bool:
    """Gwyddion's magic: ``GWYP`` (or ``GWYO``, Gwyddion 1, which the reader refuses by name)."""
    return probe.head[:4] in (MAGIC, b"GWYO")


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    return [f["title"] for f in _fields(path, _load(path))]


def _unitstr(field: Any, key: str) -> str:
    unit = field.get(key)
    if unit is None:
        return ""
    s = unit.get("unitstr", "") if isinstance(unit, dict) else ""
    return s if isinstance(s, str) else ""


def _default(fields: list[dict[str, Any]]) -> dict[str, Any]:
    for f in fields:
        if "height" in f["title"].lower() or f["title"].lower() in ("topography", "z", "zsensor"):
            return f
    for f in fields:
        if length_unit_nm(_unitstr(f["field"], "si_unit_z")) is not None:
            return f
    return fields[0]


def _positive(path: str, field: Any, key: str, what: str) -> Any:
    v = field.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CorruptFileError(path, f"{what}: {key} is {v!r}, not a number")
    if not (math.isfinite(v) and v > 0):
        raise CorruptFileError(path, f"{what}: {key} must be positive and finite, found {v}")
    return v


def _values(path: str, field: Any, title: str) -> np.ndarray:
    xres = _positive(path, field, "xres", title)
    yres = _positive(path, field, "yres", title)
    data = field.get("data")
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise CorruptFileError(path, f"{title}: no double array 'data'")
    if data.size != int(xres) * int(yres):
        raise CorruptFileError(path, f"{title}: data holds {data.size} values, xres*yres = {int(xres) * int(yres)}")
    return data.reshape(int(yres), int(xres))


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """One data field (channel) of the file, read whole: gwyfile parses the file at once."""
    path = os.fspath(path)
    obj = _load(path)
    fields = _fields(path, obj)
    if not fields:
        raise CorruptFileError(path, "the file holds no image (no /N/data data field)")
    titles = [f["title"] for f in fields]
    if channel is None:
        chosen = _default(fields)
    elif channel in titles:
        chosen = fields[titles.index(channel)]
    else:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {titles}")
    field, title, fid = chosen["field"], chosen["title"], chosen["id"]
    values = _values(path, field, title)
    yres, xres = values.shape
    xreal = _positive(path, field, "xreal", title)
    yreal = _positive(path, field, "yreal", title)
    unit_xy, unit_z = _unitstr(field, "si_unit_xy"), _unitstr(field, "si_unit_z")
    lateral = length_unit_nm(unit_xy)
    if lateral is None:
        warnings.warn(
            f"{path}: channel {title!r} has lateral unit {unit_xy!r}, not a length; x/y are in the "
            "file's own units per pixel (labelled nm)",
            XafmWarning,
            stacklevel=2,
        )
        lateral = 1.0
    dx, dy = xreal / xres * lateral, yreal / yres * lateral
    if not all(math.isfinite(v) and v > 0 for v in (dx, dy)):
        raise CorruptFileError(path, f"{title}: pixel size {dy} x {dx} nm is not usable")
    zfactor = length_unit_nm(unit_z)
    out = np.array(values, dtype=np.float64) * (zfactor if zfactor is not None else 1.0)
    masks = {}
    mask = obj.get(f"/{fid}/mask")
    if getattr(mask, "name", None) == "GwyDataField":
        try:
            mvals = _values(path, mask, f"{title} mask")
        except CorruptFileError as exc:
            warnings.warn(f"{exc}; mask ignored", XafmWarning, stacklevel=2)
        else:
            if mvals.shape == values.shape:
                masks["mask"] = InMemoryArray(path, (mvals > 0)[None])
            else:
                warnings.warn(f"{path}: mask of {title!r} is {mvals.shape}, the data {values.shape}; mask ignored", XafmWarning, stacklevel=2)
    meta = obj.get(f"/{fid}/meta")
    acquisition = {
        "format": "Gwyddion GWYP",
        "channel_id": fid,
        "channels": titles,
        "si_unit_xy": unit_xy,
        "si_unit_z": unit_z,
        "xreal": xreal,
        "yreal": yreal,
        "xoff": field.get("xoff", 0.0),
        "yoff": field.get("yoff", 0.0),
        "meta": {str(k): v for k, v in meta.items() if isinstance(v, (str, int, float))} if isinstance(meta, dict) else {},
    }
    return model.assemble(
        InMemoryArray(path, out[None]),
        pixel_size_nm=(dy, dx),
        times=[0.0],
        channel=conventions.safe_channel(title),
        units="nm" if zfactor is not None else unit_z,
        masks=masks,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=title)],
    )


FORMAT = Format(
    name=NAME,
    description="Gwyddion",
    suffixes=(".gwy",),
    lazy=False,
    identify=identify,
    read=read,
    channels=channels,
)
