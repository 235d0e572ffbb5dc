"""Lazy arrays over the pages of an OME-TIFF, and the checks a page passes before tifffile
decodes it.

xafm's own files: an uncompressed contiguous series is memory-mapped (:class:`RawFramesArray`),
any other is read page by page (:class:`TiffPagesArray`), and the planes are seen as
(T, Z, C, y, x) (:class:`Reshaped`) or as the stack's (time, y, x) (:class:`Squeezed`).
Other tools' files: :class:`TiffPlanesArray` decodes the planes of one OME series wherever
they live (several files, missing planes), refusing pages whose strips or tiles lie.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...core import sources
from ...core.file_identity import FileIdentity, unchanged_while
from ...core.lazy import LazyArray, RawFramesArray, outer_index
from ...core.paths import check_openable
from ...exceptions import CorruptFileError
from .._tiffsource import open_tiff


# --------------------------------------------------------------------------------------
# xafm's own files
# --------------------------------------------------------------------------------------
class TiffPagesArray(LazyArray):
    """Pages of one series, read with tifffile (for compressed or scattered pages)."""

    def __init__(self, path: str, series: int, page_indices: np.ndarray, frame_shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.series = path, series
        self.page_indices = np.asarray(page_indices).reshape(-1)
        self.lead_shape = tuple(np.asarray(page_indices).shape)
        self.shape = self.lead_shape + tuple(frame_shape)
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def _read(self, key: tuple) -> np.ndarray:
        n_lead = len(self.lead_shape)
        grid = outer_index(np.arange(self.page_indices.size).reshape(self.lead_shape), key[:n_lead])
        flat = np.asarray(grid).reshape(-1)
        frames = []
        with open_tiff(self.path) as tf:  # never another file's pages
            pages = tf.series[self.series].pages
            for i in flat:
                page = pages[int(self.page_indices[i])]
                if page is None:
                    raise CorruptFileError(self.path, f"page {int(self.page_indices[i])} of image {self.series} is missing (truncated file?)")
                _check_page(self.path, page, tf.filehandle.size, self.shape[n_lead:], self.dtype)
                frames.append(page.asarray())
        arr = np.stack(frames).reshape(np.shape(grid) + self.shape[n_lead:]) if frames else np.empty(np.shape(grid) + self.shape[n_lead:], self.dtype)
        return np.array(outer_index(arr, (slice(None),) * np.ndim(grid) + tuple(key[n_lead:])), dtype=self.dtype)


def series_source(tf: Any, path: str, index: int) -> tuple[LazyArray, str]:
    """The planes of series ``index`` of an open ``tifffile.TiffFile`` as (planes, y, x),
    memory-mapped when they lie uncompressed in one block, and the series' axes."""
    s = tf.series[index]
    dtype = np.dtype(s.dtype)
    axes = s.axes
    if s.dataoffset is not None and not getattr(s.keyframe, "is_subsampled", False):
        frame_shape = s.shape[-2:]
        n = int(np.prod(s.shape[:-2])) if len(s.shape) > 2 else 1
        raw = dtype.newbyteorder(tf.byteorder)
        arr: LazyArray = RawFramesArray(path, offset=s.dataoffset, n_frames=n, frame_shape=frame_shape, raw_dtype=raw)
    else:
        n = int(np.prod(s.shape[:-2])) if len(s.shape) > 2 else 1
        arr = TiffPagesArray(path, index, np.arange(n), s.shape[-2:], dtype)
    return arr, axes


def uniform_series(tf: Any, path: str, images: list[Any]) -> list[tuple[LazyArray, str]] | None:
    """Each OME image's planes as :func:`series_source` gives them, found without tifffile
    reading every page: for files whose images each map one run of pages (``TiffData IFD=
    PlaneCount=``, as xafm writes) that :func:`.uniform.runs_of` finds uniform and
    contiguous, page by page. None for any other file (tifffile's series are then used)."""
    runs = image_runs(tf, path, images)
    if runs is None:
        return None
    return [
        (RawFramesArray(path, offset=r.data_offset, n_frames=r.n, frame_shape=r.shape, raw_dtype=r.dtype), "TYX" if r.n > 1 else "YX")
        for r in runs
    ]


