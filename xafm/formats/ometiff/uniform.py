"""Runs of uniform, contiguous TIFF pages found without tifffile loading every page.

tifffile builds an OME series by reading every page's IFD (a TiffFrame per page), so an
open grew with the number of frames (about 0.15 ms per page). The pages xafm writes (and
tifffile writes) have one uncompressed strip each, their values back to back, and their
IFDs (after the first) at a fixed stride. :func:`contiguous_run` reads the first page's
IFD and then every further IFD in one read, and checks them all at once with numpy: the
same tags, types and counts, the same value of every tag that decides how the bytes are
read (size, sample type and format, compression, planes, strips, tiles), each page's strip
right after the previous one, each IFD pointing to the next. Anything else (compression,
several strips, tiles, IFDs elsewhere, a value that differs) gives ``None`` and the caller
asks tifffile as before: a header is never trusted without every page agreeing with it.
"""

from __future__ import annotations

import io
import mmap
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ...core import sources

#: Bytes per value of each TIFF field type.
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
#: Tags that decide how a page's bytes become values: every page must agree on them.
LAYOUT_TAGS = (256, 257, 258, 259, 262, 266, 277, 278, 279, 284, 317, 339)
STRIP_OFFSETS, STRIP_BYTE_COUNTS = 273, 279
#: Tags of tiled pages, sub-IFDs and YCbCr subsampling: none may be present.
REFUSED_TAGS = (322, 323, 324, 325, 330, 530)
#: Runs shorter than this are checked IFD by IFD (no stride to find).
SHORT_RUN = 4
_SAMPLE_KINDS = {1: "u", 2: "i", 3: "f"}


@dataclass(frozen=True)
class Run:
    """``n`` pages of ``shape`` values of ``dtype`` (file byte order), stored back to back
    from ``data_offset``; ``next_ifd`` is where the IFD after the run starts (0: none)."""

    data_offset: int
    n: int
    shape: tuple[int, int]
    dtype: np.dtype
    next_ifd: int


class _Ifd:
    """One IFD as stored: its entries (tag, type, count, raw value field), next pointer."""

    def __init__(self, fh: BinaryIO, offset: int, size: int, bigtiff: bool, bo: str):
        self.offset, self.bigtiff, self.bo = offset, bigtiff, bo
        head, entry, ptr = (8, 20, 8) if bigtiff else (2, 12, 4)
        if offset < 8 or offset + head > size:
            raise ValueError("IFD outside the file")
        fh.seek(offset)
        (count,) = struct.unpack(bo + ("Q" if bigtiff else "H"), fh.read(head))
        self.table = head + count * entry + ptr
        if count < 1 or count > 4096 or offset + self.table > size:
            raise ValueError("implausible IFD")
        fh.seek(offset)
        self.raw = fh.read(self.table)
        self.count, self.head, self.entry, self.ptr = count, head, entry, ptr
        self.entries: dict[int, tuple[int, int, int]] = {}  # tag -> (type, count, position in raw)
        for j in range(count):
            pos = head + j * entry
            tag, typ = struct.unpack(bo + "HH", self.raw[pos : pos + 4])
            (n,) = struct.unpack(bo + ("Q" if bigtiff else "I"), self.raw[pos + 4 : pos + 4 + ptr])
            self.entries[tag] = (typ, n, pos)
        (self.next,) = struct.unpack(bo + ("Q" if bigtiff else "I"), self.raw[-ptr:])

    def value(self, tag: int) -> int | None:
        """A tag's single inline integer value (None: absent, several or out of line)."""
        got = self.entries.get(tag)
        if got is None:
            return None
        typ, n, pos = got
        code = {1: "B", 3: "H", 4: "I", 16: "Q", 13: "I", 18: "Q"}.get(typ)
        if n != 1 or code is None or TYPE_SIZES[typ] > self.ptr:
            return None
        start = pos + 4 + self.ptr
        return int(struct.unpack(self.bo + code, self.raw[start : start + TYPE_SIZES[typ]])[0])

    def layout(self) -> dict[int, tuple[int, int, bytes]] | None:
        """The layout tags' (type, count, value field), None for a page xafm does not map."""
        if any(t in self.entries for t in REFUSED_TAGS):
            return None
        out = {}
        for tag in LAYOUT_TAGS:
            if tag in self.entries:
                typ, n, pos = self.entries[tag]
                out[tag] = (typ, n, self.raw[pos + 4 + self.ptr : pos + 4 + 2 * self.ptr])
        return out


def _geometry(ifd: _Ifd) -> tuple[tuple[int, int], np.dtype, int] | None:
    """(rows, columns), dtype and bytes of an uncompressed single-strip page of one sample."""
    width, length, bps = ifd.value(256), ifd.value(257), ifd.value(258)
    compression, spp = ifd.value(259) or 1, ifd.value(277) or 1
    kind = _SAMPLE_KINDS.get(ifd.value(339) or 1)
    if not (width and length and bps) or compression != 1 or spp != 1 or kind is None or bps % 8 or bps > 64:
        return None
    if (ifd.value(317) or 1) != 1 or (ifd.value(284) or 1) != 1 or ifd.layout() is None:
        return None
    if ifd.entries.get(STRIP_OFFSETS, (0, 0))[1] != 1:
        return None
    dtype = np.dtype(f"{ifd.bo}{kind}{bps // 8}")
    if kind == "f" and bps not in (16, 32, 64):
        return None
    nbytes = width * length * dtype.itemsize
    if ifd.value(STRIP_BYTE_COUNTS) != nbytes:
        return None
    return (length, width), dtype, nbytes


