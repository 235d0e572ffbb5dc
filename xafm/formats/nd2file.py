"""Nikon NIS-Elements ND2 (``.nd2``), read with the ``nd2`` package.

Each ND2 "sequence frame" holds every channel of one (time, position, z) point; frames are
numbered in C order over the experiment loops (as ``nd2.ND2File.sizes`` lists them). The
values are read per request by :class:`ND2FramesArray`, which opens the file for each read
and keeps no handle (``nd2``'s own dask arrays keep an ``ND2File`` object in the graph).
The metadata is parsed once, when the stack is opened: for the usual uncompressed,
unpadded frames the array keeps the frame offsets ``nd2`` found and reads the bytes itself
(as ``nd2``'s memory map does), so a read neither imports ``nd2`` nor parses the metadata
again; compressed, padded and legacy files are read through ``nd2``.
See docs/formats.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.lazy import DimView, InMemoryArray, LazyArray, outer_index
from ..exceptions import ChannelError, CorruptFileError, XafmWarning

NAME = "nd2"
#: The first four bytes of an ND2 file: the current chunk format, or the JPEG 2000 box of
#: legacy files (the ``nd2`` package's own check, without importing it).
MAGIC = (b"\xda\xce\xbe\n", b"\x00\x00\x00\x0c")
#: xafm names of nd2's axis letters.
AXIS_NAMES = {"T": "time", "P": "position", "Z": "z", "C": "channel", "S": "sample", "Y": "y", "X": "x", "U": "loop"}
FRAME_AXES = ("C", "S", "Y", "X")
#: zlib shrinks at most ~1032:1; a compressed file claiming more is lying.
MAX_COMPRESSION_RATIO = 1100
_JDN_UNIX_EPOCH = 2440587.5


def _nd2() -> Any:
    import nd2

    return nd2


class ND2FramesArray(LazyArray):
    """ND2 image data with dims (loop dims..., [channel], [sample], y, x); the file is
    opened for each read and closed after it.

    ``offsets`` (one per sequence frame, -1 for a frame the file lacks) makes reads plain
    file reads of ``ny * nx * channels * components`` values per frame; without it each
    read opens the file with ``nd2``.
    """

    def __init__(
        self, path: str, *, loop_shape: tuple[int, ...], n_channels: int, n_comps: int, rgb: bool, ny: int, nx: int, dtype: Any,
        offsets: np.ndarray | None = None, file_size: int = 0,
    ):
        self.path = path
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        self.file_size = int(file_size)
        self.loop_shape = tuple(int(n) for n in loop_shape)
        self.n_channels, self.n_comps, self.rgb = int(n_channels), int(n_comps), bool(rgb)
        self.ny, self.nx = int(ny), int(nx)
        if rgb:
            frame = ((self.n_channels,) if self.n_channels > 1 else ()) + (self.n_comps, self.ny, self.nx)
        else:
            c = self.n_channels * self.n_comps
            frame = ((c,) if c > 1 else ()) + (self.ny, self.nx)
        self.frame_shape = frame
        self.shape = self.loop_shape + frame
        self.dtype = np.dtype(dtype)

    def _frame(self, f: Any, seq: int) -> np.ndarray:
        raw = np.asarray(f.read_frame(int(seq))).reshape(self.n_channels, self.ny, self.nx, self.n_comps)
        return self._arrange(raw)

    def _raw_frame(self, fh: Any, seq: int) -> np.ndarray:
        """One frame from its offset, stored (y, x, channel, component); zeros where ``nd2``
        gives zeros: a frame the file lacks, or one reaching past its end."""
        assert self.offsets is not None
        shape = (self.ny, self.nx, self.n_channels, self.n_comps)
        nbytes = math.prod(shape) * self.dtype.itemsize
        offset = int(self.offsets[seq])
        if offset < 0 or offset + nbytes > self.file_size:
            return self._arrange(np.zeros(shape, self.dtype).transpose(2, 0, 1, 3))
        fh.seek(offset)
        data = fh.read(nbytes)
        if len(data) < nbytes:
            raise CorruptFileError(self.path, f"frame {seq} ends past the end of the file")
        return self._arrange(np.frombuffer(data, self.dtype).reshape(shape).transpose(2, 0, 1, 3))

    def _arrange(self, raw: np.ndarray) -> np.ndarray:
        """(channel, y, x, component) as this array's frame dims."""
        out: np.ndarray
        if self.rgb:
            out = raw.transpose(0, 3, 1, 2)
        else:
            out = raw.transpose(0, 3, 1, 2).reshape(self.n_channels * self.n_comps, self.ny, self.nx)
        return out.reshape(self.frame_shape)

    def _read(self, key: tuple) -> np.ndarray:
        n = len(self.loop_shape)
        grid = outer_index(np.arange(int(np.prod(self.loop_shape, dtype=np.int64))).reshape(self.loop_shape), key[:n])
        flat = np.asarray(grid).reshape(-1)
        frame_key = tuple(key[n:])
        frame_out = outer_index(np.empty(self.frame_shape, np.uint8), frame_key).shape
        out = np.empty((flat.size,) + frame_out, self.dtype)
        if flat.size and self.offsets is not None:
            with sources.open_binary(self.path) as fh:
                for i, seq in enumerate(flat):
                    out[i] = outer_index(self._raw_frame(fh, int(seq)), frame_key)
        elif flat.size:
            with _open(self.path) as f:
                for i, seq in enumerate(flat):
                    out[i] = outer_index(self._frame(f, int(seq)), frame_key)
        return out.reshape(np.shape(grid) + frame_out)


