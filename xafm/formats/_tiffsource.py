"""Opening a TIFF with tifffile from a path or a URL (the TIFF-based readers: OME-TIFF,
plain TIFF and ImageJ, JPK, Park Systems).

A path is opened by tifffile itself, as always; a URL through :mod:`xafm.core.sources`
as a file object read in small byte ranges, so that tifffile reads the header and the
IFDs it walks, and a page's strips when a page is read, never the whole file.
tifffile's ``_multifile=False`` throughout: it never opens files an OME-XML names
(:mod:`.ometiff.sets` does, checked).
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from ..core import sources


class _Opener:
    """What tifffile takes for an fsspec ``OpenFile``: it calls :meth:`open` and closes
    the file it gets when the ``TiffFile`` closes."""

    mode = "rb"

    def __init__(self, url: str):
        self.path = url

    def open(self) -> BinaryIO:
        # blocks kept: tifffile goes back and forth between an IFD and its tag values
        return sources.open_binary(self.path, block_size=sources.SMALL_BLOCK, cache_type="blockcache")


def open_tiff(path: str | os.PathLike[str]) -> Any:
    """``tifffile.TiffFile`` of a path or URL (use it in a ``with``: closing it closes
    the URL's file too)."""
    import tifffile

    text = sources.local_path(path)
    source: Any = _Opener(text) if sources.is_url(text) else text  # tifffile duck-types an OpenFile
    return tifffile.TiffFile(source, _multifile=False)


def file_of(tf: Any, path: str) -> str:
    """The file a page of ``tf`` (opened from ``path`` by :func:`open_tiff`) lives in, as
    later reads open it: tifffile's absolute path for a local file, the URL for a URL."""
    if sources.is_url(sources.local_path(path)):
        return sources.local_path(path)
    return os.path.abspath(tf.filehandle.path)
