"""The format table, built from what each format module declares (its ``FORMAT``), and the
one way xafm opens, lists and writes files through it.

``xafm.open``, ``xafm.channels``, the xarray engine, ``da.afm.to_*``/``export`` and the
command line all come here. The table holds no copy of what a module says: xafm's own
formats come from ``xafm/_builtin_formats.py``, generated from their modules'
declarations (``python -m xafm.builtin_index``), whose functions import their
module on first use (:class:`~xafm.core.contract.Deferred`: a first open imports only the
format that reads the file); then the modules that installed packages name in the
``xafm.formats`` entry point group (``docs/formats.md``, "Adding a format").
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import xarray as xr

from .core import chunks, output, remote_output, sources
from .core.contract import ROLES, Deferred, Format, Probe, check_options, declarations, resolved
from .core.file_identity import one_version
from .core.paths import check_openable, is_special
from .core.writable import refusal
from .exceptions import (
    FormatError,
    StackError,
    SuffixMismatchError,
    UnknownFormatError,
    XafmWarning,
    is_own_bug,
    reading,
)

#: Entry point group through which other packages add formats: each entry names a module
#: (``mypackage.myformat``) that declares ``FORMAT`` (or a sequence ``FORMATS``).
ENTRY_POINT_GROUP = "xafm.formats"


#: What the generated index keeps of a declaration (beside the callables it declares).
INDEXED = ("name", "description", "suffixes", "patterns", "folder", "lazy")


def index_entry(fmt: Format) -> dict[str, Any]:
    """What ``xafm/_builtin_formats.py`` keeps of a declaration: what chooses a format by
    name, which of its functions it declares, and its reader's option names."""
    entry: dict[str, Any] = {"module": fmt.module}
    entry.update({field: getattr(fmt, field) for field in INDEXED})
    entry["declares"] = tuple(role for role in ROLES if getattr(fmt, role) is not None)
    # what the xarray engine declares for every reader (read_option_names), known without the import
    entry["read_options"] = tuple(fmt.read_options())
    return entry


def deferred(entry: dict[str, Any]) -> Format:
    """The table's entry for a generated index entry: its functions import the module on first use."""
    module, name = entry["module"], entry["name"]
    calls: dict[str, Any] = {
        role: Deferred(module, name, role, options=entry["read_options"] if role == "read" else None) for role in entry["declares"]
    }
    return Format(**{field: entry[field] for field in INDEXED}, **calls, module=module)


def _add(found: dict[str, Format], fmt: Format, *, source: str, strict: bool) -> None:
    problems = fmt.problems()
    if fmt.name in found:
        problems.append(f"the name {fmt.name!r} is taken by {found[fmt.name].module}")
    if not problems:
        found[fmt.name] = fmt
        return
    message = f"format {fmt.name!r} from {source} does not meet xafm's format contract: " + "; ".join(problems)
    if strict:
        raise FormatError(message)
    warnings.warn(message + "; it is not used", XafmWarning, stacklevel=3)


def _plugins() -> Iterable[tuple[str, Any]]:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        yield f"entry point {ep.name!r} ({ep.value})", ep


@functools.cache
def table() -> dict[str, Format]:
    """Every known format by name: xafm's own, then those of installed plugins."""
    from . import _builtin_formats  # here: the generator runs even when the index is broken

    found: dict[str, Format] = {}
    for entry in _builtin_formats.FORMATS:  # their modules are imported when a function is called
        _add(found, deferred(entry), source=entry["module"], strict=True)
    for source, ep in _plugins():
        try:
            loaded = ep.load()
            fmts = declarations(loaded) if isinstance(loaded, ModuleType) else [loaded]
            if not all(isinstance(f, Format) for f in fmts):
                raise FormatError(f"{ep.value} is neither a module declaring FORMAT nor a Format")
        except Exception as exc:  # a broken plugin must not break xafm: warn and go on
            if is_own_bug(exc):
                raise
            warnings.warn(f"xafm could not load the format plugin {source}: {type(exc).__name__}: {exc}", XafmWarning, stacklevel=2)
            continue
        for fmt in fmts:
            _add(found, fmt if fmt.module else replace(fmt, module=ep.value), source=source, strict=False)
    return found


def refresh() -> None:
    """Read the plugins again (after installing one into a running session)."""
    table.cache_clear()
    read_option_names.cache_clear()


def readable() -> list[Format]:
    return [f for f in table().values() if f.can_read]


def writable() -> list[str]:
    return [f.name for f in table().values() if f.can_write]