def _asdict(obj: Any) -> Any:
    """nd2's metadata dataclasses as the plain dicts and lists they hold (for JSON: what
    ``dataclasses.asdict`` gives, without its deep copies of every value)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {fld.name: _asdict(getattr(obj, fld.name)) for fld in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_asdict(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _asdict(v) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def _open(path: str) -> Iterator[Any]:
    """``nd2.ND2File`` of a path, or of a URL's file object (``nd2`` reads file objects:
    the chunk map, the metadata chunks and the frames asked for, each in byte ranges)."""
    nd2 = _nd2()
    fh = sources.open_binary(path, block_size=sources.SMALL_BLOCK) if sources.is_url(path) else None
    try:
        try:
            f = nd2.ND2File(fh if fh is not None else sources.local_path(path))
        except (ValueError, OSError, KeyError, IndexError, TypeError, RuntimeError) as exc:
            raise CorruptFileError(path, f"not a readable ND2 file: {type(exc).__name__}: {exc}") from None
        with f:
            yield f
    finally:
        if fh is not None:  # nd2 leaves a file object it was given open
            fh.close()


def _describe(path: str) -> dict[str, Any]:
    """Everything the reader needs from the file's metadata (no image data is read)."""
    size = sources.size(path)
    with _open(path) as f:
        attrs = f.attributes
        sizes = dict(f.sizes)
        dtype = np.dtype(f.dtype)
        ny, nx = int(attrs.heightPx or 0), int(attrs.widthPx or 0)
        n_channels = int(attrs.channelCount or 1)
        n_comp_total = int(attrs.componentCount or 1)
        if ny < 1 or nx < 1 or n_channels < 1 or n_comp_total < n_channels or n_comp_total % n_channels:
            raise CorruptFileError(path, f"implausible frame geometry: {ny}x{nx} px, {n_channels} channels, {n_comp_total} components")
        n_comps = n_comp_total // n_channels
        loop_axes = [a for a in sizes if a not in FRAME_AXES]
        loop_shape = tuple(int(sizes[a]) for a in loop_axes)
        if any(n < 1 for n in loop_shape):
            raise CorruptFileError(path, f"implausible loop sizes {sizes}")
        n_frames = math.prod(loop_shape)
        frame_bytes = ny * nx * n_comp_total * dtype.itemsize
        limit = size if not attrs.compressionType else size * MAX_COMPRESSION_RATIO + 2**20
        if n_frames * frame_bytes > limit:
            raise CorruptFileError(path, f"{n_frames} frames of {frame_bytes} bytes cannot fit in a {size}-byte file")
        rgb = "S" in sizes
        chans = list(getattr(f.metadata, "channels", None) or [])
        names = _describe_names(f)
        vol = chans[0].volume if chans else None
        calibrated = bool(vol and all(vol.axesCalibrated[:2]))
        voxel = f.voxel_size()
        info: dict[str, Any] = {
            "sizes": sizes,
            "loop_axes": loop_axes,
            "loop_shape": loop_shape,
            "dtype": dtype,
            "ny": ny,
            "nx": nx,
            "n_channels": n_channels,
            "n_comps": n_comps,
            "rgb": rgb,
            "names": names,
            "voxel_um": (float(voxel.x), float(voxel.y), float(voxel.z)),
            "calibrated": calibrated,
            "z_calibrated": bool(vol and vol.axesCalibrated[2]),
        }
        info["times"], info["recorded"], info["start_ms"] = _times(path, f, loop_axes, loop_shape)
        info["positions"] = _positions(f, sizes.get("P", 0))
        info["masks"] = _binary_masks(path, f, loop_shape, ny, nx)
        info["offsets"] = _frame_offsets(f, n_frames, nx * n_comp_total * dtype.itemsize)
        info["file_size"] = size
        info["acquisition"] = {
            "format": "Nikon ND2",
            "version": list(f.version),
            "is_legacy": bool(f.is_legacy),
            "sizes": sizes,
            "voxel_size_um": list(info["voxel_um"]),
            "channels": names,
            "text_info": dict(f.text_info or {}),
            "attributes": _asdict(attrs),
            "experiment": _asdict(list(f.experiment)),
            "channel_meta": _asdict(chans),
        }
    return info


