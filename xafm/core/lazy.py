"""Lazy, picklable array sources shared by every reader and the xarray backend.

A :class:`LazyArray` keeps only a path and offsets, never an open file handle: each read
opens the file, reads what was asked and closes it. That makes the arrays picklable (dask
can ship them to distributed workers) and thread-safe without a lock of their own. Since
the file is reopened by path, the array also keeps the file's identity from when it was
made (``core.file_identity``) and checks it before and after every read, so a file
replaced, rewritten or truncated meanwhile raises ``FileChangedError`` instead of mixing
two versions.
A URL (``s3://``, ``https://``, ...) is kept with its storage options
(:mod:`.sources`), which travel with the array when it is pickled: a dask worker that
unpickles it reads the URL itself, with the same credentials and endpoint.
They implement xarray's ``BackendArray`` protocol (explicit, outer indexing) and plain
``arr[slices]`` indexing for ``dask.array.from_array``.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np
from xarray.backends import BackendArray
from xarray.core import indexing

from ..exceptions import CorruptFileError, reading
from . import sources
from .file_identity import FileIdentity, check_unchanged, recorded

#: An outer index: one int, slice or integer array per dimension.
Key = tuple[Any, ...]


def _normalise_key(key: Any, shape: tuple[int, ...]) -> Key:
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    return tuple(key) + (slice(None),) * (len(shape) - len(key))


def _plain(key: tuple[Any, ...]) -> bool:
    """Whether an outer key is ints and forward slices only, which every reader takes as
    it is (xarray's lazy indexing hands them on normalised)."""
    for k in key:
        if isinstance(k, slice):
            if k.step is not None and k.step < 1:
                return False
        elif not isinstance(k, (int, np.integer)) or k < 0:
            return False
    return True


class LazyArray(BackendArray):
    """Base class: subclasses set ``shape``, ``dtype`` and implement ``_read(key)``.

    ``_read`` receives a tuple of ints, slices and integer arrays (outer indexing) with one
    entry per dimension and returns a numpy array.

    Setting ``path`` records the file's identity (:attr:`opened`); every read checks that
    the file at ``path`` still has it. An array that reads through another one takes that
    one's path and identity with :meth:`reads_through`.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    #: The identity of the file when the array was made; None: nothing on disk to check.
    opened: FileIdentity | None = None
    #: The array this one reads through (:meth:`reads_through`), which does the checking.
    _through: LazyArray | None = None
    #: A URL's storage options, remembered again where the array is unpickled.
    _storage_options: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return self._path

    @path.setter
    def path(self, value: str | os.PathLike[str]) -> None:
        self._path = sources.local_path(value)
        if sources.is_url(self._path):
            self._storage_options = sources.storage_options(self._path)
        self.opened = recorded(self._path)

    def reads_through(self, base: LazyArray) -> None:
        """Read ``base``'s file as ``base`` knows it: its path, and its check of what changed."""
        self._path, self.opened, self._through = base.path, base.opened, base
        self._storage_options = base._storage_options

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        options = state.get("_storage_options")
        if options is not None and sources.is_url(state.get("_path")):
            # a worker (or a fresh process) reads the URL with the options it was opened with
            sources.remember_options(state["_path"], options)

    def check_unchanged(self) -> None:
        """Raise ``FileChangedError`` if the file is no longer the one the array was made on."""
        if self._through is not None:
            self._through.check_unchanged()
        else:
            check_unchanged(self.path, self.opened)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, key: Any) -> np.ndarray:
        if type(key) in (indexing.BasicIndexer, indexing.OuterIndexer) and _plain(key.tuple):
            # what every read asks for (a frame, a block of frames): straight to the reader,
            # without xarray's decomposition of the key (a tenth of a one-frame fetch)
            return self._read_checked(key.tuple)
        if isinstance(key, indexing.ExplicitIndexer):
            out: np.ndarray = indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._read_checked)
            return out
        return self._read_checked(_normalise_key(key, self.shape))

    def _read_checked(self, key: Key) -> np.ndarray:
        """Every read goes through here: a damaged file gives a ``CorruptFileError``, a
        file that changed since the array was made (before the read, or during it: checked
        after) a ``FileChangedError``."""
        self.check_unchanged()
        try:
            if not sources.is_url(self.path):
                out: np.ndarray = np.asarray(self._read(_normalise_key(key, self.shape)))
            else:
                size = self.opened.size if self.opened is not None else None
                with sources.known_size(self.path, size):
                    out = np.asarray(self._read(_normalise_key(key, self.shape)))
        except BaseException as exc:
            # a failure the reader did not foresee names the file (``reading``), and a read
            # that failed because the file changed says so; no context managers on the way
            # of a read that succeeds (a one-frame fetch takes tens of microseconds)
            try:
                with reading(self.path, "reading data"):
                    raise exc
            except Exception:
                self.check_unchanged()
                raise
        self.check_unchanged()
        return out

    def _read(self, key: Key) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype)


