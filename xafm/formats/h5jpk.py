"""JPK / Bruker NanoWizard high-speed videos (``.h5-jpk``, HDF5 "JPK SCAN").

Layout and the choices made where public readers differ are in ``docs/formats.md``.
In short: each channel is one int32 dataset of shape ``(ilength * jlength, n_frames)``
(one column per frame, x fastest); values are ``raw * multiplier + offset`` with the
channel's ``net-encoder.scaling`` attributes; frames are flipped vertically so that row 0
is the top of the scan; frame times are the file's recorded ``meta-data/start-times``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.contract import Format, Probe
from ..core.lazy import bounding_box, outer_index
from ..exceptions import CorruptFileError, StackError, XafmWarning, reading
from ._channels import pick_channel
from ._h5guard import check_stored
from ._h5strings import Values
from ._hdf5 import HDF5_LOCK, H5Direct, identify_with, open_dataset, open_h5, open_raw, text_keys

NAME = "h5-jpk"

#: Channel asked for by ``channel=None``, then the fallbacks, in order.
DEFAULT_CHANNELS = ("height_trace", "height_retrace", "measuredHeight_trace", "measuredHeight_retrace")
#: Sanity bounds on header sizes (never allocate from an unchecked header).
MAX_SIDE = 1 << 16
#: Header attributes copied into the acquisition summary: key in the summary -> attribute.
_SUMMARY = {
    "instrument": "description.instrument",
    "software_version": "jpkspm_version",
    "source_software": "description.source-software",
    "start_time": "start-time",
    "end_time": "end-time",
    "scan_rate_lines_per_s": "timing-settings.scanRate",
    "duty_cycle": "timing-settings.dutyCycle",
    "line_end": "timing-settings.lineend",
    "motion": "motion",
    "image_scan_mode": "environment.fast-imaging.image-scan-mode",
    "interlace": "environment.fast-imaging.feed-forward-parameters.yaxis.interlace",
    "experiment_mode": "environment.experiment-mode.name",
    "feedback_mode": "feedback-mode.name",
    "relative_setpoint": "feedback-settings.setpoint-feedback-settings.relative-setpoint",
    "i_gain": "feedback-settings.setpoint-feedback-settings.i-gain",
    "p_gain": "feedback-settings.setpoint-feedback-settings.p-gain",
    "drive_amplitude_V": "feedback-settings.sine-generator-feedback-settings.amplitude",
    "drive_frequency_Hz": "feedback-settings.sine-generator-feedback-settings.frequency",
    "cantilever": "environment.cantilever-calibration-info.cantilever-name",
    "spring_constant": "environment.cantilever-calibration-info.spring-constant",
    "sensitivity": "environment.cantilever-calibration-info.sensitivity",
    "grid_ilength": "position-pattern.grid.ilength",
    "grid_jlength": "position-pattern.grid.jlength",
    "grid_ulength_m": "position-pattern.grid.ulength",
    "grid_vlength_m": "position-pattern.grid.vlength",
    "grid_xcenter_m": "position-pattern.grid.xcenter",
    "grid_ycenter_m": "position-pattern.grid.ycenter",
    "grid_theta": "position-pattern.grid.theta",
    "grid_reflect": "position-pattern.grid.reflect",
}
#: Per-frame datasets in ``meta-data`` besides the times: dataset -> frame_metadata key.
_FRAME_COLUMNS = {"i-gain": "i_gain", "p-gain": "p_gain", "relative-setpoint": "relative_setpoint"}


# --------------------------------------------------------------------------------------
# small attribute helpers
# --------------------------------------------------------------------------------------
def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _number(value: Any) -> float | None:
    """A finite float from an attribute (number or numeric text), else None."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_, str)):
        value = _text(value)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _plain(value: Any) -> Any:
    """An attribute as a JSON-friendly value (text decoded, small arrays as lists)."""
    if isinstance(value, (bytes, np.bytes_)):
        return _text(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_plain(v) for v in value.ravel()[:100]]
        return conventions.jsonable(value.ravel()[:100])
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "typecode") or type(value).__name__ == "Reference":
        return None
    return value


def _is_true(value: Any) -> bool:
    text = _text(value)
    return text is not None and text.strip().lower() in ("true", "1", "yes")


# --------------------------------------------------------------------------------------
# the file's structure
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Channel:
    """One selectable channel: where it is and how raw values become physical ones."""

    name: str
    group: str
    dataset: str
    quantity: str
    fancy_name: str
    retrace: bool
    multiplier: float
    offset: float
    unit: str


@dataclass(frozen=True)
class Layout:
    measurement: str
    ilength: int
    jlength: int
    n_frames: int
    channels: dict[str, Channel]