def image_runs(tf: Any, path: str, images: list[Any]) -> list[Any] | None:
    """One :class:`.uniform.Run` per OME image, for files whose images each map one run of
    pages (``TiffData IFD= PlaneCount=`` naming no other file, the images one after the
    other from page 0) that :func:`.uniform.runs_of` finds uniform and contiguous, page by
    page; None for any other file."""
    from .omexml import q
    from .uniform import runs_of

    counts = []
    for image in images:
        pix = image.find(q("Pixels"))
        data = [] if pix is None else pix.findall(q("TiffData"))
        if len(data) != 1 or len(data[0]) or data[0].get("IFD") is None or data[0].get("PlaneCount") is None:
            return None  # several TiffData, or one naming a file (UUID): tifffile's reading
        try:
            counts.append((int(data[0].get("IFD", "")), int(data[0].get("PlaneCount", ""))))
        except ValueError:
            return None
    return runs_of(tf, path, counts)


class WithSamples(LazyArray):
    """Planes (lead dims, y, x) seen with a trailing sample axis of one (``YXS`` pages, as
    tifffile gives a grayscale OME series)."""

    def __init__(self, base: LazyArray):
        self.base, self.dtype = base, base.dtype
        self.reads_through(base)
        self.shape = tuple(base.shape) + (1,)

    def _read(self, key: tuple) -> np.ndarray:
        got = np.asarray(self.base._read(tuple(key[:-1])))[..., None]
        return outer_index(got, (slice(None),) * (got.ndim - 1) + (key[-1],))


class RawOrPages3D(LazyArray):
    """A 2-D series (one plane) seen as one frame."""

    def __init__(self, base: LazyArray):
        self.base, self.dtype = base, base.dtype
        self.reads_through(base)
        self.shape = (1,) + tuple(base.shape[-2:])

    def _read(self, key: tuple) -> np.ndarray:
        return self.base._read(key)


class Reshaped(LazyArray):
    """A (frames, y, x) source seen with several leading dims (e.g. C, Z, T)."""

    def __init__(self, base: LazyArray, lead: tuple[int, ...], order: tuple[int, ...]):
        self.base, self.lead, self.order = base, lead, order
        self.reads_through(base)
        self.dtype = base.dtype
        self.shape = tuple(lead[i] for i in order) + tuple(base.shape[1:])
        #: plane number by leading index (one int per plane: made once, not per read)
        self.grid = np.arange(int(np.prod(lead))).reshape(lead).transpose(order)

    def _read(self, key: tuple) -> np.ndarray:
        n = len(self.lead)
        if all(isinstance(k, (int, np.integer)) for k in key[:n]):  # one plane: a frame fetch
            got = self.base._read((int(self.grid[tuple(key[:n])]),) + tuple(key[n:]))
            return np.asarray(got)
        sel = outer_index(self.grid, key[:n])
        flat = np.asarray(sel).reshape(-1)
        if flat.size == 0:
            return np.empty(np.shape(sel) + outer_index(np.empty(self.base.shape[1:], np.uint8), key[n:]).shape, self.dtype)
        if flat.size == 1 or np.all(np.diff(flat) == 1):
            # consecutive planes (the usual time slice): one read of a slice, one copy
            got = self.base._read((slice(int(flat[0]), int(flat[-1]) + 1),) + tuple(key[n:]))
            return got.reshape(np.shape(sel) + got.shape[1:])
        order = np.argsort(flat)
        got = self.base._read((flat[order],) + tuple(key[n:]))
        out = np.empty_like(got)
        out[order] = got
        return out.reshape(np.shape(sel) + got.shape[1:])


class Squeezed(LazyArray):
    """T, 1, 1, Y, X seen as T, Y, X."""

    def __init__(self, full: Reshaped):
        self.full, self.dtype = full, full.dtype
        self.reads_through(full)
        self.shape = (full.shape[0],) + tuple(full.shape[3:])

    def _read(self, key: tuple) -> np.ndarray:
        return self.full._read((key[0], 0, 0) + tuple(key[1:]))


