"""Turning stack frames into annotated colour frames, fast and without matplotlib figures.

One module per concern: :mod:`~xafm.render.palette` (colormaps and the 256-colour
palette layout), :mod:`~xafm.render.colorscale` (the z-scale, from :mod:`xafm.core.percentiles`),
:mod:`~xafm.render.overlay` (scale bar and timestamps), :mod:`~xafm.render.frames`
(:class:`FrameRenderer`: indices, upscaling, RGB and Y/U/V), :mod:`~xafm.render.options`
(:class:`RenderOptions`, the one options object every animated writer takes) and
:mod:`~xafm.render.parallel` (ordered thread-pool work, progress).
:mod:`~xafm.render.colormaps` registers xafm's colormaps with matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy_attributes import module_getattr
from ..exceptions import RenderError

if TYPE_CHECKING:
    from .colorscale import percentiles, zscale
    from .frames import MAX_SIDE, MIN_SIDE, FrameRenderer, display_shape, split_yuv420, to_indices, upscale_factor
    from .options import RenderOptions, check_fps, takes_render_options
    from .overlay import Overlay, length_label, nice_length, time_label
    from .palette import BG_INDEX, DEFAULT_CMAP, FG_INDEX, N_DATA, NAN_INDEX, SPARE_INDEX, build_palette, colormap, nan_colour_for
    from .parallel import Progress, map_ordered, workers

#: Where each name this package offers lives: imported on first use, so that a format
#: module taking :mod:`.options` (every animated writer's signature) does not load the
#: renderer with it (the format table imports every format module: ``xafm.registry``).
_LAZY = {
    "colorscale": ("percentiles", "zscale"),
    "frames": ("MAX_SIDE", "MIN_SIDE", "FrameRenderer", "display_shape", "split_yuv420", "to_indices", "upscale_factor"),
    "options": ("RenderOptions", "check_fps", "takes_render_options"),
    "overlay": ("Overlay", "length_label", "nice_length", "time_label"),
    "palette": ("BG_INDEX", "DEFAULT_CMAP", "FG_INDEX", "N_DATA", "NAN_INDEX", "SPARE_INDEX", "build_palette", "colormap", "nan_colour_for"),
    "parallel": ("Progress", "map_ordered", "workers"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


__getattr__ = module_getattr(__name__, _WHERE)


#: Bytes of values pulled per block, for the z-scale pass and for rendering (dask chunks
#: are never split). Read at call time: setting it here trades memory for fewer blocks.
RENDER_BLOCK_BYTES = 16 * 2**20

__all__ = [
    "BG_INDEX", "DEFAULT_CMAP", "FG_INDEX", "MAX_SIDE", "MIN_SIDE", "NAN_INDEX", "N_DATA", "RENDER_BLOCK_BYTES",
    "SPARE_INDEX", "FrameRenderer", "Overlay", "Progress", "RenderError", "RenderOptions", "build_palette",
    "check_fps", "colormap", "display_shape", "length_label", "map_ordered", "nan_colour_for", "nice_length", "percentiles",
    "split_yuv420", "takes_render_options", "time_label", "to_indices", "upscale_factor", "workers", "zscale",
]  # fmt: skip
