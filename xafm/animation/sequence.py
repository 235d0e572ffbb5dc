"""Numbered frames: one annotated image per frame in a new folder, written whole or not
at all.

PNG frames are palette PNGs of the render indices (lossless), rows filtered with "Up" and
compressed with zlib level 1, which releases the GIL so frames compress in parallel;
JPEG frames are encoded by Pillow from the palette colours. Every frame carries the
provenance: an ``iTXt`` chunk (keyword ``xafm_provenance``) in a PNG, a ``COM`` segment
in a JPEG. See ``docs/animation.md``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core.contract import Format
from ..core.output import OutputKind, atomic_output
from ..core.writable import check_writable
from ..exceptions import FormatError, RenderError
from ..render.options import RenderOptions, takes_render_options

FRAME_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}
#: Bytes a JPEG COM segment holds (its length field is 16 bits and counts itself).
JPEG_COMMENT_MAX_BYTES = 65533
#: The names :func:`frame_names` gives.
FRAME_NAME = re.compile(r".+_[0-9]{4,}\.(png|jpg)")
#: Bytes of a frame's start in which its provenance is looked for (the PNG text chunk is
#: before the image data; a JPEG comment segment is at most 64 KiB)
_PROOF_BYTES = 2**17


def _carries_provenance(path: Path) -> bool:
    """Whether a frame file holds the provenance :func:`to_frames` puts in every frame."""
    from .record import PNG_KEYWORD

    with open(path, "rb") as fh:
        head = fh.read(_PROOF_BYTES)
    if head.startswith(b"\x89PNG"):
        return b"iTXt" + PNG_KEYWORD.encode("latin-1") + b"\x00" in head
    return head.startswith(b"\xff\xd8") and b"\xff\xfe" in head and __name__.encode() in head


def is_frame_folder(folder: Path) -> bool:
    """Whether ``folder`` holds only frames :func:`to_frames` wrote: regular files named
    ``<prefix>_<number>.png|.jpg`` and no others, the first of them carrying xafm's
    provenance. The only folder ``overwrite=True`` replaces."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    if not entries or not all(e.is_file(follow_symlinks=False) and FRAME_NAME.fullmatch(e.name) for e in entries):
        return False
    return _carries_provenance(Path(entries[0].path))


#: What the frame writer replaces with ``overwrite=True``.
FRAME_FOLDER = OutputKind("a folder of frames xafm wrote", folder=True, owns=is_frame_folder)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_text_chunk(keyword: str, text: bytes) -> bytes:
    """A compressed ``iTXt`` chunk (international text: UTF-8, no language) holding
    ``text`` under ``keyword``; made once per export and put into every frame."""
    header = keyword.encode("latin-1") + b"\x00\x01\x00\x00\x00"  # keyword, compressed with zlib, no language tags
    return _png_chunk(b"iTXt", header + zlib.compress(text, 9))


def png_bytes(indices: np.ndarray, palette: np.ndarray, level: int = 1, chunks: bytes = b"") -> bytes:
    """A palette PNG of 8-bit indices, with ``chunks`` (ready-made ancillary chunks, such
    as :func:`png_text_chunk`) before the image data, where readers find them first.

    Rows use the "Up" filter: the indices follow the colormap order, so row differences
    of smooth AFM images are small and compress well at zlib level 1, which is fast and
    releases the GIL (frames compress in parallel).
    """
    h, w = indices.shape
    raw = np.empty((h, w + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[0, 1:] = indices[0]
    np.subtract(indices[1:], indices[:-1], out=raw[1:, 1:], dtype=np.uint8)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", ihdr),
            _png_chunk(b"PLTE", palette.astype(np.uint8).tobytes()),
            chunks,
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def jpeg_bytes(rgb0: np.ndarray, quality: int = 95, comment: bytes = b"") -> bytes:
    """A JPEG of colours given as ``FrameRenderer.rgb0`` gives them (uint32 R, G, B, 0),
    with ``comment`` (at most 65533 bytes) as its COM segment."""
    from PIL import Image

    h, w = rgb0.shape
    im = Image.frombuffer("RGB", (w, h), np.ascontiguousarray(rgb0), "raw", "RGBX", 0, 1)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality), **({"comment": comment} if comment else {}))
    return buf.getvalue()


