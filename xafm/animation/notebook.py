"""The notebook preview: a short animation rendered to bytes that Jupyter shows inline.

A preview is not an export: it carries no provenance (its bytes live in the notebook, so
they stay as small as they can) and leaves no file unless saved.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import xarray as xr

from ..core import model
from ..core.output import atomic_output
from ..exceptions import FormatError, RenderError
from ..render.frames import display_shape
from ..render.options import RenderOptions, takes_render_options
from .gif import write_gif
from .video import DEFAULT_QUALITY, write_video


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
    max_frames: int | None = None,
    render: RenderOptions | None = None,
) -> Preview:
    """Render the stack for an inline look in Jupyter: an H.264 MP4 (``format="mp4"``,
    the default when ffmpeg is available: small) or a GIF (``"gif"``).

    Parameters
    ----------
    fps
        Playback rate.
    format
        ``"auto"``, ``"mp4"`` or ``"gif"`` (LZW-compressed: previews favour size).
    max_frames
        Keep the first frames only (the z-scale then comes from those).
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
    render = render or RenderOptions()
    with tempfile.TemporaryDirectory(prefix="xafm-preview-") as d:
        path = Path(d) / f"preview.{fmt}"
        if fmt == "gif":
            write_gif(da, path, fps=fps, compression="lzw", render=render, overwrite=True, progress=False, record=False, fsync=False)
            mimetype = "image/gif"
        else:
            write_video(da, path, fps=fps, codec=None, quality=DEFAULT_QUALITY, preset=None, render=render, overwrite=True, progress=False, record=False, fsync=False)
            mimetype = "video/mp4"
        data = path.read_bytes()
    _, h, w = display_shape(int(da.sizes["y"]), int(da.sizes["x"]), model.pixel_size_nm(da), render.upscale)
    return Preview(data, mimetype, (w, h), int(da.sizes.get("time", 1)), float(fps))
