"""Where a file's bytes come from: a local path, or a URL (``s3://``, ``gs://``,
``https://``, ...) that fsspec reaches.

Readers ask here instead of calling ``open``, ``os.path.getsize`` or ``os.listdir``
themselves, so that one reader serves both. A URL's ``storage_options`` (credentials,
endpoint, anonymous access) are remembered per URL by :func:`remember_options` when a
public entry point is given them, and found again by :func:`storage_options` for the URL
and every URL below it (a folder's members, a multi-file set's companions); lazy arrays
pickle them with the URL, so a dask worker opens the URL itself with the same options.

fsspec and the protocol's package (s3fs, gcsfs, aiohttp) are imported only when a URL is
used; a missing one is an ``ImportError`` saying which extra installs it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from ..exceptions import FileError, ObjectNotFoundError, RemoteError, XafmError
from .paths import open_regular

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: ``scheme://`` at the start of a string: a URL, not a path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")  # 2+ letters: never a Windows drive (C://)
#: Protocols that are a local file in disguise: read as the path they name.
LOCAL_PROTOCOLS = ("file", "local")

_options_lock = threading.Lock()
_options: dict[str, dict[str, Any]] = {}


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL of a remote store (``file://`` is not: see :func:`local_path`)."""
    if not isinstance(path, str) or not _URL.match(path):
        return False
    return protocol(path) not in LOCAL_PROTOCOLS


def protocol(url: str) -> str:
    """``"s3"`` for ``s3://bucket/key`` (the first protocol of a chained URL)."""
    return url.split("://", 1)[0].split("::")[0].lower()


def local_path(path: str | os.PathLike[str]) -> str:
    """The local path a ``file://`` URL names; any other path unchanged."""
    text = os.fspath(path)
    if isinstance(text, str) and _URL.match(text) and protocol(text) in LOCAL_PROTOCOLS:
        return text.split("://", 1)[1]
    return text


def remember_options(url: str, options: Mapping[str, Any] | None) -> None:
    """Use ``options`` for ``url`` and every URL below it from now on in this process."""
    if options is None:
        return
    with _options_lock:
        _options[url.rstrip("/")] = dict(options)


def storage_options(url: str) -> dict[str, Any]:
    """The options remembered for ``url`` or the nearest URL above it (``{}`` if none)."""
    key = url.rstrip("/")
    with _options_lock:
        while True:
            if key in _options:
                return dict(_options[key])
            parent = key.rsplit("/", 1)[0]
            if parent == key or parent.endswith(":/") or parent.endswith(":"):
                return {}
            key = parent