def _is_measurement(f: Any) -> bool:
    return any(str(k).startswith("Measurement_") for k in f.keys())


def identify(probe: Probe) -> bool:
    """HDF5 with JPK's ``file-format-info`` ("JPK SCAN") or a ``Measurement_*`` group."""
    return identify_with(probe, lambda f, v: "JPK" in (_text(v.attr(f, "file-format-info")) or "") or _is_measurement(f))


def _measurement(f: Any, values: Values, path: str) -> Any:
    import h5py

    names = sorted(k for k in text_keys(f) if k.startswith("Measurement_") and isinstance(f.get(k), h5py.Group))
    if not names:
        info = _text(values.attr(f, "file-format-info"))
        what = f" (file-format-info {info!r})" if info else ""
        raise CorruptFileError(path, f"no Measurement_* group{what}: not a JPK high-speed .h5-jpk file")
    return f[names[0]]


def _grid_int(attrs: dict[str, Any], key: str, path: str) -> int:
    if key not in attrs:
        raise CorruptFileError(path, f"attribute {key} (pixels per line) is missing")
    value = _number(attrs.get(key))
    if value is None or value != int(value) or not 1 <= value <= MAX_SIDE:
        shown = _plain(attrs.get(key))
        raise CorruptFileError(path, f"attribute {key} is {shown!r}; expected a pixel count 1..{MAX_SIDE}")
    return int(value)


def _channel_dataset(group: Any, name: str) -> Any | None:
    """The channel's data: its one 2-D numeric dataset that is not the thumbnail."""
    import h5py

    found = [
        (k, d) for k, d in group.items()
        if isinstance(k, str) and isinstance(d, h5py.Dataset) and k != "thumbnail" and d.ndim == 2 and d.dtype.kind in "iuf"
    ]
    if len(found) > 1:
        same = [kd for kd in found if kd[0].lower() == name.lower()]
        found = same or found
    return found[0][1] if found else None


def _unique(name: str, taken: dict[str, Any]) -> str:
    if name not in taken:
        return name
    for k in range(2, len(taken) + 3):
        if f"{name}_{k}" not in taken:
            return f"{name}_{k}"
    raise AssertionError("unreachable")  # pragma: no cover


def layout(f: Any, values: Values, path: str) -> Layout:
    """Read the structure (grid, frame count, channels) without touching pixel data."""
    import h5py

    meas = _measurement(f, values, path)
    mattrs = values.attrs(meas)
    ilength = _grid_int(mattrs, "position-pattern.grid.ilength", path)
    jlength = _grid_int(mattrs, "position-pattern.grid.jlength", path)
    npix = ilength * jlength
    channels: dict[str, Channel] = {}
    n_frames: int | None = None
    for key in sorted(k for k in text_keys(meas) if k.startswith("Channel_")):
        group = meas.get(key)
        if not isinstance(group, h5py.Group):
            continue
        gattrs = values.attrs(group)
        raw_name = _text(gattrs.get("channel.name"))
        if not raw_name or not raw_name.strip():
            continue
        ds = _channel_dataset(group, raw_name.strip())
        if ds is None:
            continue
        if ds.shape[0] != npix:
            raise CorruptFileError(
                path, f"{ds.name} has {ds.shape[0]} rows; the grid is {ilength} x {jlength} = {npix} pixels"
            )
        if n_frames is None:
            n_frames = int(ds.shape[1])
        elif ds.shape[1] != n_frames:
            raise CorruptFileError(path, f"{ds.name} has {ds.shape[1]} frames, other channels have {n_frames}")
        retrace = _is_true(gattrs.get("retrace"))
        unit = _text(gattrs.get("net-encoder.scaling.unit.unit"))
        multiplier = _number(gattrs.get("net-encoder.scaling.multiplier"))
        offset = _number(gattrs.get("net-encoder.scaling.offset"))
        if multiplier is None:
            # no calibrated scaling: raw encoder counts, as the public readers do (x1 + 0)
            multiplier, offset, unit = 1.0, 0.0, "raw"
        name = _unique(f"{raw_name.strip()}_{'retrace' if retrace else 'trace'}", channels)
        channels[name] = Channel(
            name=name,
            group=group.name,
            dataset=ds.name,
            quantity=ds.name.rsplit("/", 1)[-1],
            fancy_name=_text(gattrs.get("channel.fancy-name")) or raw_name,
            retrace=retrace,
            multiplier=multiplier,
            offset=offset or 0.0,
            unit=unit if unit is not None else "",
        )
    if not channels or n_frames is None:
        raise CorruptFileError(path, f"{meas.name} holds no channel datasets")
    if n_frames < 1:
        raise CorruptFileError(path, "the video has no frames")
    for chan in channels.values():
        _check_storage(f[chan.dataset], n_frames, path)
    return Layout(meas.name, ilength, jlength, n_frames, channels)


