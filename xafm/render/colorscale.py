"""The colour scale (z-scale): the (low, high) values mapped to the ends of the colormap,
from the streaming percentiles of :mod:`xafm.core.percentiles` (so OME-Zarr's display
window and every animation agree). See ``docs/animation.md`` ("Z-scale").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from ..core import percentiles as _percentiles
from .options import check_limits
from .parallel import block_bytes


def percentiles(da: xr.DataArray | np.ndarray, qs: Iterable[float] = (1.0, 99.0), *, max_passes: int = 3) -> list[float] | None:
    """:func:`xafm.core.percentiles.percentiles` in rendering's blocks (``RENDER_BLOCK_BYTES``)."""
    return _percentiles.percentiles(da, qs, max_passes=max_passes, target_bytes=block_bytes())


def zscale(da: xr.DataArray, zmin: Any = "auto", zmax: Any = "auto") -> tuple[float, float]:
    """The (low, high) values mapped to the ends of the colormap.

    ``"auto"``: the 1st / 99th percentile of the whole stack; ``None``: the finite minimum /
    maximum (from the same histogram, so within its precision); a number: itself. NaN and
    inf never take part. A stack without finite values gives (0, 1); equal ends are
    widened slightly so a constant stack shows the middle colour.
    """
    lo, hi, _ = zscale_and_finite(da, zmin, zmax)
    return lo, hi


def zscale_and_finite(da: xr.DataArray, zmin: Any = "auto", zmax: Any = "auto") -> tuple[float, float, bool | None]:
    """:func:`zscale`, and whether its pass found every value finite (None: no pass was
    made, both ends being numbers)."""
    lims: list[Any] = list(check_limits(zmin, zmax))  # "auto"/None replaced by numbers below
    auto_q = ({"auto": 1.0, None: 0.0}, {"auto": 99.0, None: 100.0})
    need = [i for i in (0, 1) if not isinstance(lims[i], float)]
    finite: bool | None = None
    if need:
        found, finite = _percentiles.percentiles_and_finite(da, [auto_q[i][lims[i]] for i in need], target_bytes=block_bytes())
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
    return float(lo), float(hi), finite
