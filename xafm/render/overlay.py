"""Annotations drawn into frames as palette indices: the scale bar with its label and the
frame time, as white text outlined in black so it reads on any colour.

Text is Pillow's built-in font without antialiasing, so only palette colours appear. The
scale bar and its label are rendered once per export; a time label is composed from
cached glyphs, so a new frame time costs a few small array ORs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .palette import BG_INDEX, FG_INDEX


def nice_length(max_nm: float) -> float:
    """The largest 1-2-5 x 10^n length not above ``max_nm``."""
    if not max_nm > 0:
        return 0.0
    e = math.floor(math.log10(max_nm))
    for m in (5, 2, 1):
        if m * 10**e <= max_nm:
            return float(m * 10**e)
    return float(10 ** (e - 1) * 5)


def auto_length(width_nm: float, max_nm: float) -> float:
    """The 1-2-5 x 10^n length nearest (in ratio) to a fifth of ``width_nm`` and not above
    ``max_nm``: 20 nm on a 100 nm frame, 50 nm on 300 nm, 1 um on 5 um."""
    target = width_nm / 5
    if not (target > 0 and max_nm > 0):
        return 0.0
    e = math.floor(math.log10(target))
    candidates = [m * 10.0**k for k in (e - 1, e, e + 1) for m in (1, 2, 5)]
    fitting = [c for c in candidates if c <= max_nm]
    if not fitting:
        return nice_length(max_nm)
    return float(min(fitting, key=lambda c: abs(math.log(c / target))))


def length_label(nm: float) -> str:
    if nm >= 1000 and (nm / 1000) == round(nm / 1000, 3):
        return f"{nm / 1000:g} µm"
    return f"{nm:g} nm"


def time_label(t: float) -> str:
    return f"{t:.2f} s"


@functools.lru_cache(maxsize=16)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # Pillow without FreeType
        return ImageFont.load_default()


def font_px_for(side: int) -> int:
    """The annotations' font size (px) on a frame whose shorter side is ``side``."""
    return int(min(64, max(10, round(side * 0.055))))


def margin_for(side: int) -> int:
    """The annotations' distance (px) from the frame's edges."""
    return max(2, round(side * 0.03))


def text_mask(text: str, font: Any, font_px: int) -> np.ndarray:
    """``text`` in ``font`` as a boolean mask cropped to its ink (no antialiasing, so it
    maps to one palette colour); Pillow's small bitmap fallback font is scaled up to
    about ``font_px``."""
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    w, h = max(1, right - left), max(1, bottom - top)
    im = Image.new("L", (int(w), int(h)), 0)
    draw = ImageDraw.Draw(im)
    draw.fontmode = "1"
    draw.text((-left, -top), text, font=font, fill=255)
    mask = np.asarray(im) > 127
    if getattr(font, "size", font_px) < font_px * 0.7:  # bitmap fallback font
        k = max(1, round(font_px / max(1, mask.shape[0])))
        mask = mask.repeat(k, 0).repeat(k, 1)
    return mask


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


_GLYPH_CACHES: dict[tuple[int, int], tuple[dict[str, Any], dict[str, float]]] = {}


def _shared_glyph_caches(font_px: int, outline: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The glyph and kerning caches of one font size and outline width (at most 16 kept)."""
    key = (font_px, outline)
    if key not in _GLYPH_CACHES:
        if len(_GLYPH_CACHES) >= 16:
            _GLYPH_CACHES.clear()
        _GLYPH_CACHES[key] = ({}, {})
    return _GLYPH_CACHES[key]


class _Stamp:
    """Flat pixel indices of a pre-rendered annotation (fill and outline) in the output."""

    __slots__ = ("bg", "fg")

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
        self.font_px = font_px_for(side)
        self.margin = margin_for(side)
        self.outline = max(1, round(self.font_px / 14))
        self.font = _font(self.font_px)
        self.bar_px = bar_px
        self.bar_thickness = max(2, round(self.font_px / 4))
        self._stamps: dict[str, _Stamp | None] = {}
        # glyphs and kerning depend on the font size and outline only: shared by every
        # overlay (and export) of that size, so a new export renders no glyph again
        self._glyphs, self._kerns = _shared_glyph_caches(self.font_px, self.outline)
        self._offsets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._static = self._bar(bar_px, bar_label) if bar_px else None
        self.times = list(times) if times is not None else None

    # -- text ----------------------------------------------------------------------------
    def _text_mask(self, text: str) -> np.ndarray:
        return text_mask(text, self.font, self.font_px)

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

    def _glyph_offsets(self, ch: str) -> tuple[np.ndarray, np.ndarray]:
        """Flat offsets (rows ``stride`` wide) of a glyph's fill and outline pixels from
        its padded top-left corner."""
        if ch not in self._offsets:
            fill, grown = self._glyph(ch)[:2]  # type: ignore[index]
            ys, xs = np.nonzero(fill)
            yo, xo = np.nonzero(grown & ~fill)
            self._offsets[ch] = ((ys * self.stride + xs).astype(np.intp), (yo * self.stride + xo).astype(np.intp))
        return self._offsets[ch]

    def _text_stamp(self, text: str, y0: int, x0: int) -> _Stamp | None:
        """Text with its top-left ink pixel at (y0, x0), composed from cached glyphs: a
        new frame time costs a few small array ORs instead of a Pillow rendering and a
        dilation (dilating a union of glyphs is the union of their dilations). When the
        text lies inside the frame, the glyphs' cached pixel offsets are just shifted:
        outlines first, then fills, as a stamp paints them, so a fill wins over a
        neighbour's outline exactly as in the union."""
        glyphs = [self._glyph(ch) for ch in text]
        if any(g is None for g in glyphs):
            return self._place(self._text_mask(text), y0, x0)
        placed, pen = [], 0.0
        for j, (fill, grown, dx, dy, advance) in enumerate(glyphs):  # type: ignore[misc]
            if j:
                pen += self._kerning(text[j - 1 : j + 1])
            if len(self._glyph_offsets(text[j])[0]):  # it has ink
                placed.append((fill, grown, round(pen) + dx, dy, text[j]))
            pen += advance
        if not placed:
            return None
        r = self.outline
        top = min(p[3] for p in placed)
        left = min(p[2] for p in placed)
        h = max(p[3] + p[0].shape[0] for p in placed) - top
        w = max(p[2] + p[0].shape[1] for p in placed) - left
        Y0, X0 = y0 - r, x0 - r  # the composite's top-left corner in the frame
        if Y0 >= 0 and X0 >= 0 and Y0 + h <= self.shape[0] and X0 + w <= self.shape[1]:
            fgs, bgs = [], []
            for _, _, gx, gy, ch in placed:
                fg, bg = self._glyph_offsets(ch)
                corner = (Y0 + gy - top) * self.stride + X0 + gx - left
                fgs.append(fg + corner)
                bgs.append(bg + corner)
            return _Stamp(np.concatenate(fgs), np.concatenate(bgs))
        fill_all = np.zeros((h, w), dtype=bool)
        grown_all = np.zeros((h, w), dtype=bool)
        for fill, grown, gx, gy, _ in placed:
            sl = (slice(gy - top, gy - top + fill.shape[0]), slice(gx - left, gx - left + fill.shape[1]))
            fill_all[sl] |= fill
            grown_all[sl] |= grown
        return self._stamp(fill_all, grown_all, y0 - r, x0 - r)

    def _bar(self, bar_px: int, label: str) -> _Stamp | None:
        H = self.shape[0]
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
