"""Turning stack frames into annotated colour frames, fast and without matplotlib figures.

Every frame becomes 8-bit palette indices (0-251 data colours, then the reserved entries
below), is upscaled by an integer factor with nearest neighbour when small, and gets a
scale bar and a timestamp drawn as palette indices. The 256-entry palette turns indices
into colours: GIF and palette PNG store the indices themselves, video and JPEG look up RGB.

Palette layout (why 252 data colours: GIF and palette PNG hold at most 256 colours, and
NaN and the annotations need their own):

====== =====================================================
0-251  the colormap, low to high
252    NaN / inf (a colour far from every colormap entry)
253    annotation foreground (white)
254    annotation outline and padding (black)
255    unused (same as 252)
====== =====================================================
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from ..core import model
from ..core.blocks import iter_blocks
from ..exceptions import RenderError, StackError, XafmWarning

N_DATA = 252
NAN_INDEX = 252
FG_INDEX = 253
BG_INDEX = 254
SPARE_INDEX = 255

DEFAULT_CMAP = "xafm_afm"
#: Frames whose shorter side is below this are upscaled by an integer factor ...
MIN_SIDE = 320
#: ... unless that would make the longer side exceed this.
MAX_SIDE = 2048
#: Frames pulled per block while rendering (dask chunks are never split).
RENDER_BLOCK_BYTES = 16 * 2**20
#: Candidate NaN colours, in order of preference; the one farthest from the colormap wins.
NAN_CANDIDATES = ("#00c8ff", "#ff00ff", "#00ff40", "#ff2020", "#2040ff")


# --------------------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------------------
def colormap(cmap: Any = None) -> Any:
    """A matplotlib ``Colormap`` from a name, a Colormap, or None (xafm's default)."""
    from matplotlib import colormaps as registry
    from matplotlib.colors import Colormap

    from . import colormaps as _own  # noqa: F401  (registers xafm's colormaps)

    if cmap is None:
        cmap = DEFAULT_CMAP
    if isinstance(cmap, Colormap):
        return cmap
    if isinstance(cmap, str):
        try:
            return registry[cmap]
        except KeyError:
            own = [n for n in registry if n.startswith("xafm_")]
            raise RenderError(f"unknown colormap {cmap!r}; use a matplotlib colormap name (e.g. 'afmhot', 'viridis') or one of {own}") from None
    raise RenderError(f"cmap must be a colormap name or a matplotlib Colormap, got {type(cmap).__name__}")


def _rgb8(color: Any) -> np.ndarray:
    from matplotlib.colors import to_rgb

    try:
        return np.round(np.asarray(to_rgb(color)) * 255).astype(np.uint8)
    except ValueError:
        raise RenderError(f"not a colour: {color!r}") from None


def nan_colour_for(lut: np.ndarray) -> np.ndarray:
    """The candidate colour farthest (in RGB) from every colour of ``lut``."""
    best, best_d = None, -1.0
    for cand in NAN_CANDIDATES:
        rgb = _rgb8(cand).astype(float)
        d = float(np.min(np.linalg.norm(lut.astype(float) - rgb, axis=1)))
        if d > best_d + 1e-9:
            best, best_d = rgb, d
    return np.asarray(best, dtype=np.uint8)


def build_palette(cmap: Any = None, nan_color: Any = "auto") -> np.ndarray:
    """The 256 x 3 uint8 palette: 252 colormap colours, NaN, white, black, spare."""
    cm = colormap(cmap)
    lut = np.round(np.asarray(cm(np.linspace(0.0, 1.0, N_DATA)))[:, :3] * 255).astype(np.uint8)
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:N_DATA] = lut
    nan = nan_colour_for(lut) if isinstance(nan_color, str) and nan_color == "auto" else _rgb8(nan_color)
    pal[NAN_INDEX] = pal[SPARE_INDEX] = nan
    pal[FG_INDEX] = 255
    pal[BG_INDEX] = 0
    return pal


# --------------------------------------------------------------------------------------
# z-scale: streaming percentiles from a histogram of truncated float32 values
# --------------------------------------------------------------------------------------
_SHIFT = 13  # float32 bits >> 13: sign, exponent and the top 10 mantissa bits
_KEYS = 1 << (32 - _SHIFT)
_SIGN = _KEYS >> 1
_FINITE = 0xFF << (23 - _SHIFT)  # magnitude keys from here up are inf/NaN
_CHUNK = 2**21