def outer_index(arr: np.ndarray, key: Key) -> np.ndarray:
    """Apply an outer (orthogonal) index: ints, slices and integer arrays, one per axis."""
    out = arr[tuple(k if isinstance(k, (slice, int, np.integer)) else slice(None) for k in key)]
    axis = 0
    for k in key:
        if isinstance(k, (int, np.integer)):
            continue
        if not isinstance(k, slice):
            out = np.take(out, np.asarray(k, dtype=np.intp), axis=axis)
        axis += 1
    return out


def bounding_box(key: Key, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], Key]:
    """Split an outer index into step-1 bounding slices plus an index relative to them."""
    bounds: list[slice] = []
    rel: list[Any] = []
    for k, n in zip(key, shape):
        if isinstance(k, (int, np.integer)):
            k = int(k) + (n if k < 0 else 0)
            bounds.append(slice(k, k + 1))
            rel.append(0)
            continue
        idx = np.arange(n)[k] if isinstance(k, slice) else np.asarray(k, dtype=np.intp) % max(n, 1)
        if idx.size == 0:
            bounds.append(slice(0, 0))
            rel.append(slice(None))
            continue
        lo, hi = int(idx.min()), int(idx.max()) + 1
        bounds.append(slice(lo, hi))
        contiguous = isinstance(k, slice) and (k.step is None or k.step == 1)
        rel.append(slice(None) if contiguous else idx - lo)
    return tuple(bounds), tuple(rel)


