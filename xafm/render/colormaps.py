"""xafm's AFM colormaps, registered with matplotlib when this module is imported.

``xafm_afm``
    The classic AFM look: black-brown through brown and gold to white. Lightness rises
    monotonically, so height reads the same in greyscale prints.
``xafm_afm_uniform``
    A perceptually uniform variant, built in CIELAB: lightness rises strictly (L* 6 -> 98)
    while the hue turns from brown to gold and the chroma rises and falls smoothly, and
    the entries are spaced at equal colour differences (CIE76 Delta E), so equal height
    steps look equally large everywhere on the scale and greyscale prints keep the order.

Both are also registered reversed (``_r``). ``docs/animation.md`` shows them.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps as _registry
from matplotlib.colors import Colormap, LinearSegmentedColormap, ListedColormap

AFM = "xafm_afm"
AFM_UNIFORM = "xafm_afm_uniform"
NAMES = (AFM, AFM_UNIFORM)

# --------------------------------------------------------------------------------------
# sRGB <-> CIELAB (D65), written out so the colormaps do not depend on an extra package
# --------------------------------------------------------------------------------------
_M_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_M_XYZ_TO_RGB = np.linalg.inv(_M_RGB_TO_XYZ)
_WHITE = _M_RGB_TO_XYZ @ np.ones(3)
_EPS, _KAPPA = 216 / 24389, 24389 / 27


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours in [0, 1], shape (..., 3)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _M_RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (unclipped: out-of-gamut colours fall outside) of CIELAB colours."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    lin = xyz @ _M_XYZ_TO_RGB.T
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.abs(lin) ** (1 / 2.4) * np.sign(lin) - 0.055)


# --------------------------------------------------------------------------------------
# the colormaps
# --------------------------------------------------------------------------------------
#: Control points of the classic map (position, sRGB hex), chosen for rising lightness.
_AFM_POINTS = (
    (0.00, "#0b0502"),
    (0.18, "#3d1a06"),
    (0.38, "#7a3a0b"),
    (0.58, "#b86e14"),
    (0.76, "#e0a92c"),
    (0.90, "#f5dc8a"),
    (1.00, "#ffffff"),
)


def _afm() -> Colormap:
    return LinearSegmentedColormap.from_list(AFM, list(_AFM_POINTS), N=256)


def _uniform_path(n: int = 4096) -> np.ndarray:
    """Dense CIELAB path: L* rising linearly 6 -> 98, hue turning brown (50 deg) -> gold
    (88 deg), chroma ``50 sin(pi t)^1.5`` (zero at both ends), pulled in where it would leave
    the sRGB gamut (L* and hue kept)."""
    t = np.linspace(0.0, 1.0, n)
    hue = np.deg2rad(50 + 38 * t)
    chroma = 50 * np.sin(np.pi * t) ** 1.5
    lab = np.stack([6 + 92 * t, chroma * np.cos(hue), chroma * np.sin(hue)], axis=-1)
    for _ in range(80):
        rgb = lab_to_srgb(lab)
        out = np.any((rgb < 0) | (rgb > 1), axis=-1)
        if not out.any():
            break
        lab[out, 1:] *= 0.97
    return lab


def _uniform() -> Colormap:
    """The path resampled by arc length, so neighbouring entries are equally far apart
    (CIE76 Delta E); L* stays strictly increasing because the path's L* does."""
    lab = _uniform_path()
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(lab, axis=0), axis=1))])
    even = np.linspace(0.0, arc[-1], 256)
    resampled = np.stack([np.interp(even, arc, lab[:, k]) for k in range(3)], axis=-1)
    return ListedColormap(np.clip(lab_to_srgb(resampled), 0.0, 1.0), name=AFM_UNIFORM)


def _register(cmap: Colormap) -> None:
    for c in (cmap, cmap.reversed()):
        if c.name not in _registry:
            _registry.register(c, name=c.name)


for _make in (_afm, _uniform):
    _register(_make())


def get(name: str) -> Colormap:
    """A registered colormap by name (xafm's or any of matplotlib's)."""
    return _registry[name]
