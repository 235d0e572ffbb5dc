"""The colour bar of the animated exports: a height legend in a margin right of the frame.

A vertical strip of the palette's colormap colours (index 0, the low end of the z-scale,
at the bottom; 251, the high end, at the top), the z-limits written at its ends with the
unit ("3310 nm" ... "3360 nm"), white on black. It goes into a margin added to the
frame's right, so no data is covered: the frame grows by :func:`colorbar_width`, which is
what the two labels of the z-limits need (so an export makes its z-scale pass before it
knows its frame size), and the margin is rendered once per export as palette indices, so
a frame costs one copy of the margin's columns. The text is the scale bar's font (Pillow's, no antialiasing), so GIF and palette
PNG hold only palette colours.
"""

from __future__ import annotations

import math

import numpy as np

from ..exceptions import RenderError
from .overlay import _font, font_px_for, margin_for, text_mask
from .palette import BG_INDEX, FG_INDEX, N_DATA

#: The characters a number is written in, where fixed-point notation fits in them.
MAX_CHARS = 7


def limit_labels(lo: float, hi: float, unit: str = "") -> tuple[str, str]:
    """The texts at the bottom and top of the colour bar: both limits with the decimals
    that show about two digits of their difference (so the two differ), fewer where that
    would take more than 7 characters, else in scientific notation; then the unit. A
    limit that rounds to zero is written without a sign."""
    span = abs(hi - lo)
    decimals = max(0, 1 - math.floor(math.log10(span))) if span > 0 and math.isfinite(span) else 2
    texts = []
    for v in (lo, hi):
        for d in range(decimals, -1, -1):
            text = f"{v:.{d}f}"
            if len(text) <= MAX_CHARS and (d == decimals or abs(v) >= 1):  # digits dropped only past the point
                break
        else:
            text = f"{v:.1e}"
        if float(text) == 0:  # "-0" (a limit just below zero, rounded) reads as a sign error
            text = text.lstrip("-")
        texts.append(f"{text} {unit}" if unit else text)
    return texts[0], texts[1]


def _ink_columns(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its blank columns at either end (a font's side bearings)."""
    cols = np.nonzero(mask.any(axis=0))[0]
    return mask[:, cols[0] : cols[-1] + 1] if cols.size else mask


class _Geometry:
    """Where the strip and labels go for frames of ``height`` x ``width`` display pixels
    (the font and margins follow the frame's shorter side, as the other annotations) and
    the labels of the limits ``lo`` and ``hi``: the margin is as wide as they need."""

    def __init__(self, height: int, width: int, lo: float, hi: float, unit: str):
        side = min(height, width)
        self.font_px = font_px_for(side)
        self.font = _font(self.font_px)
        self.margin = margin_for(side)
        self.labels = [_ink_columns(text_mask(text, self.font, self.font_px)) for text in limit_labels(lo, hi, unit)]
        self.text_h = max(m.shape[0] for m in self.labels)
        self.text_w = max(m.shape[1] for m in self.labels)
        self.strip_w = max(6, round(self.font_px * 0.9))
        self.gap = max(3, self.font_px // 3)
        self.strip_x = self.margin
        self.label_x = self.strip_x + self.strip_w + self.gap
        self.width = self.label_x + self.text_w + self.margin
        half = -(-self.text_h // 2)
        self.top = self.margin + half
        self.bottom = max(self.top + 1, height - 1 - self.margin - half)


def colorbar_width(height: int, width: int, lo: float, hi: float, unit: str = "") -> int:
    """Display pixels the colour bar's margin adds to the right of a frame of ``height``
    x ``width`` display pixels, for the z-limits ``lo`` .. ``hi``: the strip and the wider
    of the two labels, with the annotations' margins."""
    return _Geometry(height, width, lo, hi, unit).width


def colorbar_margin(height: int, width: int, lo: float, hi: float, unit: str = "", *, total_width: int | None = None, total_height: int | None = None) -> np.ndarray:
    """The margin as palette indices: ``total_height`` (default ``height``) rows by
    ``total_width`` (default :func:`colorbar_width`, never fewer) columns, black but for
    the strip (rows ``top`` .. ``bottom`` from the colormap's high end to its low end) and
    the limits' labels in white, centred on the strip's ends."""
    g = _Geometry(height, width, lo, hi, unit)
    if total_width is not None and total_width < g.width:
        raise RenderError(f"a colour bar margin of {total_width} px is narrower than its labels need ({g.width} px)")
    out = np.full((total_height or height, total_width or g.width), BG_INDEX, dtype=np.uint8)
    rows = np.arange(g.top, g.bottom + 1)
    levels = np.round((g.bottom - rows) / (g.bottom - g.top) * (N_DATA - 1)).astype(np.uint8)
    out[g.top : g.bottom + 1, g.strip_x : g.strip_x + g.strip_w] = levels[:, None]
    for mask, centre in zip(g.labels, (g.bottom, g.top)):
        y0 = max(0, centre - mask.shape[0] // 2)
        region = out[y0 : y0 + mask.shape[0], g.label_x : g.label_x + mask.shape[1]]  # full width: only a very short frame cuts rows
        region[mask[: region.shape[0]]] = FG_INDEX
    return out
