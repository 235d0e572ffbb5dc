"""Frames of a deflated zip member, read in bounded memory.

A deflate stream cannot be entered in the middle, so reaching frame ``i`` means inflating
everything before it; :class:`DeflatedFramesArray` inflates the member's raw deflate
stream itself (``zlib.decompressobj(-15)`` from the member's data offset) and discards
what it does not need, so a read holds the frames asked for plus one step of output
(``STEP`` bytes) and nothing else. To make random access cheap it keeps per-process
checkpoints: a copy of the inflater (``decompressobj.copy()``, at most about 110 KiB
with the input it has not consumed) with its
compressed and uncompressed offsets and the CRC so far, every ``CHECKPOINT_INTERVAL``
bytes of output and where the last reads stopped (so reading frame after frame goes on
where the previous read ended). A read then inflates at most one interval before the first
frame it wants. Checkpoints are keyed by the file's identity (device, inode, size,
modification time) and the member's place, so a replaced file never resumes from another
file's state. A read that reaches the member's end checks its CRC.
"""

from __future__ import annotations

import bisect
import os
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import sources
from ..core.file_identity import FileIdentity
from ..core.lazy import Key, LazyArray, outer_index
from ..exceptions import CorruptFileError
from ._zipmember import MemberLayout, corrupt_size

#: Output between two checkpoints (bytes): the most a read inflates before its first frame.
CHECKPOINT_INTERVAL = 32 * 2**20
#: Output inflated per step (bytes), the bound on what a read holds besides its frames.
STEP = 2**20
#: Compressed bytes fed to the inflater at a time: a checkpoint's copy of the inflater
#: keeps the input it has not consumed yet, so this bounds its size too.
INPUT_CHUNK = 64 * 2**10
#: Checkpoints kept per process over all members (at most about 110 KiB each, so at most
#: about 55 MiB), least recently used members dropped first: 512 cover 16 GiB of output.
MAX_CHECKPOINTS = 512
#: Resume points (where recent reads stopped) kept per member.
RESUME_POINTS = 4


@dataclass
class _Checkpoint:
    out_pos: int  # uncompressed bytes before this point
    in_pos: int  # compressed bytes consumed before this point
    crc: int  # CRC-32 of the output before this point
    state: Any  # a zlib decompress object at this point (never advanced: copied to resume)


@dataclass
class _MemberCheckpoints:
    regular: list[_Checkpoint] = field(default_factory=list)  # sorted by out_pos
    resume: list[_Checkpoint] = field(default_factory=list)  # most recent last

    def count(self) -> int:
        return len(self.regular) + len(self.resume)

    def best(self, pos: int) -> _Checkpoint | None:
        """The checkpoint closest before (or at) ``pos``."""
        i = bisect.bisect_right([c.out_pos for c in self.regular], pos)
        best = self.regular[i - 1] if i else None
        for c in self.resume:
            if c.out_pos <= pos and (best is None or c.out_pos > best.out_pos):
                best = c
        return best

    def add_regular(self, cp: _Checkpoint) -> None:
        positions = [c.out_pos for c in self.regular]
        i = bisect.bisect_left(positions, cp.out_pos)
        if i == len(positions) or positions[i] != cp.out_pos:
            self.regular.insert(i, cp)

    def add_resume(self, cp: _Checkpoint) -> None:
        self.resume = [c for c in self.resume if c.out_pos != cp.out_pos][-(RESUME_POINTS - 1) :] + [cp]


_lock = threading.Lock()
_checkpoints: OrderedDict[tuple, _MemberCheckpoints] = OrderedDict()


def _member_checkpoints(key: tuple) -> _MemberCheckpoints:
    with _lock:
        entry = _checkpoints.get(key)
        if entry is None:
            entry = _checkpoints[key] = _MemberCheckpoints()
        _checkpoints.move_to_end(key)
        return entry


def _trim_cache() -> None:
    with _lock:
        while len(_checkpoints) > 1 and sum(e.count() for e in _checkpoints.values()) > MAX_CHECKPOINTS:
            _checkpoints.popitem(last=False)


def clear_checkpoints() -> None:
    """Forget every checkpoint (tests, and to release their memory)."""
    with _lock:
        _checkpoints.clear()