def _check_storage(ds: Any, n_frames: int, path: str) -> None:
    """Refuse datasets whose stored data cannot hold the frames the shape claims.

    HDF5 returns fill values for chunks never written, so a damaged shape would otherwise
    make an eager read allocate and return frames that are not in the file; the declared
    bytes are checked against the stored ones too (:func:`~._h5guard.check_stored`).
    """
    check_stored(ds, path, frames_axis=1)
    if ds.chunks is None:
        if ds.compression is None:
            need = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
            have = ds.id.get_storage_size()
            if have < need:
                raise CorruptFileError(path, f"{ds.name} stores {have} bytes; {n_frames} frames need {need}")
        return
    per_chunk = [math.ceil(s / c) for s, c in zip(ds.shape, ds.chunks)]
    expected = int(np.prod(per_chunk, dtype=np.int64))
    stored = ds.id.get_num_chunks()
    if stored < expected:
        raise CorruptFileError(
            path,
            f"{ds.name} claims {n_frames} frames but only {stored} of {expected} data chunks are stored (truncated?)",
        )


def channels(path: str | os.PathLike) -> list[str]:
    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        return list(layout(f, values, path).channels)


def _select(lay: Layout, channel: str | None, path: str) -> Channel:
    return pick_channel(path, lay.channels, channel, DEFAULT_CHANNELS)