def _frame_offsets(f: Any, n_frames: int, row_bytes: int) -> np.ndarray | None:
    """Where each sequence frame's values start (-1: a frame the file lacks), as ``nd2``
    reads them; None when the frames must go through ``nd2`` (compressed, padded rows,
    legacy, or an ``nd2`` whose reader no longer exposes the offsets)."""
    attrs = f.attributes
    if f.is_legacy or attrs.compressionType or getattr(attrs, "widthBytes", None) != row_bytes:
        return None
    if getattr(attrs, "bitsPerComponentInMemory", None) != 8 * np.dtype(f.dtype).itemsize:
        return None
    found = getattr(getattr(f, "_rdr", None), "_frame_offsets", None)  # nd2's map of the ImageDataSeq chunks
    if not isinstance(found, dict):
        return None
    offsets = np.full(n_frames, -1, dtype=np.int64)
    for seq, offset in found.items():
        if 0 <= int(seq) < n_frames:
            offsets[int(seq)] = int(offset)
    return offsets


def _times(path: str, f: Any, loop_axes: list[str], loop_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None, float | None]:
    """Frame times (s from the first) of the first frame of each time point."""
    if "T" not in loop_axes:
        return np.zeros(1), None, None
    n_t = loop_shape[loop_axes.index("T")]
    index = [0] * len(loop_axes)
    seqs = []
    for t in range(n_t):
        index[loop_axes.index("T")] = t
        seqs.append(int(np.ravel_multi_index(index, loop_shape)))
    stamps: list[float] | None = None
    try:
        col = _frame_times_s(f)
        if col is not None and len(col) > max(seqs):
            stamps = [float(col[s]) for s in seqs]
    except Exception:
        stamps = None
    start_ms = None
    try:
        ts = f.frame_metadata(0).channels[0].time
        jdn, rel_ms = float(ts.absoluteJulianDayNumber), float(ts.relativeTimeMs)
        if jdn >= 1:
            start_ms = (jdn - _JDN_UNIX_EPOCH) * 86400e3 - rel_ms
    except Exception:
        start_ms = None
    if stamps is None or not all(math.isfinite(s) for s in stamps):
        return np.arange(n_t, dtype=np.float64), None, None
    recorded = np.asarray(stamps, dtype=np.float64)
    times, _ = model.times_or_index(path, recorded - recorded[0], n_t)
    return times, recorded, start_ms


def _frame_times_s(f: Any) -> Any:
    """Each sequence frame's acquisition time (s): the column "Time [s]" of ``nd2``'s
    ``events``, which takes it from the frame times the file caches; read from that cache
    directly where ``nd2``'s reader exposes it, which spares decoding every recorded
    custom tag that ``events`` also returns."""
    cached = getattr(getattr(f, "_rdr", None), "_cached_frame_times", None)
    if callable(cached):
        return [t / 1000 for t in cached()]
    events = f.events(orient="list")
    return events.get("Time [s]") if isinstance(events, dict) else None


def _positions(f: Any, n: int) -> list[str] | None:
    if not n:
        return None
    for loop in f.experiment:
        if getattr(loop, "type", "") == "XYPosLoop":
            points = getattr(loop.parameters, "points", None) or []
            names = [str(getattr(p, "name", "") or "") for p in points]
            if len(names) == n and all(names) and len(set(names)) == n:
                return names
    return None


def _binary_masks(path: str, f: Any, loop_shape: tuple[int, ...], ny: int, nx: int) -> dict[str, np.ndarray]:
    """Binary layers as boolean arrays over (loop dims..., y, x); frames without one are False."""
    layers = f.binary_data
    if layers is None:
        return {}
    out: dict[str, np.ndarray] = {}
    n = math.prod(loop_shape)
    for i, layer in enumerate(layers):
        arr = np.zeros((n, ny, nx), dtype=bool)
        for seq, frame in enumerate(list(layer.data)[:n]):
            if frame is not None:
                frame = np.asarray(frame)
                if frame.shape != (ny, nx):
                    warnings.warn(f"{path}: binary layer {layer.name!r} frame {seq} has shape {frame.shape}; ignored", XafmWarning, stacklevel=4)
                    continue
                arr[seq] = frame != 0
        name = str(layer.name or f"binary{i}")
        out[name if name not in out else f"{name}#{i}"] = arr.reshape(loop_shape + (ny, nx))
    return out


def identify(probe: Probe) -> bool:
    """ND2's magic number (current chunk format, or legacy JPEG 2000)."""
    return probe.head[:4] in MAGIC


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    with _open(path) as f:
        return _describe_names(f)


