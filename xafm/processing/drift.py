"""Drift correction: per-frame shifts by FFT cross-correlation, applied lazily.

The shifts are what playNano 0.5 measures (the mean-subtracted frames' linear
cross-correlation with the reference, its peak inside ``max_shift``, playNano's ``max_jump``
rule), refined to a few hundredths of a pixel by an upsampled DFT around the peak
(``subpixel=False`` keeps playNano's integer shifts). Measuring them is the one pass over
the data (block by block, one dask compute); applying them is lazy: every frame lands on a
canvas that holds all of them (playNano's ``mode="pad"``), NaN where a frame has no data.
A shift ``(dy, dx)`` is what is applied to a frame: its content moves down by ``dy`` and
right by ``dx`` pixels (playNano's sign). docs/processing.md has the details.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from ..core import blocks, conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError
from .apply import _step_index, current_layer_name
from .catalogue import step
from .edits import crop_box, square_box, valid_box

#: Per-frame coordinates holding the applied shifts in nm (summed over repeated alignments).
SHIFT_Y, SHIFT_X = "align_shift_y_nm", "align_shift_x_nm"
#: Frames per FFT batch (a batch's padded spectra stay a few tens of MiB).
_BATCH = 8
_UPSAMPLE = 5
_HALF = 3  # the upsampled grid spans +-0.6 px around the integer peak


# --------------------------------------------------------------------------------------
# measuring shifts
# --------------------------------------------------------------------------------------
def _prepared(frames: np.ndarray, sigma: float | None, demean: bool = True) -> np.ndarray:
    """float32 frames, Gaussian pre-filtered, mean subtracted (unless not ``demean``),
    non-finite pixels at 0."""
    f = np.asarray(frames, dtype=np.float32)
    if sigma is not None:
        from scipy.ndimage import gaussian_filter

        f = gaussian_filter(f, sigma=(0, float(sigma), float(sigma)))
    finite = np.isfinite(f)
    if not demean:
        return f if finite.all() else np.where(finite, f, np.float32(0))
    if not finite.all():
        f = np.where(finite, f, np.float32(0))
        counts = np.maximum(finite.sum(axis=(1, 2), keepdims=True), 1)
        means = (f.sum(axis=(1, 2), keepdims=True) / counts).astype(np.float32)
        return np.where(finite, f - means, np.float32(0))
    return f - f.mean(axis=(1, 2), keepdims=True, dtype=np.float64).astype(np.float32)


class _Correlator:
    """The reference's spectrum and the lag window; ``shifts(frames)`` measures a batch.

    With lags limited to ``m`` the circular correlation over ``n + m`` points equals the
    linear one at those lags, so a ``max_shift`` also makes the FFTs smaller.
    """

    def __init__(
        self, ref: np.ndarray, shape: tuple[int, int], max_shift: int | None, sigma: float | None, subpixel: bool,
        workers: int = 1, center: tuple[int, int] = (0, 0), demean: bool = True,
    ):  # fmt: skip
        (hr, wr), (h, w) = ref.shape, shape
        self.workers, self.sigma, self.subpixel, self.center, self.shape = workers, sigma, subpixel, center, shape
        self.demean = demean
        self.my = h - 1 if max_shift is None else min(int(max_shift), h - 1)
        self.mx = w - 1 if max_shift is None else min(int(max_shift), w - 1)
        # lags centre +- m are alias-free when n >= max(centre + m + h, hr - centre + m)
        ny = max(center[0] + self.my + h, hr - center[0] + self.my)
        nx = max(center[1] + self.mx + w, wr - center[1] + self.mx)
        import scipy.fft  # at first use, not at import xafm (scipy is slow to import)

        self.n = (scipy.fft.next_fast_len(ny, real=True), scipy.fft.next_fast_len(nx, real=True))
        self.spectrum = scipy.fft.rfft2(_prepared(ref[None], sigma, demean)[0], s=self.n, workers=workers)
        self._local = threading.local()  # each thread's zero-padded FFT input
        # -inf at the lags outside the window, so one argmax over the correlation finds the peak
        in_y = np.zeros(self.n[0], bool)
        in_y[(center[0] + np.arange(-self.my, self.my + 1)) % self.n[0]] = True
        in_x = np.zeros(self.n[1], bool)
        in_x[(center[1] + np.arange(-self.mx, self.mx + 1)) % self.n[1]] = True
        self.outside = np.where(in_y[:, None] & in_x[None, :], np.float32(0), np.float32(-np.inf))

    def shifts(self, frames: np.ndarray) -> np.ndarray:
        import scipy.fft

        out = np.empty((frames.shape[0], 2), dtype=np.float64)
        for a in range(0, frames.shape[0], _BATCH):
            f = _prepared(frames[a : a + _BATCH], self.sigma, self.demean)
            buffer = getattr(self._local, "buffer", None)
            if buffer is None or buffer.shape[0] != len(f):
                buffer = self._local.buffer = np.zeros((len(f), *self.n), np.float32)  # zero padding, written once
            buffer[:, : f.shape[1], : f.shape[2]] = f
            cross = scipy.fft.rfft2(buffer, workers=self.workers)
            np.conjugate(cross, out=cross)
            cross *= self.spectrum
            corr = scipy.fft.irfft2(cross, s=self.n, workers=self.workers)
            iy, ix = np.unravel_index(np.argmax((corr + self.outside).reshape(corr.shape[0], -1), axis=1), self.n)
            iy = (iy - self.center[0] + self.my) % self.n[0]  # lag + m, as the window's row
            ix = (ix - self.center[1] + self.mx) % self.n[1]
            peak = np.column_stack([iy - self.my + self.center[0], ix - self.mx + self.center[1]]).astype(np.float64)
            if self.subpixel and self.center == (0, 0):
                peak = self._climb(corr, peak)
            found = self._refine(cross, peak) if self.subpixel else peak
            out[a : a + len(f)] = found - np.asarray(self.center, dtype=np.float64)
        return out

    def _climb(self, corr: np.ndarray, peak: np.ndarray) -> np.ndarray:
        """From the raw peak uphill on the overlap-normalised correlation (the raw one
        leans towards lag 0 by up to a pixel for smooth images), inside the lag window."""
        h, w = self.shape
        out = peak.copy()
        for i in range(corr.shape[0]):
            y, x = int(peak[i, 0]), int(peak[i, 1])
            for _ in range(2 * max(h, w)):
                best, by, bx = -np.inf, y, x
                for ny in (y - 1, y, y + 1):
                    for nx in (x - 1, x, x + 1):
                        if abs(ny) <= self.my and abs(nx) <= self.mx:
                            v = corr[i, ny % self.n[0], nx % self.n[1]] / ((h - abs(ny)) * (w - abs(nx)))
                            if v > best:
                                best, by, bx = v, ny, nx
                if (by, bx) == (y, x):
                    break
                y, x = by, bx
            out[i] = (y, x)
        return out

    def _refine(self, cross: np.ndarray, peak: np.ndarray) -> np.ndarray:
        """The correlation's peak to a fraction of a pixel: its exact band-limited values
        (a DFT of the cross spectrum at chosen lags, as Guizar-Sicairos et al. 2008 do on a
        grid) on a 1/5-pixel line through the peak along y, then x, then y again, each
        topped by a parabola. Lines, not a grid: two passes over the spectrum per line, as
        real (float32) products."""
        ny, nx = self.n
        ky = (np.fft.fftfreq(ny) * ny).astype(np.float64)
        kx = np.arange(cross.shape[2], dtype=np.float64)
        weight = np.where((kx == 0) | ((nx % 2 == 0) & (kx == nx // 2)), 1.0, 2.0)  # the half spectrum's mirror
        q = cross.view(np.float32)  # (re, im) interleaved along the last axis
        offsets = np.arange(-_HALF, _HALF + 1) / _UPSAMPLE
        y, x = peak[:, 0].copy(), peak[:, 1].copy()
        h, w = self.shape
        for axis in (0, 1, 0):
            if axis == 0:  # collapse kx at the current x, then evaluate along y
                ph = 2 * np.pi * kx[None, :] * x[:, None] / nx
                vec = np.empty((len(x), 2 * kx.size, 2), np.float32)
                vec[:, 0::2, 0], vec[:, 1::2, 0] = weight * np.cos(ph), -weight * np.sin(ph)
                vec[:, 0::2, 1], vec[:, 1::2, 1] = weight * np.sin(ph), weight * np.cos(ph)
                # einsum, not matmul: OpenBLAS threads make these thin products slow on a busy machine
                line = np.stack([np.einsum("bij,bj->bi", q, vec[:, :, 0]), np.einsum("bij,bj->bi", q, vec[:, :, 1])], axis=-1)
                lags = y[:, None] + offsets[None]
                th = 2 * np.pi * lags[:, :, None] * ky[None, None, :] / ny
                vals = (np.cos(th) * line[:, None, :, 0] - np.sin(th) * line[:, None, :, 1]).sum(-1)
                vals /= np.maximum(h - np.abs(lags), 1) if self.center == (0, 0) else 1
            else:  # collapse ky at the current y, then evaluate along x
                ph = 2 * np.pi * ky[None, :] * y[:, None] / ny
                vec2 = np.stack([np.cos(ph), np.sin(ph)], axis=1).astype(np.float32)  # (B, 2, ny)
                m = np.stack([np.einsum("bi,bij->bj", vec2[:, 0], q), np.einsum("bi,bij->bj", vec2[:, 1], q)], axis=1)
                re = m[:, 0, 0::2] - m[:, 1, 1::2]
                im = m[:, 0, 1::2] + m[:, 1, 0::2]
                lags = x[:, None] + offsets[None]
                th = 2 * np.pi * lags[:, :, None] * kx[None, None, :] / nx
                vals = (weight * (np.cos(th) * re[:, None, :] - np.sin(th) * im[:, None, :])).sum(-1)
                vals /= np.maximum(w - np.abs(lags), 1) if self.center == (0, 0) else 1
            j = np.argmax(vals, axis=1)
            best = np.array([lags[i, j[i]] + _vertex(vals[i], int(j[i])) / _UPSAMPLE for i in range(len(j))])
            if axis == 0:
                y = best
            else:
                x = best
        return np.column_stack([y, x])


def _vertex(line: np.ndarray, j: int) -> float:
    """Offset of the parabola's vertex through ``line[j-1:j+2]`` (0 at the grid's edge)."""
    if j == 0 or j == line.size - 1:
        return 0.0
    a, b, c = float(line[j - 1]), float(line[j]), float(line[j + 1])
    denom = a - 2 * b + c
    return 0.0 if denom >= 0 else float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))


def _frame(data: Any, i: int) -> np.ndarray:
    return np.asarray(next(blocks.iter_blocks(data[i : i + 1]))[2][0]) if not is_dask(data) else np.asarray(data[i])


def _raw_shifts(da: xr.DataArray, reference_frame: int, max_shift: int | None, sigma: float | None, subpixel: bool, demean: bool = True) -> np.ndarray:
    """Every frame's cross-correlation shift against the reference: one pass, one compute."""
    data = da.variable
    shape = (da.sizes[conventions.Y], da.sizes[conventions.X])
    if is_dask(da):
        import dask  # a dask stack: dask is imported already

        arr = da.data.rechunk({1: -1, 2: -1})

        def measure(block: np.ndarray, ref: np.ndarray) -> np.ndarray:
            return _Correlator(ref, shape, max_shift, sigma, subpixel, demean=demean).shifts(block)

        ref = dask.delayed(np.asarray)(arr[reference_frame])
        parts = [dask.delayed(measure)(b, ref) for b in arr.to_delayed().ravel()]
        return np.concatenate(dask.compute(*parts), axis=0)
    corr = _Correlator(_frame(data, reference_frame), shape, max_shift, sigma, subpixel, demean=demean)
    return np.concatenate([_threaded(corr.shifts, b) for _, _, b in blocks.iter_blocks(data)], axis=0)