class RawFramesArray(LazyArray):
    """Frames stored as raw binary at ``offset + i * frame_stride`` in one file.

    Values are converted as ``raw * scale + add`` (when given) into ``out_dtype``.
    ``frame_stride`` may exceed the frame's byte size (per-frame headers); ``flip_y`` /
    ``flip_x`` reverse the rows / columns (formats stored bottom-up or right-to-left).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        offset: int,
        n_frames: int,
        frame_shape: tuple[int, int],
        raw_dtype: Any,
        frame_stride: int | None = None,
        scale: float | None = None,
        add: float | None = None,
        out_dtype: Any = None,
        flip_y: bool = False,
        flip_x: bool = False,
    ):
        self.path = os.fspath(path)
        self.offset = int(offset)
        self.raw_dtype = np.dtype(raw_dtype)
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.frame_bytes = self.frame_shape[0] * self.frame_shape[1] * self.raw_dtype.itemsize
        self.frame_stride = int(frame_stride or self.frame_bytes)
        self.shape = (int(n_frames),) + self.frame_shape
        self.scale = scale
        self.add = add
        self.flip_y = flip_y
        self.flip_x = flip_x
        if out_dtype is None:
            out_dtype = self.raw_dtype.newbyteorder("=") if scale is None and add is None else np.float64
        self.dtype = np.dtype(out_dtype)

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        if self.scale is None and self.add is None:
            return np.array(raw, dtype=self.dtype)
        out: np.ndarray
        if self.scale is not None:
            out = np.multiply(raw, self.dtype.type(self.scale), dtype=self.dtype)
        else:
            out = np.array(raw, dtype=self.dtype)
        if self.add is not None:
            out += self.dtype.type(self.add)
        return out

    def _read(self, key: Key) -> np.ndarray:
        kt = key[0]
        rel: Any
        if sources.is_url(self.path):  # byte ranges of the frames asked for
            frames = np.arange(self.shape[0])[kt]
            if np.size(frames) == 0:
                return np.empty(outer_index(np.empty((0,) + self.frame_shape, np.uint8), key).shape, self.dtype)
            return self._read_ranges(key, np.atleast_1d(frames))
        if isinstance(kt, (int, np.integer)) and 0 <= kt < self.shape[0]:
            lo, hi, rel = int(kt), int(kt) + 1, 0  # one frame (the usual fetch): no index arrays
        else:
            frames = np.arange(self.shape[0])[kt]
            if np.size(frames) == 0:
                return np.empty(outer_index(np.empty((0,) + self.frame_shape, np.uint8), key).shape, self.dtype)
            lo, hi = int(np.min(frames)), int(np.max(frames)) + 1
            if np.ndim(frames) == 0:
                rel = int(frames) - lo
            elif isinstance(kt, slice) and kt.indices(self.shape[0])[2] > 0:
                rel = slice(0, hi - lo, kt.indices(self.shape[0])[2])  # a view, not a gather
            else:
                rel = frames - lo
        need = self.offset + (hi - 1) * self.frame_stride + self.frame_bytes
        start = self.offset + lo * self.frame_stride
        key = (rel,) + tuple(key[1:])
        run = isinstance(rel, int) or (isinstance(rel, slice) and rel.step in (None, 1))
        if run and need - start <= PREAD_MAX:
            return self._read_run(key, lo, hi, start, need)
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if need > size:
                raise CorruptFileError(self.path, f"file is {size} bytes; frame {hi - 1} ends at byte {need}")
            # only the frames' span is mapped: from the page that holds frame lo to frame hi - 1's end
            base = start - start % mmap.ALLOCATIONGRANULARITY
            mm = mmap.mmap(fh.fileno(), need - base, access=mmap.ACCESS_READ, offset=base) if need > base else b""
            if hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
                # the kernel's read-ahead around a fault reads megabytes past a frame: only the
                # pages touched are read, and all of the span at once when it is all asked for
                mm.madvise(mmap.MADV_RANDOM)
                if run:
                    mm.madvise(mmap.MADV_WILLNEED)
            ny, nx = self.frame_shape
            item = self.raw_dtype.itemsize
            view = np.ndarray(
                (hi - lo, ny, nx), dtype=self.raw_dtype, buffer=mm, offset=start - base,
                strides=(self.frame_stride, nx * item, item),
            )
            result = self._convert(outer_index(self._flipped(view), key))
            del view, mm
        return result

    def _flipped(self, view: np.ndarray) -> np.ndarray:
        if self.flip_y:
            view = view[:, ::-1, :]
        if self.flip_x:
            view = view[:, :, ::-1]
        return view

    def _read_run(self, key: Key, lo: int, hi: int, start: int, need: int) -> np.ndarray:
        """Frames ``lo`` to ``hi - 1``, all asked for (one frame, a block of frames): read
        with one ``pread`` into a new buffer, which is the result itself when no
        conversion is asked for. Cheaper than mapping the span for what a viewer fetches
        (a frame of a few hundred KiB), and the kernel is told not to read ahead."""
        ny, nx = self.frame_shape
        n = hi - lo
        packed = self.frame_stride == self.frame_bytes or n == 1
        buf = np.empty((n, ny, nx), self.raw_dtype) if packed else np.empty(need - start, np.uint8)
        size = self.opened.size if self.opened is not None else None  # the check before the read confirmed it
        if size is not None and need > size:
            raise CorruptFileError(self.path, f"file is {size} bytes; frame {hi - 1} ends at byte {need}")
        got = _pread_into(self.path, buf, start)
        if got < need - start:
            raise CorruptFileError(self.path, f"file is {start + got} bytes; frame {hi - 1} ends at byte {need}")
        if packed:
            view = buf
        else:
            item = self.raw_dtype.itemsize
            view = np.ndarray((n, ny, nx), dtype=self.raw_dtype, buffer=buf, strides=(self.frame_stride, nx * item, item))
        out = outer_index(self._flipped(view), key)
        if packed and self.scale is None and self.add is None and out.size == buf.size and not (self.flip_y or self.flip_x):
            return out.astype(self.dtype, copy=False)  # the new buffer itself: no second copy
        return self._convert(out)

    def _read_ranges(self, key: Key, frames: np.ndarray) -> np.ndarray:
        """A URL's frames, fetched as byte ranges: one ranged GET per run of frames that
        lie together (frames further apart than :data:`MERGE_GAP` are fetched apart), all
        sent at once; nothing else of the object is read."""
        wanted = np.unique(frames)
        last = int(wanted[-1])
        need = self.offset + last * self.frame_stride + self.frame_bytes
        size = self.opened.size if self.opened is not None and self.opened.size is not None else sources.size(self.path)
        if need > size:
            raise CorruptFileError(self.path, f"file is {size} bytes; frame {last} ends at byte {need}")
        runs = frame_runs(wanted, self.frame_stride, self.frame_bytes)
        if len(runs) > MAX_RUNS and (runs[-1][1] - runs[0][0]) * self.frame_stride <= MAX_SPAN:
            runs = [(runs[0][0], runs[-1][1])]  # many small pieces (per-frame headers): one GET
        ranges = [(self.offset + int(a) * self.frame_stride, self.offset + int(b - 1) * self.frame_stride + self.frame_bytes) for a, b in runs]
        blobs = sources.read_ranges(self.path, ranges)
        ny, nx = self.frame_shape
        item = self.raw_dtype.itemsize
        buf = np.empty((wanted.size, ny, nx), dtype=self.raw_dtype)
        at = 0
        for (a, b), blob in zip(runs, blobs):
            n = int(b - a)
            if len(blob) != (n - 1) * self.frame_stride + self.frame_bytes:
                raise CorruptFileError(self.path, f"the server sent {len(blob)} bytes for frames {a}..{b - 1}")
            got = np.ndarray((n, ny, nx), dtype=self.raw_dtype, buffer=blob, strides=(self.frame_stride, nx * item, item))
            run = np.arange(a, b)
            keep = np.isin(run, wanted)
            buf[at : at + int(keep.sum())] = got[keep]
            at += int(keep.sum())
        view: np.ndarray = buf
        if self.flip_y:
            view = view[:, ::-1, :]
        if self.flip_x:
            view = view[:, :, ::-1]
        pos = np.searchsorted(wanted, frames)
        first: Any = int(pos[0]) if isinstance(key[0], (int, np.integer)) else pos
        return self._convert(outer_index(view, (first,) + tuple(key[1:])))


#: Frames that all are asked for, up to this many bytes from the first to the end of the
#: last, are read with one ``pread`` (:meth:`RawFramesArray._read_run`); more, or frames
#: picked out of a span, are memory-mapped, so that only the pages asked for are read.
PREAD_MAX = 2**24
_FADV_RANDOM = getattr(os, "POSIX_FADV_RANDOM", None) if hasattr(os, "posix_fadvise") else None


def _pread_into(path: str, buf: np.ndarray, offset: int) -> int:
    """Read ``buf.nbytes`` bytes of the file at ``path`` from ``offset`` into ``buf`` (C
    contiguous); returns the bytes read, fewer where the file ends. The kernel is told
    the access is random, so it reads no more than asked for."""
    view = memoryview(buf.reshape(-1).view(np.uint8).data)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if _FADV_RANDOM is not None:
            os.posix_fadvise(fd, offset, len(view), _FADV_RANDOM)
        at = 0
        while at < len(view):
            if hasattr(os, "preadv"):
                k = os.preadv(fd, [view[at:]], offset + at)
            else:  # pragma: no cover - platforms without preadv (Windows)
                os.lseek(fd, offset + at, os.SEEK_SET)
                k = os.readv(fd, [view[at:]]) if hasattr(os, "readv") else _read_into(fd, view[at:])
            if k == 0:
                break
            at += k
        return at
    finally:
        os.close(fd)


def _read_into(fd: int, view: memoryview) -> int:  # pragma: no cover - Windows
    data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


#: Bytes between two wanted frames of a URL below which one ranged GET fetches both (and
#: what lies between): a request costs about as much as this many bytes.
MERGE_GAP = 2**16
#: More runs than this within :data:`MAX_SPAN` bytes are fetched as one range instead.
MAX_RUNS = 32
MAX_SPAN = 2**26


def frame_runs(wanted: np.ndarray, stride: int, frame_bytes: int) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of the sorted frame numbers ``wanted`` that one ranged read
    fetches each: neighbours whose bytes lie less than :data:`MERGE_GAP` apart."""
    runs: list[tuple[int, int]] = []
    for f in wanted.tolist():
        if runs and (f - runs[-1][1]) * stride + (stride - frame_bytes) <= MERGE_GAP:
            runs[-1] = (runs[-1][0], f + 1)
        else:
            runs.append((f, f + 1))
    return runs


