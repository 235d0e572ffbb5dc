"""How frames are rendered, said once: :class:`RenderOptions`, the checks of each option,
and :func:`takes_render_options`, which lets a writer take the options as keywords.

Every animated writer, the notebook preview, the ``.afm`` accessor and the command line
share the one options object, so an option is named, defaulted, documented and checked
in one place. A writer declares only its own options plus ``render``; the decorator shows
the fields of :class:`RenderOptions` in its signature (the format contract reads options
from signatures, and the accessor shows them) and builds the object at call time.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.contract import check_options
from ..exceptions import RenderError
from .palette import DEFAULT_CMAP, colormap, rgb8


# --------------------------------------------------------------------------------------
# the checks, shared by RenderOptions and the functions that take single options
# --------------------------------------------------------------------------------------
def check_limit(name: str, v: Any) -> float | str | None:
    """A ``zmin``/``zmax``: ``"auto"``, None or a finite number (as float)."""
    if isinstance(v, str):
        if v != "auto":
            raise RenderError(f"{name} must be a number, 'auto' or None, got {v!r}")
        return v
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise RenderError(f"{name} must be a number, 'auto' or None, got {v!r}") from None
    if not math.isfinite(v):
        raise RenderError(f"{name} must be finite, got {v!r}")
    return v


def check_limits(zmin: Any, zmax: Any) -> tuple[float | str | None, float | str | None]:
    """Both limits checked, and not in the wrong order when both are numbers."""
    lo, hi = check_limit("zmin", zmin), check_limit("zmax", zmax)
    if isinstance(lo, float) and isinstance(hi, float) and lo > hi:
        raise RenderError(f"zmin ({lo}) is above zmax ({hi})")
    return lo, hi


def check_upscale(upscale: Any) -> int | str:
    """``"auto"`` or a positive integer (not a bool, not a float)."""
    if isinstance(upscale, str):
        if upscale != "auto":
            raise RenderError(f"upscale must be 'auto' or a positive integer, got {upscale!r}")
        return upscale
    if isinstance(upscale, (bool, np.bool_)) or not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise RenderError(f"upscale must be 'auto' or a positive integer, got {upscale!r}")
    return int(upscale)


def check_scale_bar_nm(v: Any) -> float | str:
    """``"auto"`` (None too: choose a round length) or a positive finite length in nm."""
    if v is None or (isinstance(v, str) and v.strip().lower() == "auto"):
        return "auto"
    try:
        nm = float(v)
    except (TypeError, ValueError):
        raise RenderError(f"scale_bar_nm must be 'auto' or a positive number, got {v!r}") from None
    if not (math.isfinite(nm) and nm > 0):
        raise RenderError(f"scale_bar_nm must be 'auto' or a positive number, got {v!r}")
    return nm


def check_flag(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise RenderError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_fps(fps: Any) -> float:
    """A playback rate: a positive finite number (as float)."""
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise RenderError(f"fps must be a positive number, got {fps!r}") from None
    if not (math.isfinite(fps) and fps > 0):
        raise RenderError(f"fps must be a positive number, got {fps!r}")
    return fps


# --------------------------------------------------------------------------------------
# the options object
# --------------------------------------------------------------------------------------
#: The fields' documentation, shown by RenderOptions and by every writer that takes them.
FIELD_DOCS = """\
cmap
    A matplotlib colormap name or object; xafm's ``xafm_afm`` by default.
zmin, zmax
    Values at the ends of the colormap: ``"auto"`` (1st / 99th percentile of the whole
    stack), None (minimum / maximum) or numbers. Values beyond are clipped.
scale_bar_nm
    Scale bar length in nm, or ``"auto"`` (the default; None too): a round 1-2-5 length
    of about a fifth of the frame width, so any scan size gets a bar that fits. A
    length given that does not fit is replaced by the automatic one, with a warning.
scale_bar, timestamps
    Draw the scale bar (with its label) and the frame time (``"12.40 s"``, from the
    ``time`` coordinate).
colorbar
    Add a height legend in a margin right of the frame (the frame grows; no data is
    covered): the colormap as a vertical strip, low at the bottom, with the z-limits and
    the unit at its ends. Off by default.
nan_color
    Colour of NaN/inf pixels; ``"auto"`` picks one far from every colormap colour.
