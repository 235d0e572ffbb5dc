"""A folder of single-frame files (``.jpk``, Bruker ``.spm`` / ``.00N``) read as one video.

Many instruments save a video as one file per frame. ``xafm.open(folder)`` reads each file's
metadata with its own reader, checks that every frame has the same size and pixel size,
orders the frames by their recorded acquisition start (``start_epoch_ms``; file name order
where a file records none) and stacks them lazily: a frame's file is read only when that
frame is computed.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance, sources
from ..core.contract import Format, Probe
from ..core.file_identity import FileIdentity, unchanged_while
from ..core.lazy import LazyArray, outer_index
from ..core.paths import check_openable
from ..exceptions import CorruptFileError, XafmWarning

NAME = "folder"
#: Formats whose files are single frames of a video when several share a folder.
FRAME_FORMATS = ("jpk", "nanoscope")


def _natural_key(p: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", sources.name(p))]


def _frame_format(name: str) -> Format:
    from .. import registry

    return registry.get(name)


def _files_by_format(folder: str, *, strict: bool = True) -> dict[str, list[str]]:
    """Frame files by format (their paths or URLs); ``strict``: a special file named as a
    frame is refused (:class:`SpecialFileError`), else left out (the content check reads
    nothing). A URL prefix is listed with one request."""
    from .. import registry

    found: dict[str, list[str]] = {}
    for name, kind in sources.scan(folder):
        if name.startswith(".") or kind == "dir":
            continue
        p = sources.join(folder, name)
        fmt = next(iter(registry.named(name)), None)
        if fmt is not None and fmt.name in FRAME_FORMATS:
            if strict:
                check_openable(p)  # a FIFO named as a frame: refused, not waited on or skipped
            if kind == "file":
                found.setdefault(fmt.name, []).append(p)
    return found


def frame_files(folder: str | os.PathLike[str]) -> tuple[str, list[str]]:
    """The frame files in ``folder`` (a path or URL prefix) and their format; refuses
    folders that mix formats."""
    folder = os.fspath(folder)
    found = _files_by_format(folder)
    if not found:
        kinds = ", ".join(s for n in FRAME_FORMATS for s in _frame_format(n).suffixes)
        raise CorruptFileError(folder, f"no frame files ({kinds}, .00N) in this folder")
    if len(found) > 1:
        raise CorruptFileError(folder, f"the folder mixes frame formats ({', '.join(sorted(found))}); keep one video per folder")
    ((name, files),) = found.items()
    return name, sorted(files, key=_natural_key)


def identify(probe: Probe) -> bool:
    """A folder whose frame files are of one format, the first confirmed by its content."""
    found = _files_by_format(probe.path, strict=False)
    if len(found) != 1:
        return False
    ((name, files),) = found.items()
    check = _frame_format(name).identify
    return check is not None and check(Probe(min(files, key=_natural_key)))


def channels(path: str | os.PathLike[str]) -> list[str]:
    name, files = frame_files(path)
    fmt = _frame_format(name)
    assert fmt.channels is not None
    return list(fmt.channels(files[0]))


class FolderFramesArray(LazyArray):
    """Frame ``i`` is the single frame of file ``paths[i]``, read by that format's reader.

    ``members`` holds each file's identity from before its metadata was read: a frame
    whose file was replaced, rewritten or truncated since raises ``FileChangedError``.
    ``stacks`` are the files' lazy stacks from the open (a frame is then read through
    its own, without parsing its file's metadata again: a frame fetch costs what its
    format's read costs); without them each read opens the file with its reader.
    """

    def __init__(
        self, folder: str, fmt: str, paths: list[str], channel: str | None, frame_shape: tuple[int, int], dtype: np.dtype,
        members: dict[str, FileIdentity | None] | None = None, stacks: list[xr.Variable] | None = None,
    ):
        self.path, self.fmt, self.paths, self.channel = folder, fmt, paths, channel
        self.members = dict(members) if members is not None else {p: FileIdentity.of(p) for p in paths}
        self.stacks = stacks
        self.shape = (len(paths),) + tuple(frame_shape)
        self.dtype = np.dtype(dtype)
        self._sources: list[LazyArray | None] | None = None

    def _source(self, i: int) -> LazyArray | None:
        """The lazy array under file ``i``'s stack from the open (None: read its values
        through xarray): a frame is then read as its box alone, without xarray's wrappers."""
        if self.stacks is None:
            return None
        if self._sources is None:
            self._sources = [_lazy_source(v) for v in self.stacks]
        return self._sources[i]

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        idx = np.arange(self.shape[0])[key[0]]
        frames = []
        for i in np.atleast_1d(idx):
            file = self.paths[int(i)]
            with unchanged_while(file, self.members.get(file)):
                src = self._source(int(i))
                if src is not None and src.shape[0] == 1 and src.shape[1:] == self.shape[1:]:
                    frames.append(np.asarray(src._read_checked((0,) + tuple(key[1:]))))
                    continue
                if self.stacks is not None:
                    values = np.asarray(self.stacks[int(i)].values)
                else:
                    read = _frame_format(self.fmt).read
                    assert read is not None
                    ds = read(file, channel=self.channel)
                    values = np.asarray(next(iter(ds.data_vars.values())).values)
            if values.shape[1:] != self.shape[1:]:
                raise CorruptFileError(self.paths[int(i)], f"frame is {values.shape[1:]}, the video's frames are {self.shape[1:]}")
            frames.append(outer_index(values[0], tuple(key[1:])))
        if np.ndim(idx) == 0:
            return np.asarray(frames[0], dtype=self.dtype)
        box = outer_index(np.empty(self.shape[1:], np.uint8), tuple(key[1:])).shape
        return np.stack(frames).astype(self.dtype, copy=False) if frames else np.empty((0,) + box, self.dtype)


