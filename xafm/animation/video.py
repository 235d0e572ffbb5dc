"""Video: frames piped to ffmpeg (imageio-ffmpeg's binary) as Y/U/V planes converted
from the palette, the container following the suffix.

ffmpeg starts before the z-scale pass, so it loads meanwhile; the provenance goes into
the container's ``comment`` tag through an ffmetadata input that ffmpeg reads from a
pipe, written as soon as the pass is done (the record holds the z-scale). See
``docs/animation.md``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core.children import die_with_parent
from ..core.contract import Format
from ..core.output import atomic_output
from ..core.writable import check_writable
from ..exceptions import FormatError, RenderError, WriteError
from ..render.options import RenderOptions, check_fps, takes_render_options

#: suffix -> (ffmpeg muxer, default codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264"),
    ".m4v": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "libvpx-vp9"),
}
#: The video suffixes, without the dot (what the command line offers).
VIDEO_FORMATS = tuple(s.lstrip(".") for s in CONTAINERS)
#: Bytes of comment a muxer keeps (QuickTime's user-data text has a 16-bit length; the
#: others kept 200 kB in tests).
COMMENT_MAX_BYTES = {"mov": 65535}
#: x264 preset used unless ``preset`` is given: the fastest, and its output (constrained
#: baseline profile) plays everywhere; "veryfast" or slower make files 1.5-3x smaller.
DEFAULT_PRESET = "ultrafast"
#: 0-10; 5 is CRF 25 for H.264 (x264's own default is 23), chosen by quality per byte on
#: noisy real and synthetic HS-AFM frames (``bench/video_quality.py``, docs/animation.md
#: "Default quality"): the encoder's own loss stays at 30 dB PSNR or better, in 16-33 %
#: fewer bytes than CRF 23
DEFAULT_QUALITY = 5


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
            args += ["-crf", str(round(35 - 2 * q))]  # 5 -> 25
    elif codec in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
        if codec == "libvpx-vp9":
            args += ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"]
        elif preset:
            args += ["-preset", preset]
        if quality is not None:
            args += ["-crf", str(round(50 - 3 * q)), "-b:v", "0"]  # 5 -> 35
    else:
        if codec == "mjpeg":
            pix_fmt = "yuvj420p"
        if quality is not None:
            args += ["-q:v", str(max(1, min(31, round(31 - 2.9 * q))))]  # 5 -> 16
    return pix_fmt, args


def ffmetadata(comment: bytes) -> bytes:
    """An ffmetadata file (ffmpeg's metadata text format) giving the global ``comment``
    tag: ``=``, ``;``, ``#``, backslash and newline are escaped with a backslash."""
    for ch in (b"\\", b"=", b";", b"#", b"\n"):
        comment = comment.replace(ch, b"\\" + ch)
    return b";FFMETADATA1\n" + (b"comment=" + comment + b"\n" if comment else b"")


class _FfmpegInput:
    """An ffmpeg process encoding raw frames written to its stdin.

    Our own process handling rather than ``imageio_ffmpeg.write_frames`` (imageio-ffmpeg
    still provides the binary): closing waits for ffmpeg to exit instead of polling it
    every 10 ms (about 0.03 s of a 0.25 s export), ffmpeg's own error message ends up in
    the exception, and the frame rate is passed exactly, as a fraction. ffmpeg runs in its
    own process group so a Ctrl-C in a notebook reaches Python, which then kills it; on
    any exception it is killed and waited for, and if xafm itself is killed the kernel
    kills it too (Linux, :func:`xafm.core.children.die_with_parent`).

    ``metadata`` (a function returning the comment) makes ffmpeg's first input an
    ffmetadata file: ffmpeg waits for it on a pipe while it loads, and
    :meth:`send_metadata` calls the function and writes the result, so the comment may
    depend on work done after ffmpeg started (the z-scale pass), and its length is not
    limited by the command line. Where a child cannot inherit a pipe (Windows,
    ``METADATA_PIPE`` false) the function is called first and the text goes through a
    temporary file.
    """

    METADATA_PIPE = os.name != "nt"

    def __init__(self, path: Path, args: list[str], *, metadata: Callable[[], bytes] | None = None):
        import imageio_ffmpeg

        self.path = path
        self._metadata = metadata
        self._metadata_pipe: int | None = None
        self._metadata_file: str | None = None
        self._stderr = tempfile.TemporaryFile()
        group: dict[str, Any] = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)} if os.name == "nt" else {"start_new_session": True}
        inputs: list[str] = []
        inherit: tuple[int, ...] = ()
        read_end = None
        try:
            if metadata is not None and self.METADATA_PIPE:
                read_end, self._metadata_pipe = os.pipe()
                inputs, inherit = ["-f", "ffmetadata", "-i", f"pipe:{read_end}"], (read_end,)
            elif metadata is not None:
                fd, self._metadata_file = tempfile.mkstemp(prefix="xafm-", suffix=".ffmetadata")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(ffmetadata(metadata()))
                inputs = ["-f", "ffmetadata", "-i", self._metadata_file]
            self._proc = subprocess.Popen(
                [imageio_ffmpeg.get_ffmpeg_exe(), *inputs, *args],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr, bufsize=0, pass_fds=inherit,
                preexec_fn=die_with_parent(), **group,
            )  # fmt: skip
        except BaseException:
            self._cleanup()
            raise
        finally:
            if read_end is not None:
                os.close(read_end)  # ffmpeg holds its own copy

    def _failed(self, what: str) -> WriteError:
        self._stderr.seek(0)
        message = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return WriteError(self.path, f"{what}, nothing was written: {message or 'no message'}")

    def send_metadata(self) -> None:
        """Give ffmpeg its metadata input (through the pipe), before the first frame."""
        if self._metadata_pipe is None:
            return
        assert self._metadata is not None
        data, fd = ffmetadata(self._metadata()), self._metadata_pipe
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:  # ffmpeg exited before reading it (a bad option)
            self._proc.wait()
            raise self._failed(f"ffmpeg stopped with exit code {self._proc.returncode}") from None
        finally:
            self._metadata_pipe = None
            os.close(fd)

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

    def _cleanup(self) -> None:
        if self._metadata_pipe is not None:
            os.close(self._metadata_pipe)
            self._metadata_pipe = None
        if self._metadata_file is not None:
            try:
                os.unlink(self._metadata_file)
            except OSError:
                pass
            self._metadata_file = None
        self._stderr.close()

    def __enter__(self) -> _FfmpegInput:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc.poll() is None:  # an error on our side: stop ffmpeg, leave no process
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._cleanup()


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


