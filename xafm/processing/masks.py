"""Masks: boolean layers that slice with the stack and that levelling can leave out.

The mask steps are playNano's mask generators (same names, parameters and defaults); each
adds a boolean coordinate and a ``mask`` provenance record. Which mask is *current* (what
``mask="latest"`` means to a levelling step) is read from the provenance, as playNano's
pipeline keeps it: the most recent mask step, until a ``clear`` step, counted from where
the stack was made or read (a file's old masks are never current by themselves).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError
from .apply import _step_index
from .catalogue import get, run, step


# --------------------------------------------------------------------------------------
def _attach_mask(da: xr.DataArray, name: str, mask: Any, record: dict) -> xr.DataArray:
    if isinstance(mask, xr.DataArray):
        mask = mask.transpose(*conventions.DIMS).data if set(mask.dims) == set(conventions.DIMS) else mask.data
    if not is_dask(mask):
        mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(da.shape):
        raise StackError(f"mask {name!r} has shape {tuple(mask.shape)}, the stack has {tuple(da.shape)}")
    if mask.dtype != bool:
        if mask.dtype.kind not in "iub":
            raise StackError(f"mask {name!r} must be boolean, got dtype {mask.dtype}")
        mask = mask.astype(bool)
    new = da.assign_coords({conventions.mask_coord(name): (conventions.DIMS, mask)})
    return provenance.append(new, record)


def with_mask(da: xr.DataArray, name: str, mask: Any) -> xr.DataArray:
    """A stack carrying ``mask`` (a boolean array, or a function of the stack) as ``name``."""
    model.check_stack(da, "with_mask")
    conventions.encode_name(name, "mask name")
    recs = provenance.records(da)
    func = None
    if callable(mask):
        func = mask
        mask = mask(da)
    record = provenance.make_record(
        "mask",
        index=_step_index(recs),
        name=name,
        mask=name,
        params={},
        **({"function": getattr(func, "__qualname__", repr(func)), "module": getattr(func, "__module__", None)} if func else {}),
    )
    return _attach_mask(da, name, mask, record)


def _stack_masks(da: xr.DataArray) -> list[str]:
    return list(model.masks(da))


def current_mask(da: xr.DataArray) -> str | None:
    """The name of the current mask (the most recent mask step since the stack was made or
    read, unless a ``clear`` came after it), or None."""
    present = set(_stack_masks(da))
    for rec in reversed(provenance.records(da)):
        kind = rec.get("type")
        if kind in ("read", "create"):
            return None
        if kind == "mask":
            if rec.get("mask_cleared"):
                return None
            name = rec.get("mask")
            if isinstance(name, str) and name in present:
                return name
    return None


def resolve_mask(da: xr.DataArray, mask: Any) -> str | None:
    """Which mask a step's ``mask=`` means: None/False for none, a mask's name, ``True`` for
    the current one (else the stack's last mask; an error when it has none), ``"latest"``
    for the current one if there is one (playNano's pipeline: a filter uses the active
    mask, and runs unmasked when there is none)."""
    if mask is None or mask is False:
        return None
    names = _stack_masks(da)
    if mask is True or mask == "latest":
        found = current_mask(da)
        if found is None and mask is True:
            if not names:
                raise StackError("mask=True: this stack has no mask (add one with a mask step first)")
            found = names[-1]
        return found
    if isinstance(mask, str):
        if mask not in names:
            raise StackError(f"no mask {mask!r} on this stack; its masks are: {', '.join(names) or 'none'}")
        return mask
    raise StackError(f"mask must be a mask's name, True, 'latest' or None, got {mask!r}")


def _mask_name(da: xr.DataArray, step_name: str, index: int, name: str | None, overlay: str | None) -> str:
    if name:
        return name
    if overlay is None:
        return f"step_{index}_{step_name}"
    # playNano names an overlay after the mask it extends: step_<i>_<that mask's step name>_<this step>
    parts = overlay.split("_")
    base = "_".join(parts[2:]) if len(parts) > 2 and parts[0] == "step" and parts[1].isdigit() else overlay
    return f"step_{index}_{base}_{step_name}"


def _mask_step(
    da: xr.DataArray,
    step_name: str,
    kernel: Callable[[np.ndarray], np.ndarray],
    params: dict[str, Any],
    *,
    name: str | None,
    overlay: Any,
    whole_frames: bool = True,
) -> xr.DataArray:
    """Add the mask ``kernel(block)`` (frame-wise; elementwise when not ``whole_frames``),
    OR-ed with the mask ``overlay`` names (``True``/``"latest"``: the current one) as
    playNano overlays a mask step on the active mask, and record it."""
    model.check_stack(da, step_name)
    base = resolve_mask(da, overlay)
    recs = provenance.records(da)
    index = _step_index(recs)
    name = _mask_name(da, step_name, index, name, base)
    data = da.data
    if is_dask(data):
        if whole_frames:
            data = data.rechunk({1: -1, 2: -1})
        mask = data.map_blocks(kernel, dtype=bool, meta=np.empty((0, 0, 0), bool))
    else:
        mask = kernel(np.asarray(data))
    if base is not None:
        other = da.coords[conventions.mask_coord(base)].transpose(*conventions.DIMS).data
        mask = mask | other
    record = provenance.make_record(
        "mask",
        index=index,
        name=step_name,
        mask=name,
        params={**params, **({"overlay": base} if base is not None else {})},
        module=__name__,
        function=step_name,
    )
    return _attach_mask(da, name, mask, record)


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StackError(f"{what} must be a number, got {value!r}") from None


def _size(value: Any, what: str) -> int:
    number = _number(value, what)
    if isinstance(value, bool) or not (number >= 1 and number == int(number)):
        raise StackError(f"{what} must be a positive integer, got {value!r}")
    return int(number)


# --------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------
@step("mask")
def mask_threshold(
    da: xr.DataArray, threshold: float = 0.0, *, name: str | None = None, above: bool = True, overlay: Any = None
) -> xr.DataArray:
    """Mask the pixels above (or below) ``threshold``, in the stack's units; NaN is never masked."""
    threshold = _number(threshold, "threshold")
    if above:
        return _mask_step(da, "mask_threshold", lambda b: b > threshold, {"threshold": threshold, "above": 1}, name=name, overlay=overlay, whole_frames=False)
    return _mask_step(da, "mask_threshold", lambda b: b < threshold, {"threshold": threshold, "above": 0}, name=name, overlay=overlay, whole_frames=False)


@step("mask")
def mask_below_threshold(da: xr.DataArray, threshold: float = 0.0, *, name: str | None = None, overlay: Any = None) -> xr.DataArray:
    """Mask the pixels below ``threshold``, in the stack's units; NaN is never masked."""
    threshold = _number(threshold, "threshold")
    return _mask_step(da, "mask_below_threshold", lambda b: b < threshold, {"threshold": threshold}, name=name, overlay=overlay, whole_frames=False)


def _frame_stats(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = np.asarray(block, dtype=np.float64)
    if not np.isnan(b).any():
        return b.mean(axis=(1, 2), keepdims=True), b.std(axis=(1, 2), keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames mask nothing
        return np.nanmean(b, axis=(1, 2), keepdims=True), np.nanstd(b, axis=(1, 2), keepdims=True)


@step("mask")
def mask_mean_offset(da: xr.DataArray, factor: float = 1.0, *, name: str | None = None, overlay: Any = None) -> xr.DataArray:
    """Mask the pixels more than ``factor`` standard deviations above their frame's mean."""
    factor = _number(factor, "factor")

    def kernel(block: np.ndarray) -> np.ndarray:
        mean, std = _frame_stats(block)
        return (block - mean) > factor * std

    return _mask_step(da, "mask_mean_offset", kernel, {"factor": factor}, name=name, overlay=overlay)


@step("mask")
def mask_morphological(
    da: xr.DataArray, threshold: float = 0.0, structure_size: int = 3, *, name: str | None = None, overlay: Any = None
) -> xr.DataArray:
    """Mask the pixels with ``|value| > threshold``, closed by a square of ``structure_size`` pixels."""
    threshold = _number(threshold, "threshold")
    size = _size(structure_size, "structure_size")
    structure = np.ones((1, size, size), dtype=bool)  # frame by frame: nothing along time

    def kernel(block: np.ndarray) -> np.ndarray:
        from scipy import ndimage  # at first use, not at import xafm: scipy.ndimage is slow to import

        # scipy's closing with its default border (outside the frame counts as unmasked)
        return np.asarray(ndimage.binary_closing(np.abs(block) > threshold, structure=structure))

    return _mask_step(da, "mask_morphological", kernel, {"threshold": threshold, "structure_size": size}, name=name, overlay=overlay)


def _block_means(block: np.ndarray, size: int) -> np.ndarray:
    """Every pixel's mean over its tile of a ``size`` x ``size`` grid from the top left
    corner (the last tiles cut by the frame's edge), over finite pixels."""
    b = np.asarray(block, dtype=np.float64)
    n, ny, nx = b.shape
    ty, tx = -(-ny // size), -(-nx // size)
    finite = np.isfinite(b)
    vals = np.zeros((n, ty * size, tx * size))
    counts = np.zeros((n, ty * size, tx * size))
    vals[:, :ny, :nx] = np.where(finite, b, 0.0)
    counts[:, :ny, :nx] = finite
    sums = vals.reshape(n, ty, size, tx, size).sum(axis=(2, 4))
    cnt = counts.reshape(n, ty, size, tx, size).sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / cnt
    return np.repeat(np.repeat(means, size, axis=1), size, axis=2)[:, :ny, :nx]


@step("mask")
def mask_adaptive(
    da: xr.DataArray, block_size: int = 15, offset: float = 0.0, *, name: str | None = None, overlay: Any = None
) -> xr.DataArray:
    """Mask the pixels above their ``block_size`` tile's mean plus ``offset``."""
    size = _size(block_size, "block_size")
    offset = _number(offset, "offset")
    return _mask_step(
        da, "mask_adaptive", lambda b: b > _block_means(b, size) + offset, {"block_size": size, "offset": offset}, name=name, overlay=overlay
    )


@step("mask")
def clear(da: xr.DataArray) -> xr.DataArray:
    """Stop using the current mask: following steps with ``mask="latest"`` fit every pixel."""
    model.check_stack(da, "clear")
    record = provenance.make_record("mask", index=_step_index(provenance.records(da)), name="clear", mask=None, mask_cleared=1, params={})
    return provenance.append(da, record)


def run_as_playnano(da: xr.DataArray, name: str, /, **params: Any) -> xr.DataArray:
    """Run step ``name`` by playNano's pipeline rules: a mask step is OR-ed with the current
    mask (``overlay="latest"``), a step that takes a mask uses the current one
    (``mask="latest"``), ``clear`` ends it; parameters given explicitly win."""
    found = get(name)
    valid = found.parameters()
    if found.kind == "mask" and "overlay" in valid:
        params.setdefault("overlay", "latest")
    elif "mask" in valid:
        params.setdefault("mask", "latest")
    return run(da, found.name, **params)
