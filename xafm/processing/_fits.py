"""Whole-block kernels for the levelling steps: one numpy/scipy call per block of frames.

Every kernel takes a block ``(frames, y, x)`` (and optionally a boolean mask of the same
shape, True = leave out of the fit) and returns the block's new values in float64 (in
``out`` when given: a float64 array of the block's shape, not overlapping it). They
work on many frames at once, so a dask chunk or a whole in-memory stack costs a few
BLAS/scipy calls instead of a Python loop over frames.

NaN pixels never take part in a fit or a statistic and stay NaN in the output (playNano
lets them poison the whole frame; docs/processing.md, "Differences from playNano").
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np


# --------------------------------------------------------------------------------------
# polynomial surfaces (remove_plane is order 1)
# --------------------------------------------------------------------------------------
def _exponents(order: int) -> list[tuple[int, int]]:
    """The (x power, y power) of every monomial of total degree <= order."""
    return [(i - j, j) for i in range(order + 1) for j in range(i + 1)]


def _unit(n: int) -> np.ndarray:
    """Pixel positions mapped onto [-1, 1] (well conditioned for any frame size); the fitted
    surface is the same as with pixel indices, since polynomials of a given total degree
    are closed under affine changes of coordinates."""
    return np.zeros(1) if n == 1 else np.linspace(-1.0, 1.0, n)


@lru_cache(maxsize=16)
def _design(ny: int, nx: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix ``A`` (pixels, terms) and its pseudo-inverse (terms, pixels)."""
    x, y = _unit(nx), _unit(ny)
    cols = [(y[:, None] ** q * x[None, :] ** p).ravel() for p, q in _exponents(order)]
    design = np.ascontiguousarray(np.stack(cols, axis=1))
    pinv = np.ascontiguousarray(np.linalg.pinv(design))
    design.flags.writeable = pinv.flags.writeable = False
    return design, pinv


