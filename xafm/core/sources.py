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

import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

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


def open_binary(path: str | os.PathLike[str], *, block_size: int | None = None, cache_type: str = "readahead") -> BinaryIO:
    """A file object reading ``path``: a regular local file (:func:`open_regular`), or
    a URL read in byte ranges of ``block_size`` (fsspec's default if None) as asked,
    cached as fsspec's ``cache_type`` says (``"readahead"`` for reads that move forward,
    ``"blockcache"`` for formats that jump between a few places, such as TIFF's IFDs)."""
    text = local_path(path)
    if not is_url(text):
        return open_regular(text)
    fs, inner = filesystem(text)
    kwargs: dict[str, Any] = {"cache_type": cache_type}
    if block_size is not None:
        kwargs["block_size"] = block_size
    return fs.open(inner, "rb", **kwargs)  # type: ignore[no-any-return]


def size(path: str | os.PathLike[str]) -> int:
    """The size in bytes of a file or object."""
    text = local_path(path)
    if not is_url(text):
        return os.path.getsize(text)
    fs, inner = filesystem(text)
    return int(fs.size(inner))


def isdir(path: str | os.PathLike[str]) -> bool:
    text = local_path(path)
    if not is_url(text):
        return os.path.isdir(text)
    fs, inner = filesystem(text)
    return bool(fs.isdir(inner))


def isfile(path: str | os.PathLike[str]) -> bool:
    text = local_path(path)
    if not is_url(text):
        return os.path.isfile(text)
    fs, inner = filesystem(text)
    return bool(fs.isfile(inner))


def listdir(path: str | os.PathLike[str]) -> list[str]:
    """The names (not paths) in a folder or under a URL prefix, sorted."""
    text = local_path(path)
    if not is_url(text):
        return sorted(os.listdir(text))
    fs, inner = filesystem(text)
    return sorted(name.rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(inner, detail=False))


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``os.path.join`` for paths, ``/``-joining for URLs."""
    text = os.fspath(base)
    if not is_url(text):
        return os.path.join(text, *parts)
    return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])


def name(path: str | os.PathLike[str]) -> str:
    """The last part of a path or URL (``video.asd``)."""
    text = os.fspath(path).rstrip("/")
    return text.rsplit("/", 1)[-1] if is_url(text) else os.path.basename(text)


#: Block size of the reads of headers and pages of a URL: a header or an IFD is a few
#: kB, so one small block is one request, and a frame is read in ranges of its own size.
SMALL_BLOCK = 2**16


def file_size(fh: BinaryIO) -> int:
    """The size in bytes of the file open as ``fh`` (a local file or an fsspec file)."""
    known = getattr(fh, "size", None)
    if isinstance(known, int):
        return known
    return os.fstat(fh.fileno()).st_size


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
    fs.invalidate_cache(inner)  # what is there now, not what a cached listing said
    listed = fs.ls(inner, detail=True)
    return sorted(
        (str(e["name"]).rstrip("/").rsplit("/", 1)[-1], "dir" if e.get("type") == "directory" else "file")
        for e in listed
        if str(e["name"]).rstrip("/") != inner.rstrip("/")
    )