def _threaded(func: Callable[[np.ndarray], np.ndarray], frames: np.ndarray) -> np.ndarray:
    """``func`` over runs of frames on the cores (numpy and pocketfft release the GIL):
    every stage of the pass runs in parallel, not only the FFTs."""
    n, threads = frames.shape[0], blocks.workers()
    if threads == 1 or n <= _BATCH:
        return func(frames)
    step_ = max(_BATCH, -(-n // (threads * 4)) // _BATCH * _BATCH)
    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(func, [frames[a : a + step_] for a in range(0, n, step_)]))
    return np.concatenate(parts, axis=0)


def limit_jumps(raw: np.ndarray, reference_frame: int, max_jump: float | None, *, integer: bool) -> np.ndarray:
    """playNano's ``max_jump`` rule, in frame order: frame 1 is clipped to within
    ``max_jump`` of frame 0; from frame 2 on an axis that jumps more than ``max_jump`` from
    the previous frame takes the linear extrapolation of the two before."""
    shifts = np.zeros_like(raw)
    for i in range(raw.shape[0]):
        if i == reference_frame:
            continue
        d = raw[i].copy()
        if max_jump is not None:
            if i == 1:
                d = shifts[0] + np.clip(d - shifts[0], -max_jump, max_jump)
            elif i >= 2:
                expected = 2 * shifts[i - 1] - shifts[i - 2]
                if integer:
                    expected = np.trunc(expected)
                jump = np.abs(d - shifts[i - 1]) > max_jump
                d[jump] = expected[jump]
        shifts[i] = d
    return shifts


# --------------------------------------------------------------------------------------
# applying shifts
# --------------------------------------------------------------------------------------
def _canvas(shifts: np.ndarray, size: int) -> tuple[int, int]:
    """(origin, length): where the reference's pixel 0 sits on a canvas holding every frame."""
    eps = 1e-9
    origin = -math.floor(float(shifts.min()) + eps)
    return origin, size + math.floor(float(shifts.max()) + origin + eps)


def _place(frame: np.ndarray, top: float, left: float, out: np.ndarray) -> None:
    """Write ``frame`` (float) into the canvas ``out`` with its pixel (0, 0) at (top, left),
    bilinear between pixels; a canvas pixel is NaN unless every sample it needs is inside
    the frame (a fractional shift loses the first row or column)."""
    ty, tx = math.floor(top + 1e-9), math.floor(left + 1e-9)
    fy, fx = top - ty, left - tx
    g = frame
    if fy > 1e-9:  # canvas row ty + 1 + k lies between frame rows k and k + 1
        g, ty = (1 - fy) * g[1:] + fy * g[:-1], ty + 1
    if fx > 1e-9:
        g, tx = (1 - fx) * g[:, 1:] + fx * g[:, :-1], tx + 1
    h, w = g.shape
    y0, x0 = max(ty, 0), max(tx, 0)
    y1, x1 = min(ty + h, out.shape[0]), min(tx + w, out.shape[1])
    if y1 <= y0 or x1 <= x0:
        out.fill(np.nan)
        return
    out[y0:y1, x0:x1] = g[y0 - ty : y1 - ty, x0 - tx : x1 - tx]
    out[:y0], out[y1:], out[y0:y1, :x0], out[y0:y1, x1:] = np.nan, np.nan, np.nan, np.nan  # the borders only


def _shift_block(block: np.ndarray, tops: np.ndarray, lefts: np.ndarray, shape: tuple[int, int], dtype: np.dtype, threads: int = 1) -> np.ndarray:
    out = np.empty((block.shape[0], *shape), dtype=dtype)

    def place(run: range) -> None:
        for i in run:
            _place(block[i].astype(dtype, copy=False), float(tops[i]), float(lefts[i]), out[i])

    n = block.shape[0]
    if threads > 1 and n > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(place, [range(a, min(n, a + 16)) for a in range(0, n, 16)]))
    else:
        place(range(n))
    return out