@lru_cache(maxsize=16)
def _moments(ny: int, nx: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The monomials up to degree ``2 * order`` (pixels, moments) and, for every pair of
    terms, which moment is their product: the normal equations of a weighted fit are
    ``G[k, l] = sum(w * x^(pk+pl) * y^(qk+ql))``, so one matmul gives every frame's ``G``."""
    terms = _exponents(order)
    products = _exponents(2 * order)
    index = {e: i for i, e in enumerate(products)}
    x, y = _unit(nx), _unit(ny)
    mono = np.stack([(y[:, None] ** q * x[None, :] ** p).ravel() for p, q in products], axis=1)
    pick = np.array([[index[(pk + pl, qk + ql)] for (pl, ql) in terms] for (pk, qk) in terms])
    return np.ascontiguousarray(mono), pick


def _no_nan(values: np.ndarray) -> bool:
    """True when ``values`` hold no NaN or infinity: their sum is finite (one pass, no
    temporary; a sum that overflows only sends finite values down the careful path)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(values)))


def _subtract_plane_full(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The least-squares plane of frames with every pixel finite, in closed form: on a full
    grid with centred coordinates ``1``, ``x`` and ``y`` are orthogonal, so the fit is the
    mean and two projections of the column and row sums (no design matrix, a few passes)."""
    n, ny, nx = z.shape
    x, y = _unit(nx), _unit(ny)
    col = z.sum(axis=1)  # (frames, x)
    row = z.sum(axis=2)  # (frames, y)
    c = row.sum(axis=1) / (ny * nx)
    a = col @ x / (ny * (x @ x)) if nx > 1 else np.zeros(n)
    b = row @ y / (nx * (y @ y)) if ny > 1 else np.zeros(n)
    out = np.subtract(z, (b[:, None] * y[None, :] + c[:, None])[:, :, None], out=out)
    out -= (a[:, None] * x[None, :])[:, None, :]
    return out


def subtract_polynomial(block: np.ndarray, order: int, mask: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Subtract each frame's least-squares polynomial surface of total degree ``order``,
    fitted over the pixels that are finite and not masked (minimum-norm where the pixels
    cannot fix every term; a frame with no such pixel is left as it is)."""
    z = np.asarray(block, dtype=np.float64)
    if order == 1 and mask is None and _no_nan(z):
        return _subtract_plane_full(z, out)
    n, ny, nx = z.shape
    flat = z.reshape(n, ny * nx)
    design, pinv = _design(ny, nx, order)
    res = np.empty_like(flat)
    usable = np.isfinite(flat)
    if mask is not None:
        usable &= ~np.asarray(mask, dtype=bool).reshape(n, ny * nx)
    full = usable.all(axis=1)
    if full.any():
        # every pixel counts: the same pseudo-inverse for every frame, two matmuls
        part = flat[full] if not full.all() else flat
        coeffs = part @ pinv.T
        res[full] = part - coeffs @ design.T
    rest = np.flatnonzero(~full)
    if rest.size:
        w = usable[rest].astype(np.float64)
        zw = np.where(usable[rest], flat[rest], 0.0)
        mono, pick = _moments(ny, nx, order)
        gram = (w @ mono)[:, pick]  # (frames, terms, terms)
        rhs = zw @ design  # (frames, terms)
        scale = np.maximum(np.abs(gram).max(axis=(1, 2)), 1e-300)[:, None, None]
        coeffs = np.einsum("nkl,nl->nk", np.linalg.pinv(gram / scale, rcond=1e-12), rhs) / scale[:, :, 0]
        res[rest] = flat[rest] - coeffs @ design.T
        empty = rest[w.sum(axis=1) == 0]
        res[empty] = flat[empty]
    if out is None:
        return res.reshape(n, ny, nx)
    out[...] = res.reshape(n, ny, nx)
    return out


# --------------------------------------------------------------------------------------
# offsets: rows, frames
# --------------------------------------------------------------------------------------
def _masked(z: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return z if mask is None else np.where(np.asarray(mask, dtype=bool), np.nan, z)


def _median_last(values: np.ndarray) -> np.ndarray:
    """The median along the last axis of NaN-free values, as ``np.median`` computes it (the
    mean of the two middle values), with one selection instead of its three: the lower
    middle value is the largest of the partitioned lower half."""
    k = values.shape[-1]
    if k == 0:
        return np.full(values.shape[:-1] + (1,), np.nan)
    half = k // 2
    part = np.partition(values, half, axis=-1)
    upper = part[..., half]
    if k % 2:
        return upper[..., None]
    lower = part[..., :half].max(axis=-1)
    return ((lower + upper) / 2)[..., None]


def _statistic(values: np.ndarray, axis: tuple[int, ...] | int, method: str) -> np.ndarray:
    """Median or mean along ``axis`` (the rows, 2, or whole frames, (1, 2)) ignoring NaN;
    plain numpy (much faster) when there is no NaN. Nothing to measure gives NaN."""
    if _no_nan(values):
        if method == "mean":
            return values.mean(axis=axis, keepdims=True)
        if axis == 2:
            return _median_last(values)
        n = values.shape[0]
        return _median_last(values.reshape(n, -1)).reshape(n, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        if method == "median":
            return np.nanmedian(values, axis=axis, keepdims=True)
        return np.nanmean(values, axis=axis, keepdims=True)


def subtract_offsets(
    block: np.ndarray, axis: tuple[int, ...] | int, method: str, mask: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Subtract the median or mean along ``axis`` (2: every row; (1, 2): every frame) of the
    finite, unmasked pixels. Where a mask leaves nothing to measure the offset is 0, as in
    playNano's masked filters (a row, or a frame, left as it is); without a mask an all-NaN
    row or frame stays NaN."""
    z = np.asarray(block, dtype=np.float64)
    ref = _statistic(_masked(z, mask), axis, method)
    if mask is not None:
        ref[np.isnan(ref)] = 0.0
    return np.subtract(z, ref, out=out)


# --------------------------------------------------------------------------------------
# smoothing
# --------------------------------------------------------------------------------------
def gaussian(block: np.ndarray, sigma: float, out: np.ndarray | None = None) -> np.ndarray:
    """scipy's Gaussian filter of every frame (``sigma`` in pixels, along y and x only;
    reflected edges, truncated at 4 sigma), the whole block in one call."""
    z = np.asarray(block, dtype=np.float64)
    from scipy import ndimage  # at first use, not at import xafm: scipy.ndimage is slow to import

    return ndimage.gaussian_filter(z, sigma=(0.0, float(sigma), float(sigma)), output=out)


__all__ = ["gaussian", "subtract_offsets", "subtract_polynomial"]