def frame_names(n: int, prefix: str, suffix: str) -> list[str]:
    """Zero-padded names that sort in frame order: ``frame_0000.png`` ..."""
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}{suffix}" for i in range(n)]


@takes_render_options
def to_frames(
    da: xr.DataArray,
    folder: str | os.PathLike,
    *,
    fmt: str = "png",
    prefix: str = "frame",
    jpeg_quality: int = 95,
    overwrite: bool = False,
    progress: Any = False,
    render: RenderOptions | None = None,
    fsync: bool = True,
) -> Path:
    """Write one annotated image per frame into a new folder (``frame_0000.png``, ...).

    The folder appears complete or not at all. Every frame carries the provenance (PNG:
    an ``iTXt`` chunk ``xafm_provenance``; JPEG: the comment).

    Parameters
    ----------
    fmt
        ``"png"`` (palette PNG, lossless) or ``"jpg"``/``"jpeg"``.
    prefix
        The start of the file names (``frame`` gives ``frame_0000.png``).
    jpeg_quality
        1-100, for JPEG frames.
    overwrite
        Replace an existing folder of frames xafm wrote (never another folder).
    progress
        True prints progress to stderr; a callable is called with ``(done, total)``.
    fsync
        Make every frame and the folder durable before returning; False for scratch output.
    """
    from ..render.frames import FrameRenderer
    from ..render.parallel import Progress, map_ordered
    from .record import PNG_KEYWORD, export_records, records_json

    check_writable(da, "to_frames", folder)
    key = str(fmt).lower().lstrip(".")
    if key not in FRAME_FORMATS:
        raise FormatError(f"fmt must be one of {sorted(FRAME_FORMATS)}, got {fmt!r}")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "\\" in prefix or prefix in (".", ".."):
        raise FormatError(f"prefix must be a plain file name part, got {prefix!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise RenderError(f"jpeg_quality must be 1-100, got {jpeg_quality!r}")
    folder = Path(folder)
    r = FrameRenderer(da, render, action="to_frames")
    names = frame_names(r.n, prefix, FRAME_FORMATS[key])
    bar = Progress(progress, r.n, f"frames {folder.name}")
    with atomic_output(folder, overwrite=overwrite, kind=FRAME_FOLDER, fsync=fsync) as tmp:
        records = export_records(da, key, folder, r, writer=__name__, files=len(names), pattern=f"{prefix}_*{FRAME_FORMATS[key]}")
        png_chunks = png_text_chunk(PNG_KEYWORD, records_json(records)) if key == "png" else b""
        jpeg_comment = records_json(records, max_bytes=JPEG_COMMENT_MAX_BYTES, where=str(folder)) if key != "png" else b""

        def write(item: tuple[int, np.ndarray]) -> None:
            i, frame = item
            idx = r.indices(frame, i, out=r.scratch("indices", r.shape))  # encoded into new bytes below
            data = png_bytes(idx, r.palette, chunks=png_chunks) if key == "png" else jpeg_bytes(r.rgb0(idx), jpeg_quality, comment=jpeg_comment)
            (tmp / names[i]).write_bytes(data)

        # closed here, not when collected: its threads write into tmp, so they stop
        # before atomic_output removes it, whatever interrupts the loop
        with contextlib.closing(map_ordered(write, r.frames())) as written:
            for _ in written:
                bar.step()
    return folder


FORMAT = Format(name="png", description="PNG frame sequence (a folder)", suffixes=("_frames",), folder=True, write=to_frames)
