"""Drift correction against a rolling reference (playNano's ``rolling_frame_align``).

The reference is the mean of the last ``window`` aligned frames, so frames are measured in
order: one pass, a chain of dask tasks (one compute) for dask stacks. The correlation, the
limits and how shifts are applied are :mod:`xafm.processing.drift`'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..core import blocks, conventions
from ..core.blocks import is_dask
from ..exceptions import StackError
from .catalogue import step
from .drift import _check, _Correlator, _finish, _place, apply_shifts


class _Rolling:
    """playNano's rolling reference: the mean of the last ``window`` aligned frames on a
    canvas with a margin of ``max_shift`` (else half the frame) around the first frame.
    ``feed`` measures a block of frames in order, so a chain of blocks is one pass."""

    def __init__(self, shape: tuple[int, int], window: int, max_shift: int | None, sigma: float | None, max_jump: int | None, subpixel: bool):
        self.h, self.w = shape
        self.window, self.sigma, self.max_jump, self.subpixel = window, sigma, max_jump, subpixel
        self.max_shift = max_shift
        self.margin = int(max_shift) if max_shift is not None else max(shape) // 2
        canvas = (self.h + 2 * self.margin, self.w + 2 * self.margin)
        self.total = np.zeros(canvas, dtype=np.float64)
        self.count = np.zeros(canvas, dtype=np.int64)
        self.recent: list[np.ndarray] = []  # the last frames as placed on the canvas
        self.shifts: list[np.ndarray] = []

    def _add(self, placed: np.ndarray, sign: int) -> None:
        finite = np.isfinite(placed)
        self.total += sign * np.where(finite, placed, 0)
        self.count += sign * finite

    def feed(self, block: np.ndarray) -> np.ndarray:
        frames = np.asarray(block, dtype=np.float32)
        if self.sigma is not None:
            from scipy.ndimage import gaussian_filter

            frames = gaussian_filter(frames, sigma=(0, float(self.sigma), float(self.sigma)))
        out = np.zeros((frames.shape[0], 2), dtype=np.float64)
        for j, frame in enumerate(frames):
            i = len(self.shifts)
            d = np.zeros(2)
            if i > 0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    ref = np.where(self.count > 0, self.total / np.maximum(self.count, 1), np.nan)
                corr = _Correlator(ref, (self.h, self.w), self.margin, None, self.subpixel, center=(self.margin, self.margin))
                d = corr.shifts(frame[None])[0]
                if self.max_jump is not None and i >= 2:
                    expected = 2 * self.shifts[-1] - self.shifts[-2]
                    expected = expected if self.subpixel else np.trunc(expected)
                    jump = np.abs(d - self.shifts[-1]) > self.max_jump
                    d[jump] = expected[jump]
                if self.max_shift is not None:
                    d = np.clip(d, -self.max_shift, self.max_shift)
            self.shifts.append(d)
            out[j] = d
            placed = np.empty(self.total.shape, np.float32)
            _place(frame, self.margin + d[0], self.margin + d[1], placed)
            self._add(placed, +1)
            self.recent.append(placed)
            if len(self.recent) > self.window:
                self._add(self.recent.pop(0), -1)
        return out


def _feed(state: _Rolling, block: np.ndarray) -> tuple[_Rolling, np.ndarray]:
    return state, state.feed(block)


def rolling_shifts(da: xr.DataArray, window: int, max_shift: int | None, sigma: float | None, max_jump: int | None, subpixel: bool) -> np.ndarray:
    """The rolling alignment's shifts: one pass in frame order (a chain of dask tasks, one compute)."""
    shape = (da.sizes[conventions.Y], da.sizes[conventions.X])
    if is_dask(da):
        import dask  # a dask stack: dask is imported already

        arr = da.data.rechunk({1: -1, 2: -1})
        state: Any = dask.delayed(_Rolling, pure=False)(shape, window, max_shift, sigma, max_jump, subpixel)
        parts = []
        for b in arr.to_delayed().ravel():
            res = dask.delayed(_feed, pure=False, nout=2)(state, b)
            state, part = res
            parts.append(part)
        return np.concatenate(dask.compute(*parts), axis=0)
    roll = _Rolling(shape, window, max_shift, sigma, max_jump, subpixel)
    return np.concatenate([roll.feed(b) for _, _, b in blocks.iter_blocks(da.variable)], axis=0)


@step("edit")
def rolling_frame_align(
    da: xr.DataArray,
    window: int = 5,
    mode: str = "pad",
    debug: bool = False,
    max_shift: int | None = None,
    pre_filter_sigma: float | None = None,
    max_jump: int | None = None,
    *,
    subpixel: bool = True,
    keep_layer: bool = False,
) -> xr.DataArray:
    """Correct drift against a rolling reference: the mean of the last ``window`` aligned frames."""
    _check(da, "rolling_frame_align", mode, max_shift, max_jump)
    if not (isinstance(window, (int, np.integer)) and window >= 1):
        raise StackError(f"rolling_frame_align window must be an integer >= 1, got {window!r}")
    shifts = rolling_shifts(da, int(window), max_shift, pre_filter_sigma, max_jump, bool(subpixel))
    params = {"window": int(window), "mode": mode, "max_shift": max_shift, "pre_filter_sigma": pre_filter_sigma,
              "max_jump": max_jump, "subpixel": int(bool(subpixel))}  # fmt: skip
    out = apply_shifts(da, shifts, name="rolling_frame_align", params=params, keep_layer=keep_layer)
    return _finish(out, shifts, (da.sizes[conventions.Y], da.sizes[conventions.X]), mode, "rolling_frame_align")
