"""Plain TIFF stacks and ImageJ hyperstacks (``.tif``, ``.tiff``) as other tools write them
(Fiji / ImageJ, tifffile, microscope and AFM software): docs/formats.md, "Plain TIFF and
ImageJ hyperstacks".

One page per plane; the dims come from tifffile's reading of the file (ImageJ's
``frames``, ``slices`` and ``channels`` as ``time``, ``z`` and ``channel``; the pages of a
plain stack as ``time``), in xafm's order (time, z, channel, others, y, x), length-1
dims other than time dropped. The pixel size comes from ImageJ's ``unit`` (and
``yunit``) with the resolution tags, or from the resolution tags with an inch or
centimetre ResolutionUnit; without either (or with only the 72 dpi display default)
one pixel is 1 nm, with an :class:`~xafm.exceptions.XafmWarning` naming the file.
ImageJ's ``spacing`` gives the z step, ``finterval`` (in ``tunit``) or ``fps`` the
frame times.

TIFF files that are another format's (OME-TIFF, JPK and Park Systems images, which
carry their own tags) are not claimed: those formats read them.
"""

from __future__ import annotations

import codecs
import math
import os
import struct
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import HEAD_BYTES, Format, Probe
from ..core.lazy import DimView, LazyArray, RawFramesArray
from ..exceptions import ChannelError, CorruptFileError, FormatError, XafmError, XafmWarning
from ._tiffsource import open_tiff
from .ometiff.foreign import AXIS_NAMES, series_planes
from .ometiff.names import OTHER_TIFF_DIALECTS, TIFF_MAGIC
from .ometiff.omexml import LENGTH_NM
from .ometiff.pages import Reshaped, TiffPlanesArray

NAME = "tiff"
READER = "xafm.formats.tiff"
#: Unit names ImageJ and other tools write, in nm (beside the OME symbols).
UNIT_NM = {
    **{k: v for k, v in LENGTH_NM.items() if v is not None},
    "micron": 1e3, "microns": 1e3, "micrometer": 1e3, "micrometers": 1e3, "micrometre": 1e3, "micrometres": 1e3,
    "nanometer": 1.0, "nanometers": 1.0, "nanometre": 1.0, "nanometres": 1.0, "millimeter": 1e6, "millimetre": 1e6,
    "centimeter": 1e7, "centimetre": 1e7, "meter": 1e9, "metre": 1e9, "inch": 2.54e7, "inches": 2.54e7,
    "angstrom": 0.1, "picometer": 1e-3, "picometre": 1e-3,
}  # fmt: skip
#: ImageJ's time units (``tunit``), in s.
TIME_UNIT_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3,
    "milliseconds": 1e-3, "us": 1e-6, "µs": 1e-6, "\u03bcs": 1e-6, "usec": 1e-6, "microsecond": 1e-6,
    "microseconds": 1e-6, "ns": 1e-9, "nsec": 1e-9, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
#: nm per unit of TIFF's ResolutionUnit (2 inch, 3 cm; 4 mm and 5 µm as tifffile defines them).
RESOLUTION_UNIT_NM = {2: 2.54e7, 3: 1e7, 4: 1e6, 5: 1e3}
#: What many writers put in the resolution tags when they know no pixel size.
DISPLAY_DPI = 72.0
NO_CALIBRATION = "no pixel calibration"


