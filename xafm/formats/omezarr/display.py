"""The omero display window of every image xafm writes: ``start``/``end`` the automatic
z-scale of the animations (the 1st and 99th percentile of the whole stack,
:func:`xafm.core.percentiles.percentiles`), ``min``/``max`` the finite range of the values.

The finite range comes from the write itself (each write task returns the min/max of its
block). The percentiles come from the values themselves when they are in memory (a numpy
stack, in a thread while it is written), else from the histogram the write tasks of a
dask stack made of their tails (:func:`xafm.core.percentiles.block_histogram`) when it
decides them, else from one more streaming pass over the frames just written, read back
from the store block by block. A dask or lazily read stack is thus never computed or read
twice, whatever its graph costs: the store is read instead (docs/formats.md, "omero").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from xarray.core import indexing

from ...core import conventions
from ...core.blocks import raw_data
from ...core.percentiles import ANOTHER_PASS, percentiles, percentiles_of_histogram
from .reader import ZarrArraySource
from .store import Range, merge_ranges

#: The percentiles of the automatic z-scale (as ``xafm.render.colorscale.zscale``'s "auto").
QUANTILES = (1.0, 99.0)


@dataclass(frozen=True)
class Display:
    """What the omero window of one image is made of: the auto z-scale and the finite range."""

    #: 1st / 99th percentile of the finite values (None: no finite value).
    zscale: Range | None
    #: Finite minimum / maximum (None: no finite value).
    range: Range | None

    def merged(self, other: Display) -> Display:
        """The window of an image grown by frames whose window is ``other``: the union of
        both z-scales (never narrower than the exact one of all frames) and of both ranges."""
        return Display(merge_ranges([self.zscale, other.zscale]), merge_ranges([self.range, other.range]))

    def to_json(self) -> dict[str, list[float] | None]:
        return {"zscale": _listed(self.zscale), "range": _listed(self.range)}

    @classmethod
    def from_json(cls, obj: Any) -> Display:
        """A :meth:`to_json` result; anything else (an older store) is no window."""
        if not isinstance(obj, Mapping):
            return cls(None, None)
        return cls(_pair(obj.get("zscale")), _pair(obj.get("range")))

    def omero_window(self) -> dict[str, float]:
        """The omero ``window``: ``start``/``end`` the z-scale, widened like the renderer's
        when both are equal; ``min``/``max`` the range, widened to hold ``start``/``end``.
        ``0..1`` everywhere when nothing is finite (as the renderer's z-scale)."""
        if self.zscale is None:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = self.zscale
            if not hi > lo:  # a constant stack: the renderer widens it the same way
                d = max(abs(lo) * 1e-6, 1e-12)
                lo, hi = lo - d, hi + d
        mn, mx = self.range if self.range is not None else (lo, hi)
        return {"min": min(mn, lo), "max": max(mx, hi), "start": lo, "end": hi}


def _listed(r: Range | None) -> list[float] | None:
    return [float(r[0]), float(r[1])] if r is not None else None


def _pair(obj: Any) -> Range | None:
    if isinstance(obj, list) and len(obj) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in obj):
        return float(obj[0]), float(obj[1])
    return None


def legacy(meta: Mapping[str, Any]) -> Display:
    """The window of a store written before the z-scale: its ``window`` was the finite range."""
    r = _pair(meta.get("window"))
    return Display(r, r)


def stored_frames(root: str, component: str, t0: int, shape: tuple[int, int, int], dtype: np.dtype) -> xr.DataArray:
    """Frames ``t0..`` of a stored (t, y, x) array of ``shape``, lazily (read block by block)."""
    source = ZarrArraySource(os.fspath(root), component, shape, dtype)
    return xr.DataArray(indexing.LazilyIndexedArray(source), dims=conventions.DIMS)[t0:]


def zscale_of(values: xr.DataArray, root: str, component: str, t0: int, dtype: np.dtype, histogram: Any = None) -> Range | None:
    """The auto z-scale of ``values``, just written to ``component`` from frame ``t0`` on:
    from the values when they are a numpy array, else from the histogram the write tasks
    made (``histogram``: binning and parts, :class:`.store.Written`) when it decides them,
    else from the store."""
    if histogram is not None:
        got = percentiles_of_histogram(histogram[1], histogram[0], QUANTILES)
        if got is not ANOTHER_PASS:
            return (float(got[0]), float(got[1])) if isinstance(got, list) else None
    if isinstance(raw_data(values), np.ndarray):
        source: xr.DataArray = values
    else:
        n, ny, nx = (int(s) for s in values.shape)
        source = stored_frames(root, component, t0, (t0 + n, ny, nx), dtype)
    found = percentiles(source, QUANTILES)
    return (float(found[0]), float(found[1])) if found is not None else None
