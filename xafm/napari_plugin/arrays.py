"""The array napari gets: a lazily indexed stack that reads what each index selects.

napari takes any array-like with ``shape``, ``dtype``, ``ndim`` and ``__getitem__`` and
indexes it once per frame it shows. A dask array would build and run a graph for every
such fetch (about ten times the read itself); :class:`FrameArray` indexes the stack
through xarray's lazy indexing (``xafm.open(path, lazy=True)``), so showing a frame costs
about what the file's own library takes to read it, and nothing is read until shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr


class FrameArray:
    """A lazily indexed (or in-memory) DataArray seen as a numpy-indexable array of
    ``dtype``: ``arr[key]`` reads only what ``key`` selects (ints and slices as numpy, an
    integer array per axis as outer indexing) and returns a numpy array."""

    def __init__(self, da: xr.DataArray | xr.Variable, dtype: Any = None):
        self._var = da.variable if isinstance(da, xr.DataArray) else da
        self.dtype = np.dtype(self._var.dtype if dtype is None else dtype)
        self.shape = tuple(int(n) for n in self._var.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._var[key].values).astype(self.dtype, copy=False)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<xafm FrameArray {self.shape} {self.dtype}: read on indexing>"
