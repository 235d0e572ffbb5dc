"""Animated GIF: a looping GIF written frame by frame straight into the file.

The container is written here: a global 256-colour table (the render palette), a
NETSCAPE loop-forever block, a comment extension holding the provenance (JSON), then per
frame a graphic control block and the image data: LZW-coded by Pillow's encoder where
that pays (smooth or upscaled frames), else uncompressed 9-bit codes built with numpy
(noisy frames, several times faster); ``compression`` forces either. See
``docs/animation.md``.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core.contract import Format
from ..core.output import atomic_output
from ..core.writable import check_writable
from ..exceptions import FormatError, RenderError, XafmWarning
from ..render.options import RenderOptions, check_fps, takes_render_options

#: GIF delays are whole 1/100 s and players slow delays under 2/100 s down.
GIF_MAX_FPS = 50.0


def gif_delays_cs(n: int, fps: float) -> list[int]:
    """Per-frame delays in 1/100 s whose running sum tracks ``i / fps`` (GIF has no finer
    unit), at least 2 (browsers slow smaller delays down to 1/10 s)."""
    edges = [round(100.0 * i / fps) for i in range(n + 1)]
    return [max(2, b - a) for a, b in itertools.pairwise(edges)]


def _gif_header(width: int, height: int, palette: np.ndarray) -> bytes:
    if width > 65535 or height > 65535:
        raise RenderError(f"GIF frames are at most 65535 px a side; these would be {width}x{height}")
    lsd = struct.pack("<HHBBB", width, height, 0xF7, 0, 0)  # global table of 256 colours
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"  # loop forever
    return b"GIF89a" + lsd + palette.astype(np.uint8).tobytes() + loop


def gif_comment(text: bytes) -> bytes:
    """A comment extension (``0x21 0xFE``, then the text in sub-blocks) holding ``text``;
    nothing for no text. Decoders skip it; Pillow shows it as ``Image.info["comment"]``."""
    if not text:
        return b""
    return b"!\xfe" + b"".join(bytes(part) for part in _sub_blocks(np.frombuffer(text, dtype=np.uint8)))


def _gif_frame_header(width: int, height: int, delay_cs: int) -> bytes:
    gce = b"!\xf9\x04" + struct.pack("<BHBB", 0x04, delay_cs, 0, 0)  # disposal 1: keep
    return gce + b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def _gif_image_data(gif: bytes) -> bytes:
    """The LZW-coded image data (code size byte + sub-blocks + terminator) of a
    single-frame GIF."""
    if gif[:3] != b"GIF":
        raise RenderError("the GIF encoder returned something that is not a GIF")
    pos = 13
    if gif[10] & 0x80:
        pos += 3 * 2 ** ((gif[10] & 7) + 1)
    while pos < len(gif):
        tag = gif[pos]
        if tag == 0x21:
            pos = _skip_sub_blocks(gif, pos + 2)
        elif tag == 0x2C:
            flags = gif[pos + 9]
            pos += 10
            if flags & 0x80:
                pos += 3 * 2 ** ((flags & 7) + 1)
            start = pos
            return gif[start : _skip_sub_blocks(gif, pos + 1)]
        else:
            break
    raise RenderError("the GIF encoder returned a GIF without image data")


#: literal GIF: a clear code before every this many pixels keeps all codes 9 bits wide
#: (decoders widen codes 255 codes after a clear; 247 leaves margin for off-by-ones and
#: makes a clear + 247 pixels exactly 31 groups of 8 codes = 279 bytes)
LITERAL_RUN = 247
GIF_COMPRESSIONS = ("auto", "fast", "lzw")


def _sub_blocks(data: np.ndarray) -> list[Any]:
    """Bytes as GIF data sub-blocks (length byte + up to 255 bytes) and the terminator."""
    n = data.size
    k = max(1, -(-n // 255))
    out = np.empty((k, 256), dtype=np.uint8)
    out[:, 0] = 255
    full = (k - 1) * 255
    out[: k - 1, 1:] = data[:full].reshape(k - 1, 255)
    last = n - full
    out[-1, 0] = last
    out[-1, 1 : 1 + last] = data[full:]
    return [out.reshape(-1)[: 256 * (k - 1) + 1 + last], b"\x00"]


def _gif_literal(indices: np.ndarray) -> list[Any]:
    """GIF image data without compression, built with numpy: every pixel is its own 9-bit
    code, with a clear code before every ``LITERAL_RUN`` pixels. About 1.13 bytes per
    pixel, several times faster than LZW, and parallel (numpy releases the GIL)."""
    pixels = np.ascontiguousarray(indices).reshape(-1)
    n = pixels.size
    run = LITERAL_RUN
    rows = -(-(n + 1) // run)  # room for the end code after the last pixel
    flat = np.zeros(rows * run, dtype=np.uint16)
    flat[:n] = pixels
    flat[n] = 257  # end of information
    table = np.empty((rows, run + 1), dtype=np.uint16)  # each row: clear, run pixels
    table[:, 0] = 256
    table[:, 1:] = flat.reshape(rows, run)
    g = table.reshape(-1, 8)  # (run + 1) % 8 == 0: whole groups of 8 codes = 9 bytes
    packed = np.empty((g.shape[0], 9), dtype=np.uint8)
    tmp = np.empty(g.shape[0], dtype=np.uint16)
    packed[:, 0] = g[:, 0]  # (casting keeps the low byte)
    for j in range(1, 8):  # byte j: the top j bits of code j-1, the low 8-j bits of code j
        np.right_shift(g[:, j - 1], 9 - j, out=tmp)
        tmp |= g[:, j] << j
        packed[:, j] = tmp
    packed[:, 8] = g[:, 7] >> 1
    m = n + 1 + n // run + 1  # codes up to and including the end code
    return [b"\x08", *_sub_blocks(packed.reshape(-1)[: -(-(m * 9) // 8)])]


def _gif_lzw_pillow(indices: np.ndarray) -> list[Any]:
    """LZW-compress palette indices with Pillow's GIF writer (a single-frame GIF, its
    image data cut out): what ``_gif_lzw`` falls back to."""
    from PIL import Image

    h, w = indices.shape
    im = Image.frombytes("P", (w, h), np.ascontiguousarray(indices).tobytes())
    im.putpalette(bytes(768))
    buf = io.BytesIO()
    im.save(buf, format="GIF", optimize=False, interlace=False)
    return [_gif_image_data(buf.getvalue())]


def _pillow_gif_encoder(im: Any) -> Any:
    """Pillow's GIF (LZW) encoder set up on a "P" image: a private entry point of
    Pillow's, so ``_gif_lzw`` falls back to the GIF writer when it fails."""
    from PIL import Image

    encoder = Image._getencoder("P", "gif", "P")
    encoder.setimage(im.im, (0, 0, *im.size))
    return encoder


