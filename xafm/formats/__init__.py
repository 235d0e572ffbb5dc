"""The format table: one entry per format, consulted by ``xafm.open``, the xarray engine,
``da.afm.export`` and the CLI alike.

A format module provides ``NAME``, ``SUFFIXES`` and some of ``read(path, **kw) ->
xr.Dataset`` (lazy), ``write(da, path, **kw) -> Path`` and ``channels(path)``.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..exceptions import CorruptFileError, FormatError, UnknownFormatError, XafmError


@dataclass(frozen=True)
class Format:
    name: str
    module: str
    description: str
    suffixes: tuple[str, ...]
    can_read: bool
    can_write: bool
    lazy: bool
    folder: bool = False
    #: regex (on the lower-case file name) for names suffixes cannot express, e.g. ``.001``
    pattern: str | None = None
    #: name of the module's writer function
    writer: str = "write"

    def load(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.module}")

    def write(self, da: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
        if not self.can_write:
            raise FormatError(f"xafm reads {self.description} but does not write it")
        return getattr(self.load(), self.writer)(da, path, **kwargs)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("h5", "h5bundle", "HDF5 bundle (playNano layout, netCDF-4 readable)", (".h5", ".hdf5"), True, True, True),
        Format("npz", "npzbundle", "NumPy NPZ bundle (playNano keys)", (".npz",), True, True, True),
        Format("tif", "ometiff", "OME-TIFF", (".ome.tif", ".ome.tiff"), True, True, True),
        # instrument and other tools' files (issue 3): read-only
        Format("asd", "asd", "RIBM/Kanazawa high-speed AFM video", (".asd",), True, False, True),
        Format("h5-jpk", "h5jpk", "JPK/Bruker NanoWizard high-speed video", (".h5-jpk",), True, False, True),
        Format("jpk", "jpk", "JPK single image (TIFF with JPK tags)", (".jpk", ".jpk-qi-image"), True, False, True),
        Format("nanoscope", "nanoscope", "Bruker Nanoscope image", (".spm",), True, False, True, pattern=r"\.\d{3}$"),
        Format("ibw", "ibw", "Asylum Research / Igor binary wave", (".ibw",), True, False, True),
        Format("gwy", "gwy", "Gwyddion", (".gwy",), True, False, False),
        Format("sxm", "sxm", "Nanonis SXM", (".sxm",), True, False, True),
        Format("wsxm", "wsxm", "WSxM", (".stp", ".top"), True, False, True),
        Format("topostats", "topostats", "TopoStats HDF5", (".topostats",), True, False, True),
        Format("nd2", "nd2file", "Nikon NIS-Elements ND2", (".nd2",), True, False, True),
        Format("zarr", "omezarr", "OME-Zarr (NGFF 0.4 / 0.5)", (".ome.zarr", ".zarr"), True, True, True, folder=True),
        # animations (issue 4): write-only
        Format("gif", "animation", "animated GIF", (".gif",), False, True, False, writer="to_gif"),
        Format("mp4", "animation", "MP4 video (H.264)", (".mp4",), False, True, False, writer="to_video"),
        Format("avi", "animation", "AVI video", (".avi",), False, True, False, writer="to_video"),
        Format("mkv", "animation", "Matroska video", (".mkv",), False, True, False, writer="to_video"),
        Format("webm", "animation", "WebM video", (".webm",), False, True, False, writer="to_video"),
        Format("png", "animation", "PNG frame sequence (a folder)", ("_frames",), False, True, False, writer="to_frames"),
        Format("folder", "framefolder", "folder of single-frame files (.jpk, .spm, .00N)", (), True, False, True, folder=True),
    )
}


def register(fmt: Format) -> None:
    FORMATS[fmt.name] = fmt


def writable() -> list[str]:
    return [f.name for f in FORMATS.values() if f.can_write]


def get(name: str, *, for_writing: bool = False) -> Format:
    fmt = FORMATS.get(name)
    valid = writable() if for_writing else list(FORMATS)
    if fmt is None or (for_writing and not fmt.can_write):
        raise FormatError(f"unknown format {name!r}; valid formats are: {', '.join(valid)}")
    return fmt


def _suffix_match(path: Path) -> Format | None:
    name = path.name.lower()
    best, best_len = None, 0
    for fmt in FORMATS.values():
        for suf in fmt.suffixes:
            if name.endswith(suf) and len(suf) > best_len:
                best, best_len = fmt, len(suf)
        if best is None and fmt.pattern and re.search(fmt.pattern, name):
            best, best_len = fmt, 1
    return best


def find(path: str | os.PathLike) -> Format:
    """The format that reads ``path``, from its suffix (folders: their contents)."""
    p = Path(path)
    if not p.exists():
        raise UnknownFormatError(p, "no such file or folder")
    fmt = _suffix_match(p)
    if fmt is not None and fmt.can_read:
        return fmt
    for f in FORMATS.values():
        if f.folder and p.is_dir() and f.can_read:
            mod = f.load()
            if getattr(mod, "can_open", lambda _p: False)(p):
                return f
    readable = sorted({s for f in FORMATS.values() if f.can_read for s in f.suffixes})
    raise UnknownFormatError(p, f"unrecognised file type; xafm reads {', '.join(readable)}")


def guarded(path: str | os.PathLike, action: str, func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a reader; any error that is not xafm's own becomes a ``CorruptFileError``.

    Readers should raise precise errors themselves; this is the safety net that keeps
    ``struct.error``, ``KeyError`` and friends from reaching users on damaged files.
    """
    try:
        return func(*args, **kwargs)
    except (XafmError, ImportError, RecursionError):
        raise
    except MemoryError as exc:
        raise CorruptFileError(path, f"{action} failed: the file asks for an implausible amount of memory") from exc
    except Exception as exc:
        raise CorruptFileError(path, f"{action} failed: {type(exc).__name__}: {exc}") from exc


def open_dataset(path: str | os.PathLike, **kwargs: Any) -> Any:
    """The lazy one-variable Dataset behind ``xafm.open`` and the ``xafm`` engine."""
    fmt = find(path)
    mod = fmt.load()
    # absolute: lazy arrays keep the path, and dask workers may run in another directory
    return guarded(path, f"reading as {fmt.description}", mod.read, os.path.abspath(path), **kwargs)


def channels(path: str | os.PathLike) -> list[str]:
    fmt = find(path)
    mod = fmt.load()
    if hasattr(mod, "channels"):
        return list(guarded(path, "listing channels", mod.channels, os.fspath(path)))
    ds = guarded(path, "reading", mod.read, os.fspath(path))
    return [str(ds[v].attrs.get("channel", v)) for v in ds.data_vars]