def read_spans(path: str, layout: MemberLayout, spans: list[tuple[int, int]], out: np.ndarray, *, identity: FileIdentity | None = None) -> None:
    """Inflate the member's bytes ``[start, stop)`` of each span (sorted, disjoint) into
    ``out`` (a flat uint8 array as long as all spans together), in bounded memory.

    A URL is read from the checkpoint on in ranges of ``INPUT_CHUNK``; its checkpoints are
    kept for the object version ``identity`` (the one the lazy array checks)."""
    if not spans:
        return
    dest = out.reshape(-1).view(np.uint8)
    with sources.open_binary(path, block_size=INPUT_CHUNK) as fh:
        if isinstance(fh, sources.RemoteFile):
            version: tuple[Any, ...] = ("url", identity)
        else:
            st = os.fstat(fh.fileno())
            version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        key = (path, *version, layout.data_offset, layout.compress_size, layout.file_size)
        points = _member_checkpoints(key)
        with _lock:
            start = points.best(spans[0][0])
        if start is None:
            start = _Checkpoint(0, 0, 0, zlib.decompressobj(-15))
        inflater = start.state.copy()
        out_pos, in_pos, crc = start.out_pos, start.in_pos, start.crc
        fh.seek(layout.data_offset + in_pos)
        tail = b""
        next_cp = (out_pos // CHECKPOINT_INTERVAL + 1) * CHECKPOINT_INTERVAL
        span_i, filled = 0, 0
        want_end = spans[-1][1] >= layout.file_size  # a read to the end checks the CRC
        while span_i < len(spans) or (want_end and not inflater.eof):
            if span_i < len(spans) and out_pos < spans[span_i][0]:  # between spans: jump ahead if a checkpoint allows
                with _lock:
                    ahead = points.best(spans[span_i][0])
                if ahead is not None and ahead.out_pos > out_pos:
                    inflater = ahead.state.copy()
                    out_pos, in_pos, crc, tail = ahead.out_pos, ahead.in_pos, ahead.crc, b""
                    fh.seek(layout.data_offset + in_pos)
                    next_cp = (out_pos // CHECKPOINT_INTERVAL + 1) * CHECKPOINT_INTERVAL
            if not tail:  # stays empty at the end of the input: pending output still comes out
                left = layout.compress_size - in_pos
                tail = fh.read(min(INPUT_CHUNK, left))
                if left and not tail:
                    raise CorruptFileError(path, f"member {layout.name!r}: the file ends inside its compressed data")
            limit = min(STEP, next_cp - out_pos, layout.file_size - out_pos + 1)
            if out_pos < spans[-1][1]:  # stop exactly where the read ends: the resume point for the next
                limit = min(limit, spans[-1][1] - out_pos)
            limit = max(1, limit)
            try:
                chunk = inflater.decompress(tail, limit)
            except zlib.error as exc:
                raise CorruptFileError(path, f"member {layout.name!r} is not valid deflate data: {exc}") from None
            consumed = len(tail) - len(inflater.unconsumed_tail)
            in_pos += consumed
            tail = inflater.unconsumed_tail
            end = out_pos + len(chunk)
            if end > layout.file_size:
                raise corrupt_size(path, layout, end, beyond=True)
            while span_i < len(spans) and spans[span_i][0] < end:
                a, b = max(spans[span_i][0], out_pos), min(spans[span_i][1], end)
                if a < b:
                    dest[filled : filled + b - a] = np.frombuffer(chunk, np.uint8, b - a, a - out_pos)
                    filled += b - a
                if spans[span_i][1] > end:
                    break
                span_i += 1
            crc = zlib.crc32(chunk, crc)
            out_pos = end
            if out_pos >= next_cp:
                with _lock:
                    points.add_regular(_Checkpoint(out_pos, in_pos, crc, inflater.copy()))
                next_cp = (out_pos // CHECKPOINT_INTERVAL + 1) * CHECKPOINT_INTERVAL
            if inflater.eof:
                break
            if not chunk and not consumed and (tail or in_pos >= layout.compress_size):  # no progress
                raise corrupt_size(path, layout, out_pos, beyond=False)
        if span_i < len(spans) or (inflater.eof and out_pos != layout.file_size):
            raise corrupt_size(path, layout, out_pos, beyond=False)
        if inflater.eof and crc != layout.crc:
            raise CorruptFileError(path, f"member {layout.name!r} fails its CRC check")
        if not inflater.eof:
            with _lock:
                points.add_resume(_Checkpoint(out_pos, in_pos, crc, inflater.copy()))
    _trim_cache()


def _frame_list(k: Any, n: int) -> np.ndarray:
    """The frames an outer index's first entry selects (as many as it selects, never ``n``)."""
    if isinstance(k, slice):
        return np.arange(*k.indices(n), dtype=np.intp)
    idx = np.asarray(k, dtype=np.intp).reshape(-1)
    if idx.size and (idx.max() >= n or idx.min() < -n):
        raise IndexError(f"frame index out of range for {n} frames")
    return idx % max(n, 1)


class DeflatedFramesArray(LazyArray):
    """The frames of a deflated C-order ``.npy`` member, inflated on demand in bounded
    memory (the frames asked for, plus one step of output)."""

    def __init__(self, path: str, layout: MemberLayout, header_len: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.layout, self.header_len = path, layout, int(header_len)
        self.shape = tuple(int(s) for s in shape)
        self.raw_dtype = np.dtype(dtype)
        self.dtype = self.raw_dtype.newbyteorder("=")
        self.frame_bytes = int(np.prod(self.shape[1:])) * self.raw_dtype.itemsize

    @property
    def member(self) -> str:
        return self.layout.name

    def _read(self, key: Key) -> np.ndarray:
        frames = _frame_list(key[0], self.shape[0])
        wanted = np.unique(frames)
        buf = np.empty((wanted.size,) + self.shape[1:], dtype=self.raw_dtype)
        spans: list[tuple[int, int]] = []
        for f in wanted.tolist():
            a = self.header_len + f * self.frame_bytes
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], a + self.frame_bytes)
            else:
                spans.append((a, a + self.frame_bytes))
        if self.frame_bytes:
            read_spans(self.path, self.layout, spans, buf, identity=self.opened)
        pos = np.searchsorted(wanted, frames)
        first: Any = int(pos[0]) if isinstance(key[0], (int, np.integer)) else pos
        return np.asarray(outer_index(buf, (first,) + tuple(key[1:])), dtype=self.dtype)  # buf is ours: no copy