def _shifted(data: Any, tops: np.ndarray, lefts: np.ndarray, shape: tuple[int, int], dtype: np.dtype) -> Any:
    """Every frame placed on the canvas: lazily (``map_blocks``) for dask data."""
    if is_dask(data):
        arr = data.rechunk({1: -1, 2: -1})

        def run(block: np.ndarray, block_info: Any = None) -> np.ndarray:
            a = int(block_info[0]["array-location"][0][0]) if block_info else 0
            return _shift_block(block, tops[a : a + block.shape[0]], lefts[a : a + block.shape[0]], shape, dtype)

        return arr.map_blocks(run, dtype=dtype, chunks=(arr.chunks[0], (shape[0],), (shape[1],)), meta=np.empty((0, 0, 0), dtype))
    return _shift_block(np.asarray(data), tops, lefts, shape, dtype, threads=blocks.workers())


def _embed(data: Any, top: int, left: int, shape: tuple[int, int], fill: Any) -> Any:
    """A side array (kept layer) put unshifted at its place on the canvas (padding only)."""
    h, w = data.shape[1:]
    pads = ((0, 0), (top, shape[0] - h - top), (left, shape[1] - w - left))
    if is_dask(data):
        import dask.array as dsa

        return dsa.pad(data, pads, mode="constant", constant_values=fill)
    return np.pad(np.asarray(data), pads, mode="constant", constant_values=fill)