def get(name: str, *, for_writing: bool = False) -> Format:
    fmt = table().get(name)
    if fmt is None or (for_writing and not fmt.can_write):
        valid = writable() if for_writing else list(table())
        if fmt is not None:
            raise FormatError(f"xafm reads {fmt.description} ({name!r}) but does not write it; it writes: {', '.join(valid)}")
        raise FormatError(f"unknown format {name!r}; valid formats are: {', '.join(valid)}")
    return fmt


@functools.cache
def read_option_names() -> tuple[str, ...]:
    """Every option some reader declares (what the xarray engine passes through): for
    xafm's own readers as the generated index records them, so no format module is
    imported for it (``xafm.open`` defines the engine on its first call)."""
    names: dict[str, None] = {}
    for fmt in readable():
        known = fmt.read.options if isinstance(fmt.read, Deferred) else None
        names.update(dict.fromkeys(known if known is not None else fmt.read_options()))
    return tuple(names)


# --------------------------------------------------------------------------------------
# which format a file is
# --------------------------------------------------------------------------------------
def named(path: str | os.PathLike[str]) -> list[Format]:
    """Readable formats whose suffixes or patterns fit the file name, best fit first."""
    text = sources.local_path(path)
    name = (sources.name(text) if sources.is_url(text) else os.path.basename(text.rstrip("/\\"))).lower()
    scored = [(f.name_match(name), i, f) for i, f in enumerate(readable())]
    return [f for score, _, f in sorted(scored, key=lambda t: (-t[0], t[1])) if score]


def confirms(fmt: Format, probe: Probe) -> bool:
    """A format's content check, which must never fail on odd content: a damaged or
    unreadable file simply is not confirmed. xafm's own bugs still surface."""
    if fmt.folder != probe.is_dir:
        return False
    assert fmt.identify is not None
    check = resolved(fmt.identify)  # a module that does not import, or a stale index, is no odd content
    try:
        return bool(check(probe))
    except Exception as exc:
        if is_own_bug(exc) or isinstance(exc, ImportError):
            raise
        return False


def identify(path: str | os.PathLike[str]) -> Format | None:
    """The format whose content check confirms the file: among those its name points to,
    or, for a name no format claims, among all. None otherwise (never raises for odd
    files, never opens a FIFO or a device): this is what the xarray engine's
    ``guess_can_open`` asks."""
    path = sources.local_path(path)
    if not sources.is_url(path) and is_special(path):
        return None
    probe = Probe(path)
    by_name = named(path)
    candidates = by_name or readable()
    return next((f for f in candidates if confirms(f, probe)), None)


def find(path: str | os.PathLike[str]) -> Format:
    """The format that reads ``path``: the name chooses, the content confirms.

    A file whose content is another format than its name says raises
    :class:`SuffixMismatchError` saying what it appears to be; a file no format confirms
    goes to the reader its name points to, which says what is wrong with it. A FIFO, a
    device or a socket (also through a symlink) raises :class:`SpecialFileError`: every
    entry point comes through here, so none of them ever waits on one.
    """
    text = sources.local_path(path)
    p: Any
    if sources.is_url(text):
        p = text  # not a Path: that would fold the '//' of the URL
        probe = Probe(p, info=sources.info(text))  # ObjectNotFoundError / RemoteError naming the URL
    else:
        p = Path(text)
        if not (p.exists() or p.is_symlink()):
            raise UnknownFormatError(p, "no such file or folder")
        check_openable(p)  # a FIFO, device or socket: refused before anything opens it
        probe = Probe(p)
    by_name = named(p)
    for fmt in by_name:
        if confirms(fmt, probe):
            return fmt
    other = next((f for f in readable() if f not in by_name and confirms(f, probe)), None)
    if other is not None and by_name:
        suffix = f" (usually named {', '.join(other.suffixes)})" if other.suffixes else ""
        raise SuffixMismatchError(
            p, f"the name says {by_name[0].description}, but the content is {other.description}{suffix}"
        )
    if other is not None:
        return other
    if by_name:
        return by_name[0]
    suffixes = sorted({s for f in readable() for s in f.suffixes})
    raise UnknownFormatError(p, f"not a file xafm recognises by its name or content; xafm reads {', '.join(suffixes)}")


# --------------------------------------------------------------------------------------
# reading, listing, writing
# --------------------------------------------------------------------------------------
def open_dataset(path: str | os.PathLike[str], **options: Any) -> xr.Dataset:
    """The lazy one-variable Dataset behind ``xafm.open`` and the ``xafm`` engine, with
    preferred chunks declared on every lazy variable.

    All of it is read from one version of the file: when the file changes while it is
    opened (another process replaces or rewrites it), the open is done again
    (``core.file_identity.one_version``); the lazy arrays check that version on every read.
    A folder replacement that was interrupted between its two renames is first put right
    (``core.output.recover``).
    """
    output.recover(path)
    return one_version(path, lambda: _open_dataset(path, **options))


