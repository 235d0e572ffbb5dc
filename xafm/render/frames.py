"""Frames of a stack as annotated palette indices, and those as the colours encoders take.

:class:`FrameRenderer` holds everything fixed for one export (z-scale, palette, upscale
factor, padding, overlays) and streams ``(i, values)`` from numpy, dask or lazy stacks
block by block. A frame becomes 8-bit indices in one vectorised step, is upscaled by an
integer factor with nearest neighbour when small (and one axis resampled when its pixels
are not square, so every output is true to scale: ``display_shape``), and gets its
annotations drawn as indices; GIF and palette PNG store the indices, video and JPEG look
colours up here (RGB, or BT.601 Y/U/V planes through pair tables).
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any

import numpy as np
import xarray as xr

from ..core import model
from ..core.blocks import iter_blocks
from ..core.writable import check_writable
from ..exceptions import RenderError, StackError, XafmWarning
from .colorbar import colorbar_margin, colorbar_width
from .colorscale import zscale_and_finite
from .options import RenderOptions, check_upscale
from .overlay import Overlay, auto_length, length_label, time_label
from .palette import BG_INDEX, N_DATA, NAN_INDEX, build_palette, colormap
from .parallel import block_bytes

#: Frames whose shorter side is below this are upscaled by an integer factor ...
MIN_SIDE = 320
#: ... unless that would make the longer side exceed this.
MAX_SIDE = 2048


def user_stacklevel() -> int:
    """The stacklevel of the first caller outside xafm, so warnings point at user code."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("xafm"):
        frame, level = frame.f_back, level + 1
    return level


def to_indices(
    frame: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None, work: np.ndarray | None = None, *, finite: bool = False
) -> np.ndarray:
    """Palette indices 0-251 of a frame on the scale lo..hi (clipped); NaN/inf -> 252.

    ``finite=True``: the caller knows every value is finite (the z-scale pass found
    so), which skips looking for NaN/inf; integer frames never need it."""
    frame = np.asarray(frame)
    if work is None or work.shape != frame.shape:
        work = np.empty(frame.shape, dtype=np.float32)
    if out is None:
        out = np.empty(frame.shape, dtype=np.uint8)
    scale = N_DATA / (hi - lo) if hi > lo else 0.0
    check = not finite and frame.dtype.kind == "f"
    with np.errstate(invalid="ignore", over="ignore"):
        np.subtract(frame, lo, out=work, casting="unsafe")  # in the input's precision
        work *= scale
        # NaN propagates through minimum and maximum; -inf shows in one, inf in the other
        ok = not check or (math.isfinite(float(np.minimum.reduce(work, axis=None))) and math.isfinite(float(np.maximum.reduce(work, axis=None))))
        if scale == 0.0:
            work += N_DATA / 2
        np.clip(work, 0, N_DATA - 1, out=out, casting="unsafe")  # truncates: floor, as >= 0
    if not ok:
        bad = ~np.isfinite(frame)
        if bad.any():
            out[bad] = NAN_INDEX
    return out


