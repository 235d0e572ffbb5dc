"""The colour bar of the animated exports: a height legend in a margin right of the frame.

A vertical strip of the palette's colormap colours (index 0, the low end of the z-scale,
at the bottom; 251, the high end, at the top), the z-limits written at its ends with the
unit ("3310 nm" ... "3360 nm"), white on black. It goes into a margin added to the
frame's right, so no data is covered: the frame grows by :func:`colorbar_width` (fixed
before the z-scale is known, so a video encoder can be started first), and the margin is
rendered once per export as palette indices, so a frame costs one copy of the margin's
columns. The text is the scale bar's font (Pillow's, no antialiasing), so GIF and palette
PNG hold only palette colours.
"""

from __future__ import annotations

import math

import numpy as np

from .overlay import _font, font_px_for, margin_for, text_mask
from .palette import BG_INDEX, FG_INDEX, N_DATA

#: The widest label the margin is made for (numbers are written in at most 7 characters).
LABEL_TEMPLATE = "-8888.8"


def limit_labels(lo: float, hi: float, unit: str = "") -> tuple[str, str]:
    """The texts at the bottom and top of the colour bar: both limits with the decimals
    that show about two digits of their difference (so the two differ), fewer where that
    would take more than 7 characters, else in scientific notation; then the unit."""
    span = abs(hi - lo)
    decimals = max(0, 1 - math.floor(math.log10(span))) if span > 0 and math.isfinite(span) else 2
    texts = []
    for v in (lo, hi):
        for d in range(decimals, -1, -1):
            text = f"{v:.{d}f}"
            if len(text) <= len(LABEL_TEMPLATE) and (d == decimals or abs(v) >= 1):  # digits dropped only past the point
                break
        else:
            text = f"{v:.1e}"
        texts.append(f"{text} {unit}" if unit else text)
    return texts[0], texts[1]


class _Geometry:
    """Where the strip and labels go for frames of ``height`` x ``width`` display pixels
    (the font and margins follow the frame's shorter side, as the other annotations)."""

    def __init__(self, height: int, width: int, unit: str):
        side = min(height, width)
        self.font_px = font_px_for(side)
        self.font = _font(self.font_px)
        self.margin = margin_for(side)
        self.unit = unit
        template = text_mask(f"{LABEL_TEMPLATE} {unit}" if unit else LABEL_TEMPLATE, self.font, self.font_px)
        self.text_h, self.text_w = template.shape
        self.strip_w = max(6, round(self.font_px * 0.9))
        self.gap = max(3, self.font_px // 3)
        self.strip_x = self.margin
        self.label_x = self.strip_x + self.strip_w + self.gap
        self.width = self.label_x + self.text_w + self.margin
        half = -(-self.text_h // 2)
        self.top = self.margin + half
        self.bottom = max(self.top + 1, height - 1 - self.margin - half)


def colorbar_width(height: int, width: int, unit: str = "") -> int:
    """Display pixels the colour bar's margin adds to the right of a frame of ``height``
    x ``width`` display pixels (whatever the z-limits: it is known before them)."""
    return _Geometry(height, width, unit).width


def colorbar_margin(height: int, width: int, lo: float, hi: float, unit: str = "", *, total_width: int | None = None, total_height: int | None = None) -> np.ndarray:
    """The margin as palette indices: ``total_height`` (default ``height``) rows by
    ``total_width`` (default :func:`colorbar_width`) columns, black but for the strip
    (rows ``top`` .. ``bottom`` from the colormap's high end to its low end) and the
    limits' labels in white, centred on the strip's ends. A label wider than the margin
    (a bitmap fallback font) is clipped."""
    g = _Geometry(height, width, unit)
    out = np.full((total_height or height, total_width or g.width), BG_INDEX, dtype=np.uint8)
    rows = np.arange(g.top, g.bottom + 1)
    levels = np.round((g.bottom - rows) / (g.bottom - g.top) * (N_DATA - 1)).astype(np.uint8)
    out[g.top : g.bottom + 1, g.strip_x : g.strip_x + g.strip_w] = levels[:, None]
    for text, centre in zip(limit_labels(lo, hi, unit), (g.bottom, g.top)):
        mask = text_mask(text, g.font, g.font_px)
        y0 = max(0, centre - mask.shape[0] // 2)
        region = out[y0 : y0 + mask.shape[0], g.label_x : g.label_x + mask.shape[1]]
        region[mask[: region.shape[0], : region.shape[1]]] = FG_INDEX
    return out