#: pip extras that install each protocol's fsspec implementation.
EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """fsspec's file system for ``url`` (with its remembered options) and the path in it."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as err:  # pragma: no cover - fsspec comes with dask[array]
        raise ImportError(f"reading {url} needs fsspec: pip install 'xafm[remote]'") from err
    del fsspec
    try:
        fs, inner = url_to_fs(url, **storage_options(url))
        return fs, str(inner)
    except ImportError as err:
        package = EXTRAS.get(protocol(url), "the fsspec implementation of " + protocol(url))
        raise ImportError(f"reading {url} needs {package}: pip install 'xafm[remote]'") from err


# --------------------------------------------------------------------------------------
# what a failure of the store means
# --------------------------------------------------------------------------------------
def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _unreachable(exc: BaseException) -> BaseException | None:
    """The connection failure behind ``exc`` (refused, timed out, no such host), if any."""
    for e in _causes(exc):
        name = type(e).__name__
        if isinstance(e, (ConnectionError, TimeoutError)) or name in (
            "EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ServerTimeoutError",
            "ClientConnectionError", "ServerDisconnectedError", "ClientOSError",
        ):
            return e
    return None


def remote_error(url: str, exc: BaseException) -> FileError:
    """The xafm error that a failure ``exc`` of the store reading ``url`` becomes: a
    missing object or bucket is an :class:`ObjectNotFoundError`, anything else (access
    denied, missing credentials, a server error, an unreachable endpoint) a
    :class:`RemoteError`, each naming the URL and the cause."""
    if isinstance(exc, XafmError) and isinstance(exc, FileError):
        return exc
    down = _unreachable(exc)
    if down is not None:
        return RemoteError(url, f"cannot reach the server ({type(down).__name__}: {down}); check the URL and the endpoint")
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFoundError(url, "no such object (or bucket) on the server")
    if isinstance(exc, PermissionError):
        return RemoteError(url, f"access denied ({exc}); check the credentials given in storage_options")
    name = type(exc).__name__
    if "Credential" in name or "Credentials" in str(exc)[:200]:
        return RemoteError(url, f"no usable credentials ({name}: {exc}); give them in storage_options (or anon=True)")
    return RemoteError(url, f"the server failed the request ({name}: {exc})")


@contextlib.contextmanager
def remote_errors(url: str) -> Iterator[None]:
    """Turn a failure of the store (but not xafm's own errors or interrupts) into
    :func:`remote_error`'s xafm error."""
    try:
        yield
    except (XafmError, ImportError):
        raise
    except Exception as exc:
        if isinstance(exc, (AttributeError, NameError, AssertionError, NotImplementedError)):
            raise
        raise remote_error(url, exc) from exc


# --------------------------------------------------------------------------------------
# reading bytes
# --------------------------------------------------------------------------------------
#: How much a remote file object fetches at least per request when read sequentially.
DEFAULT_BLOCK = 2**18


_KNOWN_SIZE: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar("xafm_known_size", default=None)


@contextlib.contextmanager
def known_size(url: str, nbytes: int | None) -> Iterator[None]:
    """While the block runs, a :class:`RemoteFile` on ``url`` takes its size to be
    ``nbytes`` (what the version check just asked the store) instead of asking again."""
    if nbytes is None or not is_url(url):
        yield
        return
    token = _KNOWN_SIZE.set((url, int(nbytes)))
    try:
        yield
    finally:
        _KNOWN_SIZE.reset(token)


class RemoteFile(io.RawIOBase):
    """A URL read as a seekable binary file, in byte ranges (fsspec's file and cache).

    Failures of the store become xafm errors naming the URL (:func:`remote_error`). After
    a fork (HDF5 heap values are read in a forked child), the child opens the URL anew
    instead of using the parent's connection, which belongs to the parent's event loop.
    """

    def __init__(self, url: str, *, block_size: int | None = None, cache_type: str = "readahead"):
        super().__init__()
        self.url = url
        self._block = block_size or DEFAULT_BLOCK
        self._cache_type = cache_type
        self._pos = 0
        self._fh: Any = None
        self._pid = -1
        self._size: int | None = None
        self._file()  # open now: a missing object fails here, not at the first read

    def _file(self) -> Any:
        if self._fh is None or self._pid != os.getpid():
            fs, inner = filesystem(self.url)
            kwargs: dict[str, Any] = {"block_size": self._block, "cache_type": self._cache_type}
            known = _KNOWN_SIZE.get()
            if known is not None and known[0] == self.url:
                kwargs["size"] = known[1]  # no HEAD request of its own
            with remote_errors(self.url):
                try:
                    self._fh = fs.open(inner, "rb", **kwargs)
                except TypeError:  # a file system whose files take no size
                    kwargs.pop("size", None)
                    self._fh = fs.open(inner, "rb", **kwargs)
            self._pid = os.getpid()
            self._size = int(self._fh.size)
        return self._fh

    @property
    def size(self) -> int:
        self._file()
        assert self._size is not None
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"{self.url}: seek to a negative position")
        self._pos = base + offset
        return self._pos

    def _read_at(self, nbytes: int) -> bytes:
        """``nbytes`` from the position: small reads through fsspec's cache (metadata,
        headers: neighbours come in one block), a read of a block or more as one ranged
        GET of just those bytes (a frame, a chunk), past no cache."""
        fh = self._file()
        nbytes = max(0, min(nbytes, self.size - self._pos))
        with remote_errors(self.url):
            if nbytes >= self._block:
                data = bytes(fh.fs.cat_file(fh.path, start=self._pos, end=self._pos + nbytes))
            else:
                fh.seek(self._pos)
                data = bytes(fh.read(nbytes))
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read_at(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._pos
        return self._read_at(size)

    def close(self) -> None:
        if self._fh is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                self._fh.close()
        self._fh = None
        super().close()


def open_binary(path: str | os.PathLike[str], *, block_size: int | None = None, cache_type: str = "readahead") -> BinaryIO:
    """A file object reading ``path``: a regular local file (:func:`open_regular`), or
    a URL (:class:`RemoteFile`) read in byte ranges of at least ``block_size`` bytes
    (:data:`DEFAULT_BLOCK` if None) as asked, cached as fsspec's ``cache_type`` says
    (``"readahead"`` for reads that move forward, ``"blockcache"`` for formats such as
    HDF5 that jump between a few places)."""
    text = local_path(path)
    if not is_url(text):
        return open_regular(text)
    return RemoteFile(text, block_size=block_size, cache_type=cache_type)  # type: ignore[return-value]


def file_size(fh: Any) -> int:
    """The size of an open file from :func:`open_binary` (no further request for a URL)."""
    if isinstance(fh, RemoteFile):
        return fh.size
    return os.fstat(fh.fileno()).st_size


def head(path: str | os.PathLike[str], nbytes: int) -> bytes:
    """The first ``nbytes`` of a file or object (fewer if it is shorter): one ranged GET
    for a URL, not the whole object."""
    text = local_path(path)
    if not is_url(text):
        with open_regular(text) as fh:
            return fh.read(nbytes)
    fs, inner = filesystem(text)
    with remote_errors(text):
        return bytes(fs.cat_file(inner, start=0, end=nbytes))


def read_ranges(path: str | os.PathLike[str], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The bytes ``[start, stop)`` of each range of a file: for a URL one ranged GET per
    range, sent together (fsspec's ``cat_ranges``), so callers merge adjacent ranges first."""
    if not ranges:
        return []
    text = local_path(path)
    if not is_url(text):
        out = []
        with open_regular(text) as fh:
            for start, stop in ranges:
                fh.seek(start)
                out.append(fh.read(stop - start))
        return out
    fs, inner = filesystem(text)
    with remote_errors(text):
        got = fs.cat_ranges([inner] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges], on_error="raise")
    return [bytes(g) for g in got]


def info(url: str) -> dict[str, Any]:
    """The store's current description of an object or prefix (``fs.info``: size, type,
    ETag, last-modified, version id as the store gives them), never from a cache.
    Raises :class:`ObjectNotFoundError` when nothing is there."""
    fs, inner = filesystem(url)
    with remote_errors(url):
        with contextlib.suppress(Exception):
            fs.invalidate_cache(inner)
        return dict(fs.info(inner))


def size(path: str | os.PathLike[str]) -> int:
    """The size in bytes of a file or object."""
    text = local_path(path)
    if not is_url(text):
        return os.path.getsize(text)
    fs, inner = filesystem(text)
    with remote_errors(text):
        return int(fs.size(inner))


def isfile(path: str | os.PathLike[str]) -> bool:
    text = local_path(path)
    if not is_url(text):
        return os.path.isfile(text)
    fs, inner = filesystem(text)
    with remote_errors(text):
        return bool(fs.isfile(inner))


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``os.path.join`` for paths, ``/``-joining for URLs."""
    text = os.fspath(base)
    if not is_url(text):
        return os.path.join(text, *parts)
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def name(path: str | os.PathLike[str]) -> str:
    """The last part of a path or URL (``video.asd``; an HTTP URL's query left out)."""
    text = os.fspath(path).rstrip("/")
    if not is_url(text):
        return os.path.basename(text)
    if protocol(text) in ("http", "https"):
        text = text.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return text.rsplit("/", 1)[-1]


#: Block size of the reads of headers and pages of a URL: a header or an IFD is a few
#: kB, so one small block is one request, and a frame is read in ranges of its own size.
SMALL_BLOCK = 2**16


def absolute(path: str | os.PathLike[str]) -> str:
    """``os.path.abspath`` of a path; a URL unchanged (it is absolute)."""
    text = local_path(path)
    return text if is_url(text) else os.path.abspath(text)


def parent(path: str | os.PathLike[str]) -> str:
    """The folder holding a file (absolute), or the URL prefix one level up."""
    text = local_path(path)
    if not is_url(text):
        return os.path.dirname(os.path.abspath(text))
    return text.rstrip("/").rsplit("/", 1)[0]


def scan(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(name, kind)`` of each entry of a folder or URL prefix, sorted by name; kind is
    ``"file"``, ``"dir"`` or ``"other"`` (a FIFO, a device, a broken link). One listing
    request for a URL, where a prefix below is a ``"dir"``."""
    text = local_path(path)
    if not is_url(text):
        out = []
        with os.scandir(text) as entries:
            for entry in entries:
                kind = "dir" if entry.is_dir() else "file" if entry.is_file() else "other"
                out.append((entry.name, kind))
        return sorted(out)
    fs, inner = filesystem(text)
    with remote_errors(text):
        fs.invalidate_cache(inner)  # what is there now, not what a cached listing said
        listed = fs.ls(inner, detail=True)
    return sorted(
        (str(e["name"]).rstrip("/").rsplit("/", 1)[-1], "dir" if e.get("type") == "directory" else "file")
        for e in listed
        if str(e["name"]).rstrip("/") != inner.rstrip("/")
    )