def apply_shifts(
    da: xr.DataArray, shifts: np.ndarray, *, name: str, params: dict[str, Any], keep_layer: bool = False, extra: dict[str, Any] | None = None
) -> xr.DataArray:
    """The stack with frame ``i`` shifted by ``shifts[i]`` (pixels, (dy, dx)) on a canvas
    that holds every frame; the coordinates stay the reference's, masks move with the
    data, kept layers stay where they were; the shifts are recorded along ``time``."""
    model.check_stack(da, name)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(da.sizes[conventions.TIME], 2)
    h, w = da.sizes[conventions.Y], da.sizes[conventions.X]
    oy, hc = _canvas(shifts[:, 0], h)
    ox, wc = _canvas(shifts[:, 1], w)
    tops, lefts = oy + shifts[:, 0], ox + shifts[:, 1]
    dtype = np.dtype(da.dtype) if np.dtype(da.dtype).kind == "f" else np.dtype(np.float64)
    data = _shifted(da.variable._data if is_dask(da) else da.values, tops, lefts, (hc, wc), dtype)
    dy, dx = model.pixel_size_nm(da)
    y0 = float(da.coords[conventions.Y].values[0]) if conventions.Y in da.coords else 0.0
    x0 = float(da.coords[conventions.X].values[0]) if conventions.X in da.coords else 0.0
    coords: dict[str, Any] = {
        conventions.Y: (conventions.Y, y0 + (np.arange(hc) - oy) * dy, dict(da.coords[conventions.Y].attrs) if conventions.Y in da.coords else {"units": "nm"}),
        conventions.X: (conventions.X, x0 + (np.arange(wc) - ox) * dx, dict(da.coords[conventions.X].attrs) if conventions.X in da.coords else {"units": "nm"}),
    }
    for key, c in da.coords.items():
        if key in (conventions.Y, conventions.X) or c.dims == (conventions.TIME,) or c.dims == ():
            continue
        if c.dims != conventions.DIMS:
            raise StackError(f"{name}: coordinate {key!r} over {c.dims} cannot follow the alignment; drop it first")
        src = c.variable._data if is_dask(c.variable) else c.values
        if str(key).startswith(conventions.MASK_PREFIX):
            moved = _shifted(src.astype(np.float32), tops, lefts, (hc, wc), np.dtype(np.float32))
            coords[str(key)] = (conventions.DIMS, moved >= 0.5, dict(c.attrs))
        else:
            fill = np.nan if np.dtype(c.dtype).kind == "f" else 0
            coords[str(key)] = (conventions.DIMS, _embed(src, oy, ox, (hc, wc), fill), dict(c.attrs))
    recs = provenance.records(da)
    index = _step_index(recs)
    kept = None
    if keep_layer:
        kept = current_layer_name(recs)
        if kept in model.layers(da):
            kept = f"step_{index}_{name}_input"
        values: Any = da.variable._data if is_dask(da) else da.values
        coords[conventions.layer_coord(kept)] = (conventions.DIMS, _embed(values.astype(dtype), oy, ox, (hc, wc), np.nan), {})
    total = np.column_stack([shifts[:, 0] * dy, shifts[:, 1] * dx])
    for col, key, axis in ((0, SHIFT_Y, "y"), (1, SHIFT_X, "x")):
        before = np.asarray(da.coords[key].values, dtype=np.float64) if key in da.coords else 0.0
        attrs = {"units": "nm", "long_name": f"drift correction applied along {axis}"}
        coords[key] = (conventions.TIME, before + total[:, col], attrs)
    keep = {k: v for k, v in da.coords.items() if k == conventions.TIME or (v.dims == (conventions.TIME,) and k not in (SHIFT_Y, SHIFT_X)) or v.dims == ()}
    new = xr.DataArray(data, dims=conventions.DIMS, coords={**keep, **coords}, name=da.name, attrs=dict(da.attrs))
    record = provenance.make_record(
        "step",
        index=index,
        name=name,
        params=params,
        function=name,
        module=__name__,
        per_frame=0,
        output_key=f"step_{index}_{name}",
        shifts_px=shifts.tolist() if shifts.shape[0] <= 1000 else None,
        canvas=[hc, wc],
        reference_offset_px=[oy, ox],
        **(extra or {}),
        **({"kept_layer": kept} if kept else {}),
    )
    return provenance.append(new, record)


