"""Matplotlib pictures of stacks, as the instrument and xafm's exports show them.

:func:`plot` draws frames with row 0 at the top (``origin="upper"``: the ``y`` axis runs
downward, as in Fiji and every export), equal aspect in nm (non-square pixels true to
scale), the AFM colormap, the exports' automatic z-scale (:func:`xafm.render.colorscale.zscale`
on the frames drawn), a colour bar labelled with the channel and its unit, a short title
and, optionally, the exports' scale bar. :func:`plot_kymograph` draws a ``(time, distance)``
profile (:mod:`xafm.processing.profile`) with time running downward. Only the frames
drawn are computed from a dask stack. See ``docs/data-model.md`` ("Orientation and plots").
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, model
from ..exceptions import RenderError, StackError, XafmWarning
from .colorscale import zscale
from .frames import user_stacklevel
from .options import check_flag, check_limits, check_scale_bar_nm
from .overlay import auto_length, length_label, time_label
from .palette import DEFAULT_CMAP, NAN_INDEX, build_palette, colormap

#: Columns of a grid of frames when ``col_wrap`` is not given.
DEFAULT_COLUMNS = 4
#: Width in inches of one panel of a grid (its height follows the frame's aspect).
PANEL_INCHES = 3.0
#: The scale bar's margin from the frame's edges, as a fraction of its shorter side (the
#: exports' overlay margin), which bounds the longest bar that fits.
BAR_MARGIN = 0.03
#: The bar's thickness as a fraction of the frame's shorter side (the exports' too, near enough).
BAR_THICKNESS = 0.014
#: The dim of a profile (:data:`xafm.processing.profile.DISTANCE`).
DISTANCE = "distance"


@dataclasses.dataclass
class FrameGrid:
    """Several frames drawn in a grid (what ``plot`` returns for a list or slice of
    frames), named like xarray's ``FacetGrid``: ``fig``, ``axs`` (2-D, unused panels
    hidden), ``images`` (one ``AxesImage`` per frame, in order) and ``cbar`` (the one
    colour bar, or None)."""

    fig: Any
    axs: np.ndarray
    images: list[Any]
    cbar: Any
    frames: list[int]


def label(da: xr.DataArray) -> str:
    """``"height (nm)"``: the channel and its unit (the channel alone without a unit)."""
    units = str(da.attrs.get("units") or "").strip()
    channel = model.channel_of(da)
    return f"{channel} ({units})" if units else channel


# --------------------------------------------------------------------------------------
# which frames
# --------------------------------------------------------------------------------------
def _index(v: Any, n: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise RenderError(f"frame must be an integer, a sequence of integers or a slice, got {v!r}")
    i = int(v)
    if not -n <= i < n:
        raise RenderError(f"frame {i} is out of range: the stack has {n} frame{'s' if n != 1 else ''} (0..{n - 1})")
    return i % n


def _nearest(t: Any, times: np.ndarray) -> int:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise RenderError(f"time must be a number of seconds or a sequence of them, got {t!r}") from None
    if not math.isfinite(value):
        raise RenderError(f"time must be finite, got {t!r}")
    return int(np.argmin(np.abs(times - value)))


def select_frames(da: xr.DataArray, frame: Any = None, time: Any = None) -> tuple[list[int], bool]:
    """The frame indices to draw and whether one frame was asked for (not a list of one).

    ``frame``: an index (negative counts from the end), a sequence of them, a slice or a
    range; ``time``: seconds, or a sequence, each the nearest frame. Neither: frame 0.
    """
    n = da.sizes[conventions.TIME]
    if frame is not None and time is not None:
        raise RenderError("give frame= or time=, not both")
    if time is not None:
        times = model.times_s(da)
        if np.ndim(time) == 0:
            return [_nearest(time, times)], True
        picked = [_nearest(t, times) for t in np.asarray(time, dtype=object).ravel()]
    elif frame is None:
        return [0], True
    elif isinstance(frame, slice):
        picked = list(range(n))[frame]
    elif isinstance(frame, (int, np.integer)) and not isinstance(frame, (bool, np.bool_)):
        return [_index(frame, n)], True
    elif isinstance(frame, (Sequence, range, np.ndarray)) and not isinstance(frame, str):
        picked = [_index(v, n) for v in np.asarray(frame, dtype=object).ravel()]
    else:
        raise RenderError(f"frame must be an integer, a sequence of integers or a slice, got {frame!r}")
    if not picked:
        raise RenderError(f"frame={frame!r} / time={time!r} selects no frame of the {n}")
    return picked, False


def _frames(da: xr.DataArray) -> xr.DataArray:
    """A ``(time, y, x)`` stack from a stack or one ``(y, x)`` frame (its scalar ``time``
    coordinate, if any, kept)."""
    if isinstance(da, xr.DataArray) and da.dims == (conventions.Y, conventions.X):
        t = float(da.coords[conventions.TIME]) if conventions.TIME in da.coords and da.coords[conventions.TIME].ndim == 0 else 0.0
        da = da.drop_vars(conventions.TIME, errors="ignore").expand_dims({conventions.TIME: [t]})
    da = model.check_stack(da, "plot")
    if da.dtype.kind not in "iuf":
        raise StackError(f"plot needs numeric values, the stack has dtype {da.dtype}")
    return da


# --------------------------------------------------------------------------------------
# one frame
# --------------------------------------------------------------------------------------
def extent_nm(da: xr.DataArray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` for ``imshow(origin="upper")``: the outer pixel edges
    in nm, with ``top`` the edge of row 0 (the smallest y), so the y axis runs downward."""
    dy, dx = model.pixel_size_nm(da)
    y0, x0 = model.origin_nm(da)
    ny, nx = da.sizes[conventions.Y], da.sizes[conventions.X]
    return x0 - dx / 2, x0 + (nx - 0.5) * dx, y0 + (ny - 0.5) * dy, y0 - dy / 2


