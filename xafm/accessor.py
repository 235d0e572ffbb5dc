"""The ``.afm`` accessor: a thin, stateless front end that delegates to the modules.

xarray recreates accessors freely, so nothing is stored here; every method reads from and
returns DataArrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import xarray as xr

from . import formats, model, processing, provenance
from .exceptions import FormatError


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

    def remove_plane(self, *, keep_layer: bool = False) -> xr.DataArray:
        return processing.remove_plane(self._obj, keep_layer=keep_layer)

    def align_rows(self, method: str = "median", *, keep_layer: bool = False) -> xr.DataArray:
        return processing.align_rows(self._obj, method, keep_layer=keep_layer)

    def with_mask(self, name: str, mask: Any) -> xr.DataArray:
        return processing.with_mask(self._obj, name, mask)

    def mask_threshold(self, threshold: float, *, name: str | None = None, above: bool = True) -> xr.DataArray:
        return processing.mask_threshold(self._obj, threshold, name=name, above=above)

    # -- writers --------------------------------------------------------------------
    def _write(self, fmt: str, path: str | os.PathLike, **kwargs: Any) -> Path:
        return formats.get(fmt, for_writing=True).write(self._obj, path, **kwargs)

    def to_h5(self, path: str | os.PathLike, *, raw: bool = False, overwrite: bool = False, compression: str | None = None, compression_opts: Any = None) -> Path:
        """HDF5 bundle (playNano layout, netCDF-4 readable); see ``xafm.formats.h5bundle``."""
        return self._write("h5", path, raw=raw, overwrite=overwrite, compression=compression, compression_opts=compression_opts)

    def to_npz(self, path: str | os.PathLike, *, raw: bool = False, overwrite: bool = False, compress: bool = False) -> Path:
        """NPZ bundle (playNano keys, no pickles); see ``xafm.formats.npzbundle``."""
        return self._write("npz", path, raw=raw, overwrite=overwrite, compress=compress)

    def to_ome_tiff(self, path: str | os.PathLike, *, raw: bool = False, overwrite: bool = False, bigtiff: bool | None = None) -> Path:
        """OME-TIFF, one page per frame; see ``xafm.formats.ometiff``."""
        return self._write("tif", path, raw=raw, overwrite=overwrite, bigtiff=bigtiff)

    def to_ome_zarr(
        self,
        path: str | os.PathLike,
        *,
        chunks: Any = None,
        shards: Any = None,
        levels: int = 1,
        method: str = "mean",
        mode: str = "w-",
        version: str = "0.5",
        append_dim: str | None = None,
        overwrite: bool = False,
        raw: bool = False,
    ) -> Path:
        """OME-Zarr (NGFF 0.5 / Zarr v3 by default), with pyramids and appends; see
        ``xafm.formats.omezarr``. Written in parallel from dask workers."""
        return self._write(
            "zarr", path, chunks=chunks, shards=shards, levels=levels, method=method, mode=mode,
            version=version, append_dim=append_dim, overwrite=overwrite, raw=raw,
        )

    # -- animations (see xafm.formats.animation and docs/animation.md) ------------------
    def to_gif(self, path: str | os.PathLike, *, fps: float = 5.0, cmap: Any = "xafm_afm", zmin: Any = "auto", zmax: Any = "auto",
               scale_bar_nm: float = 100, timestamps: bool = True, scale_bar: bool = True, overwrite: bool = False,
               progress: Any = False, **options: Any) -> Path:
        """Annotated, looping GIF written frame by frame (palette frames, no quantisation)."""
        return animation().to_gif(self._obj, path, fps=fps, cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm,
                                  timestamps=timestamps, scale_bar=scale_bar, overwrite=overwrite, progress=progress, **options)

    def to_video(self, path: str | os.PathLike, *, fps: float = 5.0, codec: str | None = None, quality: float | None = 6,
                 cmap: Any = "xafm_afm", zmin: Any = "auto", zmax: Any = "auto", scale_bar_nm: float = 100,
                 timestamps: bool = True, scale_bar: bool = True, overwrite: bool = False, progress: Any = False,
                 **options: Any) -> Path:
        """Annotated video; the container follows the suffix (.mp4 H.264 yuv420p by default)."""
        return animation().to_video(self._obj, path, fps=fps, codec=codec, quality=quality, cmap=cmap, zmin=zmin, zmax=zmax,
                                    scale_bar_nm=scale_bar_nm, timestamps=timestamps, scale_bar=scale_bar,
                                    overwrite=overwrite, progress=progress, **options)

    def to_frames(self, folder: str | os.PathLike, *, fmt: str = "png", cmap: Any = "xafm_afm", zmin: Any = "auto",
                  zmax: Any = "auto", scale_bar_nm: float = 100, timestamps: bool = True, scale_bar: bool = True,
                  overwrite: bool = False, progress: Any = False, **options: Any) -> Path:
        """One annotated image per frame (zero-padded names), PNG or JPEG, into a new folder."""
        return animation().to_frames(self._obj, folder, fmt=fmt, cmap=cmap, zmin=zmin, zmax=zmax, scale_bar_nm=scale_bar_nm,
                                     timestamps=timestamps, scale_bar=scale_bar, overwrite=overwrite, progress=progress, **options)

    def preview(self, *, fps: float = 5.0, **options: Any) -> Any:
        """An object that shows the animation inline in Jupyter (HTML5 video or GIF)."""
        return animation().preview(self._obj, fps=fps, **options)

    def export(self, folder: str | os.PathLike, name: str, formats: Iterable[str] = ("h5", "npz", "tif"), *, raw: bool = False, overwrite: bool = False) -> dict[str, Path]:
        """Write several formats at once as ``folder/name<suffix>``; returns format -> path."""
        return export(self._obj, folder, name, formats, raw=raw, overwrite=overwrite)


def animation() -> Any:
    from .formats import animation as module

    return module


def export(da: xr.DataArray, folder: str | os.PathLike, name: str, fmts: Iterable[str] = ("h5", "npz", "tif"), *, raw: bool = False, overwrite: bool = False) -> dict[str, Path]:
    if isinstance(fmts, str):
        fmts = [fmts]
    chosen = [formats.get(f, for_writing=True) for f in fmts]  # all checked before any write
    if not chosen:
        raise FormatError(f"no formats given; valid formats are: {', '.join(formats.writable())}")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise FormatError(f"export name must be a plain file name, got {name!r}")
    out = {}
    for fmt in chosen:
        path = Path(folder) / f"{name}{fmt.suffixes[0]}"
        kwargs = {"overwrite": overwrite} if fmt.module == "animation" else {"raw": raw, "overwrite": overwrite}
        out[fmt.name] = fmt.write(da, path, **kwargs)
    return out