def _bin_edges(i: int) -> tuple[float, float]:
    """Lower and upper value of the i-th bin in value order: the negative keys from the
    largest magnitude down, then the positive keys from zero up."""
    if i < _FINITE:
        mag = _FINITE - 1 - i
        lo, hi = (np.array([mag, mag + 1], dtype=np.uint32) << _SHIFT).view(np.float32).astype(np.float64)
        return -hi, -lo
    mag = i - _FINITE
    lo, hi = (np.array([mag, mag + 1], dtype=np.uint32) << _SHIFT).view(np.float32).astype(np.float64)
    return lo, hi


def _hist_keys(x: np.ndarray, ref: float) -> np.ndarray:
    """The histogram key of each value: the top bits of ``x - ref`` as float32."""
    if x.dtype == np.float64:  # subtract first: float32 would lose small spreads on big offsets
        y = np.subtract(x, ref).astype(np.float32)
    else:
        y = np.subtract(x, ref, dtype=np.float32, casting="unsafe")
    return y.view(np.uint32) >> _SHIFT


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
        keys = np.flatnonzero(self.counts)  # the occupied bins only: a few thousand
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


def percentiles(da: xr.DataArray | np.ndarray, qs: Iterable[float] = (1.0, 99.0), *, max_passes: int = 3) -> list[float] | None:
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
    qs = [float(q) / 100.0 for q in qs]
    obj = da if isinstance(da, xr.DataArray) else xr.DataArray(np.asarray(da))
    values = obj.variable._data
    ref = None
    if isinstance(values, np.ndarray) and values.size and all(q <= 0.05 or q >= 0.95 for q in qs):
        ref = _first_guess(values)
        found = _tail_histogram(values, qs, ref)
        if found is not _UNDECIDED:
            return found  # type: ignore[return-value]
    result = None
    for _ in range(max_passes):
        hist = None
        for _, _, block in iter_blocks(obj, target_bytes=RENDER_BLOCK_BYTES):
            if hist is None:
                if ref is None:
                    ref = _first_guess(block)
                hist = _Histogram(ref)
            hist.add(block)
        assert hist is not None
        found = hist.quantiles(qs)
        if found is None:
            return None
        result, precise, _ = found
        if precise:
            break
        ref = (min(result) + max(result)) / 2
    return result


_UNDECIDED = object()
#: Values per chunk of the tail pass: its temporaries stay in the L2 cache.
_TAIL_CHUNK = 2**17
#: Size of the subsample the tail thresholds are guessed from.
_TAIL_SAMPLE = 2**16