def _scale_bar_nm(da: xr.DataArray, requested: Any) -> float | None:
    """The exports' bar length: a round 1-2-5 length of about a fifth of the width, or the
    length asked for if it fits between the margins (else the automatic one, warned)."""
    dy, dx = model.pixel_size_nm(da)
    width = da.sizes[conventions.X] * dx
    room = width - 2 * BAR_MARGIN * min(width, da.sizes[conventions.Y] * dy)
    if requested != "auto":
        if requested <= room:
            return float(requested)
        warnings.warn(
            f"a {requested:g} nm scale bar does not fit a {width:g} nm wide frame; drawing a bar of a length that fits "
            "instead (scale_bar_nm='auto' chooses it silently)",
            XafmWarning,
            stacklevel=user_stacklevel(),
        )
    nm = auto_length(width, room)
    return nm if nm > 0 else None


def add_scale_bar(ax: Any, da: xr.DataArray, scale_bar_nm: Any = "auto") -> Any:
    """Draw the exports' scale bar (white, outlined in black, lower left) on ``ax``, whose
    data units are nm; returns the ``AnchoredSizeBar`` (None if no bar fits)."""
    import matplotlib.patheffects as pe
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    nm = _scale_bar_nm(da, check_scale_bar_nm(scale_bar_nm))
    if nm is None:
        return None
    dy, dx = model.pixel_size_nm(da)
    thickness = BAR_THICKNESS * min(da.sizes[conventions.Y] * dy, da.sizes[conventions.X] * dx)
    bar = AnchoredSizeBar(ax.transData, nm, length_label(nm), "lower left", pad=0.4, borderpad=0.4, sep=3, color="white",
                          frameon=False, size_vertical=thickness, label_top=True)  # fmt: skip
    outline = [pe.withStroke(linewidth=2.5, foreground="black")]
    bar.txt_label._text.set_path_effects(outline)
    for patch in bar.size_bar.get_children():
        if hasattr(patch, "set_path_effects"):
            patch.set_path_effects([pe.withStroke(linewidth=1.5, foreground="black")])
    ax.add_artist(bar)
    return bar


def _draw(ax: Any, frame: xr.DataArray, values: np.ndarray, clim: dict[str, Any], cmap: Any, title: str | None,
          bar_nm: float | None, imshow_kwargs: dict[str, Any]) -> Any:  # fmt: skip
    options = {"cmap": cmap, "origin": "upper", "extent": extent_nm(frame), "aspect": "equal", "interpolation": "nearest", **clim}
    options.update(imshow_kwargs)
    if options.get("origin") != "upper":
        raise RenderError("plot draws the instrument's orientation (origin='upper', row 0 at the top); use xarray's da.plot.imshow for others")
    im = ax.imshow(values, **options)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("y (nm)")
    if title:
        ax.set_title(title)
    if bar_nm is not None:
        add_scale_bar(ax, frame, bar_nm)
    return im