# --------------------------------------------------------------------------------------
# other tools' files
# --------------------------------------------------------------------------------------
class TiffPlanesArray(LazyArray):
    """The planes (pages) of one OME series, decoded by tifffile; files opened per read.

    ``planes`` holds ``(file, page index)`` per plane in C order over ``lead_shape``
    (``None`` for a plane the file lacks: read as zeros, as Bio-Formats does).
    """

    def __init__(self, path: str, planes: list[tuple[str, int] | None], lead_shape: tuple[int, ...], page_shape: tuple[int, ...], dtype: Any):
        self.path = path
        self.planes = planes
        # every file read is checked against its own identity when it is read
        self.members = {src[0]: FileIdentity.of(src[0]) for src in planes if src is not None}
        self.lead_shape = tuple(int(n) for n in lead_shape)
        self.page_shape = tuple(int(n) for n in page_shape)
        self.shape = self.lead_shape + self.page_shape
        self.dtype = np.dtype(dtype).newbyteorder("=")

    def check_unchanged(self) -> None:
        """Nothing to check of the file opened as such: the planes asked for may all lie in
        other members of its set (which may be all that is left); ``_read`` checks each
        file it reads, before and after."""

    def _read(self, key: tuple) -> np.ndarray:
        n = len(self.lead_shape)
        grid = outer_index(np.arange(len(self.planes)).reshape(self.lead_shape), key[:n])
        flat = np.asarray(grid).reshape(-1)
        page_key = tuple(key[n:])
        page_out = outer_index(np.empty(self.page_shape, np.uint8), page_key).shape
        out = np.zeros((flat.size,) + page_out, self.dtype)
        by_file: dict[str, list[tuple[int, int]]] = {}
        for i, plane in enumerate(flat):
            src = self.planes[int(plane)]
            if src is not None:
                by_file.setdefault(src[0], []).append((i, src[1]))
        for file, items in by_file.items():
            check_openable(file, folder=False)
            if file != self.path and not sources.is_url(file) and not os.path.isfile(file):
                raise CorruptFileError(self.path, f"the set's member {file} is missing (moved or deleted after the set was opened)")
            with unchanged_while(file, self.members.get(file)), _gone_member(self.path, file), open_tiff(file) as tf:
                for i, index in items:
                    page = tf.pages[index]
                    try:
                        _check_page(file, page, tf.filehandle.size, self.page_shape, self.dtype)
                    except CorruptFileError as exc:  # a set's member: name the file opened too
                        if file == self.path:
                            raise
                        raise CorruptFileError(self.path, f"member {file} of the set: {exc.problem}") from None
                    arr = page.asarray()
                    out[i] = outer_index(np.asarray(arr).reshape(self.page_shape), page_key)
        return out.reshape(np.shape(grid) + page_out)


@contextlib.contextmanager
def _gone_member(origin: str, file: str) -> Iterator[None]:
    """A member URL that is gone is the set's error, named so (a member path was checked
    before it was opened; a URL is not asked first: that would cost a request a read)."""
    try:
        yield
    except FileNotFoundError:
        if file == origin:
            raise
        raise CorruptFileError(origin, f"the set's member {file} is missing (moved or deleted after the set was opened)") from None


#: deflate/LZW/zstd rarely beat ~1000:1; a page claiming more is a lying header.
MAX_COMPRESSION_RATIO = 1100


def _check_page(path: str, page: Any, file_size: int, page_shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a page whose strips/tiles lie outside the file or whose size is implausible,
    before tifffile allocates buffers from those numbers."""
    offsets, counts = tuple(page.dataoffsets), tuple(page.databytecounts)
    if len(offsets) != len(counts):
        raise CorruptFileError(path, f"page {page.index}: {len(offsets)} strip offsets but {len(counts)} byte counts")
    # the largest offset plus the largest count bounds every strip's end: a page of one strip
    # per row has hundreds, and a loop over them was most of a frame fetch
    if offsets and (min(offsets) < 0 or min(counts) < 0 or max(offsets) + max(counts) > file_size):
        for o, c in zip(offsets, counts):
            if o < 0 or c < 0 or o + c > file_size:
                raise CorruptFileError(path, f"page {page.index}: a strip/tile at byte {o} of {c} bytes lies outside the {file_size}-byte file")
    stored = sum(counts)
    values = math.prod(int(n) for n in page.shape)
    nbytes = values * max(np.dtype(page.dtype).itemsize if page.dtype is not None else 1, 1)
    if values != math.prod(int(n) for n in page_shape):
        raise CorruptFileError(path, f"page {page.index} has shape {page.shape}, the series expects {page_shape}")
    if (page.compression == 1 and nbytes > file_size) or nbytes > stored * MAX_COMPRESSION_RATIO + 2**16:
        raise CorruptFileError(path, f"page {page.index} decodes to {nbytes} bytes from {stored} stored bytes")