def upscale_factor(h: int, w: int, upscale: Any = "auto") -> int:
    """Integer nearest-neighbour factor: small frames grow until their shorter side reaches
    ``MIN_SIDE`` (so text fits and pixels stay crisp), never past ``MAX_SIDE``."""
    upscale = check_upscale(upscale)
    if isinstance(upscale, int):
        return upscale
    k = max(1, math.ceil(MIN_SIDE / max(1, min(h, w))))
    return max(1, min(k, MAX_SIDE // max(h, w)))


def display_shape(h: int, w: int, pixel_nm: tuple[float, float] = (1.0, 1.0), upscale: Any = "auto") -> tuple[int, int, int]:
    """``(k, H, W)``: the upscale factor and the size of a frame shown true to scale.

    Display pixels are square: the axis with the finer pixels grows by the integer factor
    ``k`` (``upscale_factor`` of the true-to-scale size), the other is resampled (nearest
    neighbour) to ``round(n * its pixel / finer pixel * k)`` display pixels, so the picture
    has the physical aspect. Only when stretching the coarser axis would make the longer
    side exceed both ``MAX_SIDE`` and the frame's own longer side is the finer axis
    subsampled instead. Square pixels give ``(k, h * k, w * k)``.
    """
    dy, dx = (float(v) for v in pixel_nm)
    fine = min(dy, dx)
    hb, wb = h * dy / fine, w * dx / fine  # the true-to-scale size in finer pixels
    k = upscale_factor(max(1, round(hb)), max(1, round(wb)), upscale)
    H, W = max(1, round(hb * k)), max(1, round(wb * k))
    cap = max(MAX_SIDE, h, w)
    if max(H, W) > cap and k == 1:  # an extreme aspect: shrink rather than grow past the cap
        f = cap / max(hb, wb)
        H, W = max(1, round(hb * f)), max(1, round(wb * f))
    return k, H, W


#: k -> an integer of k bytes, every byte 1: a byte times it is k copies of the byte
_SPREAD: dict[int, np.integer[Any]] = {2: np.uint16(0x0101), 4: np.uint32(0x01010101), 8: np.uint64(0x0101010101010101)}


def repeat_columns(a: np.ndarray, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """Each column of a 2-d uint8 array repeated ``k`` times (nearest-neighbour upscaling
    along x), into ``out`` if given. For k = 2, 4, 8 one multiplication of the bytes read
    as a k-byte integer (by 0x0101...) writes all copies at once, 15-50 times faster than
    a 4-d broadcast."""
    ones = _SPREAD.get(k)
    if ones is None:
        return a if k == 1 else np.repeat(a, k, axis=1)  # (faster than a broadcast into out)
    if out is None:
        out = np.empty((a.shape[0], a.shape[1] * k), dtype=np.uint8)
    np.multiply(a, ones, out=out.view(ones.dtype), dtype=ones.dtype)
    return out


def _source_map(n: int, n_out: int, k: int) -> np.ndarray | None:
    """Source index of each of ``n_out`` display pixels along an axis of ``n`` (nearest
    neighbour, pixel centres); None when it is the plain repeat by ``k``."""
    if n_out == n * k:
        return None
    return np.minimum((np.arange(n_out) + 0.5) * (n / n_out), n - 1).astype(np.intp)


def split_yuv420(frame: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y (h, w), U and V (h/2, w/2) planes of a flat yuv420p frame, as views."""
    n = h * w
    return (
        frame[:n].reshape(h, w),
        frame[n : n + n // 4].reshape(h // 2, w // 2),
        frame[n + n // 4 : n + n // 2].reshape(h // 2, w // 2),
    )


def _padded(height: int, width: int, pad_to: int) -> tuple[int, int]:
    """(height, width) grown to multiples of ``pad_to`` (H.264's 4:2:0 chroma needs 2)."""
    return height + (-height) % pad_to, width + (-width) % pad_to


class FrameRenderer:
    """Everything fixed for one export: z-scale, palette, upscale, padding, overlays.

    ``frames()`` streams ``(i, indices)`` from numpy, dask or lazy stacks block by block,
    so memory stays at one block of values plus a few output frames.
    """

    def __init__(self, da: xr.DataArray, options: RenderOptions | None = None, *, pad_to: int = 1, action: str = "rendering"):
        options, da = self._checked(da, options, action)
        self.options = options
        self.da = da
        self.n, h, w = (int(s) for s in da.shape)
        self.cmap = colormap(options.cmap)
        self.palette = build_palette(self.cmap, options.nan_color)
        self._lut32 = np.zeros(256, dtype=np.uint32)
        self._lut32.view(np.uint8).reshape(256, 4)[:, :3] = self.palette
        self._yuv: tuple[np.ndarray, np.ndarray] | None = None
        self._local = threading.local()  # per-thread scratch buffers
        self.pixel_nm = model.pixel_size_nm(da)
        self.k, H, W = display_shape(h, w, self.pixel_nm, options.upscale)
        self.image_shape = (H, W)
        # non-square pixels: rows (or columns) resampled so the picture has the true aspect
        self._rows, self._cols = _source_map(h, H, self.k), _source_map(w, W, self.k)
        self.unit = str(da.attrs.get("units", ""))
        # without a colour bar the z-scale pass is deferred to the first frame, so a writer
        # can start its encoder (ffmpeg) meanwhile; the limits were checked with the options
        self._limits = (options.zmin, options.zmax)
        self._scale: tuple[float, float] | None = None
        self._finite: bool | None = None  # the z-scale pass found every value finite
        # the colour bar's margin widens the frame by what its labels of the z-limits need,
        # so with one the pass runs now (padding for a codec comes after the margin)
        self.colorbar_px = colorbar_width(H, W, *self.zscale(), self.unit) if options.colorbar else 0
        self.shape = _padded(H, W + self.colorbar_px, pad_to)
        self._margin: np.ndarray | None = None  # the colour bar's columns, made once
        self.scale_bar_nm: float | None = None
        bar_px = self._bar_px(options.scale_bar_nm) if options.scale_bar else None
        times = [time_label(t) for t in model.times_s(da)] if options.timestamps else None
        self.overlay = Overlay(
            *self.image_shape,
            bar_px=bar_px,
            bar_label=length_label(self.scale_bar_nm) if bar_px and self.scale_bar_nm else "",
            times=times,
            stride=self.shape[1],
        )

    @staticmethod
    def _checked(da: xr.DataArray, options: RenderOptions | None, action: str) -> tuple[RenderOptions, xr.DataArray]:
        if options is None:
            options = RenderOptions()
        elif not isinstance(options, RenderOptions):
            raise RenderError(f"{action}: the options must be a RenderOptions, got {type(options).__name__}")
        da = check_writable(da, action)  # every renderer feeds a writer (an animation, a preview)
        if da.dtype.kind not in "iuf":
            raise StackError(f"{action} needs numeric values, the stack has dtype {da.dtype}")
        return options, da

    @classmethod
    def output_size(cls, da: xr.DataArray, options: RenderOptions | None = None, *, pad_to: int = 1, action: str = "rendering") -> tuple[int, int]:
        """(width, height) of the frames a renderer of these arguments makes, with the same
        checks but none of its set-up (palette, fonts): for starting an encoder first. With
        a colour bar and an automatic z-scale this makes the z-scale pass (the margin is as
        wide as the labels of the limits): make the renderer instead and take its ``size``."""
        options, da = cls._checked(da, options, action)
        _, H, W = display_shape(int(da.shape[1]), int(da.shape[2]), model.pixel_size_nm(da), options.upscale)
        if options.colorbar:
            lo, hi, _ = zscale_and_finite(da, options.zmin, options.zmax)
            bar = colorbar_width(H, W, lo, hi, str(da.attrs.get("units", "")))
        else:
            bar = 0
        height, width = _padded(H, W + bar, pad_to)
        return width, height

    def margin(self) -> np.ndarray | None:
        """The columns right of the image (colour bar and padding) as palette indices, made
        once (after the z-scale pass, as the labels show its limits); None without a
        colour bar."""
        if self._margin is None and self.colorbar_px:
            H, W = self.image_shape
            lo, hi = self.zscale()
            self._margin = colorbar_margin(H, W, lo, hi, self.unit, total_width=self.shape[1] - W, total_height=self.shape[0])
        return self._margin

    def scratch(self, name: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """A buffer of this thread's, reused from call to call (``name`` tells uses apart):
        fresh arrays of a frame's size cost page faults every frame, as much as the
        arithmetic. What it holds is overwritten by the next call on the same thread."""
        cache: dict[tuple[str, tuple[int, ...], str], np.ndarray] | None = getattr(self._local, "buffers", None)
        if cache is None:
            cache = self._local.buffers = {}
        key = (name, shape, np.dtype(dtype).str)
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = np.empty(shape, dtype=dtype)
        return buf

    @property
    def px_per_nm(self) -> float:
        """Display pixels per nm along x (along y too, within a pixel over the frame)."""
        return self.image_shape[1] / (int(self.da.shape[-1]) * self.pixel_nm[1])

    def _bar_px(self, scale_bar_nm: float | str | None) -> int | None:
        out_w = self.image_shape[1]
        margin = max(2, round(min(self.image_shape) * 0.03))
        room = out_w - 2 * margin
        px_per_nm = self.px_per_nm
        if scale_bar_nm is not None and scale_bar_nm != "auto":
            nm = float(scale_bar_nm)
            px = round(nm * px_per_nm)
            if 1 <= px <= room:
                self.scale_bar_nm = nm
                return int(px)
            warnings.warn(
                f"a {nm:g} nm scale bar is {nm * px_per_nm:.1f} px long, which does not fit a {out_w} px wide frame; "
                "drawing a bar of a length that fits instead (scale_bar_nm='auto' chooses it silently)",
                XafmWarning,
                stacklevel=user_stacklevel(),
            )
        nm = auto_length(out_w / px_per_nm, room / px_per_nm)
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
            lo, hi, self._finite = zscale_and_finite(self.da, *self._limits)
            self._scale = (lo, hi)
        return self._scale

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output frames."""
        return self.shape[1], self.shape[0]

    def indices(self, frame: np.ndarray, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Annotated palette indices of frame ``i`` at output size, into ``out`` (a new
        array if None; safe to call from several threads at once with different ``out``)."""
        lo, hi = self.zscale()
        fin = bool(self._finite)
        if out is None:
            out = np.empty(self.shape, dtype=np.uint8)
        H, W = self.image_shape
        work = self.scratch("work", frame.shape, np.float32)
        if self.shape == self.image_shape and self.k == 1 and self._rows is None and self._cols is None:
            to_indices(frame, lo, hi, out=out, work=work, finite=fin)  # straight into the output: no copy
        else:
            margin = self.margin()
            if margin is not None:  # the colour bar (and any padding): one copy of its columns
                out[:, W:] = margin
                out[H:, :W] = BG_INDEX
            elif self.shape != self.image_shape:  # padded for a codec: black beyond the image
                out[H:] = BG_INDEX
                out[:H, W:] = BG_INDEX
            small = to_indices(frame, lo, hi, out=self.scratch("small", frame.shape), work=work, finite=fin)
            if self._rows is not None:  # non-square pixels: one axis resampled
                small = np.take(small, self._rows, axis=0)
            if self._cols is not None:
                small = np.take(small, self._cols, axis=1)
            wide = small if small.shape[1] == W else repeat_columns(small, self.k, self.scratch("wide", (small.shape[0], W)))
            dest = out[:H, :W]
            if wide.shape[0] == H:
                dest[...] = wide
            else:
                for j in range(self.k):  # k plain row copies: far faster than a 4-d broadcast
                    dest[j :: self.k] = wide
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
        # mode "clip" (a no-op: a uint16 always indexes a 65536 table) is the fastest
        np.take(y2, pairs, out=y_plane.view(np.uint16), mode="clip")
        acc = np.take(uv, pairs[0::2], out=self.scratch("acc", (h // 2, w // 2), np.uint32), mode="clip")
        acc += np.take(uv, pairs[1::2], out=self.scratch("acc2", (h // 2, w // 2), np.uint32), mode="clip")
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
        for a, _, block in iter_blocks(self.da, target_bytes=block_bytes()):
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
            "display_pixel_nm": [float(v) * n / m for v, n, m in zip(self.pixel_nm, self.da.shape[-2:], self.image_shape)],
            "scale_bar_nm": self.scale_bar_nm,
            "timestamps": self.overlay.times is not None,
            "colorbar": self.colorbar_px > 0,
            "nan_color": "#" + bytes(self.palette[NAN_INDEX]).hex(),
        }
