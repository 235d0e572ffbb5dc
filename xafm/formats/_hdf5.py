"""What the HDF5-based formats share: one process-wide lock, lazy datasets, and a content
check that opens a file with h5py only when its first bytes are HDF5's signature."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.contract import Probe
from ..core.lazy import LazyArray, bounding_box, outer_index

# HDF5 is not thread-safe; h5py serialises calls itself but opening/closing files from
# several threads at once is safest behind one process-wide lock.
HDF5_LOCK = threading.RLock()
#: The HDF5 signature at the start of a file (user blocks, which move it, are not used by
#: the formats xafm reads).
SIGNATURE = b"\x89HDF\r\n\x1a\n"


def text_keys(group: Any) -> list[str]:
    """A group's member names that are text: h5py gives a name that is not UTF-8 (a damaged
    file) as bytes, which no reader's name is, so those members are left out."""
    return [k for k in group.keys() if isinstance(k, str)]


def identify_with(probe: Probe, check: Callable[[Any], bool]) -> bool:
    """Whether ``check(h5py.File)`` holds for an HDF5 file (False for anything else)."""
    if not probe.head.startswith(SIGNATURE):
        return False
    import h5py

    with HDF5_LOCK, h5py.File(probe.path, "r") as f:
        return bool(check(f))


class H5DatasetArray(LazyArray):
    """An HDF5 dataset read with h5py, opening the file for each read."""

    def __init__(self, path: str | os.PathLike[str], name: str, *, shape: Any = None, dtype: Any = None, out_dtype: Any = None):
        self.path = os.fspath(path)
        self.name = name
        if shape is None or dtype is None:
            import h5py

            with HDF5_LOCK, h5py.File(self.path, "r") as f:
                shape, dtype = f[name].shape, f[name].dtype
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(out_dtype if out_dtype is not None else dtype)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        import h5py

        bounds, rel = bounding_box(key, self.shape)
        if any(b.stop <= b.start for b in bounds):
            return np.empty(outer_index(np.empty(self.shape, np.uint8), key).shape, self.dtype)
        with HDF5_LOCK, h5py.File(self.path, "r") as f:
            block = f[self.name][bounds]
        return np.asarray(outer_index(block, rel), dtype=self.dtype)


def stored_chunks(ds: Any, dims: tuple[str, ...]) -> dict[str, int] | None:
    """An HDF5 dataset's stored chunk shape by dim (None when it is contiguous)."""
    return dict(zip(dims, (int(c) for c in ds.chunks))) if ds.chunks else None