def contiguous_run(fh: BinaryIO, size: int, first_ifd: int, n: int, *, bigtiff: bool, byteorder: str) -> Run | None:
    """The ``n`` pages from the IFD at ``first_ifd``, if they are uniform and contiguous
    (every page checked), else None."""
    bo = "<" if byteorder == "<" else ">"
    try:
        first = _Ifd(fh, first_ifd, size, bigtiff, bo)
        geom = _geometry(first)
        data0 = first.value(STRIP_OFFSETS)
        if geom is None or data0 is None or n < 1:
            return None
        shape, dtype, nbytes = geom
        if data0 + n * nbytes > size:
            return None
        layout = first.layout()
        if n == 1:
            return Run(data0, 1, shape, dtype, first.next)
        second = _Ifd(fh, first.next, size, bigtiff, bo)
        if n <= SHORT_RUN:
            ifds = [second]
            for _ in range(n - 2):
                ifds.append(_Ifd(fh, ifds[-1].next, size, bigtiff, bo))
            for k, ifd in enumerate(ifds, start=1):
                if ifd.layout() != layout or ifd.value(STRIP_OFFSETS) != data0 + k * nbytes:
                    return None
            return Run(data0, n, shape, dtype, ifds[-1].next)
        if second.layout() != layout or second.value(STRIP_OFFSETS) != data0 + nbytes:
            return None
        stride = second.next - second.offset
        if stride < second.table:
            return None
        return _check_strided(fh, size, second, stride, n - 1, data0 + nbytes, nbytes, shape, dtype, data0)
    except (ValueError, struct.error, OSError):
        return None


def _check_strided(
    fh: BinaryIO, size: int, second: _Ifd, stride: int, m: int, data1: int, nbytes: int,
    shape: tuple[int, int], dtype: np.dtype, data0: int,
) -> Run | None:
    """Pages 1..m (``m`` of them) with IFDs every ``stride`` bytes from ``second``'s: all
    read in one go and compared column by column with ``second``."""
    start, table = second.offset, second.table
    end = start + (m - 1) * stride + table
    if end > size:
        return None
    buf = _span(fh, start, end)
    if buf.size != end - start:
        return None
    # every page's IFD as one row, a view of the bytes read (the last row ends the buffer)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(m, table), strides=(stride, 1), writeable=False)
    first_row = np.frombuffer(second.raw, np.uint8)
    ptr, bo = second.ptr, second.bo
    uint = np.dtype(f"{bo}u{ptr}")
    same = rows == first_row[None, :]
    # entry count, and every entry's tag, type and count: the same on every page
    if not same[:, : second.head].all():
        return None
    for tag, (typ, _, pos) in second.entries.items():
        if not same[:, pos : pos + 4 + ptr].all():
            return None
        field = slice(pos + 4 + ptr, pos + 4 + 2 * ptr)
        if tag == STRIP_OFFSETS:
            code = {4: "u4", 16: "u8"}.get(typ)
            if code is None or TYPE_SIZES[typ] > ptr:
                return None
            got = np.ascontiguousarray(rows[:, pos + 4 + ptr : pos + 4 + ptr + TYPE_SIZES[typ]]).view(f"{bo}{code}").ravel()
            if not np.array_equal(got, data1 + np.arange(m, dtype=np.int64) * nbytes):
                return None
        elif tag in LAYOUT_TAGS and not same[:, field].all():
            return None
    nexts = np.ascontiguousarray(rows[:, table - ptr :]).view(uint).ravel().astype(np.int64)
    if m > 1 and not np.array_equal(nexts[:-1], start + np.arange(1, m, dtype=np.int64) * stride):
        return None
    return Run(data0, m + 1, shape, dtype, int(nexts[-1]))


def _span(fh: BinaryIO, start: int, end: int) -> np.ndarray:
    """Bytes ``[start, end)`` of a file. The IFDs lie between the frames, so the span is
    most of the file: a local file is memory-mapped without read-ahead, so that only the
    pages holding IFDs are read from the disk, not the frames between them."""
    try:
        fileno = fh.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fh.seek(start)
        return np.frombuffer(fh.read(end - start), np.uint8)
    base = start - start % mmap.ALLOCATIONGRANULARITY
    mm = mmap.mmap(fileno, end - base, access=mmap.ACCESS_READ, offset=base)
    if hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mm, np.uint8)[start - base :]  # the array keeps the map open


def runs_of(tf: Any, path: str, counts: list[tuple[int, int]]) -> list[Run] | None:
    """Runs for consecutive page ranges ``(first page, n)`` from page 0 of an open
    ``tifffile.TiffFile`` (each range starting where the one before ended); None if any
    range is not a uniform contiguous run, or the IFD chain goes on past the last."""
    if not counts or counts[0][0] != 0 or sources.is_url(path):
        return None  # a URL: tifffile's series reads its few pages in ranges (docs/formats.md)
    fh = tf.filehandle
    size = int(fh.size)
    offset = int(tf.pages.first.offset)
    out: list[Run] = []
    expect = 0
    with open(path, "rb") as raw:
        for first, n in counts:
            if first != expect or offset == 0:
                return None
            run = contiguous_run(raw, size, offset, n, bigtiff=bool(tf.is_bigtiff), byteorder=tf.byteorder)
            if run is None:
                return None
            out.append(run)
            offset, expect = run.next_ifd, first + n
    return out if offset == 0 else None