def _describe_names(f: Any) -> list[str]:
    n_channels = int(f.attributes.channelCount or 1)
    n_comps = int(f.attributes.componentCount or 1) // max(n_channels, 1)
    chans = list(getattr(f.metadata, "channels", None) or [])
    names = [str(c.channel.name) if c.channel.name else f"C{i}" for i, c in enumerate(chans[:n_channels])]
    names += [f"C{i}" for i in range(len(names), n_channels)]
    if "S" not in f.sizes and n_comps > 1:
        names = [f"{nm}:{k}" for nm in names for k in range(n_comps)]
    seen: set[str] = set()
    for i, nm in enumerate(names):
        if nm in seen:
            names[i] = f"{nm}#{i}"
        seen.add(names[i])
    return names


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The file as a lazy stack; channels, z and positions it holds beyond one image are kept as dims."""
    path = os.fspath(path)
    info = _describe(path)
    names = info["names"]
    loop_dims = [AXIS_NAMES.get(a, f"dim_{a.lower()}") for a in info["loop_axes"]]
    base = ND2FramesArray(
        path, loop_shape=info["loop_shape"], n_channels=info["n_channels"], n_comps=info["n_comps"],
        rgb=info["rgb"], ny=info["ny"], nx=info["nx"], dtype=info["dtype"],
        offsets=info["offsets"], file_size=info["file_size"],
    )
    frame_dims = []
    if len(names) > 1:
        frame_dims.append("channel")
    if info["rgb"]:
        frame_dims.append("sample")
    base_dims = tuple(loop_dims + frame_dims + ["y", "x"])
    fixed: dict[str, int] = {}
    if channel is not None:
        if channel not in names:
            raise ChannelError(f"{path}: no channel {channel!r}; available: {names}")
        if "channel" in base_dims:
            fixed["channel"] = names.index(channel)
    out_dims = model.dim_order([d for d in base_dims if d not in fixed] + ([] if "time" in base_dims else ["time"]))
    data = DimView(base, base_dims, tuple(out_dims), fixed)
    sizes = dict(zip(base_dims, base.shape))

    vx, vy, vz = info["voxel_um"]
    if info["calibrated"] and vx > 0 and vy > 0:
        dy, dx = vy * 1e3, vx * 1e3
    else:
        warnings.warn(f"{path}: the ND2 file has no x/y calibration; using 1 nm per pixel", XafmWarning, stacklevel=2)
        dy = dx = 1.0
    coords: dict[str, xr.Variable] = {}
    if "channel" in out_dims:
        coords["channel"] = model.variable(("channel",), np.array(names), index=True)
    if "z" in out_dims:
        coords["z"] = (
            model.variable(("z",), np.arange(sizes["z"], dtype=np.float64) * vz * 1e3, {"units": "nm", "long_name": "z from the first plane"}, index=True)
            if info["z_calibrated"] and vz > 0
            else model.variable(("z",), np.arange(sizes["z"]), {"long_name": "z index"}, index=True)
        )
    if "position" in out_dims:
        pos = info["positions"]
        coords["position"] = model.variable(("position",), np.array(pos) if pos else np.arange(sizes["position"]), index=True)
    for d in out_dims:
        if d not in coords and d not in conventions.DIMS:
            coords[d] = model.variable((d,), np.arange(sizes[d]), index=True)
    times, recorded, start_ms = info["times"], info["recorded"], info["start_ms"]
    fm = None
    if recorded is not None:
        fm = [
            {"acquisition_time_s": float(r), **({"start_epoch_ms": start_ms + 1e3 * float(r)} if start_ms is not None else {})}
            for r in recorded
        ]
    mask_dims = tuple(d for d in out_dims if d not in ("channel", "sample"))
    masks = {}
    for mname, arr in info["masks"].items():
        view = DimView(InMemoryArray(path, arr), tuple(loop_dims + ["y", "x"]), mask_dims, {})
        masks[mname] = (mask_dims, view)
    name = conventions.MULTI_CHANNEL_NAME if "channel" in out_dims else conventions.safe_channel(channel if channel is not None else names[0])
    recs = [provenance.make_record("read", path=path, format=NAME, reader=__name__, channel=channel)]
    return model.assemble(
        data,
        dims=tuple(out_dims),
        channel=name,
        units="",
        pixel_size_nm=(dy, dx),
        times=times,
        coords=coords,
        frame_metadata=fm,
        masks=masks,
        attrs={conventions.ACQUISITION_ATTR: conventions.json_text(info["acquisition"])},
        provenance=recs,
    )


FORMAT = Format(
    name=NAME,
    description="Nikon NIS-Elements ND2",
    suffixes=(".nd2",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
