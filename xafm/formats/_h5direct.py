"""Reading an HDF5 dataset's values by byte range, without HDF5, once HDF5 has said where
they are.

A lazy read through h5py costs an ``h5py.File`` open, the walk to the dataset and the
check of its layout (:func:`~._h5guard.dataset_at`): about 0.5 ms, more than reading a
256 x 256 frame. What HDF5 says of a dataset's storage (the byte offset of a contiguous
dataset, or each chunk's offset, size and filter mask) cannot change while the file keeps
its identity (inode, size, modification time), so the first read through h5py keeps it
(:func:`layout_of`) and later reads of the same, unchanged file read those bytes with one
``pread`` per run of adjacent chunks (:meth:`Layout.read`), decoding HDF5's shuffle and
deflate filters with numpy and zlib. The open file's own ``fstat`` must match the identity
recorded at open, so a file replaced or rewritten since is refused (``FileChangedError``)
before its bytes are used. Layouts this module does not decode (other filters, compact or
virtual storage, non-numeric types, too many chunks) keep reading through h5py.
A contiguous :class:`Layout` is also how a plainly stored JPK TIFF page is read
(:class:`~.jpk.JPKPageArray`).
"""

from __future__ import annotations

import itertools
import os
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.file_identity import FileIdentity
from ..exceptions import CorruptFileError, FileChangedError

#: HDF5's filter ids this module decodes: deflate (zlib) and byte shuffle.
DEFLATE, SHUFFLE = 1, 2
#: A chunked dataset with more chunks than this is read through h5py (its chunk table
#: would cost more to keep than the reads save).
MAX_CHUNKS = 2**16
#: Chunks whose bytes lie less than this apart are read with one ``pread``.
MERGE_GAP = 4096


