"""The ``.afm`` accessor: a thin, stateless front end that delegates to the modules.

xarray recreates accessors freely, so nothing is stored here; every method reads from and
returns DataArrays. The writer methods (``to_h5``, ``to_gif``, ...) are the format
modules' own writers: their options, defaults and docstrings come from there, so they
cannot drift apart.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xarray as xr

from . import processing, registry
from .core import model, provenance, sources
from .exceptions import FormatError


class _Delegate:
    """An accessor method that calls ``target(da, *args, **options)``: a format's writer
    (``format="h5"``) or another function (``function=("xafm.animation", "preview")``),
    shown with the target's own signature (without ``da``) and docstring."""

    def __init__(self, *, format: str | None = None, function: tuple[str, str] | None = None):
        self.format, self.function = format, function
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def target(self) -> Callable[..., Any]:
        if self.format is not None:
            fmt = registry.get(self.format, for_writing=True)
            assert fmt.write is not None
            return fmt.write
        import importlib

        assert self.function is not None
        module, attr = self.function
        func: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        return func

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        target = self.target()
        fmt = self.format
        da = obj._obj

        def method(*args: Any, **options: Any) -> Any:
            if fmt is not None:
                return registry.write(fmt, da, *args, **options)
            return target(da, *args, **options)

        sig = inspect.signature(target)
        params = list(sig.parameters.values())[1:]
        if fmt is not None and "storage_options" not in sig.parameters:  # registry.write takes it for URLs
            params.append(inspect.Parameter("storage_options", inspect.Parameter.KEYWORD_ONLY, default=None))
        method.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        method.__doc__ = target.__doc__
        method.__name__ = method.__qualname__ = self.name
        return method


