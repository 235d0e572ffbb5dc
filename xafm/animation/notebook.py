"""The notebook preview: a short animation rendered to bytes that Jupyter shows inline.

A preview is not an export: it carries no provenance (its bytes live in the notebook, so
they stay as small as they can) and leaves no file unless saved.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path

import xarray as xr

from ..core.output import atomic_output
from ..exceptions import FormatError
from ..render.options import RenderOptions, takes_render_options
from ..render.preview_caps import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, capped
from .gif import write_gif
from .video import DEFAULT_QUALITY, write_video


class Preview:
    """An encoded animation that Jupyter shows inline (``_repr_html_``).

    The bytes are embedded as base64 in the notebook, so keep previews short (``max_frames``)
    or small; ``save(path)`` writes them to a file.
    """

    def __init__(self, data: bytes, mimetype: str, size: tuple[int, int], n_frames: int, fps: float, note: str = ""):
        self.data, self.mimetype, self.size, self.n_frames, self.fps = data, mimetype, size, n_frames, fps
        self.note = note  # what the caps left out ("showing 200 of 1000 frames, every 5th; ..."), or ""

    def _repr_html_(self) -> str:
        b64 = base64.b64encode(self.data).decode("ascii")
        w, h = self.size
        if self.mimetype.startswith("video/"):
            media = f'<video width="{w}" height="{h}" controls autoplay loop muted playsinline src="data:{self.mimetype};base64,{b64}"></video>'
        else:
            media = f'<img width="{w}" height="{h}" alt="xafm preview" src="data:{self.mimetype};base64,{b64}"/>'
        if not self.note:
            return media
        return f'<div>{media}<div class="xafm-preview-note" style="font-size:small">xafm preview: {html.escape(self.note)}</div></div>'

    def __repr__(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"<xafm Preview: {self.n_frames} frames {self.size[0]}x{self.size[1]} at {self.fps:g} fps, {self.mimetype}, {len(self.data) / 1e6:.2f} MB{note}>"

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, fsync: bool = True) -> Path:
        path = Path(path)
        with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp:
            tmp.write_bytes(self.data)  # in place: the temporary file is locked as it is
        return path


def _ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:
        return False


@takes_render_options
def preview(
    da: xr.DataArray,
    *,
    fps: float = 5.0,
    format: str = "auto",
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    render: RenderOptions | None = None,
) -> Preview:
    """Render the stack for an inline look in Jupyter: an H.264 MP4 (``format="mp4"``,
    the default when ffmpeg is available: small) or a GIF (``"gif"``).

    The bytes are embedded in the notebook, so a preview is capped: at most
    ``max_frames`` frames, taken evenly over the whole stack (every k-th, so the preview
    spans the whole time course), and frames of at most ``max_pixels`` display pixels
    (the upscale factor lowered first, then the data averaged over n x n pixel blocks).
    Only the frames shown are read or computed (a dask stack's other chunks are not), and
    the automatic z-scale comes from them. What was left out is said under the preview
    and in its repr (``Preview.note``).

    Parameters
    ----------
    fps
        Playback rate.
    format
        ``"auto"``, ``"mp4"`` or ``"gif"`` (LZW-compressed: previews favour size).
    max_frames
        At most this many frames, every k-th (default 100); None: all.
    max_pixels
        At most this many display pixels per frame, colour bar margin excluded (default
        320 x 320); None: no limit.
    """
    fmt = str(format).lower()
    if fmt == "auto":
        fmt = "mp4" if _ffmpeg_available() else "gif"
    if fmt not in ("mp4", "gif"):
        raise FormatError(f"preview format must be 'auto', 'mp4' or 'gif', got {format!r}")
    render = render or RenderOptions()
    da, render, note = capped(da, render, max_frames=max_frames, max_pixels=max_pixels)
    with tempfile.TemporaryDirectory(prefix="xafm-preview-") as d:
        path = Path(d) / f"preview.{fmt}"
        if fmt == "gif":
            _, size = write_gif(da, path, fps=fps, compression="lzw", render=render, overwrite=True, progress=False, record=False, fsync=False)
            mimetype = "image/gif"
        else:
            _, size = write_video(da, path, fps=fps, codec=None, quality=DEFAULT_QUALITY, preset=None, render=render, overwrite=True, progress=False, record=False, fsync=False)
            mimetype = "video/mp4"
        data = path.read_bytes()
    return Preview(data, mimetype, size, int(da.sizes.get("time", 1)), float(fps), note)
