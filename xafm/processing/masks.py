"""Masks: boolean layers that slice with the stack and that levelling can leave out."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model, provenance
from ..core.blocks import is_dask
from ..exceptions import StackError
from .apply import _step_index
from .catalogue import step


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


@step("mask")
def mask_threshold(da: xr.DataArray, threshold: float, *, name: str | None = None, above: bool = True) -> xr.DataArray:
    """Mask the pixels above (or below) ``threshold``, in the stack's units; NaN is never masked."""
    model.check_stack(da, "mask_threshold")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise StackError(f"threshold must be a number, got {threshold!r}") from None
    recs = provenance.records(da)
    index = _step_index(recs)
    name = name or f"step_{index}_mask_threshold"
    data = da.data
    mask = data > threshold if above else data < threshold
    record = provenance.make_record(
        "mask",
        index=index,
        name="mask_threshold",
        mask=name,
        params={"threshold": threshold, "above": int(bool(above))},
        module=__name__,
        function="mask_threshold",
    )
    return _attach_mask(da, name, mask, record)