@dataclass(frozen=True)
class Layout:
    """Where a dataset's values are in its file: ``offset`` (contiguous) or ``chunks``
    (chunk grid index -> (byte offset, stored size, filter mask)), in the stored dtype."""

    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int | None = None
    chunk_shape: tuple[int, ...] | None = None
    chunks: dict[tuple[int, ...], tuple[int, int, int]] | None = None
    filters: tuple[int, ...] = ()
    fill: Any = 0

    def read(self, path: str, opened: FileIdentity, bounds: tuple[slice, ...]) -> np.ndarray:
        """The values in ``bounds`` (step-1 slices, one per axis) in the stored dtype."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (opened.inode, opened.size, opened.mtime_ns):
                raise FileChangedError(path, "the file changed since it was opened (another inode, size or modification time); open it again")
            if self.offset is not None:
                return self._contiguous(fd, path, st.st_size, bounds)
            return self._chunked(fd, path, st.st_size, bounds)
        finally:
            os.close(fd)

    def _contiguous(self, fd: int, path: str, size: int, bounds: tuple[slice, ...]) -> np.ndarray:
        assert self.offset is not None
        row = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        a, b = bounds[0].start, bounds[0].stop
        start = self.offset + a * row
        rows = np.empty((b - a,) + self.shape[1:], self.dtype)
        _pread_into(fd, path, size, start, rows)
        return rows[(slice(None),) + tuple(bounds[1:])]

    def _chunked(self, fd: int, path: str, size: int, bounds: tuple[slice, ...]) -> np.ndarray:
        assert self.chunks is not None and self.chunk_shape is not None
        cs = self.chunk_shape
        if not self.filters and cs[1:] == self.shape[1:]:
            return self._rows(fd, path, size, bounds)
        out = np.empty(tuple(b.stop - b.start for b in bounds), self.dtype)
        grid = itertools.product(*(range(b.start // c, (b.stop - 1) // c + 1) for b, c in zip(bounds, cs)))
        wanted = [(g, self.chunks.get(g)) for g in grid]
        stored = sorted((e[0], e[1]) for _, e in wanted if e is not None)
        blobs = _read_runs(fd, path, size, stored)
        nbytes = self.dtype.itemsize * int(np.prod(cs, dtype=np.int64))
        for g, entry in wanted:
            lo = tuple(i * c for i, c in zip(g, cs))
            src = tuple(slice(max(b.start, o) - o, min(b.stop, o + c) - o) for b, o, c in zip(bounds, lo, cs))
            dst = tuple(slice(max(b.start, o) - b.start, min(b.stop, o + c) - b.start) for b, o, c in zip(bounds, lo, cs))
            if entry is None:  # never written: HDF5 gives the fill value
                out[dst] = self.fill
                continue
            raw = self._decode(blobs[entry[0]], entry[2], nbytes, path)
            out[dst] = np.frombuffer(raw, self.dtype).reshape(cs)[src]
        return out

    def _rows(self, fd: int, path: str, size: int, bounds: tuple[slice, ...]) -> np.ndarray:
        """Unfiltered chunks of whole rows (each chunk spans every axis but the first, as
        Nanosurf's flat line datasets are stored): read straight into place, one ``preadv``
        per run of chunks stored one after the other."""
        assert self.chunks is not None and self.chunk_shape is not None
        c = self.chunk_shape[0]
        nbytes = self.dtype.itemsize * int(np.prod(self.chunk_shape, dtype=np.int64))
        k0, k1 = bounds[0].start // c, (bounds[0].stop - 1) // c + 1
        out = np.empty(((k1 - k0) * c,) + self.shape[1:], self.dtype)
        k = k0
        while k < k1:
            entry = self.chunks.get((k,) + (0,) * (len(self.shape) - 1))
            if entry is None:  # never written: HDF5 gives the fill value
                out[(k - k0) * c : (k - k0 + 1) * c] = self.fill
                k += 1
                continue
            start, j = entry[0], k + 1
            while j < k1:
                nxt = self.chunks.get((j,) + (0,) * (len(self.shape) - 1))
                if nxt is None or nxt[0] != start + (j - k) * nbytes:
                    break
                j += 1
            if any(self.chunks[(i,) + (0,) * (len(self.shape) - 1)][1] != nbytes for i in range(k, j)):
                raise CorruptFileError(path, f"an unfiltered HDF5 chunk does not hold the chunk's {nbytes} bytes")
            _pread_into(fd, path, size, start, out[(k - k0) * c : (j - k0) * c])
            k = j
        a = bounds[0].start - k0 * c
        return out[(slice(a, a + bounds[0].stop - bounds[0].start),) + tuple(bounds[1:])]

    def _decode(self, data: bytes | memoryview | np.ndarray, mask: int, nbytes: int, path: str) -> bytes | memoryview | np.ndarray:
        """A stored chunk through the filter pipeline in reverse (a set bit of ``mask``: that
        filter was skipped for this chunk)."""
        for k in reversed(range(len(self.filters))):
            if mask & (1 << k):
                continue
            if self.filters[k] == DEFLATE:
                z = zlib.decompressobj()
                try:
                    data = z.decompress(data.data if isinstance(data, np.ndarray) else data, nbytes)
                except zlib.error as exc:
                    raise CorruptFileError(path, f"a deflated HDF5 chunk does not inflate: {exc}") from None
                if z.unconsumed_tail:
                    raise CorruptFileError(path, f"a deflated HDF5 chunk inflates to more than the chunk's {nbytes} bytes")
            else:  # SHUFFLE: byte j of every value, then byte j + 1, ...
                item = self.dtype.itemsize
                if item > 1 and _size(data) == nbytes:
                    planes = np.frombuffer(data, np.uint8).reshape(item, -1)
                    values = np.empty((planes.shape[1], item), np.uint8)
                    for j in range(item):  # a plane at a time: 5 times faster than one transposed copy
                        values[:, j] = planes[j]
                    data = values
        got = _size(data)
        if got != nbytes:
            raise CorruptFileError(path, f"an HDF5 chunk decodes to {got} bytes, not the chunk's {nbytes}")
        return data


def _size(data: bytes | memoryview | np.ndarray) -> int:
    return int(data.nbytes) if isinstance(data, (np.ndarray, memoryview)) else len(data)


def _pread(fd: int, path: str, size: int, start: int, n: int) -> bytes:
    if start < 0 or start + n > size:
        raise CorruptFileError(path, f"HDF5 data at bytes {start}..{start + n} lies past the end of the file ({size} bytes)")
    data = os.pread(fd, n, start) if hasattr(os, "pread") else _seek_read(fd, n, start)
    if len(data) != n:
        raise CorruptFileError(path, f"HDF5 data at bytes {start}..{start + n}: the file ended after {len(data)} bytes")
    return data


def _pread_into(fd: int, path: str, size: int, start: int, out: np.ndarray) -> None:
    """Fill ``out`` (C-contiguous) with the file's bytes from ``start``, without a copy
    where the platform has ``preadv``."""
    n = out.nbytes
    if start < 0 or start + n > size:
        raise CorruptFileError(path, f"HDF5 data at bytes {start}..{start + n} lies past the end of the file ({size} bytes)")
    if not hasattr(os, "preadv"):  # pragma: no cover - platforms without preadv
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(_pread(fd, path, size, start, n), np.uint8)
        return
    if not out.flags.c_contiguous:
        raise ValueError("_pread_into needs a C-contiguous array")
    view, got = out.reshape(-1).view(np.uint8).data, 0
    while got < n:
        k = os.preadv(fd, [view[got:]], start + got)
        if k <= 0:
            raise CorruptFileError(path, f"HDF5 data at bytes {start}..{start + n}: the file ended after {got} bytes")
        got += k


def _seek_read(fd: int, n: int, start: int) -> bytes:  # pragma: no cover - platforms without pread
    os.lseek(fd, start, os.SEEK_SET)
    return os.read(fd, n)


def _read_runs(fd: int, path: str, size: int, stored: list[tuple[int, int]]) -> dict[int, memoryview]:
    """Each stored chunk's bytes by offset, chunks lying together read with one ``pread``."""
    out: dict[int, memoryview] = {}
    i = 0
    while i < len(stored):
        j = i + 1
        while j < len(stored) and stored[j][0] - (stored[j - 1][0] + stored[j - 1][1]) <= MERGE_GAP:
            j += 1
        start = stored[i][0]
        end = max(o + n for o, n in stored[i:j])
        blob = memoryview(_pread(fd, path, size, start, end - start))
        for o, n in stored[i:j]:
            out[o] = blob[o - start : o - start + n]
        i = j
    return out


def layout_of(ds: Any) -> Layout | None:
    """Where an open h5py dataset's values are, when this module can read them itself;
    None otherwise (the caller reads through h5py). Call it only on a dataset reached by
    :func:`~._h5guard.dataset_at` (nothing outside the file)."""
    import h5py

    dtype = ds.dtype
    if dtype.kind not in "iuf" or dtype.fields is not None or ds.ndim == 0 or int(ds.id.get_type().get_size()) != dtype.itemsize:
        return None
    shape = tuple(int(s) for s in ds.shape)
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if dcpl.get_external_count() > 0:
        return None
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        need = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if offset is None or dcpl.get_nfilters() or int(ds.id.get_storage_size()) < need:
            return None  # not written yet (fill values), or shorter than it claims: h5py's to say
        return Layout(dtype, shape, offset=int(offset))
    if layout != h5py.h5d.CHUNKED:
        return None
    filters = tuple(int(dcpl.get_filter(i)[0]) for i in range(dcpl.get_nfilters()))
    if any(f not in (DEFLATE, SHUFFLE) for f in filters):
        return None
    cs = tuple(int(c) for c in ds.chunks)
    if int(np.prod([-(-n // c) for n, c in zip(shape, cs)], dtype=np.int64)) > MAX_CHUNKS:
        return None
    chunks: dict[tuple[int, ...], tuple[int, int, int]] = {}

    def keep(info: Any) -> None:
        chunks[tuple(int(o) // c for o, c in zip(info.chunk_offset, cs))] = (int(info.byte_offset), int(info.size), int(info.filter_mask))

    try:
        ds.id.chunk_iter(keep)
    except (AttributeError, RuntimeError, OSError):  # HDF5 older than 1.14: one call a chunk
        chunks.clear()
        for i in range(ds.id.get_num_chunks()):
            keep(ds.id.get_chunk_info(i))
    fill = ds.fillvalue if ds.fillvalue is not None else 0
    return Layout(dtype, shape, chunk_shape=cs, chunks=chunks, filters=filters, fill=fill)
