"""Streaming percentiles of a whole stack, from a histogram of truncated float32 values:
what the automatic z-scale of every export (animations, OME-Zarr's display window) is made of.

One pass over the blocks of a stack, never sorting or holding it; a stack already in
memory takes a shortcut that bins only its tails and gives the very same numbers, so
whether a stack is numpy or dask, and how it is chunked, never changes the result.
See ``docs/animation.md`` ("Z-scale").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from . import blocks
from .blocks import iter_blocks, workers

_SHIFT = 13  # float32 bits >> 13: sign, exponent and the top 10 mantissa bits
_KEYS = 1 << (32 - _SHIFT)
_SIGN = _KEYS >> 1
_FINITE = 0xFF << (23 - _SHIFT)  # magnitude keys from here up are inf/NaN
_CHUNK = 2**21
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _bin_edges(i: int) -> tuple[float, float]:
    """Lower and upper value of the i-th bin in value order: the negative keys from the
    largest magnitude down, then the positive keys from zero up."""
    negative = i < _FINITE
    mag = _FINITE - 1 - i if negative else i - _FINITE
    lo, hi = (np.array([mag, mag + 1], dtype=np.uint32) << _SHIFT).view(np.float32).astype(np.float64)
    hi = min(float(hi), _FLOAT32_MAX)  # the top finite bin's upper edge would be inf
    return (-hi, -float(lo)) if negative else (float(lo), hi)


def _hist_keys(x: np.ndarray, ref: float) -> np.ndarray:
    """The histogram key of each value: the top bits of ``x - ref`` as float32."""
    if x.dtype == np.float64:  # subtract first: float32 would lose small spreads on big offsets
        y = np.subtract(x, ref).astype(np.float32)
    else:
        y = np.subtract(x, ref, dtype=np.float32, casting="unsafe")
    keys: np.ndarray = y.view(np.uint32) >> _SHIFT
    return keys


def _value_order(key: int) -> int:
    """Position of a raw key's bin in value order (as ``_Histogram.quantiles`` sees them)."""
    return _FINITE - 1 - (key - _SIGN) if key >= _SIGN else _FINITE + key


def _hist_chunk(x: np.ndarray, ref: float) -> np.ndarray:
    return np.bincount(_hist_keys(x, ref), minlength=_KEYS)


class _Histogram:
    """Counts of ``x - ref`` as float32 truncated to 10 mantissa bits: 2**19 bins, each at
    most 2**-10 of its distance from ``ref`` wide, over the whole float range.

    Per value: one subtraction, one shift, one ``bincount`` (chunks run on two threads:
    numpy releases the GIL). NaN and inf land in bins that are never counted.
    """

    def __init__(self, ref: float):
        self.ref = float(ref)
        self.counts = np.zeros(_KEYS, dtype=np.int64)

    def add(self, block: np.ndarray) -> None:
        if not block.flags.c_contiguous:  # a strided view: one frame at a time
            for frame in block.reshape((-1,) + block.shape[-2:]):
                self.add(np.ascontiguousarray(frame))
            return
        flat = block.reshape(-1)
        chunks = [flat[a : a + _CHUNK] for a in range(0, flat.size, _CHUNK)]
        with np.errstate(over="ignore", invalid="ignore"):
            if len(chunks) > 1 and workers() > 1:
                with ThreadPoolExecutor(2) as pool:
                    for c in pool.map(lambda x: _hist_chunk(x, self.ref), chunks):
                        self.counts += c
            else:
                for x in chunks:
                    self.counts += _hist_chunk(x, self.ref)

    def quantiles(self, qs: Iterable[float]) -> tuple[list[float], bool, list[int]] | None:
        """Values at the quantiles ``qs`` (0-1, numpy's linear definition, the values of a
        bin taken as spread evenly over it), whether they are precise (bins narrower
        than 1/1000 of the spread between them), and the bins (in value order) they were
        read from. None: no finite value."""
        keys = np.flatnonzero(self.counts != 0)  # the occupied bins only (5x faster than on the int64 counts)
        keys = keys[(keys & (_SIGN - 1)) < _FINITE]  # not the NaN / inf bins
        order = np.where(keys >= _SIGN, _FINITE - 1 - (keys - _SIGN), _FINITE + keys)
        by_value = np.argsort(order)
        order = order[by_value]
        cum = np.cumsum(self.counts[keys[by_value]])
        n = int(cum[-1]) if cum.size else 0
        if n <= 0:
            return None
        bins: list[int] = []

        def value_at(k: float) -> tuple[float, float]:
            """The k-th smallest value (0-based), its bin's values taken as evenly spread."""
            j = min(int(np.searchsorted(cum, k, side="right")), cum.size - 1)
            i = int(order[j])
            bins.append(i)
            start = int(cum[j - 1]) if j else 0
            count = int(cum[j]) - start
            lower, upper = _bin_edges(i)
            frac = min(max((k - start + 0.5) / count, 0.0), 1.0) if count else 0.5
            return lower + frac * (upper - lower), upper - lower

        out, widths = [], []
        for q in qs:
            r = q * (n - 1)
            k = math.floor(r)
            v, w = value_at(k)
            if r > k:  # numpy's linear interpolation between neighbouring values
                v2, w2 = value_at(k + 1)
                v, w = v + (r - k) * (v2 - v), max(w, w2)
            out.append(v)
            widths.append(w)
        spread = max(out) - min(out)
        precise = spread <= 0 or all(w <= spread / 1000 for w in widths)
        return [self.ref + v for v in out], precise, bins