upscale
    Integer nearest-neighbour factor, or ``"auto"``: frames with a shorter side under
    320 px grow so the annotations are legible. With non-square pixels it applies to the
    axis with the finer pixels and the other is resampled, so frames are true to scale.
"""


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    __doc__ = (
        "How a stack is drawn: colormap, z-scale, annotations, NaN colour and upscaling.\n\n"
        "Checked once, when made, so a bad option fails before any file is touched; numbers\n"
        "are stored as floats (``zmin=0`` becomes ``0.0``). Writers take these fields as\n"
        "keywords or the whole object as ``render=``; ``dataclasses.replace`` changes a few.\n\n"
        "Parameters\n----------\n" + FIELD_DOCS
    )

    cmap: Any = DEFAULT_CMAP
    zmin: Any = "auto"
    zmax: Any = "auto"
    scale_bar_nm: float | str | None = "auto"
    scale_bar: bool = True
    timestamps: bool = True
    colorbar: bool = False
    nan_color: Any = "auto"
    upscale: Any = "auto"

    def __post_init__(self) -> None:
        normal = {"cmap": DEFAULT_CMAP if self.cmap is None else self.cmap}
        colormap(normal["cmap"])  # raises for an unknown name
        normal["zmin"], normal["zmax"] = check_limits(self.zmin, self.zmax)
        normal["scale_bar_nm"] = check_scale_bar_nm(self.scale_bar_nm)
        normal["scale_bar"] = check_flag("scale_bar", self.scale_bar)
        normal["timestamps"] = check_flag("timestamps", self.timestamps)
        normal["colorbar"] = check_flag("colorbar", self.colorbar)
        if not (isinstance(self.nan_color, str) and self.nan_color == "auto"):
            rgb8(self.nan_color)  # raises for something that is not a colour
        normal["upscale"] = check_upscale(self.upscale)
        for name, value in normal.items():
            object.__setattr__(self, name, value)


FIELDS = tuple(f.name for f in dataclasses.fields(RenderOptions))


# --------------------------------------------------------------------------------------
# writers that take the options as keywords
# --------------------------------------------------------------------------------------
def takes_render_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Let ``func`` (which declares a keyword-only ``render`` parameter) also be called
    with the :class:`RenderOptions` fields as keywords.

    The returned function's signature is ``func``'s with the fields added as keyword-only
    parameters (their defaults) before ``render``, so ``inspect.signature``, the format
    contract and the ``.afm`` accessor see every option; its docstring gets the fields'
    documentation. At call time the fields given override ``render`` (or the defaults),
    and ``func`` receives one checked ``RenderOptions`` as ``render``. A keyword that is
    neither raises :class:`~xafm.exceptions.UnknownOptionError`.
    """
    own = inspect.signature(func)
    if own.parameters.get("render", None) is None or own.parameters["render"].kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"{func.__qualname__} must declare a keyword-only 'render' parameter")
    clash = sorted(set(FIELDS) & set(own.parameters))
    if clash:
        raise TypeError(f"{func.__qualname__} declares {clash}, which are RenderOptions fields")
    fields = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in dataclasses.fields(RenderOptions)
    ]
    rest = [p for p in own.parameters.values() if p.name != "render"]
    signature = own.replace(parameters=[*rest, *fields, own.parameters["render"]])
    what = func.__name__

    @functools.wraps(func)
    def with_render_options(*args: Any, **kwargs: Any) -> Any:
        check_options(with_render_options, kwargs, what)
        given = {k: kwargs.pop(k) for k in FIELDS if k in kwargs}
        base = kwargs.pop("render", None)
        if base is None:
            base = RenderOptions()
        elif not isinstance(base, RenderOptions):
            raise RenderError(f"render must be a RenderOptions, got {type(base).__name__}")
        return func(*args, render=dataclasses.replace(base, **given) if given else base, **kwargs)

    with_render_options.__signature__ = signature  # type: ignore[attr-defined]
    doc = inspect.cleandoc(func.__doc__ or "")
    render_doc = "render\n    A :class:`~xafm.render.RenderOptions` holding all of the above; keywords given override its fields.\n"
    with_render_options.__doc__ = f"{doc}\n\nOther Parameters\n----------------\n{FIELD_DOCS}{render_doc}"
    return with_render_options