def _lazy_source(var: xr.Variable) -> LazyArray | None:
    """The :class:`LazyArray` a reader's variable wraps, when xarray's wrappers around it
    select all of it (None otherwise, or for values already in memory)."""
    from xarray.core import indexing

    arr: Any = var._data
    while not isinstance(arr, LazyArray):
        if isinstance(arr, indexing.LazilyIndexedArray):
            if any(k != slice(None) for k in arr.key.tuple):
                return None
        elif not isinstance(arr, (indexing.CopyOnWriteArray, indexing.MemoryCachedArray)):
            return None
        arr = arr.array
    return arr


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The folder's frame files as one lazy video, in acquisition order."""
    folder = os.fspath(path)
    fmt, files = frame_files(folder)
    frame_read = _frame_format(fmt).read
    assert frame_read is not None
    members = {p: FileIdentity.of(p) for p in files}  # before any is read
    infos = []
    for p in files:
        ds = frame_read(p, channel=channel)
        var = next(iter(ds.data_vars.values()))
        if var.dims != conventions.DIMS or var.sizes["time"] != 1:
            raise CorruptFileError(p, f"expected one frame, found dims {dict(var.sizes)}")
        infos.append((p, ds, var))
    _, _, var0 = infos[0]
    shape0, px0 = var0.shape[1:], model.pixel_size_nm(var0)
    for p, _, var in infos[1:]:
        if var.shape[1:] != shape0:
            raise CorruptFileError(p, f"frame size {var.shape[1:]} differs from {sources.name(files[0])}'s {shape0}: not one video")
        if not np.allclose(model.pixel_size_nm(var), px0, rtol=1e-6):
            raise CorruptFileError(p, f"pixel size {model.pixel_size_nm(var)} nm differs from {sources.name(files[0])}'s {px0} nm")
    frames_meta = []
    for p, _, var in infos:
        fm = model.frame_metadata(var, with_timestamp=False)[0]
        fm["source_file"] = sources.name(p)
        frames_meta.append(fm)
    starts = [fm.get("start_epoch_ms") for fm in frames_meta]
    usable = all(isinstance(s, (int, float)) and math.isfinite(s) for s in starts) and len(set(starts)) == len(starts)
    order = np.argsort(np.asarray(starts, dtype=np.float64), kind="stable") if usable else np.arange(len(infos))
    if not usable and len(infos) > 1:
        warnings.warn(f"{folder}: frames do not all record distinct start times; using file name order and 1 s steps", XafmWarning, stacklevel=2)
    infos = [infos[i] for i in order]
    frames_meta = [frames_meta[i] for i in order]
    if usable:
        times = (np.asarray([fm["start_epoch_ms"] for fm in frames_meta], dtype=np.float64) - frames_meta[0]["start_epoch_ms"]) / 1000.0
    else:
        times = np.arange(len(infos), dtype=np.float64)
    stacks = [var.variable for _, _, var in infos]
    data = FolderFramesArray(folder, fmt, [str(p) for p, _, _ in infos], channel, shape0, var0.dtype, members, stacks)
    recs = [provenance.make_record("read", path=folder, format=NAME, reader=__name__, frame_format=fmt, files=len(infos), channel=channel)]
    attrs = model.user_attrs(var0)
    return model.assemble(
        data,
        pixel_size_nm=px0,
        times=times,
        channel=str(var0.name),
        units=str(var0.attrs.get("units", "nm")),
        frame_metadata=frames_meta,
        attrs=attrs,
        provenance=recs,
    )


FORMAT = Format(
    name=NAME,
    description="folder of single-frame files (.jpk, .spm, .00N)",
    folder=True,
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
)
