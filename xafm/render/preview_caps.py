"""What a notebook preview shows of a stack: at most so many frames and pixels.

A preview's bytes are embedded (base64) in the notebook: 1000 frames of 512 x 512 made
215 MB of inline HTML, more than Jupyter or a browser handles. :func:`capped` takes every
k-th frame (evenly over the whole stack, so the preview spans the whole time course, which
the first N frames would not) and shrinks frames beyond a pixel budget (a lower upscale
factor first, then means over n x n blocks of pixels), lazily, so only the frames shown are
read or computed. See ``docs/animation.md`` ("Notebook preview").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import xarray as xr

from ..core import model
from ..core.conventions import TIME, X, Y
from ..exceptions import RenderError
from .frames import display_shape
from .options import RenderOptions

#: Frames a preview shows by default (every k-th beyond)
DEFAULT_MAX_FRAMES = 100
#: Display pixels per frame a preview shows by default (colour bar margin excluded)
DEFAULT_MAX_PIXELS = 320 * 320


def _check_cap(name: str, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise RenderError(f"{name} must be a positive integer or None, got {v!r}")
    return int(v)


def capped(da: xr.DataArray, render: RenderOptions, *, max_frames: Any, max_pixels: Any) -> tuple[xr.DataArray, RenderOptions, str]:
    """The (lazy) stack and options a preview renders within the caps, and a note of what
    was left out ("" when nothing was)."""
    max_frames, max_pixels = _check_cap("max_frames", max_frames), _check_cap("max_pixels", max_pixels)
    notes = []
    n = int(da.sizes.get(TIME, 1))
    if max_frames is not None and TIME in da.dims and n > max_frames:
        step = math.ceil(n / max_frames)
        da = da.isel({TIME: slice(None, None, step)})
        notes.append(f"showing {int(da.sizes[TIME])} of {n} frames, every {_ordinal(step)}")
    if max_pixels is not None:
        h, w = int(da.sizes[Y]), int(da.sizes[X])
        k, H, W = display_shape(h, w, model.pixel_size_nm(da), render.upscale)
        if H * W > max_pixels:
            while k > 1 and H * W > max_pixels:  # grow small frames less
                k -= 1
                _, H, W = display_shape(h, w, model.pixel_size_nm(da), k)
            render = dataclasses.replace(render, upscale=k)
        if H * W > max_pixels:  # the frames themselves are too large: means over s x s blocks
            pixel_nm = model.pixel_size_nm(da)
            s = max(2, math.ceil(math.sqrt(H * W / max_pixels)))
            while s < max(h, w) and math.prod(display_shape(max(1, h // s), max(1, w // s), pixel_nm, 1)[1:]) > max_pixels:
                s += 1
            da = _block_means(da, min(s, h), min(s, w))
            _, H, W = display_shape(int(da.sizes[Y]), int(da.sizes[X]), model.pixel_size_nm(da), 1)
            notes.append(f"downscaled to {W} x {H} (means of {s} x {s} pixels)")
    return da, render, "; ".join(notes)


def _block_means(da: xr.DataArray, sy: int, sx: int) -> xr.DataArray:
    """Means over sy x sx pixel blocks (a block with NaN is NaN), lazily; the y/x
    coordinates are the blocks' centres, other coordinates on y/x (masks, layers) are
    dropped (a preview shows the values only). Reshaping, 3-4x faster than xarray's
    NaN-skipping ``coarsen().mean()``."""
    extra = [c for c in da.coords if c not in da.dims and set(da[c].dims) & {Y, X}]
    da = da.drop_vars(extra)
    blocks = da.coarsen({Y: sy, X: sx}, boundary="trim")
    out = blocks.construct({Y: (Y, "_by"), X: (X, "_bx")}).mean(("_by", "_bx"), skipna=False, keep_attrs=True)
    centres = {d: da[d].coarsen({d: n}, boundary="trim").mean() for d, n in ((Y, sy), (X, sx)) if d in da.coords}
    return out.assign_coords(centres)


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"