def _first_guess(block: np.ndarray) -> float:
    """A centre for the histogram: the median of a subsample of the first frame (not of
    the first block, whose size depends on the chunks: the scale must not)."""
    block = block[:1]
    flat = block.reshape(-1)
    sample = flat[:: max(1, flat.size // 65536)].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    return float(np.median(sample)) if sample.size else 0.0


def percentiles(
    da: xr.DataArray | np.ndarray, qs: Iterable[float] = (1.0, 99.0), *, max_passes: int = 3, target_bytes: int | None = None
) -> list[float] | None:
    """Percentiles (0-100) of the finite values of a whole stack, streamed block by block.

    One pass in the usual case: a histogram of the values relative to the median of a
    subsample of the first frame, with bins 2**-10 of their distance from that centre
    wide, so about 1/1000 of the percentile spread when the centre lies between the
    percentiles. When it does not (an unrepresentative first frame), another pass is made
    centred on the estimate. None when the stack has no finite value. Values beyond the
    float32 range count as non-finite.

    A stack already in memory gets the same numbers faster for the z-scale's tail
    percentiles (``_tail_histogram``), so whether a stack is numpy or dask, and how it
    is chunked, never changes its colours.
    """
    return percentiles_and_finite(da, qs, max_passes=max_passes, target_bytes=target_bytes)[0]


def _all_finite(counts: np.ndarray) -> bool:
    """Whether a histogram holds no NaN/inf (nor values beyond float32 from its centre)."""
    return not counts.reshape(2, _SIGN)[:, _FINITE:].any()


def percentiles_and_finite(
    da: xr.DataArray | np.ndarray, qs: Iterable[float] = (1.0, 99.0), *, max_passes: int = 3, target_bytes: int | None = None
) -> tuple[list[float] | None, bool]:
    """:func:`percentiles`, and whether the same pass found every value finite (False
    when a value is NaN, inf or beyond the float32 range from the histogram's centre),
    so a renderer can skip looking for non-finite values frame by frame."""
    qs = [float(q) / 100.0 for q in qs]
    obj = da if isinstance(da, xr.DataArray) else xr.DataArray(np.asarray(da))
    values = obj.variable._data
    ref = None
    if isinstance(values, np.ndarray) and values.size and all(q <= 0.05 or q >= 0.95 for q in qs):
        ref = _first_guess(values)
        found = _tail_histogram(values, qs, ref)
        if isinstance(found, tuple):
            return found
    result, finite = None, False
    for _ in range(max_passes):
        hist = None
        for _, _, block in iter_blocks(obj, target_bytes=blocks.BLOCK_BYTES if target_bytes is None else target_bytes):
            if hist is None:
                if ref is None:
                    ref = _first_guess(block)
                hist = _Histogram(ref)
            hist.add(block)
        assert hist is not None
        finite = _all_finite(hist.counts)
        found = hist.quantiles(qs)
        if found is None:
            return None, finite
        result, precise, _ = found
        if precise:
            break
        ref = (min(result) + max(result)) / 2
    return result, finite


_UNDECIDED = object()
#: Values per chunk of the tail pass (measured fastest: 2**17 took 10 % longer on a
#: 210 MB stack, 2**15 40 %, from the calls per chunk; 2**19 and up no faster).
_TAIL_CHUNK = 2**18
#: Values from which the tail pass runs on several threads (below, starting them costs
#: more than they save: 1.3 M values took 6.7 ms on two threads, 4.2 ms on one).
_TAIL_THREADS = 2**22
#: Size of the subsample the tail thresholds are guessed from.
_TAIL_SAMPLE = 2**16


def _subsample(values: np.ndarray) -> np.ndarray:
    """About ``_TAIL_SAMPLE`` values spread over up to 16 frames (a strided view's copy)."""
    if values.ndim < 3:
        return values.reshape(-1)[:: max(1, values.size // _TAIL_SAMPLE)]
    frames = values.reshape((-1,) + values.shape[-2:])
    # at most 16 frames, from first to last: not every k-th, which in a stack repeating
    # a cycle of frames (or drifting with a period) can pick the same frame of it 16 times
    picked = frames[np.unique(np.linspace(0, frames.shape[0] - 1, min(16, frames.shape[0])).round().astype(np.intp))]
    step = max(1, round(math.sqrt(picked.size / _TAIL_SAMPLE)))
    return np.asarray(picked[:, ::step, ::step]).reshape(-1)


def _mark_tails(x: np.ndarray, low: Any, high: Any, out: np.ndarray, tmp: np.ndarray) -> int:
    """How many values of ``x`` lie strictly between ``low`` and ``high``; unless that is
    all of them, ``out`` then marks the others (at or beyond a threshold, NaN among them:
    the values to bin). ``out`` and ``tmp``: boolean buffers of ``x``'s shape. Comparisons
    only, which numpy runs without the GIL."""
    np.greater(x, low, out=out)
    np.less(x, high, out=tmp)
    np.logical_and(out, tmp, out=out)  # False for NaN
    between = int(np.count_nonzero(out))
    if between < x.size:
        np.logical_not(out, out=out)
    return between


def _tail_histogram(values: np.ndarray, qs: list[float], ref: float) -> tuple[list[float] | None, bool] | object:
    """What the first histogram pass of ``percentiles`` gives for tail quantiles ``qs``
    (each <= 0.05 or >= 0.95) of an in-memory array, without binning every value.

    A subsample guesses thresholds a little inside the tails (0.5 % plus a margin for its
    sampling error). One pass (two threads, cache-sized chunks) counts the non-finite
    values and keeps the values at or beyond the thresholds, a few percent of the data.
    Only those are binned; the values between the thresholds are counted into one bin
    between them. Every bin beyond a threshold's own bin is then complete, so a quantile
    read from such a bin is exactly what the full histogram gives. ``_UNDECIDED`` when it
    is not (a misleading subsample), when the full histogram would need another pass, or
    when ties make the kept part large; the caller then builds the full histogram. Else
    the quantiles (None: no finite value) and whether every value is finite (NaN and inf
    are never strictly between the thresholds, so they are binned, in bins never counted).
    """
    sample = _subsample(values).astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return _UNDECIDED  # (perhaps) no finite value at all: the histogram decides
    margin = 0.002 + 0.5 / math.sqrt(sample.size)
    low_q = [q for q in qs if q < 0.5]
    high_q = [q for q in qs if q >= 0.5]
    ends = np.quantile(sample, [min(1.0, max(low_q) + margin) if low_q else 0.0, max(0.0, min(high_q) - margin) if high_q else 1.0])
    a = float(ends[0]) if low_q else -math.inf  # one partition for both thresholds
    b = float(ends[1]) if high_q else math.inf
    if a >= b:  # a tiny sample: keep everything on the low side
        a, b = math.inf, math.inf
    with np.errstate(over="ignore", invalid="ignore"):
        edge_keys = [int(_hist_keys(np.array([t], dtype=np.float64), ref)[0]) for t in (a, b) if math.isfinite(t)]
    if any(k & (_SIGN - 1) >= _FINITE for k in edge_keys):
        return _UNDECIDED  # a threshold beyond the float32 range relative to ref
    expected = (max(low_q) + margin if low_q else 0.0) + (1.0 - min(high_q) + margin if high_q else 0.0)
    frames = values.reshape((-1,) + values.shape[-2:]) if values.ndim >= 2 else values.reshape(-1, 1)
    flat = values.reshape(-1) if values.flags.c_contiguous else None
    src = flat if flat is not None else frames
    step = _TAIL_CHUNK if flat is not None else max(1, _TAIL_CHUNK // frames[0].size)
    budget = 3 * expected + 64 / _TAIL_CHUNK  # kept fraction at which to give up
    floating = values.dtype.kind == "f"

    def scan(span: tuple[int, int]) -> tuple[np.ndarray, int] | None:
        """Counts of the values of frames (or values) ``span`` not strictly between the
        thresholds (NaN and inf land in bins never counted), and how many are between.

        One mask, ``a < x < b`` (False for NaN), per cache-sized chunk; its complement is
        compressed out. The mask buffers are made once per thread (fresh ones would cost
        page faults per chunk)."""
        kept: list[np.ndarray] = []
        n_kept = seen = middle = 0
        full = np.empty(step if flat is not None else 0, dtype=bool)
        other = np.empty_like(full)
        for start in range(span[0], span[1], step):
            chunk = src[start : min(start + step, span[1])]
            if flat is not None:
                mid, tmp = full[: chunk.size], other[: chunk.size]
            else:
                mid, tmp = np.empty(chunk.shape, dtype=bool), np.empty(chunk.shape, dtype=bool)
            n_mid = _mark_tails(chunk, a, b, mid, tmp)
            middle += n_mid
            seen += chunk.size
            if n_mid == chunk.size:
                continue
            out = np.compress(mid, chunk) if flat is not None else chunk[mid]
            kept.append(out)
            n_kept += out.size - (int(np.count_nonzero(np.isnan(out))) if floating else 0)  # NaN is not kept
            if n_kept > budget * seen and a < math.inf:
                return None
        tails = np.concatenate(kept) if kept else np.zeros(0)
        return _hist_chunk(tails, ref), middle

    n_items = src.shape[0]
    n_workers = workers() if values.size >= _TAIL_THREADS else 1
    edges = np.linspace(0, n_items, n_workers + 1).astype(int).tolist()
    spans = list(itertools.pairwise(edges))
    with np.errstate(invalid="ignore", over="ignore"):
        if n_workers > 1:
            with ThreadPoolExecutor(n_workers) as pool:
                parts = list(pool.map(scan, spans))
        else:
            parts = [scan(spans[0])]
    if any(p is None for p in parts):
        return _UNDECIDED
    hist = _Histogram(ref)
    scanned = [p for p in parts if p is not None]
    for p in scanned:
        hist.counts += p[0]
    middle = sum(p[1] for p in scanned)  # finite, strictly between the thresholds
    finite = _all_finite(hist.counts)
    if edge_keys and middle:
        hist.counts[edge_keys[0]] += middle
    found = hist.quantiles(qs)
    if found is None:
        return None, finite
    result, precise, bins = found
    if not precise:
        return _UNDECIDED  # the full histogram would make another pass
    if a < math.inf:  # else every value was binned
        low_edge = _value_order(edge_keys[0]) if math.isfinite(a) else None
        high_edge = _value_order(edge_keys[-1]) if math.isfinite(b) else None
        for i in bins:
            complete = (low_edge is not None and i < low_edge) or (high_edge is not None and i > high_edge)
            if not complete:
                return _UNDECIDED
    return result, finite


# --------------------------------------------------------------------------------------
# one pass split over tasks: each bins its block, the counts are summed where they meet
# --------------------------------------------------------------------------------------
class Binning(NamedTuple):
    """How the tasks of one pass bin their blocks: around ``ref`` (:func:`percentiles`'
    first centre), and, for float data, only the values at or beyond the thresholds
    ``low``/``high`` (of the stack's dtype; None: every value is binned), whose bins'
    keys are ``edges``. The values strictly between them are counted into ``low``'s bin."""

    ref: float
    low: Any = None
    high: Any = None
    edges: tuple[int, int] | None = None


#: How far inside the tails the tasks' thresholds are guessed (quantile units): they come
#: from a few blocks, not the whole stack, so they sit well inside the tails (about 10 %
#: of the values binned for the 1st / 99th percentiles). A guess that misses costs a pass
#: over the store (:func:`percentiles_of_histogram` says so), never a different result.
_GUESS_MARGIN = 0.04


def centre(block: np.ndarray) -> float:
    """The centre the first pass of :func:`percentiles` puts its histogram on, from the
    first block of a stack (its first frame only, so any blocking gives the same)."""
    return _first_guess(block)


def binning(first: np.ndarray, *others: np.ndarray, qs: Iterable[float] = (1.0, 99.0)) -> Binning:
    """The :class:`Binning` of a stack's tasks for the percentiles ``qs``: centred on the
    first block (as :func:`percentiles`), thresholds guessed from subsamples of ``first``
    and ``others`` (more blocks of the stack, e.g. its middle and last: a drifting stack's
    tails lie at its ends) when the data are floats and ``qs`` are tail percentiles."""
    ref = _first_guess(first)
    q = [float(v) / 100.0 for v in qs]
    low_q, high_q = [v for v in q if v < 0.5], [v for v in q if v >= 0.5]
    if first.dtype.kind != "f" or not low_q or not high_q or not all(v <= 0.05 or v >= 0.95 for v in q):
        return Binning(ref)
    sample = np.concatenate([_subsample(b).astype(np.float64, copy=False) for b in (first, *others) if b.size])
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return Binning(ref)
    a, b = np.quantile(sample, [max(low_q) + _GUESS_MARGIN, min(high_q) - _GUESS_MARGIN])
    low, high = np.asarray(a, dtype=first.dtype), np.asarray(b, dtype=first.dtype)  # what the tasks compare with
    if not low < high:
        return Binning(ref)
    with np.errstate(over="ignore", invalid="ignore"):
        edges = tuple(int(_hist_keys(t.reshape(1), ref)[0]) for t in (low, high))
    if any(k & (_SIGN - 1) >= _FINITE for k in edges):
        return Binning(ref)  # a threshold beyond the float32 range from ref
    return Binning(ref, low, high, (edges[0], edges[1]))


def _flats(block: np.ndarray) -> Iterable[np.ndarray]:
    if block.flags.c_contiguous:
        return [block.reshape(-1)]
    return (np.ascontiguousarray(f).reshape(-1) for f in block.reshape((-1,) + block.shape[-2:]))  # a strided view: frame by frame


def block_histogram(block: np.ndarray, how: Binning | float) -> tuple[np.ndarray, np.ndarray]:
    """The occupied bins (keys, counts) of ``block``'s histogram (``how``: a
    :class:`Binning`, or just its centre), in this thread: summed over the blocks of a
    stack (any order, any blocking) they are the histogram :func:`percentiles` makes in
    its first pass, except in the bins from ``low``'s to ``high``'s.

    With thresholds, per value: two comparisons and an ``and`` (numpy releases the GIL
    for them); only the values not strictly between the thresholds (NaN and inf among
    them) are binned, by ``np.unique`` of their keys: ``np.bincount`` of every value over
    the 2**19 bins held the GIL for most of a write task's time (issue 16)."""
    how = how if isinstance(how, Binning) else Binning(float(how))
    if how.edges is None:
        hist = _Histogram(how.ref)
        with np.errstate(over="ignore", invalid="ignore"):
            for flat in _flats(block):
                for a in range(0, flat.size, _CHUNK):
                    hist.counts += _hist_chunk(flat[a : a + _CHUNK], how.ref)
        keys = np.flatnonzero(hist.counts)
        return keys.astype(np.uint32), hist.counts[keys]
    block = block.astype(how.low.dtype, copy=False)
    found: list[np.ndarray] = []
    middle = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for flat in _flats(block):
            for a in range(0, flat.size, _CHUNK):
                x = flat[a : a + _CHUNK]
                tails = np.empty(x.shape, dtype=bool)
                n_mid = _mark_tails(x, how.low, how.high, tails, np.empty_like(tails))
                middle += n_mid
                if n_mid < x.size:
                    found.append(_hist_keys(x[tails], how.ref))
    keys, counts = _occupied(np.concatenate(found) if found else np.zeros(0, np.uint32))
    if middle:
        at = int(np.searchsorted(keys, how.edges[0]))
        if at < keys.size and keys[at] == how.edges[0]:
            counts[at] += middle
        else:
            keys, counts = np.insert(keys, at, np.uint32(how.edges[0])), np.insert(counts, at, middle)
    return keys, counts


def _occupied(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` (sorted) and how often each occurs: one ``bincount`` per sign,
    over the span of its keys only (3x faster than ``np.unique``, which sorts)."""
    out_keys, out_counts = [], []
    negative = keys >= _SIGN
    for part in (keys[~negative], keys[negative]):
        if part.size:
            lo = int(part.min())
            c = np.bincount(part - np.uint32(lo))
            nz = np.flatnonzero(c)
            out_keys.append((nz + lo).astype(np.uint32))
            out_counts.append(c[nz].astype(np.int64))
    if not out_keys:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    return np.concatenate(out_keys), np.concatenate(out_counts)


#: What :func:`percentiles_of_histogram` returns when the tasks' histogram does not decide.
ANOTHER_PASS = _UNDECIDED


def percentiles_of_histogram(
    parts: Iterable[tuple[np.ndarray, np.ndarray]], how: Binning | float, qs: Iterable[float] = (1.0, 99.0)
) -> list[float] | object | None:
    """:func:`percentiles` from the :func:`block_histogram` parts of every block, when its
    first pass (centred on :func:`centre` of the first block) would decide them and, with
    thresholds, every bin they are read from lies beyond a threshold's bin (such a bin
    holds all its values; below the low one and above the high one, the counts before
    it are exact too): the very same numbers, or None (no finite value).
    :data:`ANOTHER_PASS` otherwise (a guess that missed, or :func:`percentiles` would
    make another pass): call :func:`percentiles` then."""
    how = how if isinstance(how, Binning) else Binning(float(how))
    hist = _Histogram(how.ref)
    for keys, counts in parts:
        hist.counts[keys] += counts
    found = hist.quantiles([float(q) / 100.0 for q in qs])
    if found is None:
        return None
    result, precise, bins = found
    if not precise:
        return ANOTHER_PASS
    if how.edges is not None:
        low_edge, high_edge = _value_order(how.edges[0]), _value_order(how.edges[1])
        if not all(i < low_edge or i > high_edge for i in bins):
            return ANOTHER_PASS
    return result
