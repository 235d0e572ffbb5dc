"""Animated exports: GIF, video (MP4/MOV/MKV/AVI/WebM), numbered PNG/JPEG frames, and an
inline notebook preview.

All of them stream: frames are pulled block by block (``iter_blocks``), rendered to
palette indices by :class:`xafm.render.FrameRenderer` and encoded a few at a time on a
thread pool, so a dask stack larger than memory never materialises. The GIF is written
frame by frame into the file (container and, by default, uncompressed 9-bit code data
written here; Pillow's LZW with ``compression="lzw"``), video frames go through a pipe
to ffmpeg (imageio-ffmpeg's binary) as Y/U/V planes converted from the palette, and PNG
frames are palette PNGs compressed with zlib, which releases the GIL so frames compress
in parallel.
See ``docs/animation.md``.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import subprocess
import tempfile
import warnings
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import provenance
from ..core.contract import Format
from ..core.output import atomic_output
from ..exceptions import FormatError, WriteError, XafmWarning
from ..render import DEFAULT_CMAP, FrameRenderer, Progress, RenderError, _check_fps, _user_stacklevel, map_ordered, workers

NAME = "animation"

#: suffix -> (ffmpeg muxer, default codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "libvpx-vp9"),
}
#: x264 preset used unless ``preset`` is given: the fastest, and its output (constrained
#: baseline profile) plays everywhere; "veryfast" or slower make files 1.5-3x smaller.
DEFAULT_PRESET = "ultrafast"
#: 0-10; 6 is CRF 23 for H.264, x264's own default
DEFAULT_QUALITY = 6
FRAME_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}
GIF_MAX_FPS = 50.0


def _renderer(da: xr.DataArray, action: str, pad_to: int = 1, **opts: Any) -> FrameRenderer:
    return FrameRenderer(da, action=action, pad_to=pad_to, **opts)


def _record(da: xr.DataArray, fmt: str, path: Path, renderer: FrameRenderer, **extra: Any) -> None:
    """(Interim: animations do not yet carry their export record in the file.)"""
    provenance.make_record("export", format=fmt, path=os.fspath(path), writer=__name__, **renderer.info(), **extra)


# --------------------------------------------------------------------------------------
# GIF
# --------------------------------------------------------------------------------------
def gif_delays_cs(n: int, fps: float) -> list[int]:
    """Per-frame delays in 1/100 s whose running sum tracks ``i / fps`` (GIF has no finer
    unit), at least 2 (browsers slow smaller delays down to 1/10 s)."""
    edges = [round(100.0 * i / fps) for i in range(n + 1)]
    return [max(2, b - a) for a, b in zip(edges[:-1], edges[1:])]


def _gif_header(width: int, height: int, palette: np.ndarray) -> bytes:
    if width > 65535 or height > 65535:
        raise RenderError(f"GIF frames are at most 65535 px a side; these would be {width}x{height}")
    lsd = struct.pack("<HHBBB", width, height, 0xF7, 0, 0)  # global table of 256 colours
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"  # loop forever
    return b"GIF89a" + lsd + palette.astype(np.uint8).tobytes() + loop


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
GIF_COMPRESSIONS = ("fast", "lzw")


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


def _gif_lzw(indices: np.ndarray) -> list[Any]:
    """LZW-compress palette indices with Pillow (single-frame GIF, image data cut out)."""
    from PIL import Image

    h, w = indices.shape
    im = Image.frombytes("P", (w, h), np.ascontiguousarray(indices).tobytes())
    im.putpalette(bytes(768))
    buf = io.BytesIO()
    im.save(buf, format="GIF", optimize=False, interlace=False)
    return [_gif_image_data(buf.getvalue())]


def _write_gif(da: xr.DataArray, path: Path, *, fps: float, compression: str, overwrite: bool, progress: Any, record: bool, **opts: Any) -> Path:
    fps = _check_fps(fps)
    if compression not in GIF_COMPRESSIONS:
        raise FormatError(f"GIF compression must be one of {GIF_COMPRESSIONS}, got {compression!r}")
    encoder = _gif_lzw if compression == "lzw" else _gif_literal
    if fps > GIF_MAX_FPS:
        warnings.warn(
            f"GIF frame delays are whole 1/100 s and players slow down delays under 2/100 s; playing at {GIF_MAX_FPS:g} fps instead of {fps:g}",
            XafmWarning,
            stacklevel=_user_stacklevel(),
        )
    r = _renderer(da, "to_gif", **opts)
    width, height = r.size
    delays = gif_delays_cs(r.n, min(fps, GIF_MAX_FPS))
    bar = Progress(progress, r.n, f"GIF {path.name}")

    def encode(item: tuple[int, np.ndarray]) -> tuple[int, bytes]:
        i, frame = item
        return i, encoder(r.indices(frame, i))

    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fp:
        fp.write(_gif_header(width, height, r.palette))
        for i, data in map_ordered(encode, r.frames()):
            fp.write(_gif_frame_header(width, height, delays[i]))
            for part in data:
                fp.write(part)
            bar.step()
        fp.write(b";")
    if record:
        _record(da, "gif", path, r, fps=fps, compression=compression)
    return path


def to_gif(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fps: float = 5.0,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    scale_bar_nm: float | None = 100,
    timestamps: bool = True,
    scale_bar: bool = True,
    overwrite: bool = False,
    progress: Any = False,
    nan_color: Any = "auto",
    upscale: Any = "auto",
    compression: str = "fast",
) -> Path:
    """Write an annotated, looping GIF of the stack.

    Parameters
    ----------
    fps
        Playback rate; GIF stores delays in 1/100 s, so the delays alternate to keep the
        average (at most 50 fps).
    cmap
        A matplotlib colormap name or object; xafm's ``xafm_afm`` by default.
    zmin, zmax
        Values at the ends of the colormap: ``"auto"`` (1st / 99th percentile of the whole
        stack), None (minimum / maximum) or numbers. Values beyond are clipped.
    scale_bar_nm
        Scale bar length; None picks a round length of about a third of the width. A bar
        that does not fit is replaced by one that does, with a warning.
    timestamps, scale_bar
        Draw the frame time (``"12.40 s"``, from the ``time`` coordinate) and the scale bar.
    progress
        True prints progress to stderr; a callable is called with ``(done, total)``.
    nan_color
        Colour of NaN/inf pixels; ``"auto"`` picks one far from every colormap colour.
    upscale
        Integer nearest-neighbour factor, or ``"auto"``: frames with a shorter side under
        320 px grow so the annotations are legible.
    compression
        ``"fast"``: pixels stored as uncompressed 9-bit codes (about 1.13 bytes per pixel,
        encoded with numpy on all cores); ``"lzw"``: LZW-compressed by Pillow, smaller
        (little on noisy frames, several times on clean ones) and about 10x slower.
    """
    return _write_gif(
        da, Path(path), fps=fps, compression=compression, overwrite=overwrite, progress=progress, record=True,
        cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm, timestamps=timestamps,
        scale_bar=scale_bar, nan_color=nan_color, upscale=upscale,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------
def _codec_args(codec: str, quality: float | None, preset: str | None) -> tuple[str, list[str]]:
    """(pixel format, ffmpeg output options) for a codec and a 0-10 quality (10 best)."""
    if quality is not None:
        try:
            q = float(quality)
        except (TypeError, ValueError):
            raise RenderError(f"quality must be a number from 0 to 10, got {quality!r}") from None
        if not 0 <= q <= 10:
            raise RenderError(f"quality must be a number from 0 to 10, got {quality!r}")
    pix_fmt = "yuv420p"
    args: list[str] = []
    if codec in ("libx264", "libx265"):
        args += ["-preset", preset or DEFAULT_PRESET]
        if quality is not None:
            args += ["-crf", str(round(35 - 2 * q))]  # 6 -> 23
    elif codec in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
        if codec == "libvpx-vp9":
            args += ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"]
        elif preset:
            args += ["-preset", preset]
        if quality is not None:
            args += ["-crf", str(round(50 - 3 * q)), "-b:v", "0"]  # 6 -> 32
    else:
        if codec == "mjpeg":
            pix_fmt = "yuvj420p"
        if quality is not None:
            args += ["-q:v", str(max(1, min(31, round(31 - 2.9 * q))))]  # 6 -> 14
    return pix_fmt, args


class _FfmpegInput:
    """An ffmpeg process encoding raw frames written to its stdin.

    Our own process handling rather than ``imageio_ffmpeg.write_frames`` (imageio-ffmpeg
    still provides the binary): closing waits for ffmpeg to exit instead of polling it
    every 10 ms (about 0.03 s of a 0.25 s export), ffmpeg's own error message ends up in
    the exception, and the frame rate is passed exactly, as a fraction. ffmpeg runs in its
    own process group so a Ctrl-C in a notebook reaches Python, which then kills it.
    """

    def __init__(self, path: Path, args: list[str]):
        import imageio_ffmpeg

        self.path = path
        self._stderr = tempfile.TemporaryFile()
        group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
        try:
            self._proc = subprocess.Popen(
                [imageio_ffmpeg.get_ffmpeg_exe(), *args],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, bufsize=0, **group,
            )  # fmt: skip
        except BaseException:
            self._stderr.close()
            raise

    def _failed(self, what: str) -> WriteError:
        self._stderr.seek(0)
        message = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return WriteError(self.path, f"{what}, nothing was written: {message or 'no message'}")

    def write(self, data: Any) -> None:
        try:
            self._proc.stdin.write(data)  # type: ignore[union-attr]
        except OSError:  # ffmpeg exited early (a bad option, a full disk)
            self._proc.wait()
            raise self._failed(f"ffmpeg stopped with exit code {self._proc.returncode}") from None

    def finish(self) -> None:
        """End the input and wait for ffmpeg to finish the file."""
        try:
            self._proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        if self._proc.wait():
            raise self._failed(f"ffmpeg failed with exit code {self._proc.returncode}")

    def __enter__(self) -> _FfmpegInput:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc.poll() is None:  # an error on our side: stop ffmpeg, leave no process
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._stderr.close()


def video_command(path: Path, size: tuple[int, int], *, fps: float, codec: str | None, quality: float | None, preset: str | None) -> tuple[list[str], bool]:
    """The ffmpeg arguments, but for the output file to append, that encode raw frames
    of ``size`` (width, height) from stdin for the container of ``path``'s suffix, and
    whether ffmpeg takes yuv420p frames (``FrameRenderer.yuv420``) or rgb0 (``rgb0``)."""
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise FormatError(f"{path}: unknown video container {suffix!r}; use one of {', '.join(CONTAINERS)}")
    muxer, default_codec = CONTAINERS[suffix]
    codec = codec or default_codec
    pix_fmt, args = _codec_args(codec, quality, preset)
    if muxer in ("mp4", "mov"):
        args += ["-movflags", "+faststart"]
    if codec == "mpeg4" and muxer == "avi":
        args += ["-tag:v", "XVID"]
    own_yuv = pix_fmt == "yuv420p"  # xafm converts (exactly, from the palette); else ffmpeg does
    # what xafm's frames are (BT.601 matrix, TV range, sRGB colours): given for the input,
    # as ffmpeg 9 ignores these tags as output options and leaves primaries and transfer unset
    tags = ["-colorspace", "smpte170m", "-color_primaries", "bt709", "-color_trc", "iec61966-2-1", "-color_range", "tv"]
    rate = Fraction(fps).limit_denominator(1_000_000)
    command = [
        "-y", "-v", "error", *(tags if own_yuv else []), "-f", "rawvideo", "-pix_fmt", "yuv420p" if own_yuv else "rgb0",
        "-s", f"{size[0]}x{size[1]}", "-r", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
        "-an", "-c:v", codec, "-pix_fmt", pix_fmt, *args, "-f", muxer,
    ]  # fmt: skip
    return command, own_yuv


def _write_video(
    da: xr.DataArray,
    path: Path,
    *,
    fps: float,
    codec: str | None,
    quality: float | None,
    preset: str | None,
    overwrite: bool,
    progress: Any,
    record: bool,
    **opts: Any,
) -> Path:
    fps = _check_fps(fps)
    # 4:2:0 chroma needs even sizes: pad (black), never rescale
    r = _renderer(da, "to_video", pad_to=2, **opts)
    command, own_yuv = video_command(path, r.size, fps=fps, codec=codec, quality=quality, preset=preset)
    bar = Progress(progress, r.n, f"video {path.name}")

    def render(item: tuple[int, np.ndarray]) -> Any:
        i, frame = item
        idx = r.indices(frame, i)
        return r.yuv420(idx) if own_yuv else r.rgb0(idx)

    with atomic_output(path, overwrite=overwrite) as tmp:
        with _FfmpegInput(path, [*command, os.fspath(tmp)]) as ffmpeg:  # started first: it loads while the z-scale pass runs
            # ffmpeg encodes in its own process on all cores: leave it one (on two cores
            # rendering inline was 0.26 s against 0.31 s with two render threads, best of 12)
            for data in map_ordered(render, r.frames(), n_workers=max(1, workers() - 1)):
                ffmpeg.write(data)
                bar.step()
            ffmpeg.finish()
    if record:
        codec = codec or CONTAINERS[path.suffix.lower()][1]
        _record(da, path.suffix.lower().lstrip("."), path, r, fps=fps, codec=codec, quality=quality, preset=preset)
    return path


def to_video(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fps: float = 5.0,
    codec: str | None = None,
    quality: float | None = DEFAULT_QUALITY,
    preset: str | None = None,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    scale_bar_nm: float | None = 100,
    timestamps: bool = True,
    scale_bar: bool = True,
    overwrite: bool = False,
    progress: Any = False,
    nan_color: Any = "auto",
    upscale: Any = "auto",
) -> Path:
    """Write an annotated video; the container follows the suffix.

    ``.mp4`` / ``.mov`` / ``.mkv``: H.264 (libx264, yuv420p, preset ``ultrafast``: the
    constrained baseline profile that browsers, PowerPoint and Keynote all play); ``.avi``: MPEG-4 part 2 (Xvid tag);
    ``.webm``: VP9. Odd frame sizes are padded with black by one pixel, never rescaled.

    Parameters
    ----------
    codec
        Any ffmpeg encoder name to override the container's default.
    quality
        0 (smallest) to 10 (best): CRF ``35 - 2 q`` for H.264/H.265, ``50 - 3 q`` for VP9
        and AV1, ``-q:v`` for the others; None leaves the encoder's default.
    preset
        Encoder speed preset (H.264/H.265: ``ultrafast`` ... ``veryslow``).

    The other options are :func:`to_gif`'s.
    """
    return _write_video(
        da, Path(path), fps=fps, codec=codec, quality=quality, preset=preset, overwrite=overwrite,
        progress=progress, record=True, cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm,
        timestamps=timestamps, scale_bar=scale_bar, nan_color=nan_color, upscale=upscale,
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# numbered frames
# --------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(indices: np.ndarray, palette: np.ndarray, level: int = 1) -> bytes:
    """A palette PNG of 8-bit indices.

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
            _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def jpeg_bytes(rgb0: np.ndarray, quality: int = 95) -> bytes:
    """A JPEG of colours given as ``FrameRenderer.rgb0`` gives them (uint32 R, G, B, 0)."""
    from PIL import Image

    h, w = rgb0.shape
    im = Image.frombuffer("RGB", (w, h), np.ascontiguousarray(rgb0), "raw", "RGBX", 0, 1)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def frame_names(n: int, prefix: str, suffix: str) -> list[str]:
    """Zero-padded names that sort in frame order: ``frame_0000.png`` ..."""
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}{suffix}" for i in range(n)]


