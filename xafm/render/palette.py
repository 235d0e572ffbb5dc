"""The 256-colour palette every rendered frame is drawn in: colormap colours, then the
reserved entries for NaN and the annotations.

Why 252 data colours: GIF and palette PNG hold at most 256 colours, and NaN and the
annotations need their own.

====== =====================================================
0-251  the colormap, low to high
252    NaN / inf (a colour far from every colormap entry)
253    annotation foreground (white)
254    annotation outline and padding (black)
255    unused (same as 252)
====== =====================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import RenderError

N_DATA = 252
NAN_INDEX = 252
FG_INDEX = 253
BG_INDEX = 254
SPARE_INDEX = 255

DEFAULT_CMAP = "xafm_afm"
#: Candidate NaN colours, in order of preference; the one farthest from the colormap wins.
NAN_CANDIDATES = ("#00c8ff", "#ff00ff", "#00ff40", "#ff2020", "#2040ff")


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


def rgb8(color: Any) -> np.ndarray:
    """A matplotlib colour (name, hex, RGB tuple) as three uint8."""
    from matplotlib.colors import to_rgb

    try:
        return np.round(np.asarray(to_rgb(color)) * 255).astype(np.uint8)
    except ValueError:
        raise RenderError(f"not a colour: {color!r}") from None


def nan_colour_for(lut: np.ndarray) -> np.ndarray:
    """The candidate colour farthest (in RGB) from every colour of ``lut``."""
    best, best_d = None, -1.0
    for cand in NAN_CANDIDATES:
        rgb = rgb8(cand).astype(float)
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
    nan = nan_colour_for(lut) if isinstance(nan_color, str) and nan_color == "auto" else rgb8(nan_color)
    pal[NAN_INDEX] = pal[SPARE_INDEX] = nan
    pal[FG_INDEX] = 255
    pal[BG_INDEX] = 0
    return pal
