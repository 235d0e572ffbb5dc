"""Nanosurf ``.nhf`` files (Nanosurf Studio, file format 1.x): HDF5 with one group per
measurement, one subgroup per segment (``Forward``, ``Backward``) and one flat dataset per
channel.

Root attributes ``nsf_file_version_major`` / ``_minor`` identify the format. A measurement
group (``measurement_0``, attribute ``name`` "Image 1") gives the image size
(``image_points_per_line``, ``image_number_of_lines``) and scan range (``image_size_x``,
``image_size_y`` in m); each channel dataset (attribute ``name`` "Topography") holds
points x lines values, x fastest, the first stored line at the bottom (Nanosurf's own reader
flips it), scaled linearly from the element type's range onto ``base_calibration_min`` ..
``base_calibration_max`` in ``base_calibration_unit``. Datasets of another size (WaveMode NMA
curves, 150 samples per pixel) are not images and are not channels. Channels are named
``<measurement> - <segment> - <channel>``; see docs/formats.md.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import Key, bounding_box, outer_index
from ..exceptions import CorruptFileError, NotAnImageError, reading
from ._channels import pick_channel
from ._h5guard import check_stored
from ._h5strings import Values
from ._hdf5 import HDF5_LOCK, H5Direct, identify_with, open_dataset, open_h5, open_raw, text_keys
from ._units import length_unit_nm

NAME = "nhf"
VERSION_ATTR = "nsf_file_version_major"
#: ``dataset_element_type`` (file format 1.x) -> (raw range min, max) that the calibration
#: range maps onto: int32, uint8, uint16, uint32, uint64, int16, int64, double.
ELEMENT_RANGES: dict[int, tuple[float, float]] = {
    0: (-(2.0**31), 2.0**31 - 1), 1: (0.0, 2.0**8 - 1), 2: (0.0, 2.0**16 - 1), 3: (0.0, 2.0**32 - 1),
    4: (0.0, 2.0**64 - 1), 5: (-(2.0**15), 2.0**15 - 1), 6: (-(2.0**63), 2.0**63 - 1), 7: (0.0, 1.0),
}  # fmt: skip
#: Measurement types that are not images (their size attributes describe a grid of curves).
NOT_IMAGE_TYPES = ("spectroscopy", "spectroscopy_grid")
#: Channel asked for by ``channel=None``, by the dataset's ``name``, in order.
DEFAULT_SIGNALS = ("Topography", "Z-Axis", "Height", "Position Z")
SEPARATOR = " - "
MAX_SIDE = 2**20


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return _text(value.reshape(-1)[0]) if value.size == 1 else None
    return str(value)


def _number(value: Any) -> float | None:
    try:
        v = float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None


def _index(key: str) -> tuple[int, str]:
    """Natural order of ``measurement_2`` before ``measurement_10``."""
    m = re.search(r"(\d+)$", key)
    return (int(m.group(1)) if m else -1, key)


@dataclass(frozen=True)
class Channel:
    """One image dataset of a segment, and how to scale it."""

    name: str
    measurement: str
    segment: str
    signal: str
    dataset: str
    group: str
    points: int
    lines: int
    range_m: tuple[float, float]
    unit: str
    dtype: str
    scale: float
    add: float


def _scaling(path: str, ds: Any, attrs: dict[str, Any]) -> tuple[float, float, str]:
    """(scale, add, unit): physical = raw * scale + add, from the calibration attributes."""
    unit = _text(attrs.get("base_calibration_unit")) or ""
    lo, hi = _number(attrs.get("base_calibration_min")), _number(attrs.get("base_calibration_max"))
    if lo is None or hi is None:
        return 1.0, 0.0, unit
    kind = attrs.get("dataset_element_type")
    try:
        tmin, tmax = ELEMENT_RANGES[int(np.asarray(kind).reshape(-1)[0])]
    except (KeyError, TypeError, ValueError, IndexError):
        raise CorruptFileError(path, f"{ds.name}: unknown dataset_element_type {kind!r} (known: 0..7)") from None
    scale = (hi - lo) / (tmax - tmin)
    return scale, lo - tmin * scale, unit


def _image_size(attrs: dict[str, Any]) -> tuple[int, int, float, float] | None:
    points, lines = _number(attrs.get("image_points_per_line")), _number(attrs.get("image_number_of_lines"))
    sx, sy = _number(attrs.get("image_size_x")), _number(attrs.get("image_size_y"))
    if None in (points, lines, sx, sy):
        return None
    return int(points or 0), int(lines or 0), float(sx or 0.0), float(sy or 0.0)


def _structure(path: str, f: Any, values: Values) -> tuple[list[Channel], list[str]]:
    """The image channels of an open file, in file order, and what else it holds."""
    import h5py

    major = _number(values.attr(f, VERSION_ATTR))
    minor = _number(values.attr(f, "nsf_file_version_minor"))
    if major != 1:
        version = f"{major:g}.{minor:g}" if major is not None and minor is not None else repr(major)
        raise CorruptFileError(path, f"Nanosurf file format {version} is not supported (xafm reads 1.x)")
    found: list[Channel] = []
    others: list[str] = []
    taken: set[str] = set()
    for mkey in sorted(text_keys(f), key=_index):
        group = f.get(mkey)
        if not isinstance(group, h5py.Group):
            continue
        gattrs = values.attrs(group)
        mname = _text(gattrs.get("name")) or mkey
        mtype = (_text(gattrs.get("measurement_type")) or "").lower()
        size = _image_size(gattrs)
        if size is None or mtype in NOT_IMAGE_TYPES:
            others.append(f"{mname} ({mtype or 'no image size'})")
            continue
        points, lines, sx, sy = size
        sizes: set[int] = set()
        before = len(found)
        if not (0 < points <= MAX_SIDE and 0 < lines <= MAX_SIDE and sx > 0 and sy > 0):
            raise CorruptFileError(path, f"{mkey}: image of {points} x {lines} points over {sx} x {sy} m is not plausible")
        for skey in sorted(text_keys(group), key=_index):
            seg = group.get(skey)
            if not isinstance(seg, h5py.Group):
                continue  # datasets beside the segments: e.g. the NMA free wave, 150 values
            sname = _text(values.attr(seg, "name")) or skey
            for dkey in sorted(text_keys(seg), key=_index):
                ds = seg.get(dkey)
                if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iuf":
                    continue
                sizes.add(int(ds.size))
                if ds.size != points * lines:
                    continue  # per-pixel curves (points x lines x samples) are not images
                dattrs = values.attrs(ds)
                signal = _text(dattrs.get("name")) or dkey
                name, n = SEPARATOR.join((mname, sname, signal)), 1
                while name in taken:
                    n += 1
                    name = f"{SEPARATOR.join((mname, sname, signal))} #{n}"
                taken.add(name)
                check_stored(ds, path)
                scale, add, unit = _scaling(path, ds, dattrs)
                found.append(Channel(
                    name=name, measurement=mname, segment=sname, signal=signal, dataset=ds.name, group=group.name,
                    points=points, lines=lines, range_m=(sx, sy), unit=unit, dtype=ds.dtype.str, scale=scale, add=add,
                ))  # fmt: skip
        if len(found) == before and sizes:
            raise CorruptFileError(path, f"{mkey}: no channel dataset holds the {points} x {lines} values the image size promises (sizes {sorted(sizes)})")
    return found, others


def _layout(path: str, f: Any, values: Values) -> list[Channel]:
    found, others = _structure(path, f, values)
    if not found:
        raise NotAnImageError(path, f"this is a spectroscopy file (Nanosurf NHF measurements {others} hold no image channel); xafm reads images")
    return found


def _choices(found: list[Channel]) -> dict[str, Channel]:
    """Full names, then the short forms ``<segment> - <channel>`` and ``<channel>`` for the
    first image measurement (its first segment for the bare channel name)."""
    out = {c.name: c for c in found}
    first = found[0].measurement
    for c in reversed(found):
        if c.measurement != first:
            continue
        out.setdefault(SEPARATOR.join((c.segment, c.signal)), c)
    first_segment = found[0].segment
    for c in reversed(found):
        if c.measurement == first and c.segment == first_segment:
            out.setdefault(c.signal, c)
    return out


def _defaults(found: list[Channel]) -> list[str]:
    first = found[0]
    home = [c for c in found if c.measurement == first.measurement]
    forward = [c for c in home if c.segment.lower() == "forward"] or [c for c in home if c.segment == first.segment]
    out = [c.name for sig in DEFAULT_SIGNALS for c in forward if c.signal == sig]
    return out + [c.name for c in forward if length_unit_nm(c.unit) is not None]


class NhfImageArray(H5Direct):
    """One flat channel dataset seen as a (1, lines, points) frame, rows flipped so that
    row 0 is the last stored line (the top), values ``raw * scale + add``; each read reads
    only the whole stored lines it needs (the first through h5py, later ones by byte
    range: :class:`~._hdf5.H5Direct`)."""

    def __init__(self, path: str, channel: Channel, factor: float):
        self.path = path
        self.dataset = channel.dataset
        self.lines, self.points = channel.lines, channel.points
        self.scale, self.add = channel.scale * factor, channel.add * factor
        self.shape = (1, channel.lines, channel.points)
        self.dtype = np.dtype(np.float64)

    def _read(self, key: Key) -> np.ndarray:

        bounds, rel = bounding_box(key, self.shape)
        if any(b.stop <= b.start for b in bounds):
            return np.empty(outer_index(np.empty(self.shape, np.uint8), key).shape, self.dtype)
        y0, y1 = bounds[1].start, bounds[1].stop
        first, last = self.lines - y1, self.lines - y0  # stored lines, bottom first
        lines = slice(first * self.points, last * self.points)
        flat = self.read_direct((lines,))
        if flat is None:
            with HDF5_LOCK, open_raw(self.path) as f:
                ds = open_dataset(f, self.dataset, self.path, size=self.lines * self.points)
                flat = ds[lines]
                if ds.ndim == 1:
                    self.keep_layout(ds)
        rows = np.asarray(flat).reshape(last - first, self.points)[::-1, bounds[2]]
        out = rows.astype(np.float64) * self.scale + self.add
        return np.asarray(outer_index(out[None], rel), dtype=self.dtype)


def _epoch_ms(text: str | None) -> float | None:
    """``created`` (``2023-07-18T15:26:38.320Z``) as ms since the epoch."""
    if not text:
        return None
    try:
        stamp = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_dt.UTC)
    return stamp.timestamp() * 1000.0


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------
def identify(probe: Probe) -> bool:
    """HDF5 whose root carries Nanosurf's ``nsf_file_version_major`` attribute."""
    return identify_with(probe, lambda f, _: VERSION_ATTR in f.attrs)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        return [c.name for c in _layout(path, f, values)]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open one channel lazily: only the file's structure and attributes are read here."""
    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        found = _layout(path, f, values)
        chosen = pick_channel(path, _choices(found), channel, _defaults(found))
        attrs = {k: _text(v) if isinstance(v, (str, bytes)) else _number(v) for k, v in values.attrs(f[chosen.group]).items()}
    factor = length_unit_nm(chosen.unit)
    rate = attrs.get("image_line_rate")
    line_rate = float(rate) if isinstance(rate, float) and rate > 0 else None
    direction = str(attrs.get("image_scan_direction") or "").lower()
    fm = {
        "line_rate": line_rate,
        "frame_duration_s": chosen.lines / line_rate if line_rate else None,
        "scan_direction": direction if direction in ("up", "down") else None,
        "start_epoch_ms": _epoch_ms(created if isinstance(created := attrs.get("created"), str) else None),
    }
    acquisition = {
        "format": "Nanosurf NHF",
        "channel": chosen.name,
        "measurement": chosen.measurement,
        "segment": chosen.segment,
        "signal": chosen.signal,
        "dataset": chosen.dataset,
        "raw_unit": chosen.unit,
        "points_lines": [chosen.points, chosen.lines],
        "range_m": list(chosen.range_m),
        "measurement_attrs": attrs,
    }
    sx, sy = chosen.range_m
    return model.assemble(
        NhfImageArray(path, chosen, factor or 1.0),
        pixel_size_nm=(sy * 1e9 / chosen.lines, sx * 1e9 / chosen.points),
        channel=conventions.safe_channel(chosen.name),
        units="nm" if factor is not None else chosen.unit,
        frame_metadata=[fm],
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=chosen.name)],
    )


FORMAT = Format(
    name=NAME,
    description="Nanosurf NHF (HDF5)",
    suffixes=(".nhf",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
