"""What a writer refuses: stacks that no file could give back as they are.

A file of zero frames or of zero-pixel frames cannot be read again (the OME-Zarr store
and OME-TIFF become unreadable), and times that are not finite and strictly increasing
are not stack times: the bundle and TIFF readers would replace them by the frame index,
so the stack read back would not be the stack written. ``xafm.stack`` refuses such
stacks as it builds them; a DataArray built by hand, or reordered with
``.isel(time=[2, 0, 1])``, reaches the writers without that check, so every writer runs
:func:`check_writable` on its stack before it creates anything at the destination.

Only the time coordinate is looked at (it is in memory, an index): the values are never
read or computed, so a dask stack stays lazy.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from ..exceptions import StackError
from . import model
from .conventions import TIME


def refusal(da: xr.DataArray) -> str | None:
    """Why no file could give ``da`` back as it is (None when one can): an empty axis,
    or a time coordinate that is not numbers, finite and strictly increasing."""
    if min((int(s) for s in da.shape), default=1) < 1:
        sizes = ", ".join(f"{d}={int(n)}" for d, n in da.sizes.items())
        return f"the stack is empty ({sizes}); a file needs at least one frame of at least 1x1 pixels"
    if TIME not in da.coords or TIME not in da.dims:
        return None
    coord = da.coords[TIME]
    if coord.dtype.kind not in "iuf":
        return (
            f"its time coordinate has dtype {coord.dtype}; times are seconds as numbers "
            "(for timedelta64 times: da.assign_coords(time=da.time / np.timedelta64(1, 's')))"
        )
    try:
        model.check_times(np.asarray(coord.values), int(da.sizes[TIME]))
    except StackError as exc:
        return (
            f"{exc}, so the file could not give these times back; sort the frames "
            "(da.sortby('time')), drop repeated ones, or give new times (da.assign_coords(time=...))"
        )
    return None


def check_writable(da: Any, action: str, path: str | os.PathLike[str] | None = None) -> xr.DataArray:
    """``da`` as a (time, y, x) stack a file can hold and give back; else a ``StackError``
    naming ``action`` and the destination ``path``."""
    checked = model.check_stack(da, action)
    problem = refusal(checked)
    if problem:
        where = f" {os.fspath(path)}" if path is not None else ""
        raise StackError(f"{action} refuses to write{where}: {problem}")
    return checked