def _gif_lzw(indices: np.ndarray) -> list[Any]:
    """LZW-compress palette indices with Pillow's GIF encoder (C, releases the GIL),
    called directly: the same bytes as its GIF writer, without its 0.06 ms a call of
    file and palette handling."""
    from PIL import Image

    h, w = indices.shape
    im = Image.frombuffer("P", (w, h), np.ascontiguousarray(indices), "raw", "P", 0, 1)
    try:
        encoder = _pillow_gif_encoder(im)
    except (AttributeError, TypeError, ValueError, OSError):  # a Pillow without these internals
        return _gif_lzw_pillow(indices)
    parts: list[Any] = [b"\x08"]  # LZW minimum code size: 8 bits
    while True:
        _, status, data = encoder.encode(1 << 16)
        parts.append(data)
        if status:
            break
    if status < 0:
        raise RenderError(f"Pillow's GIF encoder failed (error {status})")
    parts.append(b"\x00")
    return parts


#: ``compression="auto"``: a frame is LZW-coded when a band of its rows shrinks to at most
#: this fraction of the literal coding
AUTO_LZW_RATIO = 0.7
#: ... the band: about 1/64 of the rows in the middle of the frame, at least 4096 pixels
#: (its ratio is within about 0.1 of the whole frame's, on real and synthetic stacks)
AUTO_PROBE_FRACTION = 64
AUTO_PROBE_PIXELS = 4096


