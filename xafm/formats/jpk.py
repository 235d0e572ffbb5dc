"""JPK single images (``.jpk``, ``.jpk-qi-image``): big-endian TIFF with JPK private tags.

Page 0 holds the file-wide tags (grid, scan rate, dates) and a thumbnail; every further
page with a channel-name tag is one channel, stored as raw integers plus "slots" of
linear scalings. The layout as understood is in ``docs/formats.md``. A file becomes
a one-frame stack whose ``start_epoch_ms`` lets a folder reader order frames.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.file_identity import FileIdentity
from ..core.lazy import LazyArray, outer_index
from ..exceptions import CorruptFileError, passes_through, reading
from ._channels import pick_channel
from ._h5direct import Layout as ByteLayout  # a run of values at an offset, read by an fstat-checked pread
from ._tiffsource import open_tiff

NAME = "jpk"

DEFAULT_CHANNELS = ("height_trace", "height_retrace", "measuredHeight_trace", "measuredHeight_retrace")
MAX_SIDE = 1 << 15
MAX_SLOTS = 64

# ---- file-wide tags (page 0) ---------------------------------------------------------
TAG_SOFTWARE_VERSION = 32768  # e.g. '6.0.41' (JPK SPM software that wrote the file)
TAG_FORMAT_VERSION = 32769  # e.g. 2.0
TAG_START_DATE = 32771  # 'yyyy-MM-dd HH:mm:ss.SSS zone'
TAG_NAME = 32772
TAG_COMMENT = 32773
TAG_END_DATE = 32774
TAG_SAMPLE = 32775
TAG_UNIQUE_ID = 32776  # epoch ms of the start in the AFM images seen; a counter in QI images
TAG_ACCOUNT = 32777
TAG_APPROACH_ID = 32789
TAG_ENVIRONMENT = 32791  # Java-properties text block
TAG_FEEDBACK_MODE = 32816
TAG_P_GAIN = 32817
TAG_I_GAIN = 32818
TAG_SETPOINT = 32819
TAG_FEEDBACK_SETTINGS = 32830  # Java-properties text block
TAG_GRID_X0 = 32832
TAG_GRID_Y0 = 32833
TAG_GRID_ULENGTH = 32834  # scan width (fast axis), m
TAG_GRID_VLENGTH = 32835  # scan height (slow axis), m
TAG_GRID_THETA = 32836
TAG_GRID_REFLECT = 32837
TAG_GRID_ILENGTH = 32838  # pixels along the fast axis (columns)
TAG_GRID_JLENGTH = 32839  # pixels along the slow axis (rows)
TAG_LINE_END = 32840
TAG_SCAN_RATE = 32841  # lines per second
TAG_DUTY_CYCLE = 32842
TAG_MOTION = 32843  # slow-scan direction: 'bottomUp' / 'topDown'
# ---- channel tags (pages 1..) --------------------------------------------------------
TAG_CHANNEL = 32848  # 'height', 'measuredHeight', ...; 'thumbnail' on page 0 of AFM images
TAG_RETRACE = 32849  # 0 trace, 1 retrace
TAG_FANCY_NAME = 32850
TAG_CHANNEL_INFO = 32851
TAG_N_SLOTS = 32896
TAG_DEFAULT_SLOT = 32897
SLOT_STRIDE = 48
SLOT_NAME, SLOT_UNIT, SLOT_SCALING, SLOT_MULTIPLIER, SLOT_OFFSET = 32912, 32930, 32931, 32932, 32933

_FILE_TAGS = {
    "software_version": TAG_SOFTWARE_VERSION,
    "format_version": TAG_FORMAT_VERSION,
    "start_date": TAG_START_DATE,
    "end_date": TAG_END_DATE,
    "name": TAG_NAME,
    "comment": TAG_COMMENT,
    "sample": TAG_SAMPLE,
    "unique_id": TAG_UNIQUE_ID,
    "account": TAG_ACCOUNT,
    "approach_id": TAG_APPROACH_ID,
    "feedback_mode": TAG_FEEDBACK_MODE,
    "p_gain": TAG_P_GAIN,
    "i_gain": TAG_I_GAIN,
    "setpoint": TAG_SETPOINT,
    "grid_x0_m": TAG_GRID_X0,
    "grid_y0_m": TAG_GRID_Y0,
    "grid_ulength_m": TAG_GRID_ULENGTH,
    "grid_vlength_m": TAG_GRID_VLENGTH,
    "grid_theta": TAG_GRID_THETA,
    "grid_reflect": TAG_GRID_REFLECT,
    "grid_ilength": TAG_GRID_ILENGTH,
    "grid_jlength": TAG_GRID_JLENGTH,
    "line_end": TAG_LINE_END,
    "scan_rate_lines_per_s": TAG_SCAN_RATE,
    "duty_cycle": TAG_DUTY_CYCLE,
    "motion": TAG_MOTION,
}

#: UTC offsets (hours) of the zone names JPK software writes after the date.
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "WEST": 1, "BST": 1, "IST": 1, "CET": 1, "CEST": 2,
    "MET": 1, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "EST": -5, "EDT": -4, "CST": -6,
    "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10,
    "JST": 9, "KST": 9, "AEST": 10, "AEDT": 11, "ACST": 9.5, "ACDT": 10.5, "AWST": 8,
    "NZST": 12, "NZDT": 13,
}
_DATE_RE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*(\S+)?\s*$")
_OFFSET_RE = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?$")


# --------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------
def parse_date(text: Any) -> tuple[float | None, str]:
    """Epoch milliseconds of a JPK date such as ``2017-01-16 16:00:32.334 GMT``.

    Returns ``(epoch_ms, note)``; ``epoch_ms`` is None when the text is not a date. Zone
    names are looked up in a small table and numeric offsets (``+0100``) are applied;
    an unknown zone is read as UTC and the note says so.
    """
    if not isinstance(text, str):
        return None, "no date"
    m = _DATE_RE.match(text)
    if not m:
        return None, f"unparseable date {text!r}"
    day, clock, frac, zone = m.groups()
    try:
        naive = _dt.datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None, f"unparseable date {text!r}"
    ms = int((frac or "0")[:3].ljust(3, "0"))
    offset_h: float | None
    note = "zone from the date"
    if zone is None:
        offset_h, note = 0.0, "no zone in the date; read as UTC"
    elif zone.upper() in _ZONES:
        offset_h = float(_ZONES[zone.upper()])
    elif (z := _OFFSET_RE.match(zone)) is not None:
        sign = -1.0 if z.group(1) == "-" else 1.0
        offset_h = sign * (int(z.group(2)) + int(z.group(3) or 0) / 60.0)
    else:
        offset_h, note = 0.0, f"unknown zone {zone!r}; read as UTC"
    utc = naive.replace(tzinfo=_dt.UTC) - _dt.timedelta(hours=offset_h)
    return utc.timestamp() * 1000.0 + ms, note


def _start_epoch_ms(start: Any, unique_id: Any) -> tuple[float | None, str]:
    """The acquisition start: the start-date tag, or the unique id when the zone is unknown.

    In the AFM images seen, the unique-id tag is the start in epoch ms (tz-free); it is
    used only when it lies within a day of the date read as UTC, so a counter (as in QI
    images) is never mistaken for a time.
    """
    epoch, note = parse_date(start)
    if epoch is not None and note.startswith(("unknown zone", "no zone")):
        try:
            uid = float(str(unique_id).strip())
        except (TypeError, ValueError):
            uid = None
        if uid is not None and math.isfinite(uid) and abs(uid - epoch) < 86_400_000:
            return uid, note.split(";")[0] + "; start from the unique-id tag (epoch ms)"
    return epoch, note


# --------------------------------------------------------------------------------------
# tags
# --------------------------------------------------------------------------------------
def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip("\x00")
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    f = _float(value)
    return int(f) if f is not None and f == int(f) else None


@dataclass(frozen=True)
class Channel:
    """One image page: its name, scaling from the default slot, and unit."""

    name: str
    page: int
    quantity: str
    fancy_name: str
    retrace: bool
    slot: str
    multiplier: float
    offset: float
    unit: str
    shape: tuple[int, int]


def _scaling(page: Any, path: str, index: int) -> tuple[str, float, float, str]:
    """(slot, multiplier, offset, unit) of the page's default slot.

    The multiplier and offset in every slot convert raw integers directly (not the parent
    slot's values), as the public readers and the sample values confirm.
    """
    n_slots = _int(_tag(page, TAG_N_SLOTS))
    default = _tag(page, TAG_DEFAULT_SLOT)
    if n_slots is None or not 0 < n_slots <= MAX_SLOTS or not isinstance(default, str):
        raise CorruptFileError(path, f"page {index}: slot count {n_slots!r} / default slot {default!r} unusable")
    for n in range(n_slots):
        base = n * SLOT_STRIDE
        if _tag(page, SLOT_NAME + base) != default:
            continue
        kind = _tag(page, SLOT_SCALING + base)
        unit = _tag(page, SLOT_UNIT + base)
        unit = unit if isinstance(unit, str) else ""
        if kind == "NullScaling":
            return default, 1.0, 0.0, unit or "raw"
        if kind == "LinearScaling":
            mult, off = _float(_tag(page, SLOT_MULTIPLIER + base)), _float(_tag(page, SLOT_OFFSET + base))
            if mult is None or off is None:
                raise CorruptFileError(path, f"page {index}: slot {default!r} has no usable multiplier/offset")
            return default, mult, off, unit
        raise CorruptFileError(path, f"page {index}: slot {default!r} has unsupported scaling {kind!r}")
    raise CorruptFileError(path, f"page {index}: default slot {default!r} is not among its {n_slots} slots")


def _check_page(page: Any, path: str, index: int, grid: tuple[int | None, int | None], size: int) -> tuple[int, int]:
    shape = tuple(int(s) for s in page.shape)
    if len(shape) != 2 or not all(1 <= s <= MAX_SIDE for s in shape):
        raise CorruptFileError(path, f"page {index} has shape {shape}; expected one 2-D image")
    jl, il = grid
    if (jl is not None and shape[0] != jl) or (il is not None and shape[1] != il):
        raise CorruptFileError(path, f"page {index} is {shape[0]} x {shape[1]} pixels; the grid tags say {jl} x {il}")
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None or dtype.kind not in "iuf":
        raise CorruptFileError(path, f"page {index} holds {page.dtype} values, not numbers")
    nbytes = shape[0] * shape[1] * dtype.itemsize
    if int(page.compression) == 1:
        ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts)]
        if sum(int(c) for c in page.databytecounts) < nbytes or (ends and max(ends) > size):
            raise CorruptFileError(path, f"page {index}: image data is cut off (file is {size} bytes)")
    return shape[0], shape[1]


@dataclass(frozen=True)
class Layout:
    channels: dict[str, Channel]
    file_tags: dict[str, Any]
    private_tags: dict[str, Any]


def _open(path: str):
    try:
        return open_tiff(path)
    except Exception as exc:  # tifffile raises several types on damaged headers
        if passes_through(exc):
            raise
        raise CorruptFileError(path, f"cannot read as TIFF (.jpk): {type(exc).__name__}: {exc}") from None


def identify(probe: Probe) -> bool:
    """A TIFF whose first page carries JPK's grid tag (32834)."""
    if not probe.head.startswith((b"MM\x00*", b"II*\x00", b"MM\x00+", b"II+\x00")):
        return False
    with open_tiff(probe.path) as tif:
        return tif.pages.first.tags.get(TAG_GRID_ULENGTH) is not None


def layout(tif: Any, path: str) -> Layout:
    """Channels and file tags; reads tags only, never pixel data."""
    size = tif.filehandle.size
    pages = tif.pages
    if len(pages) == 0:
        raise CorruptFileError(path, "the TIFF has no readable pages: not a JPK image")
    first = pages.first
    if first.tags.get(TAG_GRID_ULENGTH) is None:
        raise CorruptFileError(path, "no JPK grid tags (32834 uLength): not a JPK image")
    if len(pages) < 2:
        raise CorruptFileError(path, f"{len(pages)} TIFF page(s); a JPK image has a thumbnail plus channel pages")
    file_tags = {key: _tag(first, code) for key, code in _FILE_TAGS.items()}
    private = {str(t.code): t.value for t in first.tags if t.code >= 32768}
    grid = (_int(file_tags["grid_jlength"]), _int(file_tags["grid_ilength"]))
    channels: dict[str, Channel] = {}
    for index in range(1, min(len(pages), 4096)):
        page = pages[index]
        quantity = _tag(page, TAG_CHANNEL)
        if not isinstance(quantity, str) or not quantity.strip() or quantity == "thumbnail":
            continue
        retrace = _int(_tag(page, TAG_RETRACE)) == 1 or str(_tag(page, TAG_RETRACE)).lower() == "true"
        shape = _check_page(page, path, index, grid, size)
        slot, mult, off, unit = _scaling(page, path, index)
        base = f"{quantity.strip()}_{'retrace' if retrace else 'trace'}"
        name = base
        k = 2
        while name in channels:
            name, k = f"{base}_{k}", k + 1
        fancy = _tag(page, TAG_FANCY_NAME)
        channels[name] = Channel(name, index, quantity.strip(), fancy if isinstance(fancy, str) else quantity,
                                 retrace, slot, mult, off, unit, shape)
    if not channels:
        raise CorruptFileError(path, "no channel pages (tag 32848) found")
    return Layout(channels, file_tags, private)


def channels(path: str | os.PathLike) -> list[str]:
    path = os.fspath(path)
    with reading(path, "reading the TIFF structure"), _open(path) as tif:
        return list(layout(tif, path).channels)


def _select(lay: Layout, channel: str | None, path: str) -> Channel:
    return pick_channel(path, lay.channels, channel, DEFAULT_CHANNELS)


# --------------------------------------------------------------------------------------
# the lazy image
# --------------------------------------------------------------------------------------
class JPKPageArray(LazyArray):
    """One TIFF page as a (1, y, x) stack, read with tifffile on the first access; a page
    stored as one uncompressed run is then read by byte range (an ``fstat``-checked
    ``pread`` of the file, no IFD parsed again) while the file keeps its identity.

    ``ifd_offset`` (where the page's IFD lies, found at open) lets a read parse that IFD
    alone instead of walking the chain of every page before it: for a URL, the header,
    the IFD and the pixels, a few requests instead of one per page of the file.
    """

    def __init__(self, path: str | os.PathLike, page: int, *, shape: tuple[int, int], multiplier: float,
                 offset: float, flip_y: bool = True, ifd_offset: int | None = None):
        self.path = os.fspath(path)
        self.page = int(page)
        self.ifd_offset = None if ifd_offset is None else int(ifd_offset)
        self.shape = (1, int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(np.float64)
        self.multiplier = float(multiplier)
        self.offset = float(offset)
        self.flip_y = bool(flip_y)

    #: Where the page's pixels lie once a read through tifffile found them stored plainly
    #: (one uncompressed run): later reads of the unchanged file read those bytes alone,
    #: without parsing the file's IFDs again (False: always through tifffile).
    _layout: ByteLayout | bool | None = None

    def _read(self, key: tuple) -> np.ndarray:
        layout = self._layout
        if isinstance(layout, ByteLayout) and self.opened is not None:
            raw = layout.read(self.path, self.opened, (slice(0, self.shape[1]), slice(0, self.shape[2])))
        else:
            raw = self._read_tiff()
        if raw.shape != self.shape[1:]:
            raise CorruptFileError(self.path, f"page {self.page} is {raw.shape}, expected {self.shape[1:]}")
        if self.flip_y:
            raw = raw[::-1]
        out = np.multiply(raw, self.multiplier, dtype=np.float64)
        if self.offset:
            out += self.offset
        return outer_index(out[None], key)

    def _read_tiff(self) -> np.ndarray:
        import tifffile

        with open_tiff(self.path) as tif:
            if self.ifd_offset is not None:
                if self.ifd_offset >= tif.filehandle.size:
                    raise CorruptFileError(self.path, f"page {self.page} is missing (its IFD at byte {self.ifd_offset} is past the end)")
                tif.filehandle.seek(self.ifd_offset)
                page = tifffile.TiffPage(tif, index=self.page)
            elif self.page >= len(tif.pages):
                raise CorruptFileError(self.path, f"page {self.page} is missing")
            else:
                page = tif.pages[self.page]
            raw: np.ndarray = page.asarray()
            if self._layout is None:
                self._keep_layout(page, tif.byteorder)
        return raw

    def _keep_layout(self, page: Any, byteorder: str) -> None:
        """Keep where a plainly stored page's pixels are (one uncompressed run of the page's
        shape, as JPK writes them), if the file is still the one opened."""
        opened = self.opened
        plain = (
            not sources.is_url(self.path) and opened is not None and opened.size is not None
            and page.compression == 1 and page.predictor == 1 and page.fillorder == 1 and page.samplesperpixel == 1
            and bool(page.is_contiguous) and tuple(page.shape) == self.shape[1:] and page.dtype is not None
            and np.dtype(page.dtype).kind in "iuf"
        )
        if not plain:
            self._layout = False
            return
        layout = ByteLayout(np.dtype(page.dtype).newbyteorder(byteorder), self.shape[1:], offset=int(page.dataoffsets[0]))
        if FileIdentity.of(self.path) == opened:
            self._layout = layout


# --------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------
def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open a ``.jpk`` / ``.jpk-qi-image`` as a lazy one-frame stack."""
    path = os.fspath(path)
    with reading(path, "reading the TIFF structure"), _open(path) as tif:
        lay = layout(tif, path)
        chan = _select(lay, channel, path)
        page = tif.pages[chan.page]
        channel_info = _tag(page, TAG_CHANNEL_INFO)
        ifd_offset = int(page.offset)
    tags = lay.file_tags
    rows, cols = chan.shape
    ulength, vlength = _float(tags["grid_ulength_m"]), _float(tags["grid_vlength_m"])
    if not ulength:
        raise CorruptFileError(path, "grid width (tag 32834) is missing or zero")
    dx = abs(ulength) / cols * 1e9
    dy = abs(vlength) / rows * 1e9 if vlength else dx
    start_ms, zone_note = _start_epoch_ms(tags["start_date"], tags["unique_id"])
    # the duration from the two dates as written (same zone), whatever the start's source
    start_text, end_text = parse_date(tags["start_date"])[0], parse_date(tags["end_date"])[0]
    duration = (end_text - start_text) / 1000.0 if start_text is not None and end_text is not None else None
    if duration is not None and duration <= 0:
        duration = None  # QI images write the same date twice: no duration recorded
    scan_rate = _float(tags["scan_rate_lines_per_s"])
    motion = tags["motion"] if isinstance(tags["motion"], str) else None
    frame = {
        "start_epoch_ms": start_ms,
        "frame_duration_s": duration,
        "line_rate": scan_rate if scan_rate and scan_rate > 0 else None,
        "scan_direction": motion,
    }
    reflect = str(tags["grid_reflect"]).lower() in ("1", "true")
    to_nm = chan.unit == "m"
    scale = 1e9 if to_nm else 1.0
    acquisition = conventions.jsonable({
        "format": "JPK image (TIFF)",
        **{k: v for k, v in tags.items() if v is not None},
        "start_time_zone": zone_note,
        "channel": {
            "name": chan.name, "quantity": chan.quantity, "fancy_name": chan.fancy_name, "retrace": chan.retrace,
            "page": chan.page, "slot": chan.slot, "scaling_multiplier": chan.multiplier,
            "scaling_offset": chan.offset, "scaling_unit": chan.unit, "info": channel_info,
        },
        "tags": lay.private_tags,
    })
    data = JPKPageArray(path, chan.page, shape=chan.shape, multiplier=chan.multiplier * scale,
                        offset=chan.offset * scale, flip_y=not reflect, ifd_offset=ifd_offset)
    return model.assemble(
        data,
        pixel_size_nm=(dy, dx) if not math.isclose(dy, dx, rel_tol=1e-12) else dx,
        times=[0.0],
        channel=conventions.safe_channel(chan.name),
        units="nm" if to_nm else chan.unit,
        frame_metadata=[frame],
        attrs={conventions.ACQUISITION_ATTR: json.dumps(acquisition, ensure_ascii=False)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=chan.name)],
    )


FORMAT = Format(
    name=NAME,
    description="JPK single image (TIFF with JPK tags)",
    suffixes=(".jpk", ".jpk-qi-image"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