def with_nan_colour(cmap: Any, nan_color: Any = "auto") -> Any:
    """A copy of the colormap that draws NaN/inf in the exports' NaN colour (``"auto"``: the
    colour farthest from every colour of the map) instead of matplotlib's transparent one."""
    nan = build_palette(cmap, nan_color)[NAN_INDEX] / 255.0
    return colormap(cmap).with_extremes(bad=tuple(float(v) for v in nan))


def _limits(values: xr.DataArray, zmin: Any, zmax: Any, imshow_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``vmin``/``vmax`` for imshow: the exports' z-scale of ``values`` unless the caller
    gave them (or a ``norm``, which holds its own)."""
    if imshow_kwargs.get("norm") is not None:
        return {}
    vmin, vmax = imshow_kwargs.pop("vmin", None), imshow_kwargs.pop("vmax", None)
    if vmin is None or vmax is None:
        lo, hi = zscale(values, zmin, zmax)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    return {"vmin": vmin, "vmax": vmax}


def plot(
    da: xr.DataArray,
    *,
    frame: Any = None,
    time: Any = None,
    col_wrap: int | None = None,
    ax: Any = None,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    colorbar: bool = True,
    title: bool = True,
    scale_bar: bool = False,
    scale_bar_nm: Any = "auto",
    nan_color: Any = "auto",
    figsize: tuple[float, float] | None = None,
    **imshow_kwargs: Any,
) -> Any:
    """Draw frames as the instrument shows them: row 0 at the top, equal aspect in nm.

    Parameters
    ----------
    frame, time
        One frame (an index; ``time``: the frame nearest that many seconds), or several (a
        sequence or a slice of indices; a sequence of times) drawn as a grid. Default: frame 0.
    col_wrap
        Columns of the grid (default ``min(frames, 4)``).
    ax
        Axes to draw one frame into (default: the current axes, as xarray does).
    cmap
        Colormap (xafm's ``xafm_afm`` by default).
    zmin, zmax
        The exports' z-scale options (``"auto"``: 1st / 99th percentile, None: minimum /
        maximum, or numbers), taken over the frames drawn. ``vmin``/``vmax`` override them.
    colorbar, title, scale_bar
        Draw a colour bar (labelled ``"height (nm)"``), a title (channel and frame time),
        the exports' scale bar (``scale_bar_nm``: its length or ``"auto"``).
    nan_color
        Colour of NaN/inf pixels, as in the exports (``"auto"``: far from every colormap colour).
    figsize
        Size of a new figure, in inches.
    **imshow_kwargs
        Passed on to :meth:`matplotlib.axes.Axes.imshow` (``interpolation``, ``vmin``, ...).

    Returns
    -------
    The ``AxesImage`` for one frame (its colour bar is ``.colorbar``), a :class:`FrameGrid`
    for several. A ``(..., distance)`` profile is drawn by :func:`plot_kymograph`.
    """
    import matplotlib.pyplot as plt

    if isinstance(da, xr.DataArray) and DISTANCE in da.dims:
        if frame is not None or time is not None or col_wrap is not None:
            raise RenderError("frame=, time= and col_wrap= select frames of a stack; a kymograph is drawn whole")
        return plot_kymograph(da, ax=ax, cmap=cmap, zmin=zmin, zmax=zmax, colorbar=colorbar, title=title, nan_color=nan_color, figsize=figsize,
                              **imshow_kwargs)  # fmt: skip
    da = _frames(da)
    zmin, zmax = check_limits(zmin, zmax)
    for name, flag in (("colorbar", colorbar), ("title", title), ("scale_bar", scale_bar)):
        check_flag(name, flag)
    bar_nm = _scale_bar_nm(da, check_scale_bar_nm(scale_bar_nm)) if scale_bar else None  # once: one warning for a grid
    cmap = with_nan_colour(cmap, nan_color)
    indices, single = select_frames(da, frame, time)
    if col_wrap is not None and (isinstance(col_wrap, (bool, np.bool_)) or not isinstance(col_wrap, (int, np.integer)) or col_wrap < 1):
        raise RenderError(f"col_wrap must be a positive integer, got {col_wrap!r}")
    if not single and ax is not None:
        raise RenderError("ax= takes one frame; several frames make their own figure (a grid)")
    chosen = da.isel({conventions.TIME: indices})
    loaded = chosen.copy(data=np.asarray(chosen.values))  # only these frames are computed, once
    clim = _limits(loaded, zmin, zmax, imshow_kwargs)
    times = model.times_s(loaded)
    channel = model.channel_of(da)
    if single:
        if ax is None:
            ax = plt.figure(figsize=figsize).gca() if figsize is not None else plt.gca()
        im = _draw(ax, loaded.isel(time=0), loaded.values[0], clim, cmap, f"{channel}, t = {time_label(times[0])}" if title else None,
                   bar_nm, imshow_kwargs)  # fmt: skip
        if colorbar:
            ax.figure.colorbar(im, ax=ax, label=label(da))
        return im
    n = len(indices)
    cols = min(n, DEFAULT_COLUMNS) if col_wrap is None else min(int(col_wrap), n)
    rows = math.ceil(n / cols)
    left, right, bottom, top = extent_nm(da)
    aspect = abs(bottom - top) / abs(right - left)
    if figsize is None:
        figsize = (PANEL_INCHES * cols + (1.0 if colorbar else 0.0), PANEL_INCHES * aspect * rows + 0.45 * rows + 0.3)
    fig, axs = plt.subplots(rows, cols, figsize=figsize, squeeze=False, sharex=True, sharey=True, layout="constrained")
    images = []
    for k, panel in enumerate(axs.flat):
        if k >= n:
            panel.set_visible(False)
            continue
        images.append(_draw(panel, loaded.isel(time=k), loaded.values[k], clim, cmap, f"t = {time_label(times[k])}" if title else None,
                            bar_nm, imshow_kwargs))  # fmt: skip
        if k % cols:
            panel.set_ylabel("")
        if k < n - cols:
            panel.set_xlabel("")
    if title:
        fig.suptitle(channel)
    cbar = fig.colorbar(images[0], ax=[p for p in axs.flat if p.get_visible()], label=label(da)) if colorbar else None
    return FrameGrid(fig, axs, images, cbar, indices)


# --------------------------------------------------------------------------------------
# kymographs
# --------------------------------------------------------------------------------------
def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around ``centres`` (midpoints; the ends half a step out)."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def plot_kymograph(
    k: xr.DataArray,
    *,
    ax: Any = None,
    cmap: Any = DEFAULT_CMAP,
    zmin: Any = "auto",
    zmax: Any = "auto",
    colorbar: bool = True,
    title: bool = True,
    nan_color: Any = "auto",
    figsize: tuple[float, float] | None = None,
    **pcolormesh_kwargs: Any,
) -> Any:
    """Draw a ``(time, distance)`` kymograph: time running downward (the first frame at the
    top, like the rows of a frame), distance across, the exports' colormap and z-scale,
    axes labelled with units and a colour bar (NaN, outside the frame, in the exports' NaN
    colour). Frame times need not be evenly spaced
    (each row spans halfway to its neighbours). Returns the ``QuadMesh``."""
    import matplotlib.pyplot as plt

    if not isinstance(k, xr.DataArray) or k.dims != (conventions.TIME, DISTANCE):
        dims = k.dims if isinstance(k, xr.DataArray) else type(k).__name__
        hint = ""
        if isinstance(k, xr.DataArray) and k.dims == (DISTANCE,):
            hint = "; a profile of one frame is a line: draw it with xarray's own p.plot()"
        elif isinstance(k, xr.DataArray) and {conventions.TIME, DISTANCE} < set(k.dims):
            hint = "; select one position of the other dims with .isel/.sel first"
        raise StackError(f"a kymograph has dims ('time', 'distance') (from da.afm.kymograph); got {dims}{hint}")
    zmin, zmax = check_limits(zmin, zmax)
    check_flag("colorbar", colorbar)
    check_flag("title", title)
    loaded = k.copy(data=np.asarray(k.values))
    clim = _limits(loaded, zmin, zmax, pcolormesh_kwargs)
    if ax is None:
        ax = plt.figure(figsize=figsize).gca() if figsize is not None else plt.gca()
    t_edges = _edges(model.times_s(loaded))
    d_edges = _edges(np.asarray(loaded.coords[DISTANCE].values, dtype=np.float64))
    mesh = ax.pcolormesh(d_edges, t_edges, loaded.values, cmap=with_nan_colour(cmap, nan_color), **{**clim, **pcolormesh_kwargs})
    ax.set_ylim(t_edges[-1], t_edges[0])  # time downward
    ax.set_xlabel("distance (nm)")
    ax.set_ylabel("time (s)")
    if title:
        ax.set_title(f"{model.channel_of(k)} kymograph")
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=label(k))
    return mesh