def _finish(out: xr.DataArray, shifts: np.ndarray, frame: tuple[int, int], mode: str, name: str) -> xr.DataArray:
    """playNano's ``mode``: ``pad`` keeps the canvas, ``crop`` the box every frame covers,
    ``crop_square`` the largest centred square inside it."""
    if mode == "pad":
        return out
    box = valid_box(shifts, frame, (_canvas(shifts[:, 0], 0)[0], _canvas(shifts[:, 1], 0)[0]))
    if mode == "crop_square":
        box = square_box(box)
    cropped = crop_box(out, box)
    recs = provenance.records(cropped)
    recs[-1]["crop_px"] = list(box)  # the canvas box kept: part of this step's record
    return provenance.with_records(cropped, recs)


def _check(da: xr.DataArray, name: str, mode: str, max_shift: Any, max_jump: Any) -> None:
    model.check_stack(da, name)
    if mode not in ("pad", "crop", "crop_square"):
        raise StackError(f"{name} mode must be 'pad', 'crop' or 'crop_square', got {mode!r}")
    for label, v in (("max_shift", max_shift), ("max_jump", max_jump)):
        if v is not None and not (isinstance(v, (int, float, np.integer, np.floating)) and v >= 0):
            raise StackError(f"{name} {label} must be a non-negative number or None, got {v!r}")


