"""OME-Zarr (NGFF 0.5 on Zarr v3 by default, NGFF 0.4 on Zarr v2 on request).

Layout xafm writes (see docs/formats.md)::

    stack.ome.zarr/            image group: ome.multiscales, ome.omero, xafm (our metadata)
      0/ 1/ ...                pyramid levels, dims (t, y, x), 2x down in y and x per level
      labels/<mask>/0 ...      each mask as an NGFF label image (uint8 0/1)
      layers/<layer>/0 ...     each kept layer as an NGFF image group of its own

Level 0 is written from the stack chunk by chunk (in parallel on dask's scheduler, a
``dask.distributed`` cluster included: every task writes whole chunks, or whole shards,
that no other task touches); each further level is computed from the level below as it
lies in the store, so no level is ever held in memory. New stores are written beside the
destination and renamed into place; ``mode="a"`` appends frames in place and restores the
arrays' previous shape if the append fails.

Reading is lazy: a :class:`ZarrArraySource` keeps a path and an array name and opens the
array on each read, so dask graphs built on it pickle to distributed workers.

This module holds the format's public functions and its declaration; each concern has a
module of its own:

- :mod:`.ngff`: NGFF metadata (axes, multiscales, omero, labels, units), reading it in
  every version, and what differs between 0.4/Zarr v2 and 0.5/Zarr v3, in one place
- :mod:`.layout`: where things are in a store xafm writes (groups, URL-safe node keys)
- :mod:`.geometry`: chunk and shard shapes, default chunks, level shapes, aligned blocks
- :mod:`.store`: picklable targets and parallel, chunk-aligned writing of a stack
- :mod:`.display`: the omero display windows (the auto z-scale and the finite range)
- :mod:`.pyramid`: 2x2 reductions and building a level from the one below
- :mod:`.writer`: new stores, atomically
- :mod:`.append`: appending frames in place, with rollback
- :mod:`.reader`: :class:`ZarrArraySource` and the readers of xafm's and other tools' stores
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from ...core import conventions, durable, output, remote_output, sources
from ...core.contract import Format, Probe
from ...exceptions import FormatError, StackError
from . import geometry, ngff
from .geometry import CHUNK_BYTES, MAX_EDGE, default_chunks, is_int
from .layout import FORMAT_VERSION, LABELS, LAYERS, NAME, XAFM_KEY
from .ngff import MASK_COLOR, SPACE_NM, TIME_S, VERSIONS
from .reduce import METHODS

if TYPE_CHECKING:
    from .reader import ZarrArraySource

__all__ = [
    "CHUNK_BYTES", "FORMAT", "FORMAT_VERSION", "LABELS", "LAYERS", "MASK_COLOR", "MAX_EDGE", "METHODS", "MODES",
    "NAME", "SPACE_NM", "TIME_S", "VERSIONS", "XAFM_KEY", "ZarrArraySource", "channels", "default_chunks",
    "identify", "read", "write",
]

MODES = ("w-", "w", "a")


def __getattr__(name: str) -> Any:
    # the reader (and the store module under it) is imported when first read, not with
    # the format table (xafm.registry), which imports every format module
    if name == "ZarrArraySource":
        from .reader import ZarrArraySource

        return ZarrArraySource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def identify(probe: Probe) -> bool:
    """A Zarr group whose attributes carry NGFF metadata (any version): ``ome`` or
    ``multiscales`` (or bioformats2raw's layout). A plain store from ``to_zarr`` has none."""
    for spec in ngff.PROBE_ORDER:
        raw = probe.member(spec.attrs_file)
        if raw is not None:
            return spec.marks_image(spec.attributes_in(json.loads(raw)))
    return False


def channels(path: str | os.PathLike) -> list[str]:
    from . import reader

    path = os.fspath(path)
    g, _prefix, ome, _version, attrs = reader.open_image(path)
    meta = attrs.get(XAFM_KEY)
    if isinstance(meta, Mapping) and isinstance(meta.get("channel"), str):
        return [conventions.safe_channel(meta["channel"])]
    return reader.foreign_layout(path, g, ome, 0)["names"]


def read(path: str | os.PathLike[str], *, channel: str | None = None, level: int = 0) -> xr.Dataset:
    """An OME-Zarr image (pyramid ``level``) lazily: xafm's own stores as the stack they were written from, other tools' with their dims."""
    from . import reader

    path = os.fspath(path)
    if not is_int(level) or isinstance(level, bool) or level < 0:
        raise FormatError(f"level must be a non-negative int, got {level!r}")
    g, prefix, ome, version, attrs = reader.open_image(path)
    meta = attrs.get(XAFM_KEY)
    if isinstance(meta, Mapping) and meta.get("format_version") == FORMAT_VERSION:
        return reader.read_xafm(path, g, ome, dict(meta), channel, int(level))
    return reader.read_foreign(path, g, prefix, ome, version, channel, int(level))


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    shards: Any = None,
    levels: int = 1,
    method: str = "mean",
    mode: str = "w-",
    version: str = ngff.DEFAULT_VERSION,
    append_dim: str | None = None,
    overwrite: bool | None = None,
    raw: bool = False,
    fsync: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> Path | str:
    """Write (or append to) an OME-Zarr image; returns the path (or the URL).

    Parameters
    ----------
    chunks, shards
        Chunk (and, for NGFF 0.5, shard) shape: ``(time, y, x)``, a dict, or an int (frames
        of whole frames). Default chunks: whole frames up to 1024 px a side, ~4 MiB.
    levels, method
        Pyramid levels (2x down in y and x each) and the reduction: mean, nearest, max, min.
    mode
        ``"w-"`` fails if ``path`` exists, ``"w"`` replaces a Zarr store, ``"a"`` with
        ``append_dim="time"`` appends frames to a store xafm wrote (or creates it).
    version
        ``"0.5"`` (Zarr v3) or ``"0.4"`` (Zarr v2).
    overwrite
        ``True`` is ``mode="w"`` (the keyword the other writers use).
    raw
        Write the kept layer ``raw`` instead of the values.
    fsync
        Make the store durable (every file and folder synced) before returning; False
        for scratch output.
    storage_options
        For a URL ``path`` (``s3://bucket/out.ome.zarr``): fsspec's options (credentials,
        ``endpoint_url`` in ``client_kwargs``, ``anon=True``). Chunks are written where they
        land, by dask's workers on a cluster; see :mod:`xafm.core.remote_output`.
    """
    from . import append, writer  # not imported to read: the writer's modules cost the first open

    spec = ngff.version_of(version)
    if overwrite and mode == "w-":
        mode = "w"
    if mode not in MODES:
        raise FormatError(f"mode must be one of {MODES}, got {mode!r}")
    if append_dim is not None and append_dim not in ("time", "t"):
        raise FormatError(f"append_dim must be 'time' (frames are appended), got {append_dim!r}")
    if append_dim is not None and mode != "a":
        raise FormatError(f"append_dim={append_dim!r} needs mode='a'")
    if method not in METHODS:
        raise FormatError(f"method must be one of {METHODS}, got {method!r}")
    if not is_int(levels) or isinstance(levels, bool) or levels < 1:
        raise FormatError(f"levels must be a positive int, got {levels!r}")
    path = remote_output.local_or_url(path)
    if isinstance(path, str):
        sources.remember_options(path, storage_options)
    content = writer.stack_content(da, raw, path)
    content["method"] = method
    n, ny, nx = (int(s) for s in content["data"].shape)
    shape = (n, ny, nx)
    output.recover(path)  # a replacement interrupted between its two renames
    appending = mode == "a" and (remote_output.exists(path) if isinstance(path, str) else path.exists())
    if appending and append_dim is None:
        raise FormatError(f"{path} exists: mode='a' appends frames and needs append_dim='time' (or use mode='w' to replace it)")
    if not appending and min(shape[1], shape[2]) >> (levels - 1) < 1:
        raise StackError(f"{levels} levels halve {shape[1]}x{shape[2]} frames below one pixel; use at most {min(shape[1], shape[2]).bit_length()}")
    spec.check_shards(shards)
    ch = geometry.as_triple(chunks, "chunks", shape) or default_chunks(shape, content["dtype"])
    sh = geometry.as_triple(shards, "shards", shape)
    if sh is not None and any(s % c for s, c in zip(sh, ch)):
        raise FormatError(f"shards {sh} must be whole multiples of chunks {ch}")

    if appending:
        append.append(content, path, da=da)
        if fsync and isinstance(path, Path):
            durable.sync_tree(path)
        return path
    writer.write_new(content, path, chunks=ch, shards=sh, levels=levels, spec=spec, mode=mode, raw=raw, fsync=fsync)
    return path


FORMAT = Format(
    name=NAME,
    description="OME-Zarr (NGFF 0.4 / 0.5)",
    suffixes=(".ome.zarr", ".zarr"),
    folder=True,
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
