"""numpy-backed xarray Variables made without xarray's duck-array checks.

A module of its own, below the data model and the lazy arrays that both use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr


def variable(dims: tuple[str, ...], values: Any, attrs: Mapping[str, Any] | None = None, *, index: bool = False) -> xr.Variable:
    """``xr.Variable(dims, values, attrs)``, without importing dask and pint for a numpy array.

    xarray asks of every array a Variable is made of (``as_compatible_data``) whether it
    is a dask array, and of every dimension coordinate (``safe_cast_to_index``) whether
    it is a pint quantity: the first ask imports the package when it is installed (dask
    and, through it, scipy: 1-3 s of a first open). A numpy array of numbers or strings
    (also an object array of ``str``, as xafm keeps variable-length strings) needs
    neither check, so it is kept as it is (``fastpath``), and a dimension coordinate
    (``index=True``) is given as the pandas Index xarray would make of it. Anything else
    (dates among objects, which xarray converts) goes through xarray's checks.
    ``tests/test_imports.py`` holds this.
    """
    attrs = dict(attrs or {})
    plain = type(values) is np.ndarray and (
        values.dtype.kind in "biufcUS" or (values.dtype.kind == "O" and all(type(v) is str for v in values.flat))
    )
    if not plain:
        return xr.Variable(dims, values, attrs)
    if index and values.ndim == 1 and values.dtype != np.float16:  # pandas has no float16 Index
        import pandas as pd

        return xr.Variable(dims, pd.Index(values, dtype=values.dtype if values.dtype.kind == "O" else None), attrs)
    return xr.Variable(dims, values, attrs, fastpath=True)
