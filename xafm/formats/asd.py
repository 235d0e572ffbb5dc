"""RIBM / Kanazawa high-speed AFM videos (``.asd``, file versions 0, 1 and 2), read lazily.

An ``.asd`` file is a file header followed, per channel, by ``n`` frames of a 32-byte frame
header plus ``y * x`` little-endian int16 A/D levels. Frames sit at fixed offsets, so the
stack is a :class:`RawFramesArray` (``frame_stride = frame header + 2 * x * y``) and opening
reads the file header only: no frame data and no frame header, whatever the video length.
The per-frame header fields (frame number, min/max level, x/y tilt) become lazy coordinates
that are read, like the data, only when asked for, all five from one read of the headers
(``xafm.open(path, lazy=True)`` asks for them at open, for a local file: one strided pass).
See ``docs/formats.md``.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import struct
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.lazy import LazyArray, RawFramesArray
from ..exceptions import ChannelError, CorruptFileError, FormatError, TruncatedFileWarning, XafmWarning

NAME = "asd"

#: Channel code in the file -> (xafm channel name, units of the converted values).
CHANNELS = {"TP": ("topography", "nm"), "ER": ("error", "nm"), "PH": ("phase", "deg")}
#: Extra names accepted by ``channel=`` (case-insensitive), besides the names and codes.
ALIASES = {"height": "TP", "topo": "TP"}
#: A/D range code -> (full range in V, bipolar?). 0x800000 is libasd's "dummy" 80 V range.
AD_RANGES = {
    0x00000001: (1.0, False),
    0x00000002: (2.5, False),
    0x00000003: (9.99, False),
    0x00000004: (5.0, False),
    0x00010000: (1.0, True),
    0x00020000: (2.5, True),
    0x00040000: (5.0, True),
    0x00800000: (80.0, True),
}
#: Used when the header's A/D bit count is implausible (every public reader assumes 12 bits).
DEFAULT_AD_BITS = 12
SCAN_DIRECTIONS = {1: "x_forward", 2: "x_backward", 4: "y_forward", 8: "y_backward"}
TEXT_ENCODINGS = {932: "cp932", 1200: "utf-16-le", 20932: "euc_jp", 65001: "utf-8", 10001: "shift_jis", 20127: "ascii"}

FRAME_HEADER_SIZE = 32
#: The 32-byte frame header; the fields xafm exposes become lazy per-frame coordinates.
FRAME_HEADER_DTYPE = np.dtype(
    [
        ("frame_number", "<i4"), ("max_data", "<i2"), ("min_data", "<i2"),
        ("x_offset", "<i2"), ("y_offset", "<i2"), ("x_tilt", "<f4"), ("y_tilt", "<f4"),
        ("is_stimulated", "u1"), ("booked1", "i1"), ("booked2", "<i2"), ("booked3", "<i4"), ("booked4", "<i4"),
    ]
)
assert FRAME_HEADER_DTYPE.itemsize == FRAME_HEADER_SIZE
#: (dtype, offset) of each frame-header field.
_HEADER_FIELDS: dict[str, tuple[np.dtype, int]] = {k: (v[0], v[1]) for k, v in (FRAME_HEADER_DTYPE.fields or {}).items()}
FRAME_FIELDS = {
    "asd_frame_number": "frame_number", "asd_max_data": "max_data", "asd_min_data": "min_data",
    "asd_x_tilt": "x_tilt", "asd_y_tilt": "y_tilt",
}

# fixed parts of the file headers (little-endian, packed: the offsets are the file's own)
_V0 = struct.Struct("<i2s2s5i4h3fIiBihh6B2f3i3ih")  # 105 bytes, then name, 12 bytes, comment
_V0_TAIL = struct.Struct("<2fi")
_V1 = struct.Struct("<6i4s4s8iBi6i2i3fi12xiIi2f4f")  # 165 bytes, then name and comment
_V2_TAIL = struct.Struct("<iid2i3i")  # version 2: after the comment, then the colour anchors
assert (_V0.size, _V1.size, _V2_TAIL.size) == (105, 165, 36)

#: Sanity limits: a header may not make xafm believe in more than this.
MAX_TEXT_BYTES = 1 << 20
MAX_PIXELS_PER_FRAME = 1 << 26
MAX_SIDE = 1 << 16
MAX_FRAME_HEADER = 1024
MAX_ANCHORS = 1 << 20


@dataclass
class Header:
    """The parsed file header, plus where xafm found the frames."""

    version: int
    fields: dict[str, Any]
    codes: list[str]
    x_pixels: int
    y_pixels: int
    n_frames: int
    frame_header_length: int
    data_offset: int
    file_size: int
    notes: list[str] = field(default_factory=list)

    @property
    def frame_stride(self) -> int:
        return self.frame_header_length + 2 * self.x_pixels * self.y_pixels

    def channel_offset(self, index: int) -> int:
        return self.data_offset + index * self.n_frames * self.frame_stride

    def complete_frames(self, index: int) -> int:
        """Whole frames of channel ``index`` present in the file (at most the promised count)."""
        room = self.file_size - self.channel_offset(index)
        return int(max(0, min(self.n_frames, room // self.frame_stride)))


# --------------------------------------------------------------------------------------
# header
# --------------------------------------------------------------------------------------
def _code(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def _text(raw: bytes, encoding: int | None) -> str:
    codec = TEXT_ENCODINGS.get(encoding or 932, "cp932")
    try:
        text = raw.decode(codec, "replace")
    except LookupError:  # pragma: no cover - every codec above ships with Python
        text = raw.decode("latin-1")
    return text.replace("\0", "").strip()


def _read_exact(path: str, fh: Any, offset: int, size: int, what: str) -> bytes:
    fh.seek(offset)
    data = fh.read(size)
    if len(data) != size:
        raise CorruptFileError(
            path, f"the file ends inside the {what} (needs bytes {offset}..{offset + size}, the file has {offset + len(data)})"
        )
    return data


def _text_size(path: str, value: int, what: str) -> int:
    if not 0 <= value <= MAX_TEXT_BYTES:
        raise CorruptFileError(path, f"implausible {what} size {value} bytes in the header")
    return value


def read_header(path: str) -> Header:
    """Parse the file header: one small read of the fixed part, then the two text fields.

    Everything that later decides offsets or sizes is checked here, so a lying header gives
    a clear ``CorruptFileError`` rather than a huge allocation or a wrong read.
    """
    # a URL: read in ranges, the first 64 KiB holding any header xafm has met
    with sources.open_binary(path, block_size=2**16) as fh:
        size = sources.file_size(fh)
        if size == 0:
            raise CorruptFileError(path, "the file is empty")
        if size < 4:
            raise CorruptFileError(path, f"the file is {size} bytes, too short for an .asd header")
        (version,) = struct.unpack("<i", _read_exact(path, fh, 0, 4, "file version"))
        if version == 0:
            f, parsed_end = _parse_v0(path, fh)
        elif version in (1, 2):
            f, parsed_end = _parse_v1(path, fh, version)
        else:
            raise CorruptFileError(
                path, f"unknown .asd file version {version} (xafm reads versions 0, 1 and 2); not an .asd file?"
            )
    return _layout(path, version, f, parsed_end, size)


def _parse_v0(path: str, fh: Any) -> tuple[dict[str, Any], int]:
    v = _V0.unpack(_read_exact(path, fh, 0, _V0.size, "version-0 file header"))
    names = (
        "file_version", "channel1", "channel2", "header_length", "frame_header_length", "user_name_size",
        "comment_offset_size", "comment_size", "x_pixels", "y_pixels", "x_nm", "y_nm", "frame_time_ms",
        "z_piezo_extension", "z_piezo_gain", "ad_range", "ad_bits", "averaged", "averaging_window", "legacy",
        "year", "month", "day", "hour", "minute", "second", "rounding_degree", "max_x_scan_range",
        "max_y_scan_range", "booked1", "booked2", "booked3", "initial_frames", "num_frames", "afm_id", "file_id",
    )
    f = dict(zip(names, v))
    user_size = _text_size(path, f["user_name_size"], "user name")
    offset_size = _text_size(path, f["comment_offset_size"], "comment offset")
    comment_size = _text_size(path, f["comment_size"], "comment")
    pos = _V0.size
    f["user_name"] = _text(_read_exact(path, fh, pos, user_size, "user name"), None)
    pos += user_size
    f["scanner_sensitivity"], f["phase_sensitivity"], f["scan_direction"] = _V0_TAIL.unpack(
        _read_exact(path, fh, pos, _V0_TAIL.size, "version-0 file header")
    )
    pos += _V0_TAIL.size + offset_size
    f["comment"] = _text(_read_exact(path, fh, pos, comment_size, "comment"), None)
    return f, pos + comment_size


def _parse_v1(path: str, fh: Any, version: int) -> tuple[dict[str, Any], int]:
    v = _V1.unpack(_read_exact(path, fh, 0, _V1.size, f"version-{version} file header"))
    names = (
        "file_version", "header_length", "frame_header_length", "text_encoding", "user_name_size", "comment_size",
        "channel1", "channel2", "initial_frames", "num_frames", "scan_direction", "file_id", "x_pixels",
        "y_pixels", "x_nm", "y_nm", "averaged", "averaging_window", "year", "month", "day", "hour", "minute",
        "second", "x_rounding_degree", "y_rounding_degree", "frame_time_ms", "scanner_sensitivity",
        "phase_sensitivity", "offset", "afm_id", "ad_range", "ad_bits", "max_x_scan_range", "max_y_scan_range",
        "x_piezo_extension", "y_piezo_extension", "z_piezo_extension", "z_piezo_gain",
    )
    f = dict(zip(names, v))
    user_size = _text_size(path, f["user_name_size"], "user name")
    comment_size = _text_size(path, f["comment_size"], "comment")
    pos = _V1.size
    f["user_name"] = _text(_read_exact(path, fh, pos, user_size, "user name"), f["text_encoding"])
    pos += user_size
    f["comment"] = _text(_read_exact(path, fh, pos, comment_size, "comment"), f["text_encoding"])
    pos += comment_size
    if version == 1:
        return f, pos
    tail = _V2_TAIL.unpack(_read_exact(path, fh, pos, _V2_TAIL.size, "version-2 file header"))
    keys = ("number_of_frames_v2", "feed_forward", "feed_forward_value", "max_colour_scale", "min_colour_scale",
            "red_anchors", "green_anchors", "blue_anchors")
    f.update(zip(keys, tail))
    anchors = tail[-3:]
    if not all(0 <= a <= MAX_ANCHORS for a in anchors):
        # the anchors only colour the instrument's display; the header length still finds the frames
        return f, -1
    return f, pos + _V2_TAIL.size + 8 * sum(anchors)


def _layout(path: str, version: int, f: dict[str, Any], parsed_end: int, size: int) -> Header:
    codes = [_code(f["channel1"]), _code(f["channel2"])]
    f["channel1"], f["channel2"] = codes
    for i, code in enumerate(codes):
        if code and code not in CHANNELS:
            raise CorruptFileError(path, f"channel {i + 1} has unknown data kind {code!r} (known: {', '.join(CHANNELS)})")
    if not codes[0]:
        raise CorruptFileError(path, "the header names no channel 1 data kind")
    if codes[1] == codes[0]:
        raise CorruptFileError(path, f"both channels claim the same data kind {codes[0]!r}")
    codes = [c for c in codes if c]
    nx, ny, n = int(f["x_pixels"]), int(f["y_pixels"]), int(f["num_frames"])
    if not (1 <= nx <= MAX_SIDE and 1 <= ny <= MAX_SIDE and nx * ny <= MAX_PIXELS_PER_FRAME):
        raise CorruptFileError(path, f"implausible frame size {nx} x {ny} pixels in the header")
    if n < 1:
        raise CorruptFileError(path, f"the header says the video holds {n} frames")
    fhl = int(f["frame_header_length"])
    if not FRAME_HEADER_SIZE <= fhl <= MAX_FRAME_HEADER:
        raise CorruptFileError(path, f"implausible frame header length {fhl} bytes (the frame header has {FRAME_HEADER_SIZE})")
    if not (f["x_nm"] > 0 and f["y_nm"] > 0):
        raise CorruptFileError(path, f"scan size {f['x_nm']} x {f['y_nm']} nm in the header is not positive")
    stride = fhl + 2 * nx * ny
    want = len(codes) * n * stride
    # v1/v2: the header length field finds the frames (as the instrument software does);
    # v0: the end of the parsed header, because some v0 writers store a wrong header length.
    field_first = version != 0
    candidates = [int(f["header_length"]), parsed_end] if field_first else [parsed_end, int(f["header_length"])]
    fixed = _V0.size if version == 0 else _V1.size
    valid = [c for c in candidates if fixed <= c <= size]
    if not valid:
        raise CorruptFileError(path, f"header length {f['header_length']} does not fit the file ({size} bytes)")
    offset = next((c for c in valid if c + want == size), None)
    if offset is None:
        offset = next((c for c in valid if c + want <= size), valid[0])
    notes = []
    if offset != int(f["header_length"]):
        notes.append(f"frames found at byte {offset}, not at the header length field {f['header_length']}")
    if offset + want < size:
        notes.append(f"{size - offset - want} bytes after the last frame the header promises were ignored")
    return Header(version, f, codes, nx, ny, n, fhl, offset, size, notes)


# --------------------------------------------------------------------------------------
# channels and values
# --------------------------------------------------------------------------------------
def _lookup(path: str, h: Header, channel: str | None) -> int:
    names = [CHANNELS[c][0] for c in h.codes]
    if channel is None:
        return h.codes.index("TP") if "TP" in h.codes else 0
    key = str(channel).strip()
    lowered = key.lower()
    for i, code in enumerate(h.codes):
        if lowered in (code.lower(), CHANNELS[code][0]) or ALIASES.get(lowered) == code:
            return i
    raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")


def channels(path: str | os.PathLike) -> list[str]:
    """The channel names the header lists, in file order (no size checks: listing only)."""
    h = read_header(os.fspath(path))
    return [CHANNELS[c][0] for c in h.codes]


def conversion(path: str, h: Header, code: str) -> tuple[float, float | None, dict[str, Any]]:
    """``value = level * scale + add`` for channel ``code``, and how it was derived.

    Factor: TP = z piezo gain x z piezo extension (nm/V); ER = -scanner sensitivity;
    PH = -phase sensitivity; a factor of 0 (no calibration in the header) gives volts. Unipolar: ``level * (-range / 2**bits * factor)``; bipolar:
    ``(range - 2 * level * range / 2**bits) * factor``. Header floats are float32; they are
    used as the float32 values widened to float64, as the public readers do.
    """
    f = h.fields
    factor = {
        "TP": float(f["z_piezo_gain"]) * float(f["z_piezo_extension"]),
        "ER": -float(f["scanner_sensitivity"]),
        "PH": -float(f["phase_sensitivity"]),
    }[code]
    ad = int(f["ad_range"])
    if ad not in AD_RANGES:
        known = ", ".join(f"0x{k:x}" for k in AD_RANGES)
        raise CorruptFileError(
            path, f"unknown A/D range code 0x{ad:x} (known: {known}); cannot convert levels to {CHANNELS[code][1]}"
        )
    volts, bipolar = AD_RANGES[ad]
    bits = int(f["ad_bits"])
    if not 1 <= bits <= 16:
        bits = DEFAULT_AD_BITS
    resolution = float(2**bits)
    if not math.isfinite(factor):
        raise CorruptFileError(path, f"the {code} conversion factor in the header is not finite ({factor})")
    # a zero sensitivity (the real version-0 sample's phase) would make every value 0: the
    # A/D voltage is then all the file can say
    uncalibrated = factor == 0.0
    if uncalibrated:
        factor = 1.0
    if bipolar:
        scale, add = -2.0 * volts / resolution * factor, volts * factor
    else:
        scale, add = -volts / resolution * factor, None
    info = {
        "factor": factor, "ad_range_code": f"0x{ad:x}", "ad_range_v": volts,
        "ad_polarity": "bipolar" if bipolar else "unipolar", "ad_resolution": int(resolution),
        "scale": scale, "add": add or 0.0, "units": "V" if uncalibrated else CHANNELS[code][1],
        "uncalibrated": uncalibrated,
    }
    return scale, add, info


def _epoch_ms(f: dict[str, Any]) -> tuple[str | None, float | None]:
    """The header date (no time zone in the file: taken as UTC, as playNano does)."""
    try:
        year, month, day, hour, minute, second = (int(f[k]) for k in ("year", "month", "day", "hour", "minute", "second"))
        d = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.UTC)
    except (ValueError, OverflowError):
        return None, None
    return d.strftime("%Y-%m-%d %H:%M:%S"), d.timestamp() * 1000.0


class _FrameHeaders:
    """The 32-byte frame headers of a video's frames, read once for all five per-frame
    coordinates and kept for the version they were read from (every field read checks
    the file's identity before and after, as every lazy read does).

    A URL's are fetched for the frames asked for (one ranged GET per frame run) and kept
    frame by frame. A local file's are read all at once (one strided pass, a page per
    frame) when most of them are asked for, as ``xafm.open(path, lazy=True)`` does at
    open, and kept as one table; a few frames' alone otherwise.
    """

    #: Most frame headers kept (32 bytes each).
    MAX_KEPT = 2**17

    def __init__(self, path: str, *, channel_offset: int, n_frames: int, stride: int):
        self.base = RawFramesArray(
            path, offset=channel_offset, n_frames=n_frames, frame_shape=(1, FRAME_HEADER_SIZE),
            raw_dtype=np.uint8, frame_stride=stride,
        )
        self.local = not sources.is_url(self.base.path)
        self._kept: dict[int, np.ndarray] = {}
        self._table: np.ndarray | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"base": self.base}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.base, self._kept, self._table, self._lock = state["base"], {}, None, threading.Lock()
        self.local = not sources.is_url(self.base.path)

    def rows(self, frames: np.ndarray) -> np.ndarray:
        """The headers of ``frames`` as records of :data:`FRAME_HEADER_DTYPE`."""
        if self.local:
            return self._local_rows(frames)
        with self._lock:
            missing = sorted({int(f) for f in frames.tolist()} - set(self._kept))
        if missing:
            got = self.base._read((np.asarray(missing, dtype=np.intp), 0, slice(None)))
            with self._lock:
                if len(self._kept) + len(missing) > self.MAX_KEPT:
                    self._kept.clear()
                self._kept.update(zip(missing, got))
        with self._lock:
            out = np.stack([self._kept[int(f)] for f in frames.tolist()]) if frames.size else np.empty((0, FRAME_HEADER_SIZE), np.uint8)
        return np.ascontiguousarray(out).view(FRAME_HEADER_DTYPE).reshape(-1)

    def _local_rows(self, frames: np.ndarray) -> np.ndarray:
        table = self._table
        if table is None and 4 * frames.size >= self.base.shape[0] and self.base.shape[0] <= self.MAX_KEPT:
            table = self._records(self.base._read((slice(None), 0, slice(None))))
            with self._lock:
                self._table = table
        if table is not None:
            return table[frames]
        if frames.size == 0:
            return np.empty(0, FRAME_HEADER_DTYPE)
        return self._records(self.base._read((np.asarray(frames, dtype=np.intp), 0, slice(None))))

    @staticmethod
    def _records(raw: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(raw).view(FRAME_HEADER_DTYPE).reshape(-1)


class _FrameHeaderField(LazyArray):
    """One frame-header field of every frame, read from the shared :class:`_FrameHeaders`
    only when asked for."""

    def __init__(self, path: str, *, channel_offset: int, n_frames: int, stride: int, name: str, headers: _FrameHeaders | None = None):
        raw, at = _HEADER_FIELDS[name]
        self.name = name
        self.headers = headers
        self.base = RawFramesArray(
            path, offset=channel_offset + at, n_frames=n_frames,
            frame_shape=(1, 1), raw_dtype=raw, frame_stride=stride,
            out_dtype=np.float64 if raw.kind == "f" else np.int64,
        )
        self.dtype, self.shape = self.base.dtype, (int(n_frames),)
        self.reads_through(self.base)

    def _read(self, key: tuple) -> np.ndarray:
        if self.headers is None:
            return self.base._read((key[0], 0, 0))
        frames = np.arange(self.shape[0])[key[0]]
        values = self.headers.rows(np.atleast_1d(frames))[self.name].astype(self.dtype)
        return values[0] if np.ndim(frames) == 0 else values


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
ON_TRUNCATED = ("raise", "warn")


def identify(probe: Probe) -> bool:
    """A file version (0, 1 or 2) and a known channel-1 data kind where that version keeps it."""
    head = probe.head
    if len(head) < 32:
        return False
    version = int.from_bytes(head[:4], "little", signed=True)
    code = head[4:6] if version == 0 else head[24:28] if version in (1, 2) else b""
    return _code(code) in CHANNELS


def read(path: str | os.PathLike[str], *, channel: str | None = None, on_truncated: str = "raise") -> xr.Dataset:
    """The video as a lazy one-variable Dataset (values in nm, V-derived units or degrees).

    Parameters
    ----------
    channel
        ``"topography"`` (also ``"TP"``, ``"height"``), ``"error"`` (``"ER"``) or ``"phase"``
        (``"PH"``); ``None`` gives the topography channel (else channel 1).
    on_truncated
        ``"raise"`` (default): a file shorter than its header promises is a
        ``CorruptFileError``. ``"warn"``: read the complete frames and warn with a
        ``TruncatedFileWarning`` saying how many were lost.
    """
    if on_truncated not in ON_TRUNCATED:
        raise FormatError(f"on_truncated must be one of {ON_TRUNCATED}, got {on_truncated!r}")
    path = os.fspath(path)
    h = read_header(path)
    index = _lookup(path, h, channel)
    code = h.codes[index]
    name = CHANNELS[code][0]
    scale, add, conv = conversion(path, h, code)
    units = conv["units"]
    if conv["uncalibrated"]:
        what = {"TP": "z piezo gain x extension", "ER": "scanner sensitivity", "PH": "phase sensitivity"}[code]
        msg = f"{path}: the header's {what} is 0, so the {name} levels cannot be given in {CHANNELS[code][1]}"
        warnings.warn(msg + "; the values are the A/D voltage (V)", XafmWarning, stacklevel=2)

    n = h.n_frames
    complete = [h.complete_frames(i) for i in range(len(h.codes))]
    n_read = complete[index]
    if min(complete) < n:
        total_bytes = h.data_offset + len(h.codes) * n * h.frame_stride
        held = " and ".join(f"{k} {CHANNELS[c][0]}" for c, k in zip(h.codes, complete))
        problem = (
            f"truncated video: the header promises {n} frames of {h.y_pixels} x {h.x_pixels} pixels per channel "
            f"({total_bytes} bytes), but the file ({h.file_size} bytes) holds only {held} complete frames"
        )
        if on_truncated == "raise" or n_read == 0:
            hint = "; open with on_truncated='warn' to read the complete frames" if n_read else ""
            raise CorruptFileError(path, problem + hint)
        warnings.warn(
            f"{path}: {problem}; read the {n_read} complete {name} frames, {n - n_read} frames lost",
            TruncatedFileWarning,
            stacklevel=2,
        )
    offset = h.channel_offset(index)
    data = RawFramesArray(
        path, offset=offset + h.frame_header_length, n_frames=n_read, frame_shape=(h.y_pixels, h.x_pixels),
        raw_dtype="<i2", frame_stride=h.frame_stride, scale=scale, add=add, out_dtype=np.float64,
    )

    f = h.fields
    period_ms = float(f["frame_time_ms"])
    period = period_ms / 1000.0 if math.isfinite(period_ms) and period_ms > 0 else None
    if period is None:
        msg = f"{path}: frame time {period_ms} ms in the header is unusable; time is the frame index"
        warnings.warn(msg, XafmWarning, stacklevel=2)
        times = np.arange(n_read, dtype=np.float64)
    else:
        times = np.arange(n_read, dtype=np.float64) * period
    date, date_ms = _epoch_ms(f)
    # The header date is when the file was saved, i.e. the end of the recording of the n
    # promised frames: frame k started at date - (n - k) * period.
    t0 = date_ms - n * period * 1000.0 if (date_ms is not None and period is not None) else None

    acquisition = {
        "instrument": "RIBM / Kanazawa high-speed AFM",
        "format": "asd",
        "file_version": h.version,
        "channel_code": code,
        "channels_in_file": list(h.codes),
        "units": units,
        "date": date,
        "date_meaning": "file header date, taken as UTC and as the end of the recording",
        "recording_start_epoch_ms": t0,
        "frame_time_ms": period_ms,
        "scan_size_nm": [f["x_nm"], f["y_nm"]],
        "scan_direction": _scan_direction(f.get("scan_direction")),
        "user_name": f.get("user_name", ""),
        "comment": f.get("comment", ""),
        "frames_promised": n,
        "frames_read": n_read,
        "data_offset": h.data_offset,
        "frame_header_length": h.frame_header_length,
        "conversion": conv,
        "notes": h.notes,
        "header": {k: v for k, v in f.items() if k not in ("user_name", "comment")},
    }
    attrs = {conventions.ACQUISITION_ATTR: conventions.json_text(acquisition)}
    record = provenance.make_record(
        "read", path=path, format=NAME, reader=__name__, channel=name, channel_code=code,
        file_version=h.version, on_truncated=on_truncated, frames_read=n_read, frames_promised=n,
    )
    ds = model.assemble(
        data,
        pixel_size_nm=(f["y_nm"] / h.y_pixels, f["x_nm"] / h.x_pixels),
        times=times,
        channel=name,
        units=units,
        attrs=attrs,
        provenance=[record],
    )
    # per-frame metadata as whole columns (vectorised: no per-frame Python work)
    k = np.arange(n_read, dtype=np.float64)
    nan = np.full(n_read, np.nan)
    coords: dict[str, xr.Variable] = {
        "frame_duration_s": model.variable(("time",), nan.copy() if period is None else np.full(n_read, period)),
        "line_rate": model.variable(("time",), nan.copy() if period is None else np.full(n_read, h.y_pixels / period)),
        "start_epoch_ms": model.variable(("time",), nan.copy() if t0 is None or period is None else t0 + k * period * 1000.0),
    }
    headers = _FrameHeaders(path, channel_offset=offset, n_frames=n_read, stride=h.frame_stride)
    for coord, fname in FRAME_FIELDS.items():
        src = _FrameHeaderField(path, channel_offset=offset, n_frames=n_read, stride=h.frame_stride, name=fname, headers=headers)
        coords[coord] = model.as_variable(("time",), src, {"long_name": f"frame header {fname} (as stored)"})
    return ds.assign_coords(coords)


def _scan_direction(code: Any) -> str | None:
    try:
        code = int(code)
    except (TypeError, ValueError):
        return None
    names = [v for k, v in SCAN_DIRECTIONS.items() if code & k]
    if not names or code & ~sum(SCAN_DIRECTIONS):
        return None
    return "+".join(names)


FORMAT = Format(
    name=NAME,
    description="RIBM / Kanazawa high-speed AFM video",
    suffixes=(".asd",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