def _subsample(values: np.ndarray) -> np.ndarray:
    """About ``_TAIL_SAMPLE`` values spread over up to 16 frames (a strided view's copy)."""
    if values.ndim < 3:
        return values.reshape(-1)[:: max(1, values.size // _TAIL_SAMPLE)]
    frames = values.reshape((-1,) + values.shape[-2:])
    every = -(-frames.shape[0] // 16)  # ceil: at most 16 frames
    picked = frames[::every]
    step = max(1, round(math.sqrt(picked.size / _TAIL_SAMPLE)))
    return np.asarray(picked[:, ::step, ::step]).reshape(-1)


def _tail_histogram(values: np.ndarray, qs: list[float], ref: float) -> list[float] | None | object:
    """What the first histogram pass of ``percentiles`` gives for tail quantiles ``qs``
    (each <= 0.05 or >= 0.95) of an in-memory array, without binning every value.

    A subsample guesses thresholds a little inside the tails (0.5 % plus a margin for its
    sampling error). One pass (two threads, cache-sized chunks) counts the non-finite
    values and keeps the values at or beyond the thresholds, a few percent of the data.
    Only those are binned; the values between the thresholds are counted into one bin
    between them. Every bin beyond a threshold's own bin is then complete, so a quantile
    read from such a bin is exactly what the full histogram gives. ``_UNDECIDED`` when it
    is not (a misleading subsample), when the full histogram would need another pass, or
    when ties make the kept part large; the caller then builds the full histogram.
    """
    sample = _subsample(values).astype(np.float64, copy=False)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return _UNDECIDED  # (perhaps) no finite value at all: the histogram decides
    margin = 0.002 + 0.5 / math.sqrt(sample.size)
    low_q = [q for q in qs if q < 0.5]
    high_q = [q for q in qs if q >= 0.5]
    a = float(np.quantile(sample, min(1.0, max(low_q) + margin))) if low_q else -math.inf
    b = float(np.quantile(sample, max(0.0, min(high_q) - margin))) if high_q else math.inf
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

    def scan(span: tuple[int, int]) -> tuple[np.ndarray, int, int] | None:
        """Counts of the kept values of frames (or values) ``span``, how many of those
        are finite, and how many values are not."""
        kept: list[np.ndarray] = []
        bad = n_kept = seen = 0
        for start in range(span[0], span[1], step):
            chunk = src[start : min(start + step, span[1])]
            mask = np.empty(chunk.shape, dtype=bool)
            if floating:
                bad += chunk.size - int(np.count_nonzero(np.isfinite(chunk, out=mask)))  # NaN, inf
            np.less_equal(chunk, a, out=mask)
            if b < math.inf:
                mask |= chunk >= b
            kept.append(chunk[mask])
            n_kept += kept[-1].size
            seen += chunk.size
            if n_kept > budget * seen and a < math.inf:
                return None
        tails = np.concatenate(kept) if kept else np.zeros(0)
        finite = int(np.count_nonzero(np.isfinite(tails))) if floating else tails.size
        return _hist_chunk(tails, ref), finite, bad

    n_items = src.shape[0]
    n_workers = workers() if values.size >= 4 * _TAIL_CHUNK else 1
    edges = np.linspace(0, n_items, n_workers + 1).astype(int).tolist()
    spans = list(zip(edges[:-1], edges[1:]))
    with np.errstate(invalid="ignore", over="ignore"):
        if n_workers > 1:
            with ThreadPoolExecutor(n_workers) as pool:
                parts = list(pool.map(scan, spans))
        else:
            parts = [scan(spans[0])]
    if any(p is None for p in parts):
        return _UNDECIDED
    hist = _Histogram(ref)
    for p in parts:
        hist.counts += p[0]  # type: ignore[index]
    n_kept_finite = sum(p[1] for p in parts)  # type: ignore[index]
    bad = sum(p[2] for p in parts)  # type: ignore[index]
    middle = values.size - bad - n_kept_finite  # finite, between the thresholds
    if edge_keys and middle:
        hist.counts[edge_keys[0]] += middle
    found = hist.quantiles(qs)
    if found is None:
        return None
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
    return result


def _limit(name: str, v: Any) -> Any:
    if isinstance(v, str):
        if v != "auto":
            raise RenderError(f"{name} must be a number, 'auto' or None, got {v!r}")
        return v
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise RenderError(f"{name} must be a number, 'auto' or None, got {v!r}") from None
    if not math.isfinite(v):
        raise RenderError(f"{name} must be finite, got {v!r}")
    return v


def zscale(da: xr.DataArray, zmin: Any = "auto", zmax: Any = "auto") -> tuple[float, float]:
    """The (low, high) values mapped to the ends of the colormap.

    ``"auto"``: the 1st / 99th percentile of the whole stack; ``None``: the finite minimum /
    maximum (from the same histogram, so within its precision); a number: itself. NaN and
    inf never take part. A stack without finite values gives (0, 1); equal ends are
    widened slightly so a constant stack shows the middle colour.
    """
    lims = [_limit("zmin", zmin), _limit("zmax", zmax)]
    if isinstance(lims[0], float) and isinstance(lims[1], float) and lims[0] > lims[1]:
        raise RenderError(f"zmin ({lims[0]}) is above zmax ({lims[1]})")
    auto_q = ({"auto": 1.0, None: 0.0}, {"auto": 99.0, None: 100.0})
    need = [i for i in (0, 1) if not isinstance(lims[i], float)]
    if need:
        found = percentiles(da, [auto_q[i][lims[i]] for i in need])
        if found is None:  # no finite value at all: any scale will do
            for i in need:
                other = lims[1 - i]
                lims[i] = (other + (1.0 if i else -1.0)) if isinstance(other, float) else float(i)
        else:
            for i, v in zip(need, found):
                lims[i] = float(v)
    lo, hi = lims
    if hi < lo:  # one end fixed beyond the data's other end
        lo, hi = hi, lo
    if not hi > lo:
        d = max(abs(lo) * 1e-6, 1e-12)
        lo, hi = lo - d, hi + d
    return float(lo), float(hi)


def to_indices(frame: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None, work: np.ndarray | None = None) -> np.ndarray:
    """Palette indices 0-251 of a frame on the scale lo..hi (clipped); NaN/inf -> 252."""
    frame = np.asarray(frame)
    if work is None or work.shape != frame.shape:
        work = np.empty(frame.shape, dtype=np.float32)
    if out is None:
        out = np.empty(frame.shape, dtype=np.uint8)
    scale = N_DATA / (hi - lo) if hi > lo else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        np.subtract(frame, lo, out=work, casting="unsafe")  # in the input's precision
        work *= scale
        # NaN propagates through minimum and maximum; -inf shows in one, inf in the other
        finite = math.isfinite(float(np.minimum.reduce(work, axis=None))) and math.isfinite(float(np.maximum.reduce(work, axis=None)))
        if scale == 0.0:
            work += N_DATA / 2
        np.clip(work, 0, N_DATA - 1, out=out, casting="unsafe")  # truncates: floor, as >= 0
    if not finite:
        bad = ~np.isfinite(frame)
        if frame.dtype.kind == "f" and bad.any():
            out[bad] = NAN_INDEX
    return out


# --------------------------------------------------------------------------------------
# geometry and annotations
# --------------------------------------------------------------------------------------
def upscale_factor(h: int, w: int, upscale: Any = "auto") -> int:
    """Integer nearest-neighbour factor: small frames grow until their shorter side reaches
    ``MIN_SIDE`` (so text fits and pixels stay crisp), never past ``MAX_SIDE``."""
    if isinstance(upscale, str):
        if upscale != "auto":
            raise RenderError(f"upscale must be 'auto' or a positive integer, got {upscale!r}")
        k = max(1, math.ceil(MIN_SIDE / max(1, min(h, w))))
        return max(1, min(k, MAX_SIDE // max(h, w)))
    if isinstance(upscale, (bool, np.bool_)) or not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise RenderError(f"upscale must be 'auto' or a positive integer, got {upscale!r}")
    return int(upscale)


def nice_length(max_nm: float) -> float:
    """The largest 1-2-5 x 10^n length not above ``max_nm``."""
    if not max_nm > 0:
        return 0.0
    e = math.floor(math.log10(max_nm))
    for m in (5, 2, 1):
        if m * 10**e <= max_nm:
            return float(m * 10**e)
    return float(10 ** (e - 1) * 5)


def length_label(nm: float) -> str:
    if nm >= 1000 and (nm / 1000) == round(nm / 1000, 3):
        return f"{nm / 1000:g} µm"
    return f"{nm:g} nm"


def time_label(t: float) -> str:
    return f"{t:.2f} s"


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # Pillow without FreeType
        return ImageFont.load_default()


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


class _Stamp:
    """Flat pixel indices of a pre-rendered annotation (fill and outline) in the output."""

    __slots__ = ("fg", "bg")

    def __init__(self, fg: np.ndarray, bg: np.ndarray):
        self.fg, self.bg = fg, bg

    def apply(self, flat: np.ndarray) -> None:
        flat[self.bg] = BG_INDEX
        flat[self.fg] = FG_INDEX


class Overlay:
    """Scale bar and timestamps for frames of one output size.

    The scale bar and its label are rendered once; each distinct timestamp text is
    rendered once (Pillow's built-in font, no antialiasing so only palette colours appear).
    """

    def __init__(
        self,
        out_h: int,
        out_w: int,
        *,
        bar_px: int | None = None,
        bar_label: str = "",
        times: Iterable[str] | None = None,
        stride: int | None = None,
    ):
        self.shape = (out_h, out_w)
        self.stride = out_w if stride is None else int(stride)
        side = min(out_h, out_w)
        self.font_px = int(min(64, max(10, round(side * 0.055))))
        self.margin = max(2, round(side * 0.03))
        self.outline = max(1, round(self.font_px / 14))
        self.font = _font(self.font_px)
        self.bar_px = bar_px
        self.bar_thickness = max(2, round(self.font_px / 4))
        self._stamps: dict[str, _Stamp | None] = {}
        self._glyphs: dict[str, tuple[np.ndarray, np.ndarray, int, int, float] | None] = {}
        self._kerns: dict[str, float] = {}
        self._static = self._bar(bar_px, bar_label) if bar_px else None
        self.times = list(times) if times is not None else None

    # -- text ----------------------------------------------------------------------------
    def _text_mask(self, text: str) -> np.ndarray:
        from PIL import Image, ImageDraw

        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), text, font=self.font)
        w, h = max(1, right - left), max(1, bottom - top)
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        draw.fontmode = "1"
        draw.text((-left, -top), text, font=self.font, fill=255)
        mask = np.asarray(im) > 127
        if getattr(self.font, "size", self.font_px) < self.font_px * 0.7:  # bitmap fallback font
            k = max(1, round(self.font_px / max(1, mask.shape[0])))
            mask = mask.repeat(k, 0).repeat(k, 1)
        return mask

    def _place(self, fill: np.ndarray, y0: int, x0: int) -> _Stamp | None:
        """Put a fill mask (plus its outline) at (y0, x0), clipped to the frame."""
        r = self.outline
        padded = np.zeros((fill.shape[0] + 2 * r, fill.shape[1] + 2 * r), dtype=bool)
        padded[r : r + fill.shape[0], r : r + fill.shape[1]] = fill
        return self._stamp(padded, _dilate(padded, r), y0 - r, x0 - r)

    def _stamp(self, fill: np.ndarray, grown: np.ndarray, y0: int, x0: int) -> _Stamp | None:
        """A stamp of a fill and its dilation (the outline is the difference) with their
        top-left corner at (y0, x0), clipped to the frame."""
        ys, xs = np.nonzero(fill)
        yo, xo = np.nonzero(grown & ~fill)
        H, W = self.shape

        def flat(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            yy, xx = yy + y0, xx + x0
            ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            return (yy[ok] * self.stride + xx[ok]).astype(np.intp)

        fg, bg = flat(ys, xs), flat(yo, xo)
        if fg.size == 0:
            return None
        return _Stamp(fg, bg)

    def _glyph(self, ch: str) -> tuple[np.ndarray, np.ndarray, int, int, float] | None:
        """A character's fill padded by the outline width, that padded fill dilated, the
        offset of its top-left corner from the pen position, and the pen's advance.
        None when glyphs cannot be composed (Pillow's bitmap fallback font)."""
        if ch not in self._glyphs:
            glyph = None
            if getattr(self.font, "size", 0) >= self.font_px * 0.7 and hasattr(self.font, "getlength"):
                left, top, right, bottom = self.font.getbbox(ch)
                r = self.outline
                fill = np.zeros((max(0, bottom - top) + 2 * r, max(0, right - left) + 2 * r), dtype=bool)
                if right > left and bottom > top:
                    fill[r:-r, r:-r] = self._text_mask(ch)
                glyph = (fill, _dilate(fill, r), left - r, top - r, float(self.font.getlength(ch)))
            self._glyphs[ch] = glyph
        return self._glyphs[ch]

    def _kerning(self, pair: str) -> float:
        if pair not in self._kerns:
            self._kerns[pair] = float(self.font.getlength(pair) - self.font.getlength(pair[0]) - self.font.getlength(pair[1]))
        return self._kerns[pair]

    def _text_stamp(self, text: str, y0: int, x0: int) -> _Stamp | None:
        """Text with its top-left ink pixel at (y0, x0), composed from cached glyphs: a
        new frame time costs a few small array ORs instead of a Pillow rendering and a
        dilation (dilating a union of glyphs is the union of their dilations)."""
        glyphs = [self._glyph(ch) for ch in text]
        if any(g is None for g in glyphs):
            return self._place(self._text_mask(text), y0, x0)
        placed, pen = [], 0.0
        for j, (fill, grown, dx, dy, advance) in enumerate(glyphs):  # type: ignore[misc]
            if j:
                pen += self._kerning(text[j - 1 : j + 1])
            if fill.any():
                placed.append((fill, grown, round(pen) + dx, dy))
            pen += advance
        if not placed:
            return None
        r = self.outline
        top = min(p[3] for p in placed)
        left = min(p[2] for p in placed)
        h = max(p[3] + p[0].shape[0] for p in placed) - top
        w = max(p[2] + p[0].shape[1] for p in placed) - left
        fill_all = np.zeros((h, w), dtype=bool)
        grown_all = np.zeros((h, w), dtype=bool)
        for fill, grown, gx, gy in placed:
            sl = (slice(gy - top, gy - top + fill.shape[0]), slice(gx - left, gx - left + fill.shape[1]))
            fill_all[sl] |= fill
            grown_all[sl] |= grown
        return self._stamp(fill_all, grown_all, y0 - r, x0 - r)

    def _bar(self, bar_px: int, label: str) -> _Stamp | None:
        H, W = self.shape
        m, t = self.margin, self.bar_thickness
        bar = np.ones((t, bar_px), dtype=bool)
        text = self._text_mask(label) if label else np.zeros((0, 0), dtype=bool)
        gap = max(2, t)
        width = max(bar_px, text.shape[1])
        height = t + (gap + text.shape[0] if text.size else 0)
        block = np.zeros((height, width), dtype=bool)
        block[height - t :, :bar_px] = bar
        if text.size:
            x = max(0, (bar_px - text.shape[1]) // 2)
            block[: text.shape[0], x : x + text.shape[1]] = text
        return self._place(block, H - m - height, m)

    def _time_stamp(self, text: str) -> _Stamp | None:
        stamp = self._stamps.get(text, False)
        if stamp is False:
            stamp = self._text_stamp(text, self.margin, self.margin)
            if len(self._stamps) >= 64:  # frame times rarely repeat: keep memory flat
                self._stamps.clear()
            self._stamps[text] = stamp
        return stamp  # type: ignore[return-value]

    def apply(self, frame: np.ndarray, i: int) -> np.ndarray:
        """Draw the overlays of frame ``i`` into a C-contiguous index frame (rows ``stride``
        wide), in place."""
        flat = frame.reshape(-1)
        if self._static is not None:
            self._static.apply(flat)
        if self.times is not None:
            stamp = self._time_stamp(self.times[i])
            if stamp is not None:
                stamp.apply(flat)
        return frame


# --------------------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------------------
def _user_stacklevel() -> int:
    """The stacklevel of the first caller outside xafm, so warnings point at user code."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("xafm"):
        frame, level = frame.f_back, level + 1
    return level


def _check_fps(fps: Any) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise RenderError(f"fps must be a positive number, got {fps!r}") from None
    if not (math.isfinite(fps) and fps > 0):
        raise RenderError(f"fps must be a positive number, got {fps!r}")
    return fps


def split_yuv420(frame: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y (h, w), U and V (h/2, w/2) planes of a flat yuv420p frame, as views."""
    n = h * w
    return (
        frame[:n].reshape(h, w),
        frame[n : n + n // 4].reshape(h // 2, w // 2),
        frame[n + n // 4 : n + n // 2].reshape(h // 2, w // 2),
    )


class FrameRenderer:
    """Everything fixed for one export: z-scale, palette, upscale, padding, overlays.

    ``frames()`` streams ``(i, indices)`` from numpy, dask or lazy stacks block by block,
    so memory stays at one block of values plus a few output frames.
    """

    def __init__(
        self,
        da: xr.DataArray,
        *,
        cmap: Any = DEFAULT_CMAP,
        zmin: Any = "auto",
        zmax: Any = "auto",
        scale_bar_nm: float | None = 100,
        timestamps: bool = True,
        scale_bar: bool = True,
        nan_color: Any = "auto",
        upscale: Any = "auto",
        pad_to: int = 1,
        action: str = "rendering",
    ):
        da = model.check_stack(da, action)
        if da.dtype.kind not in "iuf":
            raise StackError(f"{action} needs numeric values, the stack has dtype {da.dtype}")
        self.da = da
        self.n, h, w = (int(s) for s in da.shape)
        if self.n < 1 or h < 1 or w < 1:
            raise StackError(f"{action} needs at least one frame of at least 1x1 pixels, got shape {da.shape}")
        self.cmap = colormap(cmap)
        self.palette = build_palette(self.cmap, nan_color)
        self._lut32 = np.zeros(256, dtype=np.uint32)
        self._lut32.view(np.uint8).reshape(256, 4)[:, :3] = self.palette
        self._yuv: tuple[np.ndarray, np.ndarray] | None = None
        self.k = upscale_factor(h, w, upscale)
        self.image_shape = (h * self.k, w * self.k)
        ph = (-self.image_shape[0]) % pad_to
        pw = (-self.image_shape[1]) % pad_to
        self.shape = (self.image_shape[0] + ph, self.image_shape[1] + pw)
        # the z-scale pass is deferred to the first frame, so a writer can start its encoder
        # (ffmpeg) meanwhile; the limits are checked now
        self._limits = (_limit("zmin", zmin), _limit("zmax", zmax))
        if all(isinstance(v, float) for v in self._limits) and self._limits[0] > self._limits[1]:
            raise RenderError(f"zmin ({self._limits[0]}) is above zmax ({self._limits[1]})")
        self._scale: tuple[float, float] | None = None
        self.scale_bar_nm: float | None = None
        bar_px = None
        if scale_bar:
            bar_px = self._bar_px(scale_bar_nm)
        times = None
        if timestamps:
            times = [time_label(t) for t in model.times_s(da)]
        self.overlay = Overlay(
            *self.image_shape,
            bar_px=bar_px,
            bar_label=length_label(self.scale_bar_nm) if bar_px and self.scale_bar_nm else "",
            times=times,
            stride=self.shape[1],
        )

    def _bar_px(self, scale_bar_nm: float | None) -> int | None:
        dx = model.pixel_size_nm(self.da)[1]
        out_w = self.image_shape[1]
        margin = max(2, round(min(self.image_shape) * 0.03))
        room = out_w - 2 * margin
        px_per_nm = self.k / dx
        if scale_bar_nm is not None:
            try:
                nm = float(scale_bar_nm)
            except (TypeError, ValueError):
                raise RenderError(f"scale_bar_nm must be a positive number or None, got {scale_bar_nm!r}") from None
            if not (math.isfinite(nm) and nm > 0):
                raise RenderError(f"scale_bar_nm must be a positive number or None, got {scale_bar_nm!r}")
            px = round(nm * px_per_nm)
            if 1 <= px <= room:
                self.scale_bar_nm = nm
                return int(px)
            warnings.warn(
                f"a {nm:g} nm scale bar is {nm * px_per_nm:.1f} px long, which does not fit a {out_w} px wide frame; "
                "drawing a bar of a length that fits instead (pass scale_bar_nm=None to choose it silently)",
                XafmWarning,
                stacklevel=_user_stacklevel(),
            )
        nm = nice_length(0.3 * room / px_per_nm)
        px = round(nm * px_per_nm)
        if not 1 <= px <= room:
            return None
        self.scale_bar_nm = nm
        return int(px)

    @property
    def lo(self) -> float:
        return self.zscale()[0]

    @property
    def hi(self) -> float:
        return self.zscale()[1]

    def zscale(self) -> tuple[float, float]:
        """(low, high) of the colour scale, computed on first use (one pass for "auto")."""
        if self._scale is None:
            self._scale = zscale(self.da, *self._limits)
        return self._scale

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output frames."""
        return self.shape[1], self.shape[0]

    def indices(self, frame: np.ndarray, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Annotated palette indices of frame ``i`` at output size, into ``out`` (a new
        array if None; safe to call from several threads at once with different ``out``)."""
        h, w = frame.shape
        lo, hi = self.zscale()
        if out is None:
            out = np.empty(self.shape, dtype=np.uint8)
        k = self.k
        H, W = self.image_shape
        if k == 1 and self.shape == self.image_shape:
            to_indices(frame, lo, hi, out=out)  # straight into the output: no copy
        elif self.shape == self.image_shape:
            out.reshape(h, k, w, k)[...] = to_indices(frame, lo, hi)[:, None, :, None]
        else:  # padded for a codec: black beyond the image
            small = to_indices(frame, lo, hi)
            out[H:] = BG_INDEX
            out[:H, W:] = BG_INDEX
            out[:H, :W] = np.broadcast_to(small[:, None, :, None], (h, k, w, k)).reshape(H, W)
        self.overlay.apply(out, i)
        return out

    def rgb0(self, indices: np.ndarray) -> np.ndarray:
        """Colours as one uint32 per pixel, bytes R, G, B, 0 (ffmpeg's ``rgb0``): a
        one-dimensional table look-up, several times faster than ``palette[indices]``."""
        return np.take(self._lut32, indices, mode="wrap")  # a uint8 always indexes 256

    def _pair_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Tables indexed by two horizontally adjacent palette indices read as one native
        uint16: their two Y bytes (as a uint16 laid out like the pair), and the sums of
        their U and V values, x4, packed in one uint32 (U in the low 16 bits). One look-up
        per two pixels for Y and per four for U and V together, instead of one per pixel
        and plane (BT.601 matrix, limited range, as in ``yuv420``)."""
        if self._yuv is None:
            rgb = self.palette.astype(np.float64) / 255.0
            y = rgb @ np.array([0.299, 0.587, 0.114])
            cb = (rgb[:, 2] - y) / 1.772
            cr = (rgb[:, 0] - y) / 1.402
            ly = np.round(16 + 219 * y).astype(np.uint16)
            lu = np.round(4 * (128 + 224 * cb)).astype(np.uint32)  # x4: 2x2 sums stay integers
            lv = np.round(4 * (128 + 224 * cr)).astype(np.uint32)
            pair = np.arange(65536, dtype=np.uint16)
            as_bytes = pair.view(np.uint8).reshape(-1, 2)  # the two pixels in memory order
            a, b = as_bytes[:, 0], as_bytes[:, 1]
            y2 = np.empty((65536, 2), dtype=np.uint8)
            y2[:, 0], y2[:, 1] = ly[a], ly[b]
            # each sum < 2**11; +4 per pair rounds the mean of a 2x2 block's four x4 values
            uv = (lu[a] + lu[b] + 4) | ((lv[a] + lv[b] + 4) << 16)
            self._yuv = (y2.view(np.uint16).reshape(-1), uv)
        return self._yuv

    def yuv420(self, indices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One yuv420p (I420) frame of an even-sized index frame: the Y, U and V planes
        one after the other in a flat uint8 array (``out`` if given), as video encoders take
        them, so ffmpeg converts nothing and the pipe carries half the bytes of RGB.

        BT.601 matrix, limited range, chroma the rounded mean of 2x2 pixels as ffmpeg's
        scaler does. BT.601 because it is what decoders assume for untagged video and what
        ffmpeg (and so imageio) uses when it converts back to RGB; the videos are tagged
        with it. ``split_yuv420`` gives the planes."""
        y2, uv = self._pair_tables()
        h, w = indices.shape
        pairs = np.ascontiguousarray(indices).view(np.uint16)  # (h, w / 2)
        if out is None:
            out = np.empty(h * w * 3 // 2, dtype=np.uint8)
        y_plane, u_plane, v_plane = split_yuv420(out, h, w)
        # mode "wrap" (a no-op: a uint16 always indexes a 65536 table) is the fastest
        np.take(y2, pairs, out=y_plane.view(np.uint16), mode="wrap")
        acc = np.take(uv, pairs[0::2], mode="wrap")
        acc += np.take(uv, pairs[1::2], mode="wrap")
        acc >>= 4
        np.copyto(u_plane, acc, casting="unsafe")  # the low byte: U
        np.right_shift(acc, 16, out=v_plane, casting="unsafe")
        return out

    def rgb(self, indices: np.ndarray) -> np.ndarray:
        """Colours as an (h, w, 3) uint8 array."""
        return np.ascontiguousarray(self.rgb0(indices).view(np.uint8).reshape(*indices.shape, 4)[..., :3])

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Raw frames ``(i, values)``, pulled block by block (after the z-scale pass)."""
        self.zscale()
        for a, _, block in iter_blocks(self.da, target_bytes=RENDER_BLOCK_BYTES):
            for j in range(block.shape[0]):
                yield a + j, block[j]

    def info(self) -> dict[str, Any]:
        """What the provenance record says about the rendering."""
        return {
            "cmap": getattr(self.cmap, "name", str(self.cmap)),
            "zmin": self.lo,
            "zmax": self.hi,
            "frames": self.n,
            "size": list(self.size),
            "upscale": self.k,
            "scale_bar_nm": self.scale_bar_nm,
            "timestamps": self.overlay.times is not None,
        }


# --------------------------------------------------------------------------------------
# running work on frames in order, a few at a time
# --------------------------------------------------------------------------------------
def workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def map_ordered(func: Callable[[Any], Any], items: Iterable[Any], *, n_workers: int | None = None, window: int | None = None) -> Iterator[Any]:
    """``map(func, items)`` on a thread pool, in order, with at most ``window`` in flight.

    numpy, zlib and ffmpeg release the GIL, so rendering overlaps encoding; the window
    bounds memory to a few frames.
    """
    n_workers = workers() if n_workers is None else n_workers
    window = 2 * n_workers if window is None else window
    if n_workers <= 1:
        yield from map(func, items)
        return
    from collections import deque

    with ThreadPoolExecutor(n_workers) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


class Progress:
    """``progress=True`` prints to stderr; a callable gets ``(done, total)``."""

    def __init__(self, progress: Any, total: int, what: str):
        self.total, self.what, self.done = total, what, 0
        self.callback = progress if callable(progress) else None
        self.text = bool(progress) and self.callback is None
        self._last = -1

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        elif self.text:
            pct = int(100 * self.done / max(1, self.total))
            if pct != self._last or self.done == self.total:
                self._last = pct
                sys.stderr.write(f"\r{self.what}: {self.done}/{self.total} frames ({pct}%)")
                if self.done >= self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()
