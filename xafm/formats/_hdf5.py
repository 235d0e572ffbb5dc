"""What the HDF5-based formats share: one process-wide lock, the one way to open a file
(:func:`open_h5`: nothing outside the file is followed, heap values are read so that no
file can hang), lazy datasets, and a content check that opens a file with h5py only when
its first bytes are HDF5's signature."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..core import sources
from ..core.contract import Probe
from ..core.file_identity import FileIdentity
from ..core.lazy import LazyArray, bounding_box, outer_index
from ..exceptions import CorruptFileError, FileChangedError, XafmError
from ._h5direct import Layout, layout_of
from ._h5guard import dataset_at, refuse_outside_links
from ._h5strings import Values

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


def has_member(group: Any, name: str) -> bool:
    """Whether ``group`` has a member ``name`` (one path component), from the link record
    alone: nothing the link names is opened or resolved."""
    return group.get(name, getlink=True) is not None


#: A URL's HDF5 file is read in blocks of this many bytes (fsspec's block cache keeps the
#: last 32): HDF5 reads its metadata in many small pieces near each other, and one block
#: holds the superblock, root group and heaps of a small file in one request.
REMOTE_BLOCK = 2**16


class _RemoteH5(contextlib.AbstractContextManager["_RemoteH5"]):
    """An ``h5py.File`` on a URL's file object, closing both (h5py leaves a Python file
    object it was given open)."""

    def __init__(self, path: str):
        import h5py

        self.fh = sources.open_binary(path, block_size=REMOTE_BLOCK, cache_type="blockcache")
        try:
            self.file = h5py.File(self.fh, "r")
        except BaseException:
            self.fh.close()
            raise

    def __enter__(self) -> Any:
        return self.file

    def __exit__(self, *exc: Any) -> None:
        try:
            self.file.close()
        finally:
            self.fh.close()


def open_raw(path: str) -> Any:
    """``h5py.File(path, "r")``, a file HDF5 cannot open becoming a ``CorruptFileError``;
    a URL through its file object (:func:`~xafm.core.sources.open_binary`), read in
    byte ranges. Use it as a context manager. Readers use :func:`open_h5`; lazy reads
    reopen with this and reach their one dataset with :func:`open_dataset`."""
    import h5py

    try:
        if sources.is_url(path):
            return _RemoteH5(path)
        return h5py.File(path, "r")
    except OSError as exc:
        if isinstance(exc, XafmError):
            raise
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, XafmError):  # a store failure under h5py's own error
            raise cause from None
        raise CorruptFileError(path, f"not a readable HDF5 file (cannot read as HDF5): {exc}") from None


@contextlib.contextmanager
def open_h5(path: str | os.PathLike[str]) -> Iterator[tuple[Any, Values]]:
    """Open an HDF5 file for a reader: ``(h5py.File, Values)`` under :data:`HDF5_LOCK`.

    Every link of the file is walked once first and the file is refused if anything leads
    out of it (:func:`~xafm.formats._h5guard.refuse_outside_links`); attributes and small
    datasets are read through the returned :class:`~xafm.formats._h5strings.Values`.
    """
    path = os.fspath(path)
    with HDF5_LOCK, open_raw(path) as f:
        members = refuse_outside_links(f, path)
        yield f, Values(f, path, members)


def identify_with(probe: Probe, check: Callable[[Any, Values], bool]) -> bool:
    """Whether ``check(h5py.File, Values)`` holds for an HDF5 file (False for anything else).

    The check looks at root members (:func:`has_member`) and root attributes only, so no
    link walk is needed to keep it inside the file.
    """
    if not probe.head.startswith(SIGNATURE):
        return False
    with HDF5_LOCK, open_raw(probe.path) as f:
        return bool(check(f, Values(f, probe.path, [])))


class H5Direct(LazyArray):
    """A lazy array reading one HDF5 dataset: the first read goes through h5py (the file
    opened, the dataset reached link by link and its layout checked), and keeps where the
    dataset's values lie; later reads of the same, unchanged local file read those bytes
    directly (:mod:`._h5direct`), about a tenth of an ``h5py.File`` open."""

    #: None: no read yet; False: read through h5py only (a URL, a layout not decoded here).
    _layout: Layout | bool | None = None

    def direct(self) -> Layout | None:
        """The layout kept by an earlier read, when reads may go by byte range."""
        return self._layout if isinstance(self._layout, Layout) else None

    def keep_layout(self, ds: Any) -> None:
        """Keep ``ds``'s layout (the dataset a read reached through h5py) when the file is
        still the one opened: its identity is compared after the layout is taken, so the
        layout is of the version every later read checks for."""
        if self._layout is not None:
            return
        opened = self.opened
        if sources.is_url(self.path) or opened is None or opened.size is None:
            self._layout = False
            return
        layout = layout_of(ds)
        if FileIdentity.of(self.path) == opened:
            self._layout = layout if layout is not None else False

    def read_direct(self, bounds: tuple[slice, ...]) -> np.ndarray | None:
        """The stored values in ``bounds`` read by byte range, or None to read through h5py."""
        layout = self.direct()
        if layout is None or self.opened is None:
            return None
        return layout.read(self.path, self.opened, bounds)


class H5DatasetArray(H5Direct):
    """An HDF5 dataset read with h5py, opening the file for each read (by byte range once
    one read has found where its values lie: :class:`H5Direct`)."""

    def __init__(self, path: str | os.PathLike[str], name: str, *, shape: Any = None, dtype: Any = None, out_dtype: Any = None):
        self.path = os.fspath(path)
        self.name = name
        if shape is None or dtype is None:
            with HDF5_LOCK, open_raw(self.path) as f:
                ds = dataset_at(f, name, self.path)
                shape, dtype = ds.shape, ds.dtype
        self.shape = tuple(int(s) for s in shape)
        self.stored_shape = self.shape
        self.dtype = np.dtype(out_dtype if out_dtype is not None else dtype)

    def _read(self, key: tuple[Any, ...]) -> np.ndarray:
        bounds, rel = bounding_box(key, self.shape)
        if any(b.stop <= b.start for b in bounds):
            return np.empty(outer_index(np.empty(self.shape, np.uint8), key).shape, self.dtype)
        if _strided(key):  # every k-th frame (a preview): HDF5 selects them, not their span
            bounds = tuple(slice(*k.indices(n)) for k, n in zip(key, self.shape))
            rel = (slice(None),) * len(key)
        block = None if _strided(key) else self.read_direct(bounds)
        if block is None:
            with HDF5_LOCK, open_raw(self.path) as f:
                ds = open_dataset(f, self.name, self.path, self.stored_shape)
                block = ds[bounds]
                self.keep_layout(ds)
        return np.asarray(outer_index(block, rel), dtype=self.dtype)


def _strided(key: tuple[Any, ...]) -> bool:
    """Slices only, one of them with a step above 1 (which HDF5's hyperslabs take as they are)."""
    return all(isinstance(k, slice) and (k.step or 1) >= 1 for k in key) and any((k.step or 1) > 1 for k in key)


def stored_chunks(ds: Any, dims: tuple[str, ...]) -> dict[str, int] | None:
    """An HDF5 dataset's stored chunk shape by dim (None when it is contiguous)."""
    return dict(zip(dims, (int(c) for c in ds.chunks))) if ds.chunks else None


def open_dataset(f: Any, name: str, path: str, shape: tuple[int, ...] | None = None, *, size: int | None = None) -> Any:
    """The dataset a lazy read reads: reached without leaving the file, with the shape (or
    the number of values) whose storage was checked at open; its storage is not summed
    again (that walks every chunk, milliseconds per read for a long video)."""
    ds = dataset_at(f, name, path)
    now = tuple(int(s) for s in ds.shape)
    if (shape is not None and now != tuple(shape)) or (size is not None and int(ds.size) != size):
        was = tuple(shape) if shape is not None else f"{size} values"
        raise FileChangedError(path, f"{ds.name} has shape {now}, {was} when the file was opened: it changed since")
    return ds
