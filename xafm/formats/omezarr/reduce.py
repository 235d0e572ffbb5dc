"""The arithmetic of writing a pyramid: 2x2 reductions of a block and its finite range.

Both run on every block xafm writes, so both avoid temporaries: a 2x2 mean is four
strided adds (``reshape(...).mean()`` iterates an inner loop of two elements, 4x
slower), the finite range two ``fmin``/``fmax`` reductions (a boolean mask copies the
block). Both give exactly what the straightforward numpy expressions give:

- mean: ``(a00 + a01) + (a10 + a11)`` divided by 4, in float32 for float data up to 4
  bytes, float64 otherwise (integers are then rounded half to even and clipped), the
  order numpy's ``reshape(t, h/2, 2, w/2, 2).mean(axis=(2, 4))`` sums in; where a level
  is one pixel wide numpy sums the four in memory order, ``((a00 + a01) + a10) + a11``,
  and so does this; a zero sum is +0.0, as numpy's sum from its identity gives it
  (``tests/test_omezarr_speed.py`` checks every case against numpy's mean, byte for byte);
- max / min: NaN wins, as ``max`` does; nearest: the top-left pixel;
- finite range: the min and max of the finite values, as ``block[isfinite(block)]``
  gives them (None when nothing is finite); the masked pass still runs when a value is
  infinite or an end of the range is zero (``fmin`` picks another signed zero than ``min``).
"""

from __future__ import annotations

import numpy as np

METHODS = ("mean", "nearest", "max", "min")

Range = tuple[float, float]


def accumulator(dtype: np.dtype) -> np.dtype:
    """What a 2x2 mean of ``dtype`` sums in: float32 for floats up to 4 bytes, else float64."""
    return np.dtype(np.float64 if dtype.itemsize > 4 or dtype.kind != "f" else np.float32)


def downsample_block(block: np.ndarray, method: str, dtype: np.dtype) -> np.ndarray:
    """2x2 reduction in y and x of one (t, 2a, 2b) block."""
    dtype = np.dtype(dtype)
    a00, a01, a10, a11 = block[:, 0::2, 0::2], block[:, 0::2, 1::2], block[:, 1::2, 0::2], block[:, 1::2, 1::2]
    if method == "nearest":
        return np.ascontiguousarray(a00)
    if method in ("max", "min"):
        op = np.maximum if method == "max" else np.minimum
        out = op(a00, a01)
        op(out, a10, out=out)
        op(out, a11, out=out)
        return out.astype(dtype, copy=False)
    acc = accumulator(dtype)
    s = np.add(a00, a01, dtype=acc)
    if block.shape[2] == 2:  # one pixel wide: numpy's mean sums the four in memory order
        np.add(s, a10, out=s, dtype=acc)
        np.add(s, a11, out=s, dtype=acc)
    else:
        np.add(s, np.add(a10, a11, dtype=acc), out=s)
    if dtype.kind == "f":
        np.add(s, acc.type(0), out=s)  # numpy's sum starts at +0: four -0.0 give +0.0
    np.true_divide(s, acc.type(4), out=s)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        np.rint(s, out=s)
        np.clip(s, info.min, info.max, out=s)
    return s.astype(dtype, copy=False)


def finite_range(block: np.ndarray) -> Range | None:
    """Min and max of the finite values of ``block`` (None: none is finite)."""
    if block.size == 0:
        return None
    if block.dtype.kind != "f":
        return float(block.min()), float(block.max())
    lo, hi = np.fmin.reduce(block, axis=None), np.fmax.reduce(block, axis=None)  # NaN skipped
    if np.isfinite(lo) and np.isfinite(hi) and lo != 0 and hi != 0:
        return float(lo), float(hi)
    fin = block[np.isfinite(block)]  # infinities, only NaN, or a zero end (whose sign min/max pick otherwise)
    if fin.size == 0:
        return None
    return float(fin.min()), float(fin.max())