class InMemoryArray(LazyArray):
    """Already-read values behind the same interface (for formats that are read whole)."""

    def __init__(self, path: str | os.PathLike[str], values: np.ndarray):
        self.path = os.fspath(path)
        self.opened = None  # the values are in memory: one version, whatever the file does now
        self.values = np.asarray(values)
        self.shape = self.values.shape
        self.dtype = self.values.dtype

    def _read(self, key: Key) -> np.ndarray:
        return np.array(outer_index(self.values, key))


class DimView(LazyArray):
    """A lazy array with named dims seen with some dims fixed (dropped), some added
    (length 1) and the rest reordered: how readers map a file's dims onto xafm's order."""

    def __init__(self, base: LazyArray, base_dims: tuple[str, ...], out_dims: tuple[str, ...], fixed: dict[str, int] | None = None):
        self.base, self.dtype = base, base.dtype
        self.reads_through(base)
        self.base_dims, self.out_dims = tuple(base_dims), tuple(out_dims)
        self.fixed = dict(fixed or {})
        self.kept = [d for d in self.base_dims if d not in self.fixed]
        self.added = [d for d in self.out_dims if d not in self.base_dims]
        if sorted(self.kept + self.added) != sorted(self.out_dims):
            raise ValueError(f"dims {self.out_dims} do not match {self.base_dims} minus {sorted(self.fixed)}")
        self.shape = tuple(base.shape[self.base_dims.index(d)] if d in self.base_dims else 1 for d in self.out_dims)

    def _read(self, key: Key) -> np.ndarray:
        kd = dict(zip(self.out_dims, key))
        got = self.base._read(tuple(self.fixed[d] if d in self.fixed else kd[d] for d in self.base_dims))
        have = [d for d in self.kept if not isinstance(kd[d], (int, np.integer))]
        for d in self.added:  # a length-1 axis, indexed like any other
            if isinstance(kd[d], (int, np.integer)):
                if kd[d] not in (0, -1):
                    raise IndexError(f"index {kd[d]} out of range for {d} of length 1")
                continue
            got = np.expand_dims(got, -1)
            got = outer_index(got, (slice(None),) * (got.ndim - 1) + (kd[d],))
            have.append(d)
        return np.transpose(got, [have.index(d) for d in self.out_dims if d in have])