def to_frames(
    da: xr.DataArray,
    folder: str | os.PathLike,
    *,
    fmt: str = "png",
    prefix: str = "frame",
    jpeg_quality: int = 95,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    scale_bar_nm: float | None = 100,
    timestamps: bool = True,
    scale_bar: bool = True,
    overwrite: bool = False,
    progress: Any = False,
    nan_color: Any = "auto",
    upscale: Any = "auto",
) -> Path:
    """Write one annotated image per frame into a new folder (``frame_0000.png``, ...).

    ``fmt`` is ``"png"`` (palette PNG, lossless) or ``"jpg"``/``"jpeg"``. The folder
    appears complete or not at all; an existing folder is replaced only with
    ``overwrite=True``. The other options are :func:`to_gif`'s.
    """
    key = str(fmt).lower().lstrip(".")
    if key not in FRAME_FORMATS:
        raise FormatError(f"fmt must be one of {sorted(FRAME_FORMATS)}, got {fmt!r}")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "\\" in prefix or prefix in (".", ".."):
        raise FormatError(f"prefix must be a plain file name part, got {prefix!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise RenderError(f"jpeg_quality must be 1-100, got {jpeg_quality!r}")
    folder = Path(folder)
    r = _renderer(da, "to_frames", cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm, timestamps=timestamps, scale_bar=scale_bar, nan_color=nan_color, upscale=upscale)
    names = frame_names(r.n, prefix, FRAME_FORMATS[key])
    bar = Progress(progress, r.n, f"frames {folder.name}")
    with atomic_output(folder, overwrite=overwrite) as tmp:
        tmp.mkdir()

        def write(item: tuple[int, np.ndarray]) -> None:
            i, frame = item
            idx = r.indices(frame, i)
            data = png_bytes(idx, r.palette) if key == "png" else jpeg_bytes(r.rgb0(idx), jpeg_quality)
            (tmp / names[i]).write_bytes(data)

        for _ in map_ordered(write, r.frames()):
            bar.step()
    _record(da, key, folder, r, files=len(names), pattern=f"{prefix}_*{FRAME_FORMATS[key]}")
    return folder


# --------------------------------------------------------------------------------------
# notebook preview
# --------------------------------------------------------------------------------------
class Preview:
    """An encoded animation that Jupyter shows inline (``_repr_html_``).

    The bytes are embedded as base64 in the notebook, so keep previews short (``max_frames``)
    or small; ``save(path)`` writes them to a file.
    """

    def __init__(self, data: bytes, mimetype: str, size: tuple[int, int], n_frames: int, fps: float):
        self.data, self.mimetype, self.size, self.n_frames, self.fps = data, mimetype, size, n_frames, fps

    def _repr_html_(self) -> str:
        b64 = base64.b64encode(self.data).decode("ascii")
        w, h = self.size
        if self.mimetype.startswith("video/"):
            return f'<video width="{w}" height="{h}" controls autoplay loop muted playsinline src="data:{self.mimetype};base64,{b64}"></video>'
        return f'<img width="{w}" height="{h}" alt="xafm preview" src="data:{self.mimetype};base64,{b64}"/>'

    def __repr__(self) -> str:
        return f"<xafm Preview: {self.n_frames} frames {self.size[0]}x{self.size[1]} at {self.fps:g} fps, {self.mimetype}, {len(self.data) / 1e6:.2f} MB>"

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        path = Path(path)
        with atomic_output(path, overwrite=overwrite) as tmp:
            tmp.write_bytes(self.data)
        return path


def _ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:  # noqa: BLE001 - any failure means: no ffmpeg
        return False


def preview(
    da: xr.DataArray,
    *,
    fps: float = 5.0,
    format: str = "auto",  # noqa: A002
    max_frames: int | None = None,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    scale_bar_nm: float | None = 100,
    timestamps: bool = True,
    scale_bar: bool = True,
    nan_color: Any = "auto",
    upscale: Any = "auto",
) -> Preview:
    """Render the stack for an inline look in Jupyter: an H.264 MP4 (``format="mp4"``,
    the default when ffmpeg is available: small) or a GIF (``"gif"``).

    ``max_frames`` keeps the first frames only (the z-scale then comes from those).
    """
    fmt = str(format).lower()
    if fmt == "auto":
        fmt = "mp4" if _ffmpeg_available() else "gif"
    if fmt not in ("mp4", "gif"):
        raise FormatError(f"preview format must be 'auto', 'mp4' or 'gif', got {format!r}")
    if max_frames is not None:
        if int(max_frames) < 1:
            raise RenderError(f"max_frames must be at least 1, got {max_frames!r}")
        da = da.isel(time=slice(0, int(max_frames))) if "time" in da.dims else da
    opts = dict(cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm, timestamps=timestamps, scale_bar=scale_bar, nan_color=nan_color, upscale=upscale)
    with tempfile.TemporaryDirectory(prefix="xafm-preview-") as d:
        path = Path(d) / f"preview.{fmt}"
        if fmt == "gif":
            _write_gif(da, path, fps=fps, compression="lzw", overwrite=True, progress=False, record=False, **opts)
            mimetype = "image/gif"
        else:
            _write_video(da, path, fps=fps, codec=None, quality=DEFAULT_QUALITY, preset=None, overwrite=True, progress=False, record=False, **opts)
            mimetype = "video/mp4"
        data = path.read_bytes()
    r_shape = _output_size(da, upscale)
    return Preview(data, mimetype, r_shape, int(da.sizes.get("time", 1)), float(fps))


def _output_size(da: xr.DataArray, upscale: Any) -> tuple[int, int]:
    from ..render import upscale_factor

    h, w = int(da.sizes["y"]), int(da.sizes["x"])
    k = upscale_factor(h, w, upscale)
    return w * k, h * k


# --------------------------------------------------------------------------------------
# for the command line
# --------------------------------------------------------------------------------------
VIDEO_FORMATS = tuple(s.lstrip(".") for s in CONTAINERS)


def parse_zlimit(text: str) -> float | str | None:
    """A ``--zmin``/``--zmax`` value: ``auto``, ``none`` (minimum/maximum) or a number."""
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    if t in ("none", "minmax", "full"):
        return None
    try:
        return float(t)
    except ValueError:
        raise RenderError(f"z limit must be 'auto', 'none' or a number, got {text!r}") from None


def export_animations(
    da: xr.DataArray,
    folder: str | os.PathLike,
    name: str,
    *,
    gif: bool = False,
    video: str | None = None,
    sequence: str | None = None,
    overwrite: bool = False,
    **opts: Any,
) -> dict[str, Path]:
    """The animated exports the CLI asks for, as ``folder/name.gif``, ``folder/name.<video>``
    and ``folder/name_frames/``; returns kind -> path. ``opts`` are the rendering options
    (``fps`` is passed to GIF and video only)."""
    if video is not None and video.lower().lstrip(".") not in VIDEO_FORMATS:
        raise FormatError(f"video format must be one of {', '.join(VIDEO_FORMATS)}, got {video!r}")
    if sequence is not None and str(sequence).lower().lstrip(".") not in FRAME_FORMATS:
        raise FormatError(f"sequence format must be one of {sorted(FRAME_FORMATS)}, got {sequence!r}")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise FormatError(f"export name must be a plain file name, got {name!r}")
    folder = Path(folder)
    frame_opts = {k: v for k, v in opts.items() if k != "fps"}
    out: dict[str, Path] = {}
    if gif:
        out["gif"] = to_gif(da, folder / f"{name}.gif", overwrite=overwrite, **opts)
    if video is not None:
        ext = video.lower().lstrip(".")
        out[ext] = to_video(da, folder / f"{name}.{ext}", overwrite=overwrite, **opts)
    if sequence is not None:
        out["frames"] = to_frames(da, folder / f"{name}_frames", fmt=sequence, overwrite=overwrite, **frame_opts)
    return out


FORMATS = [
    Format(name="gif", description="animated GIF", suffixes=(".gif",), write=to_gif),
    Format(name="mp4", description="MP4 video (H.264)", suffixes=(".mp4",), write=to_video),
    Format(name="avi", description="AVI video", suffixes=(".avi",), write=to_video),
    Format(name="mkv", description="Matroska video", suffixes=(".mkv",), write=to_video),
    Format(name="webm", description="WebM video", suffixes=(".webm",), write=to_video),
    Format(name="png", description="PNG frame sequence (a folder)", suffixes=("_frames",), folder=True, write=to_frames),
]