def write_video(
    da: xr.DataArray,
    path: Path,
    *,
    fps: float,
    codec: str | None,
    quality: float | None,
    preset: str | None,
    render: RenderOptions | None,
    overwrite: bool,
    progress: Any,
    record: bool,
    fsync: bool = True,
) -> tuple[Path, tuple[int, int]]:
    """What :func:`to_video` does, with ``record=False`` for a file that is not an export
    (the notebook preview) and so carries no provenance; and the frames' (width, height)."""
    from ..render.frames import FrameRenderer
    from ..render.parallel import Progress, map_ordered, workers
    from .record import export_records, records_json

    check_writable(da, "to_video", path)
    fps = check_fps(fps)
    # a colour bar's width follows the labels of the z-limits: its renderer (and z-scale
    # pass) comes before the encoder, which must know the frame size
    colorbar = isinstance(render, RenderOptions) and render.colorbar
    r: FrameRenderer | None = None if _FfmpegInput.METADATA_PIPE and not colorbar else FrameRenderer(da, render, pad_to=2, action="to_video")
    # 4:2:0 chroma needs even sizes: pad (black), never rescale
    size = r.size if r is not None else FrameRenderer.output_size(da, render, pad_to=2, action="to_video")
    command, own_yuv = video_command(path, size, fps=fps, codec=codec, quality=quality, preset=preset)
    muxer, default_codec = CONTAINERS[path.suffix.lower()]

    def comment() -> bytes:
        assert r is not None
        records = export_records(
            da, path.suffix.lower().lstrip("."), path, r, writer=__name__, fps=fps, codec=codec or default_codec, quality=quality, preset=preset
        )
        return records_json(records, max_bytes=COMMENT_MAX_BYTES.get(muxer), where=str(path))

    # ffmpeg encodes in its own process on all cores: leave it one (on two cores
    # rendering inline was 0.26 s against 0.31 s with two render threads, best of 12)
    n_workers = max(1, workers() - 1)
    frame_bytes = size[0] * size[1] * 3 // 2

    def render_frame(item: tuple[int, np.ndarray]) -> Any:
        assert r is not None
        i, frame = item
        if n_workers > 1:
            idx = r.indices(frame, i)
            return r.yuv420(idx) if own_yuv else r.rgb0(idx)
        # inline, each frame is written before the next is rendered: the buffers are reused
        idx = r.indices(frame, i, out=r.scratch("indices", r.shape))
        return r.yuv420(idx, out=r.scratch("yuv", (frame_bytes,))) if own_yuv else r.rgb0(idx)

    with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp:
        # started before the z-scale pass (but after it, with a colour bar): it loads meanwhile
        with _FfmpegInput(path, [*command, os.fspath(tmp)], metadata=comment if record else None) as ffmpeg:
            if r is None:
                r = FrameRenderer(da, render, pad_to=2, action="to_video")
            bar = Progress(progress, r.n, f"video {path.name}")
            ffmpeg.send_metadata()  # the record holds the z-scale: this runs the pass
            for data in map_ordered(render_frame, r.frames(), n_workers=n_workers):
                ffmpeg.write(data)
                bar.step()
            ffmpeg.finish()
    return path, size


