"""Animated exports: GIF, video (MP4/M4V/MOV/MKV/AVI/WebM), numbered PNG/JPEG frames, and
an inline notebook preview.

One module per output: :mod:`~xafm.animation.gif`, :mod:`~xafm.animation.video`,
:mod:`~xafm.animation.sequence` (each declares its formats for the format table) and
:mod:`~xafm.animation.notebook` (the inline preview); :mod:`~xafm.animation.record`
builds the provenance each export carries inside its file. All of them stream: frames are pulled block by block,
rendered to palette indices by :class:`xafm.render.FrameRenderer` and encoded a few at a
time on a thread pool, so a dask stack larger than memory never materialises. They take
the rendering options as keywords or as one :class:`xafm.render.RenderOptions`
(``render=``). See ``docs/animation.md``.

This module adds what the command line needs: :func:`export_animations` and
:func:`parse_zlimit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from .._lazy_attributes import module_getattr
from ..exceptions import FormatError, RenderError
from ..render.options import RenderOptions, takes_render_options

if TYPE_CHECKING:
    from .gif import gif_delays_cs, to_gif
    from .notebook import Preview, preview
    from .sequence import FRAME_FORMATS, to_frames
    from .video import CONTAINERS, VIDEO_FORMATS, to_video

#: Where each name lives: imported on first use, so that the format table, which imports
#: each writer's module (``xafm.registry``), does not import the others and the preview.
_WHERE = {
    "gif_delays_cs": "gif", "to_gif": "gif", "Preview": "notebook", "preview": "notebook",
    "FRAME_FORMATS": "sequence", "to_frames": "sequence", "CONTAINERS": "video", "VIDEO_FORMATS": "video",
    "to_video": "video",
}  # fmt: skip


__getattr__ = module_getattr(__name__, _WHERE)

__all__ = [
    "CONTAINERS", "FRAME_FORMATS", "VIDEO_FORMATS", "Preview", "export_animations",
    "gif_delays_cs", "parse_zlimit", "preview", "to_frames", "to_gif", "to_video",
]  # fmt: skip


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


@takes_render_options
def export_animations(
    da: xr.DataArray,
    folder: str | os.PathLike,
    name: str,
    *,
    gif: bool = False,
    video: str | None = None,
    sequence: str | None = None,
    fps: float = 5.0,
    overwrite: bool = False,
    render: RenderOptions | None = None,
) -> dict[str, Path]:
    """The animated exports the command line asks for, all rendered alike.

    Writes ``folder/name.gif``, ``folder/name.<video>`` and ``folder/name_frames/``;
    returns kind -> path. The kinds, the name and the rendering options are checked
    before anything is written.

    Parameters
    ----------
    gif
        Write the GIF.
    video
        The video suffix (``"mp4"``, ``"avi"``, ...), or None for no video.
    sequence
        ``"png"`` or ``"jpg"`` for numbered frames, or None.
    fps
        Playback rate of the GIF and the video.
    overwrite
        Replace existing outputs.
    """
    from .gif import to_gif
    from .sequence import FRAME_FORMATS, to_frames
    from .video import VIDEO_FORMATS, to_video

    if video is not None and video.lower().lstrip(".") not in VIDEO_FORMATS:
        raise FormatError(f"video format must be one of {', '.join(VIDEO_FORMATS)}, got {video!r}")
    if sequence is not None and str(sequence).lower().lstrip(".") not in FRAME_FORMATS:
        raise FormatError(f"sequence format must be one of {sorted(FRAME_FORMATS)}, got {sequence!r}")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise FormatError(f"export name must be a plain file name, got {name!r}")
    folder = Path(folder)
    out: dict[str, Path] = {}
    if gif:
        out["gif"] = to_gif(da, folder / f"{name}.gif", fps=fps, overwrite=overwrite, render=render)
    if video is not None:
        ext = video.lower().lstrip(".")
        out[ext] = to_video(da, folder / f"{name}.{ext}", fps=fps, overwrite=overwrite, render=render)
    if sequence is not None:
        out["frames"] = to_frames(da, folder / f"{name}_frames", fmt=sequence, overwrite=overwrite, render=render)
    return out
