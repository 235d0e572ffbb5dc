"""The provenance an animated export carries inside its file.

A writer never changes the DataArray it is given: the stack's records plus one
``export`` record (format, path, writer, how it was rendered, fps, codec, ...) go into
the file, as a JSON list, where each format keeps text: a GIF comment extension, the
``comment`` tag of a video container, an ``iTXt`` chunk of every PNG frame, a ``COM``
segment of every JPEG frame (``docs/animation.md``, "Provenance in the files").
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import xarray as xr

from ..core import provenance
from ..core.conventions import jsonable
from ..exceptions import XafmWarning
from ..render.frames import FrameRenderer, user_stacklevel

#: PNG text keyword (and the name Pillow gives the text in ``Image.info``).
PNG_KEYWORD = "xafm_provenance"


def export_records(da: xr.DataArray, fmt: str, path: str | os.PathLike[str], renderer: FrameRenderer, *, writer: str, **extra: Any) -> list[dict[str, Any]]:
    """The stack's records and the export record of this file (the z-scale pass runs
    now if it has not)."""
    record = provenance.make_record("export", format=fmt, path=os.fspath(path), writer=writer, **renderer.info(), **extra)
    return provenance.records(da) + [record]


def records_json(records: list[dict[str, Any]], *, ascii_only: bool = False, max_bytes: int | None = None, where: str = "") -> bytes:
    """The records as UTF-8 JSON (``ascii_only``: non-ASCII characters escaped, as GIF
    comments are meant to be 7-bit text).

    ``max_bytes`` is what the container holds (a JPEG segment, a QuickTime text atom):
    when the whole list does not fit, only the export record is kept, with the number of
    records left out (nothing, if even that does not fit), and a warning says so.
    """
    data = json.dumps(jsonable(records), ensure_ascii=ascii_only).encode("utf-8")
    if max_bytes is None or len(data) <= max_bytes:
        return data
    short = json.dumps(jsonable([{**records[-1], "earlier_records_omitted": len(records) - 1}]), ensure_ascii=ascii_only).encode("utf-8")
    kept = short if len(short) <= max_bytes else b""
    warnings.warn(
        f"{where}: the stack's provenance ({len(data)} bytes of JSON) does not fit the {max_bytes} bytes the file keeps; "
        + ("it holds the export record only" if kept else "it holds no provenance"),
        XafmWarning,
        stacklevel=user_stacklevel(),
    )
    return kept