# --------------------------------------------------------------------------------------
# which files
# --------------------------------------------------------------------------------------
def first_ifd_codes(head: bytes) -> set[int]:
    """The tag codes of the first IFD as far as ``head`` (the file's first bytes) holds
    them, read from the entries themselves: a damaged file whose tag values lie past its
    end still shows whose dialect it is (tifffile drops such tags)."""
    if len(head) < 16 or head[:2] not in (b"II", b"MM"):
        return set()
    bo = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack(bo + "H", head[2:4])[0]
    if magic == 42:
        offset, count_fmt, entry, code_at = struct.unpack(bo + "I", head[4:8])[0], "H", 12, 2
    elif magic == 43:
        offset, count_fmt, entry, code_at = struct.unpack(bo + "Q", head[8:16])[0], "Q", 20, 8
    else:
        return set()
    if offset + code_at > len(head):
        return set()
    count = struct.unpack(bo + count_fmt, head[offset : offset + code_at])[0]
    start = offset + code_at
    n = min(int(count), max(0, (len(head) - start) // entry))
    return {struct.unpack(bo + "H", head[start + i * entry : start + i * entry + 2])[0] for i in range(n)}


def dialect(tf: Any, head: bytes = b"") -> str | None:
    """What an open TIFF is when it is another format's file (OME-TIFF, JPK, Park), else
    None; ``head`` (the first bytes) also counts tags whose values tifffile could not read."""
    if tf.is_ome:
        return "an OME-TIFF"
    codes = first_ifd_codes(head) | set(tf.pages.first.tags.keys())
    return next((what for code, what in OTHER_TIFF_DIALECTS.items() if code in codes), None)


def identify(probe: Probe) -> bool:
    """A TIFF that no other format claims by its own tags or OME-XML."""
    if not probe.head.startswith(TIFF_MAGIC):
        return False
    with open_tiff(probe.path) as tf:
        return len(tf.pages) > 0 and dialect(tf, probe.head) is None


# --------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------
def _unit_text(value: Any) -> str:
    """A unit as ImageJ writes it (``um``, ``micron``, ``\\u00B5m``), as plain text."""
    text = str(value).strip()
    if "\\u" in text:
        try:
            text = codecs.decode(text, "unicode_escape")
        except UnicodeDecodeError:
            pass
    return text


def _length_nm(value: Any) -> float | None:
    text = _unit_text(value)
    return UNIT_NM.get(text, UNIT_NM.get(text.lower()))


def _positive(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def pixel_size(page: Any, ij: dict[str, Any]) -> tuple[tuple[float, float] | None, str]:
    """``((dy, dx) in nm, where from)`` for a first page and its ImageJ metadata; ``None``
    and the reason when the file states no pixel size."""
    tags = page.tags
    if tags.get(282) is None or tags.get(283) is None:
        return None, "no resolution tags"
    try:
        xres, yres = (_positive(v[0] / v[1]) for v in (tags[282].value, tags[283].value))
    except (TypeError, ZeroDivisionError, IndexError):
        return None, "unreadable resolution tags"
    if xres is None or yres is None:
        return None, "resolution tags that are not positive"
    unit_code = int(page.resolutionunit)
    if "unit" in ij:
        per_x = _length_nm(ij["unit"])
        per_y = _length_nm(ij.get("yunit", ij["unit"]))
        if per_x is None or per_y is None:
            return None, f"ImageJ unit {ij['unit']!r}, which is not a length xafm knows"
        return (per_y / yres, per_x / xres), f"ImageJ unit {_unit_text(ij['unit'])!r} and the resolution tags"
    if unit_code not in RESOLUTION_UNIT_NM:
        return None, "resolution tags without a unit (ResolutionUnit 1)"
    if unit_code == 2 and xres == yres == DISPLAY_DPI:
        return None, "only the 72 dpi display default in the resolution tags"
    nm = RESOLUTION_UNIT_NM[unit_code]
    return (nm / yres, nm / xres), f"the resolution tags (ResolutionUnit {unit_code})"


def _frame_interval_s(ij: dict[str, Any]) -> float | None:
    factor = TIME_UNIT_S.get(_unit_text(ij.get("tunit", "sec")).lower())
    interval = _positive(ij.get("finterval"))
    if interval is not None and factor is not None:
        return interval * factor
    fps = _positive(ij.get("fps"))
    return 1.0 / fps if fps is not None else None


# --------------------------------------------------------------------------------------
# the file's layout
# --------------------------------------------------------------------------------------
def _check_chain(path: str, tf: Any) -> None:
    """Refuse a file whose chain of pages breaks off (a truncated or damaged file):
    tifffile stops quietly at a page offset past the end of the file."""
    fh = tf.filehandle
    where = tf.pages.next_page_offset
    if where is None:
        return
    size = tf.tiff.offsetsize
    fh.seek(where)
    raw = fh.read(size)
    if len(raw) != size:
        raise CorruptFileError(path, f"the last of {len(tf.pages)} pages is cut off (truncated file?)")
    nxt = struct.unpack(tf.tiff.offsetformat, raw)[0]
    if nxt != 0:
        raise CorruptFileError(path, f"page {len(tf.pages)} lies at byte {nxt}, outside the {fh.size}-byte file or unreadable (truncated file?)")


def _dims(axes: str) -> tuple[str, ...]:
    """xafm dim names for tifffile's axis letters; a plain stack's pages (``I``/``Q``) are
    frames when nothing else is time."""
    dims = [AXIS_NAMES.get(a, f"dim_{a.lower()}") for a in axes]
    if "T" not in axes:
        first = next((i for i, a in enumerate(axes) if a in "IQ"), None)
        if first is not None:
            dims[first] = "time"
    return tuple(dims)


def _base(path: str, tf: Any, s: Any) -> tuple[LazyArray, tuple[str, ...]]:
    """The planes of series ``s`` as a lazy array over all its dims, and those dims."""
    axes, shape = s.get_axes(False), tuple(int(n) for n in s.get_shape(False))
    dtype = np.dtype(s.dtype)
    if dtype.kind not in "iuf":
        raise CorruptFileError(path, f"TIFF pixel type {dtype} is not a real number type")
    if not shape or min(shape) < 1:
        raise CorruptFileError(path, f"the TIFF series has shape {shape} ({axes}): no pixels to read")
    size = tf.filehandle.size
    flat = axes.endswith("YXS") and shape[-1] == 1
    if s.dataoffset is not None and (axes.endswith("YX") or flat) and not getattr(s.keyframe, "is_subsampled", False):
        if flat:
            axes, shape = axes[:-1], shape[:-1]
        lead = shape[:-2]
        n = int(np.prod(lead, dtype=np.int64))
        end = int(s.dataoffset) + n * int(np.prod(shape[-2:], dtype=np.int64)) * dtype.itemsize
        if end > size:
            raise CorruptFileError(path, f"the image data end at byte {end}, past the end of the {size}-byte file (truncated file?)")
        raw = RawFramesArray(path, offset=int(s.dataoffset), n_frames=n, frame_shape=(shape[-2], shape[-1]), raw_dtype=dtype.newbyteorder(tf.byteorder))
        return Reshaped(raw, lead, tuple(range(len(lead)))), _dims(axes)
    axes, shape, planes, page_axes = series_planes(path, s)
    n_lead = len(axes) - len(page_axes)
    return TiffPlanesArray(path, planes, shape[:n_lead], shape[n_lead:], dtype), _dims(axes)


def _scalars(meta: dict[str, Any] | None) -> dict[str, Any]:
    """ImageJ's description values (not its LUTs, ROIs or per-plane labels)."""
    return {str(k): v for k, v in (meta or {}).items() if isinstance(v, (str, int, float, bool))}


def layout(path: str, series: int = 0) -> dict[str, Any]:
    """Everything :func:`read` needs, from the tags only: the lazy planes and their dims,
    the channel names, the calibration and what the file says about itself."""
    import tifffile

    try:
        with open_tiff(path) as tf:  # never files an OME-XML names
            if len(tf.pages) == 0:
                raise CorruptFileError(path, "the TIFF has no pages")
            tf.filehandle.seek(0)
            other = dialect(tf, tf.filehandle.read(HEAD_BYTES))
            if other is not None:
                raise CorruptFileError(path, f"this TIFF is {other}, not a plain TIFF stack")
            _check_chain(path, tf)
            if not isinstance(series, (int, np.integer)) or not 0 <= series < len(tf.series):
                raise FormatError(f"{path}: no TIFF series {series!r}; the file holds {len(tf.series)} (series=0..{len(tf.series) - 1})")
            s = tf.series[series]
            base, dims = _base(path, tf, s)
            page = s.keyframe
            ij = _scalars(tf.imagej_metadata) if tf.is_imagej else {}
            size, source = pixel_size(page, ij)
            acquisition = {
                "format": "TIFF",
                "series": int(series),
                "series_count": len(tf.series),
                "tifffile_kind": s.kind,
                "tiff_axes": s.get_axes(False),
                "tiff_shape": list(s.get_shape(False)),
                "software": page.software or None,
                "datetime": page.tags.valueof(306),
                "resolution": list(page.resolution),
                "resolution_unit": int(page.resolutionunit),
                "pixel_size_from": source if size else None,
                "imagej": ij or None,
            }
    except (tifffile.TiffFileError, ValueError, struct.error, OSError) as exc:
        if isinstance(exc, XafmError):  # xafm's own verdicts (FileErrors are OSErrors) keep their type
            raise
        raise CorruptFileError(path, f"not a readable TIFF: {type(exc).__name__}: {exc}") from None
    sizes = dict(zip(dims, base.shape))
    names = [f"C{j}" for j in range(sizes.get("channel", 1))]
    return {"base": base, "dims": dims, "sizes": sizes, "names": names, "pixel": size, "pixel_from": source, "imagej": ij, "acquisition": acquisition}


# --------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------
def channels(path: str | os.PathLike[str]) -> list[str]:
    return list(layout(os.fspath(path))["names"])


def read(path: str | os.PathLike[str], *, channel: str | None = None, series: int = 0) -> xr.Dataset:
    """A plain TIFF stack or ImageJ hyperstack, series ``series``, with its dims (lazy).

    ``channel`` selects one channel (``C0``, ``C1``, ...) of a multi-channel file.
    """
    path = os.fspath(path)
    lay = layout(path, series)
    dims, sizes, names, ij = lay["dims"], lay["sizes"], lay["names"], lay["imagej"]
    if channel is not None and channel not in names:
        raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
    c_index = names.index(channel) if channel is not None else (0 if len(names) == 1 else None)
    fixed = {d: 0 for d, n in sizes.items() if n == 1 and d not in ("time", "y", "x", "channel")}
    if "channel" in sizes and c_index is not None:
        fixed["channel"] = c_index
    out_dims = tuple(model.dim_order([d for d in dims if d not in fixed] + ([] if "time" in dims else ["time"])))
    data = DimView(lay["base"], dims, out_dims, fixed)

    if lay["pixel"] is None:
        warnings.warn(f"{path}: {NO_CALIBRATION} ({lay['pixel_from']}); using 1 nm per pixel", XafmWarning, stacklevel=3)
    n_t = sizes.get("time", 1)
    interval = _frame_interval_s(ij)
    times = np.arange(n_t, dtype=np.float64) * (interval or 1.0)
    coords: dict[str, xr.Variable] = {}
    if "channel" in out_dims:
        coords["channel"] = model.variable(("channel",), np.array(names), index=True)
    if "z" in out_dims:
        per = _length_nm(ij.get("zunit", ij.get("unit", "")))
        dz = _positive(ij.get("spacing"))
        coords["z"] = (
            model.variable(("z",), np.arange(sizes["z"], dtype=np.float64) * dz * per, {"units": "nm"}, index=True)
            if dz is not None and per is not None
            else model.variable(("z",), np.arange(sizes["z"]), {"long_name": "z index"}, index=True)
        )
    for d in out_dims:
        if d not in coords and d not in conventions.DIMS:
            coords[d] = model.variable((d,), np.arange(sizes[d]), index=True)
    acquisition = {**lay["acquisition"], "frame_interval_s": interval}
    name = conventions.MULTI_CHANNEL_NAME if "channel" in out_dims else conventions.safe_channel(names[c_index or 0])
    record = provenance.make_record("read", path=path, format=NAME, reader=READER, channel=channel, series=int(series))
    return model.assemble(
        data,
        dims=out_dims,
        channel=name,
        units="",
        pixel_size_nm=lay["pixel"] or (1.0, 1.0),
        times=times,
        coords=coords,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)},
        provenance=[record],
    )


FORMAT = Format(
    name=NAME,
    description="TIFF stack or ImageJ hyperstack",
    suffixes=(".tif", ".tiff"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