@step("edit")
def align_frames(
    da: xr.DataArray,
    reference_frame: int = 0,
    method: str = "fft_cross_correlation",
    mode: str = "pad",
    debug: bool = False,
    max_shift: int | None = None,
    pre_filter_sigma: float | None = None,
    max_jump: int | None = None,
    *,
    subpixel: bool = True,
    keep_layer: bool = False,
) -> xr.DataArray:
    """Correct drift: shift every frame onto the reference frame by FFT cross-correlation (sub-pixel)."""
    _check(da, "align_frames", mode, max_shift, max_jump)
    n = da.sizes[conventions.TIME]
    if not (isinstance(reference_frame, (int, np.integer)) and 0 <= reference_frame < n):
        raise StackError(f"align_frames reference_frame must be in [0, {n - 1}], got {reference_frame!r}")
    if method not in ("fft_cross_correlation", "full_cross_correlation"):
        raise StackError(f"align_frames method must be 'fft_cross_correlation' or 'full_cross_correlation', got {method!r}")
    # playNano's full_cross_correlation correlates the frames as they are, without their means
    raw = _raw_shifts(da, int(reference_frame), max_shift, pre_filter_sigma, bool(subpixel), demean=method == "fft_cross_correlation")
    if max_shift is not None:
        raw = np.clip(raw, -max_shift, max_shift)
    shifts = limit_jumps(raw, int(reference_frame), max_jump, integer=not subpixel)
    params = {"reference_frame": int(reference_frame), "method": method, "mode": mode, "max_shift": max_shift,
              "pre_filter_sigma": pre_filter_sigma, "max_jump": max_jump, "subpixel": int(bool(subpixel))}  # fmt: skip
    out = apply_shifts(da, shifts, name="align_frames", params=params, keep_layer=keep_layer)
    return _finish(out, shifts, (da.sizes[conventions.Y], da.sizes[conventions.X]), mode, "align_frames")