@takes_render_options
def to_video(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    fps: float = 5.0,
    codec: str | None = None,
    quality: float | None = DEFAULT_QUALITY,
    preset: str | None = None,
    overwrite: bool = False,
    progress: Any = False,
    render: RenderOptions | None = None,
    fsync: bool = True,
) -> Path:
    """Write an annotated video; the container follows the suffix.

    ``.mp4`` / ``.m4v`` / ``.mov`` / ``.mkv``: H.264 (libx264, yuv420p, preset
    ``ultrafast``: the constrained baseline profile that browsers, PowerPoint and Keynote
    all play); ``.avi``: MPEG-4 part 2 (Xvid tag); ``.webm``: VP9. Odd frame sizes are
    padded with black by one pixel, never rescaled. The provenance (JSON) is the
    container's ``comment`` tag (``.mov`` keeps at most 64 KiB of it).

    Parameters
    ----------
    fps
        Playback rate, passed to ffmpeg exactly (as a fraction).
    codec
        Any ffmpeg encoder name to override the container's default.
    quality
        0 (smallest) to 10 (best): CRF ``35 - 2 q`` for H.264/H.265 (the default 5 is CRF
        25, chosen by measured quality per byte on noisy AFM frames), ``50 - 3 q`` for VP9
        and AV1, ``-q:v`` for the others; None leaves the encoder's default.
    preset
        Encoder speed preset (H.264/H.265: ``ultrafast`` ... ``veryslow``).
    overwrite
        Replace an existing file.
    progress
        True prints progress to stderr; a callable is called with ``(done, total)``.
    fsync
        Make the file durable before returning; False for scratch output.
    """
    return write_video(
        da, Path(path), fps=fps, codec=codec, quality=quality, preset=preset, render=render,
        overwrite=overwrite, progress=progress, record=True, fsync=fsync,
    )[0]  # fmt: skip


FORMATS = [
    Format(name="mp4", description="MP4 video (H.264)", suffixes=(".mp4",), write=to_video),
    Format(name="m4v", description="M4V video (H.264, MP4)", suffixes=(".m4v",), write=to_video),
    Format(name="mov", description="QuickTime video (H.264)", suffixes=(".mov",), write=to_video),
    Format(name="avi", description="AVI video (MPEG-4 part 2)", suffixes=(".avi",), write=to_video),
    Format(name="mkv", description="Matroska video (H.264)", suffixes=(".mkv",), write=to_video),
    Format(name="webm", description="WebM video (VP9)", suffixes=(".webm",), write=to_video),
]