def _open_dataset(path: str | os.PathLike[str], **options: Any) -> xr.Dataset:
    fmt = find(path)
    assert fmt.read is not None
    check_options(fmt.read, options, f"the {fmt.description} reader")
    # absolute: lazy arrays keep the path, and dask workers may run in another directory
    with reading(path, f"reading as {fmt.description}"):
        ds = fmt.read(_absolute(path), **options)
    if not isinstance(ds, xr.Dataset) or len(ds.data_vars) != 1:
        raise FormatError(f"the {fmt.name} reader ({fmt.module}) must return a one-variable Dataset, got {type(ds).__name__}")
    return chunks.declare(ds)


def channels(path: str | os.PathLike[str]) -> list[str]:
    """The channel names a file holds."""
    fmt = find(path)
    assert fmt.channels is not None
    with reading(path, "listing channels"):
        return [str(c) for c in fmt.channels(_absolute(path))]


def _absolute(path: str | os.PathLike[str]) -> str:
    """An absolute path (what lazy arrays keep), or a URL as given (``file://`` as its path)."""
    text = sources.local_path(path)
    return text if sources.is_url(text) else os.path.abspath(text)


def write(fmt: Format | str, da: Any, /, path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None, **options: Any) -> Path | str:
    """Write ``da`` in a format, with the writer's declared options only.

    A URL destination (``s3://bucket/out.h5``) is written with ``storage_options``
    (credentials, ``endpoint_url``, ``anon``), as fsspec takes them: by the writer itself
    if it declares ``storage_options`` (OME-Zarr, whose workers write their own chunks),
    else locally and uploaded once complete (:func:`xafm.core.remote_output.staged`).
    Returns the path written, or the URL.
    """
    if isinstance(fmt, str):
        fmt = get(fmt, for_writing=True)
    if fmt.write is None:
        raise FormatError(f"xafm reads {fmt.description} but does not write it")
    remote = sources.is_url(sources.local_path(os.fspath(path)))
    native = "storage_options" in fmt.write_options()
    if native:
        options["storage_options"] = storage_options
    elif storage_options is not None and not remote:
        raise FormatError(f"storage_options are for URL destinations; {os.fspath(path)} is a local path")
    check_options(fmt.write, options, f"the {fmt.description} writer")
    _check_destination_name(fmt, path)
    # xafm's writers check this themselves (for direct calls too); here for a plugin's
    problem = refusal(da) if isinstance(da, xr.DataArray) else None
    if problem:
        raise StackError(f"the {fmt.description} writer refuses to write {os.fspath(path)}: {problem}")
    if not remote or native:
        return fmt.write(da, path, **options)
    return _write_staged(fmt, da, os.fspath(path), storage_options, options)


def _write_staged(fmt: Format, da: Any, url: str, storage_options: dict[str, Any] | None, options: dict[str, Any]) -> str:
    """A writer of local files to a URL: written locally, uploaded once complete."""
    assert fmt.write is not None
    writer = fmt.write
    sources.remember_options(url, storage_options)
    if "fsync" in fmt.write_options():
        options["fsync"] = False  # a local temporary: the object store keeps the upload
    overwrite = bool(options.get("overwrite", False))
    return remote_output.staged(url, lambda local: writer(da, local, **options), overwrite=overwrite, folder=fmt.folder)


def _check_destination_name(fmt: Format, path: str | os.PathLike[str]) -> None:
    """Refuse a destination whose suffix names another format (``to_gif("x.mp4")``);
    formats that share one writer (the video containers) take each other's suffixes, and
    a name no format claims is the user's choice."""
    name = os.path.basename(os.fspath(path).rstrip("/\\")).lower()
    own = fmt.suffix_match(name)
    others = [f for f in table().values() if f is not fmt and f.suffix_match(name) > own]
    writer = resolved(fmt.write) if fmt.write is not None else None
    if others and not any(f.write is not None and resolved(f.write) is writer for f in others):
        other = max(others, key=lambda f: f.suffix_match(name))
        suffixes = ", ".join(fmt.suffixes)
        raise FormatError(
            f"{os.fspath(path)}: the name says {other.description}, but this writes {fmt.description}; "
            f"name it {suffixes} (or write {other.description} with the {other.name!r} format)"
        )