@xr.register_dataarray_accessor("afm")
class AfmAccessor:
    """AFM operations on a ``(time, y, x)`` stack: ``da.afm.remove_plane()``, ``da.afm.to_h5(...)``."""

    def __init__(self, da: xr.DataArray):
        self._obj = da

    # -- what the stack carries -----------------------------------------------------
    @property
    def provenance(self) -> list[dict[str, Any]]:
        """The provenance records (parsed from ``attrs["xafm_provenance"]``)."""
        return provenance.records(self._obj)

    @property
    def masks(self) -> dict[str, xr.DataArray]:
        return model.masks(self._obj)

    @property
    def layers(self) -> dict[str, xr.DataArray]:
        return model.layers(self._obj)

    @property
    def frame_metadata(self) -> list[dict[str, Any]]:
        return model.frame_metadata(self._obj)

    @property
    def pixel_size_nm(self) -> float:
        return model.pixel_size_nm(self._obj)[1]

    @property
    def acquisition(self) -> dict[str, Any]:
        return model.acquisition(self._obj)

    def validate(self) -> xr.DataArray:
        """Raise ``StackError`` unless this is a well-formed stack; return it."""
        model.check_stack(self._obj)
        model.pixel_size_nm(self._obj)
        return self._obj

    # -- processing -------------------------------------------------------------------
    def apply(self, func: Callable[..., Any], *, name: str | None = None, keep_layer: bool = False, per_frame: bool = True, **params: Any) -> xr.DataArray:
        return processing.apply(self._obj, func, name=name, keep_layer=keep_layer, per_frame=per_frame, **params)

    def with_mask(self, name: str, mask: Any) -> xr.DataArray:
        return processing.with_mask(self._obj, name, mask)

    # levelling, filters and masks: the catalogue's own functions (signature, docstring)
    remove_plane = _Delegate(function=("xafm.processing.levelling", "remove_plane"))
    polynomial_flatten = _Delegate(function=("xafm.processing.levelling", "polynomial_flatten"))
    row_median_align = _Delegate(function=("xafm.processing.levelling", "row_median_align"))
    align_rows = _Delegate(function=("xafm.processing.levelling", "align_rows"))
    zero_mean = _Delegate(function=("xafm.processing.levelling", "zero_mean"))
    zero_median = _Delegate(function=("xafm.processing.levelling", "zero_median"))
    gaussian_filter = _Delegate(function=("xafm.processing.levelling", "gaussian_filter"))
    vertical_flip = _Delegate(function=("xafm.processing.levelling", "vertical_flip"))
    mask_threshold = _Delegate(function=("xafm.processing.masks", "mask_threshold"))
    mask_below_threshold = _Delegate(function=("xafm.processing.masks", "mask_below_threshold"))
    mask_mean_offset = _Delegate(function=("xafm.processing.masks", "mask_mean_offset"))
    mask_morphological = _Delegate(function=("xafm.processing.masks", "mask_morphological"))
    mask_adaptive = _Delegate(function=("xafm.processing.masks", "mask_adaptive"))
    clear_mask = _Delegate(function=("xafm.processing.masks", "clear"))

    # -- drift correction and stack edits (xafm.processing.drift, .edits) ---------------
    def align_frames(self, reference_frame: int = 0, method: str = "fft_cross_correlation", mode: str = "pad", debug: bool = False,
                     max_shift: int | None = None, pre_filter_sigma: float | None = None, max_jump: int | None = None, *,
                     subpixel: bool = True, keep_layer: bool = False) -> xr.DataArray:  # fmt: skip
        """Correct drift against ``reference_frame`` (see :func:`xafm.processing.align_frames`)."""
        return processing.align_frames(self._obj, reference_frame, method, mode, debug, max_shift, pre_filter_sigma, max_jump,
                                       subpixel=subpixel, keep_layer=keep_layer)  # fmt: skip

    def rolling_frame_align(self, window: int = 5, mode: str = "pad", debug: bool = False, max_shift: int | None = None,
                            pre_filter_sigma: float | None = None, max_jump: int | None = None, *,
                            subpixel: bool = True, keep_layer: bool = False) -> xr.DataArray:  # fmt: skip
        """Correct drift against a rolling reference (see :func:`xafm.processing.rolling_frame_align`)."""
        return processing.rolling_frame_align(self._obj, window, mode, debug, max_shift, pre_filter_sigma, max_jump,
                                              subpixel=subpixel, keep_layer=keep_layer)  # fmt: skip

    def intersection_crop(self, pad: Any = 0) -> xr.DataArray:
        return processing.intersection_crop(self._obj, pad)

    def crop_square(self, pad: Any = 0) -> xr.DataArray:
        return processing.crop_square(self._obj, pad)

    def crop(self, x_min: float | None = None, x_max: float | None = None, y_min: float | None = None, y_max: float | None = None,
             units: str = "nm") -> xr.DataArray:  # fmt: skip
        return processing.crop(self._obj, x_min, x_max, y_min, y_max, units)

    def replace_nan(self, mode: str = "zero", value: float | None = None, *, keep_layer: bool = False) -> xr.DataArray:
        return processing.replace_nan(self._obj, mode, value, keep_layer=keep_layer)

    def drop_frames(self, indices_to_drop: Any) -> xr.DataArray:
        return processing.drop_frames(self._obj, indices_to_drop)

    def select_frames(self, keep_indices: Any) -> xr.DataArray:
        return processing.select_frames(self._obj, keep_indices)

    # -- pictures and lines: plots, profiles, kymographs (docs/data-model.md, "Orientation and plots") --
    plot = _Delegate(function=("xafm.render.plot", "plot"))
    profile = _Delegate(function=("xafm.processing.profile", "profile"))
    kymograph = _Delegate(function=("xafm.processing.profile", "kymograph"))

    # -- writers: the format modules' own (docs/formats.md, docs/animation.md) ----------
    to_h5 = _Delegate(format="h5")
    to_npz = _Delegate(format="npz")
    to_ome_tiff = _Delegate(format="tif")
    to_ome_zarr = _Delegate(format="zarr")
    to_gif = _Delegate(format="gif")
    to_video = _Delegate(format="mp4")
    to_frames = _Delegate(format="png")
    preview = _Delegate(function=("xafm.animation", "preview"))

    def export(self, folder: str | os.PathLike[str], name: str, formats: Iterable[str] = ("h5", "npz", "tif"), *, raw: bool = False, overwrite: bool = False,
               fsync: bool = True, storage_options: dict[str, Any] | None = None) -> dict[str, Path | str]:  # fmt: skip
        """Write several formats at once as ``folder/name<suffix>``; returns format -> path.

        ``raw`` goes to the writers that take it (the file formats; animations render the
        values as they are); ``fsync=False`` skips making the outputs durable (scratch).
        ``folder`` may be a URL prefix (``s3://bucket/run1``), reached with ``storage_options``.
        """
        return export(self._obj, folder, name, formats, raw=raw, overwrite=overwrite, fsync=fsync, storage_options=storage_options)


def _member(folder: str | os.PathLike[str], name: str) -> str | Path:
    """``folder/name``: a URL joined with ``/`` (``Path`` would fold its ``//``)."""
    if sources.is_url(os.fspath(folder)):
        return sources.join(folder, name)
    return Path(folder) / name


def export(da: xr.DataArray, folder: str | os.PathLike[str], name: str, fmts: Iterable[str] = ("h5", "npz", "tif"), *, raw: bool = False, overwrite: bool = False,
           fsync: bool = True, storage_options: dict[str, Any] | None = None) -> dict[str, Path | str]:  # fmt: skip
    if isinstance(fmts, str):
        fmts = [fmts]
    chosen = [registry.get(f, for_writing=True) for f in fmts]  # all checked before any write
    if not chosen:
        raise FormatError(f"no formats given; valid formats are: {', '.join(registry.writable())}")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise FormatError(f"export name must be a plain file name, got {name!r}")
    out = {}
    for fmt in chosen:
        path = _member(folder, f"{name}{fmt.suffixes[0]}")
        options: dict[str, Any] = {"overwrite": overwrite}
        if "raw" in fmt.write_options():
            options["raw"] = raw
        if "fsync" in fmt.write_options():
            options["fsync"] = fsync
        out[fmt.name] = registry.write(fmt, da, path, storage_options=storage_options, **options)
    return out