def _literal_size(n: int) -> int:
    """Bytes of ``_gif_literal``'s image data for ``n`` pixels: the code size byte, the
    9-bit codes in sub-blocks of 255 and the terminator."""
    codes = -(-((n + 1 + n // LITERAL_RUN + 1) * 9) // 8)
    return 1 + codes + -(-codes // 255) + 1


def _gif_auto(indices: np.ndarray) -> list[Any]:
    """LZW where it pays, literal codes where it does not: a band of rows is LZW-coded
    first, and the frame follows when the band shrank to ``AUTO_LZW_RATIO`` of the literal
    size. Smooth or upscaled AFM frames (0.04-0.55 of literal) are LZW-coded; noisy ones
    (about 0.8) stay literal, several times faster. The band costs about 1/64 of an LZW
    coding; the choice depends on the frame alone, so the file does not depend on timing."""
    h, w = indices.shape
    rows = min(h, max(-(-h // AUTO_PROBE_FRACTION), -(-AUTO_PROBE_PIXELS // w)))
    if rows >= h:
        return _gif_lzw(indices)  # a small frame: LZW costs little
    top = (h - rows) // 2
    band = sum(len(part) for part in _gif_lzw(indices[top : top + rows]))
    if band <= AUTO_LZW_RATIO * _literal_size(rows * w):
        return _gif_lzw(indices)
    return _gif_literal(indices)


def write_gif(
    da: xr.DataArray, path: Path, *, fps: float, compression: str, render: RenderOptions | None, overwrite: bool, progress: Any, record: bool,
    fsync: bool = True,
) -> tuple[Path, tuple[int, int]]:
    """What :func:`to_gif` does, with ``record=False`` for a file that is not an export
    (the notebook preview) and so carries no provenance; and the frames' (width, height)."""
    from ..render.frames import FrameRenderer, user_stacklevel
    from ..render.parallel import Progress, map_ordered
    from .record import export_records, records_json

    check_writable(da, "to_gif", path)
    fps = check_fps(fps)
    if compression not in GIF_COMPRESSIONS:
        raise FormatError(f"GIF compression must be one of {GIF_COMPRESSIONS}, got {compression!r}")
    encoder = {"auto": _gif_auto, "fast": _gif_literal, "lzw": _gif_lzw}[compression]
    if fps > GIF_MAX_FPS:
        warnings.warn(
            f"GIF frame delays are whole 1/100 s and players slow down delays under 2/100 s; playing at {GIF_MAX_FPS:g} fps instead of {fps:g}",
            XafmWarning,
            stacklevel=user_stacklevel(),
        )
    r = FrameRenderer(da, render, action="to_gif")
    width, height = r.size
    delays = gif_delays_cs(r.n, min(fps, GIF_MAX_FPS))
    bar = Progress(progress, r.n, f"GIF {path.name}")

    def encode(item: tuple[int, np.ndarray]) -> tuple[int, list[Any]]:
        i, frame = item
        return i, encoder(r.indices(frame, i, out=r.scratch("indices", r.shape)))  # the codes are new arrays

    with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp, open(tmp, "wb") as fp:
        fp.write(_gif_header(width, height, r.palette))
        if record:  # before the frames (where readers look), after the z-scale pass the frames need anyway
            records = export_records(da, "gif", path, r, writer=__name__, fps=fps, compression=compression)
            fp.write(gif_comment(records_json(records, ascii_only=True)))
        for i, data in map_ordered(encode, r.frames()):
            fp.write(_gif_frame_header(width, height, delays[i]))
            for part in data:
                fp.write(part)
            bar.step()
        fp.write(b";")
    return path, (width, height)


@takes_render_options
def to_gif(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fps: float = 5.0,
    compression: str = "auto",
    overwrite: bool = False,
    progress: Any = False,
    render: RenderOptions | None = None,
    fsync: bool = True,
) -> Path:
    """Write an annotated, looping GIF of the stack, with its provenance in a comment.

    Parameters
    ----------
    fps
        Playback rate; GIF stores delays in 1/100 s, so the delays alternate to keep the
        average (at most 50 fps).
    compression
        ``"auto"`` (default): each frame LZW-coded when that makes it at least 30 %
        smaller (smooth or upscaled frames: 2-25 times smaller than literal), else stored
        literally (noisy frames), so files are small and noisy stacks stay fast;
        ``"fast"``: every pixel an uncompressed 9-bit code (about 1.13 bytes per pixel,
        numpy on all cores, the fastest); ``"lzw"``: every frame LZW-coded (Pillow's
        encoder), the smallest and 4-10x slower on noisy frames.
    overwrite
        Replace an existing file.
    progress
        True prints progress to stderr; a callable is called with ``(done, total)``.
    fsync
        Make the file durable before returning; False for scratch output.
    """
    return write_gif(da, Path(path), fps=fps, compression=compression, render=render, overwrite=overwrite, progress=progress, record=True, fsync=fsync)[0]


FORMAT = Format(name="gif", description="animated GIF", suffixes=(".gif",), write=to_gif)