def for_fetching(da: Any, *, load_lazy: bool) -> Any:
    """``da`` (as ``xr.open_dataarray`` gives it, without dask) made cheap to fetch frames
    from, for ``xafm.open(path, lazy=True)``.

    xarray wraps every variable a backend gives in lazy indexing, numpy arrays too, and
    composes the index of each on every ``isel``: with ten per-frame coordinates that costs
    more than reading the frame. Coordinates the reader made in memory are unwrapped; those
    along ``time`` alone that one of xafm's lazy arrays reads (the ``.asd`` frame-header
    fields) are read now when ``load_lazy`` (a local file, where that is one pass over a
    few bytes per frame; a URL keeps them lazy, so that the open makes no more requests).
    The stack, its masks and layers stay lazy, indexed through :class:`FetchIndexed`.
    """
    import xarray as xr

    from .conventions import TIME
    from .variables import variable

    new: dict[str, Any] = {}
    for name, coord in da.coords.items():
        if name in da.indexes:
            continue
        var = coord.variable
        data = var._data
        inner = data.array if isinstance(data, indexing.CopyOnWriteArray) else data
        if isinstance(inner, indexing.NumpyIndexingAdapter):
            values: Any = inner.array
        elif _reads_lazily(inner) and load_lazy and var.dims == (TIME,):
            values = np.asarray(var.values)
        elif (wrapped := _fetch_indexed(data)) is not None:
            values = wrapped
        else:
            continue
        # numpy values through model.variable: xarray's duck-array check would import dask
        made = variable(var.dims, values, var.attrs) if type(values) is np.ndarray else xr.Variable(var.dims, values, var.attrs)
        made.encoding = dict(var.encoding)
        new[str(name)] = made
    out = da.assign_coords(new) if new else da.copy(deep=False)
    wrapped = _fetch_indexed(out.variable._data)
    if wrapped is not None:
        out.variable.data = wrapped
    return out