# --------------------------------------------------------------------------------------
# the lazy frames
# --------------------------------------------------------------------------------------
class H5JPKFramesArray(H5Direct):
    """Frames stored as columns of a (pixels, frames) HDF5 dataset, read per access.

    Each read reads the bounding block of rows and frames (one chunk per frame in JPK
    files: the first read through h5py, later ones by byte range, :class:`~._hdf5.H5Direct`),
    and turns it into (frames, y, x) float64 with the flip and the linear scaling applied.
    Nothing is kept open between reads.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dataset: str,
        *,
        n_frames: int,
        rows: int,
        cols: int,
        multiplier: float,
        offset: float,
        flip_y: bool = True,
    ):
        self.path = os.fspath(path)
        self.dataset = dataset
        self.shape = (int(n_frames), int(rows), int(cols))
        self.dtype = np.dtype(np.float64)
        self.multiplier = float(multiplier)
        self.offset = float(offset)
        self.flip_y = bool(flip_y)

    def _read(self, key: tuple) -> np.ndarray:

        bounds, rel = bounding_box(key, self.shape)
        if any(b.stop <= b.start for b in bounds):
            empty = outer_index(np.broadcast_to(np.zeros((), self.dtype), self.shape), key)
            return np.empty(empty.shape, self.dtype)
        (t0, t1), (y0, y1), (x0, x1) = ((b.start, b.stop) for b in bounds)
        rows, cols = self.shape[1], self.shape[2]
        s0, s1 = (rows - y1, rows - y0) if self.flip_y else (y0, y1)
        box = (slice(s0 * cols, s1 * cols), slice(t0, t1))
        raw = self.read_direct(box)
        if raw is None:
            with HDF5_LOCK, open_raw(self.path) as f:
                ds = open_dataset(f, self.dataset, self.path, (rows * cols, self.shape[0]))
                raw = ds[box]
                self.keep_layout(ds)
        block = raw.T.reshape(t1 - t0, s1 - s0, cols)
        if self.flip_y:
            block = block[:, ::-1, :]
        if x0 != 0 or x1 != cols:
            block = block[:, :, x0:x1]
        out = np.multiply(block, self.multiplier, dtype=np.float64)
        if self.offset:
            out += self.offset
        return outer_index(out, rel)


# --------------------------------------------------------------------------------------
# times and metadata
# --------------------------------------------------------------------------------------
def _per_frame(meta: Any, values: Values, name: str, n: int, kind: str) -> np.ndarray | None:
    """A (n,) or (n, 1) numeric dataset from meta-data, or None if absent or the wrong size."""
    import h5py

    if meta is None or name not in meta:
        return None
    ds = meta[name]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in kind or ds.size != n or ds.ndim > 2:
        return None
    check_stored(ds, values.path, frames_axis=0)
    return np.asarray(ds[()]).reshape(n)


def _times(path: str, starts: np.ndarray | None, n: int, lines: int, scan_rate: float | None) -> tuple[np.ndarray, str]:
    """Recorded start times (s from the first); else lines / scan rate per frame; else 0, 1, 2, ...

    Returns the times and where they came from (for the acquisition metadata).
    """
    if starts is not None:
        t = (starts.astype(np.float64) - float(starts[0])) / 1000.0
        try:
            return model.check_times(t, n), "meta-data/start-times"
        except StackError as exc:
            warnings.warn(
                f"{path}: recorded frame start times are unusable ({exc}); using lines / scan rate",
                XafmWarning,
                stacklevel=4,
            )
    if scan_rate and scan_rate > 0:
        return np.arange(n, dtype=np.float64) * (lines / scan_rate), "jlength / timing-settings.scanRate"
    if n > 1:
        warnings.warn(f"{path}: no frame times and no scan rate; using the frame index", XafmWarning, stacklevel=4)
    return np.arange(n, dtype=np.float64), "frame index"


def _acquisition(f: Any, values: Values, attrs: dict[str, Any], lay: Layout, chan: Channel, times_source: str) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "format": " ".join(filter(None, (_text(values.attr(f, k)) for k in ("file-format-info", "file-format-version")))),
        "measurement": lay.measurement,
    }
    for key, attr in _SUMMARY.items():
        if attr in attrs:
            summary[key] = _plain(attrs[attr])
    summary["bidirectional"] = _is_true(attrs.get("environment.fast-imaging.feed-forward-parameters.yaxis.interlace"))
    summary["frame_times"] = times_source
    summary["channel"] = {
        "name": chan.name,
        "fancy_name": chan.fancy_name,
        "quantity": chan.quantity,
        "retrace": chan.retrace,
        "dataset": chan.dataset,
        "scaling_multiplier": chan.multiplier,
        "scaling_offset": chan.offset,
        "scaling_unit": chan.unit,
    }
    summary["header"] = {str(k): _plain(v) for k, v in attrs.items()}
    return conventions.jsonable(summary)


# --------------------------------------------------------------------------------------
# the reader
# --------------------------------------------------------------------------------------
def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """Open a ``.h5-jpk`` video lazily; only metadata and per-frame times are read here."""
    import h5py

    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        lay = layout(f, values, path)
        chan = _select(lay, channel, path)
        meas = f[lay.measurement]
        attrs = values.attrs(meas)
        n, rows, cols = lay.n_frames, lay.jlength, lay.ilength
        ulength = _number(attrs.get("position-pattern.grid.ulength"))
        vlength = _number(attrs.get("position-pattern.grid.vlength"))
        if ulength is None or ulength == 0:
            raise CorruptFileError(path, "attribute position-pattern.grid.ulength (scan width) is missing or zero")
        dx = abs(ulength) / cols * 1e9
        dy = abs(vlength) / rows * 1e9 if vlength else dx
        meta = meas.get("meta-data")
        meta = meta if isinstance(meta, h5py.Group) else None
        starts = _per_frame(meta, values, "start-times", n, "iu")
        ends = _per_frame(meta, values, "end-times", n, "iu")
        columns = {key: _per_frame(meta, values, name, n, "iuf") for name, key in _FRAME_COLUMNS.items()}
        scan_rate = _number(attrs.get("timing-settings.scanRate"))
        motion = _text(attrs.get("motion"))
        reflect = _is_true(attrs.get("position-pattern.grid.reflect"))
        times, source = _times(path, starts, n, rows, scan_rate)
        acquisition = _acquisition(f, values, attrs, lay, chan, source)

    nominal_duration = rows / scan_rate if scan_rate else None
    frame_metadata = []
    for i in range(n):
        fm: dict[str, Any] = {
            "start_epoch_ms": float(starts[i]) if starts is not None else None,
            "frame_duration_s": (float(ends[i]) - float(starts[i])) / 1000.0 if starts is not None and ends is not None else nominal_duration,
            "line_rate": scan_rate,
            "scan_direction": motion,
        }
        for key, col in columns.items():
            if col is not None:
                fm[key] = float(col[i])
        frame_metadata.append(fm)

    to_nm = chan.unit == "m"
    scale = 1e9 if to_nm else 1.0
    data = H5JPKFramesArray(
        path,
        chan.dataset,
        n_frames=n,
        rows=rows,
        cols=cols,
        multiplier=chan.multiplier * scale,
        offset=chan.offset * scale,
        flip_y=not reflect,
    )
    return model.assemble(
        data,
        pixel_size_nm=(dy, dx) if not math.isclose(dy, dx, rel_tol=1e-12) else dx,
        times=times,
        channel=conventions.safe_channel(chan.name),
        units="nm" if to_nm else chan.unit,
        frame_metadata=frame_metadata,
        attrs={conventions.ACQUISITION_ATTR: json.dumps(acquisition, ensure_ascii=False)},
        provenance=[provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=chan.name)],
    )


FORMAT = Format(
    name=NAME,
    description="JPK / Bruker NanoWizard high-speed video",
    suffixes=(".h5-jpk",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