def _reads_lazily(data: Any) -> bool:
    while not isinstance(data, LazyArray) and isinstance(data, indexing.ExplicitlyIndexed) and hasattr(data, "array"):
        data = data.array
    return isinstance(data, LazyArray)


def _fetch_indexed(data: Any) -> Any:
    """``CopyOnWriteArray(LazilyIndexedArray(lazy array))``, as xarray wraps a backend's
    array, with :class:`FetchIndexed` instead (None for anything else)."""
    if not isinstance(data, indexing.CopyOnWriteArray):
        return None
    lazy = data.array
    if type(lazy) is not indexing.LazilyIndexedArray or not isinstance(lazy.array, LazyArray):
        return None
    return FetchCopyOnWrite(FetchIndexed(lazy.array, lazy.key))  # type: ignore[arg-type]


_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


class FetchIndexed(indexing.LazilyIndexedArray):
    """xarray's lazy indexing of one of xafm's lazy arrays, with the way of a frame fetch
    made short: an ``isel`` of ints and slices on ints and slices is composed here in a few
    steps (xarray's general composition handles every kind of key and costs about a tenth
    of a fetch), and the values are asked of the array directly. Any other key is
    xarray's own."""

    __slots__ = ()

    def __getitem__(self, indexer: Any) -> Any:
        if type(indexer) is indexing.BasicIndexer and type(self.key) is indexing.BasicIndexer:
            key = _compose(self.key.tuple, indexer.tuple, self.array.shape)
            if key is not None:
                return type(self)(self.array, indexing.BasicIndexer(key))
        return super().__getitem__(indexer)

    def get_duck_array(self) -> Any:
        out = self.array[self.key]
        return np.asarray(out) if isinstance(out, np.generic) else out

    def __array__(self, dtype: Any = None, /, *, copy: bool | None = None) -> np.ndarray:
        if _NUMPY_2:
            return np.asarray(self.get_duck_array(), dtype=dtype, copy=copy)
        return np.asarray(self.get_duck_array(), dtype=dtype)  # pragma: no cover - numpy 1


class FetchCopyOnWrite(indexing.CopyOnWriteArray):
    """xarray's copy-on-write wrapper (an assignment to the stack copies the values first,
    never writes to the file), whose ``np.asarray`` does not parse numpy's version on every
    call as xarray's does (two ``packaging.Version`` a fetch: about a tenth of one)."""

    __slots__ = ()

    def __array__(self, dtype: Any = None, /, *, copy: bool | None = None) -> np.ndarray:
        values = self.array.get_duck_array()  # FetchIndexed's
        if _NUMPY_2:
            return np.asarray(values, dtype=dtype, copy=copy)
        return np.asarray(values, dtype=dtype)  # pragma: no cover - numpy 1


def _compose(old: tuple[Any, ...], new: tuple[Any, ...], shape: tuple[int, ...]) -> tuple[Any, ...] | None:
    """The basic key that ``new`` (one int or slice per dim ``old`` keeps) applied after
    ``old`` (one int or slice per dim) selects; None when ``new`` is anything else."""
    if len(new) != sum(not isinstance(k, int) for k in old):
        return None
    out: list[Any] = []
    it = iter(new)
    for size, k in zip(shape, old):
        if isinstance(k, int):
            out.append(k)
            continue
        n = next(it)
        if not isinstance(k, slice):
            return None
        if isinstance(n, slice) and n == slice(None):
            out.append(k)
            continue
        picked = range(*k.indices(size))
        if isinstance(n, int):
            out.append(picked[n])  # IndexError past the end, as xarray's own
        elif isinstance(n, slice):
            r = picked[n]
            # nothing selected: slice(0, 0) (xarray's decomposition fails on an empty reversed slice)
            out.append(slice(r.start, r.stop if r.stop >= 0 else None, r.step) if len(r) else slice(0, 0))
        else:
            return None
    return tuple(out)
