"""What an HDF5 file may make xafm do: read only itself, and nothing larger than it holds.

HDF5 can make a dataset's values come from another file: an external link (a group
member that names an object in another file), a virtual dataset (a layout whose sources
are datasets in other files) and external raw storage (a dataset whose bytes are in
named files, e.g. ``/etc/passwd``). h5py follows all three silently, and its API offers
no switch that stops HDF5 from opening an absolute file name (the external-file and
virtual prefixes only apply to relative names; ``H5Pset_elink_cb`` is not exposed). So
xafm walks the file's links once when it opens a file, before anything is resolved, and
checks every dataset's creation properties; a lazy read re-checks the one dataset it
reads, resolving its path link by link without ever traversing an external link.

A dataset's shape is a claim of the file's header: :func:`check_stored` compares the bytes
it declares with the bytes its storage holds, before anything of that size is allocated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..exceptions import CorruptFileError, UnsafeFileError

#: At most this many links are walked in one file (a hostile file cannot make the walk long).
MAX_LINKS = 100_000
#: A filtered (compressed) dataset may declare at most this many times the bytes it stores:
#: deflate cannot exceed about 1032:1 (RFC 1951: a 258-byte match in at least 2 bits), LZF
#: about 100:1, and xafm reads no files written with the unbounded filters (blosc, zstd).
MAX_COMPRESSION_RATIO = 1100
#: Soft links followed in a row while resolving one path (HDF5's own limit is 16).
MAX_SOFT_LINKS = 16


def _external_target(group_id: Any, raw: bytes) -> str:
    """What an external (or user-defined) link names, read from the link itself."""
    import h5py

    try:
        value = group_id.links.get_val(raw)
    except (KeyError, ValueError, RuntimeError, OSError):
        return "another file"
    if isinstance(value, tuple) and len(value) == 2:
        return f"{_text(value[0])}:{_text(value[1])}"
    info = group_id.links.get_info(raw)
    return "another file" if info.type == h5py.h5l.TYPE_EXTERNAL else f"a user-defined link (type {info.type})"


def refuse_outside_links(f: Any, path: str) -> list[str]:
    """Refuse a file any of whose links leaves it; returns the hard-linked member names.

    Walks every link once (H5Lvisit: hard-linked groups are entered, soft and external links
    are listed, never followed), then checks the creation properties of every dataset (no
    virtual layout, no external storage). Bounded by :data:`MAX_LINKS`. Names that are not
    UTF-8 (a damaged file; h5py's high-level API cannot take them) are walked by their bytes
    and left out of the returned names.
    """
    import h5py

    found: list[tuple[bytes, int]] = []

    def visit(name: bytes, info: Any) -> Any:
        found.append((bytes(name), info.type))
        return True if len(found) > MAX_LINKS else None

    f.id.links.visit(visit, info=True)
    if len(found) > MAX_LINKS:
        raise CorruptFileError(path, f"more than {MAX_LINKS} HDF5 links: not an AFM file xafm reads")
    members: list[str] = []
    for raw, kind in found:
        if kind == h5py.h5l.TYPE_SOFT:
            continue  # a path inside this file; what it names is a hard link walked here too
        if kind != h5py.h5l.TYPE_HARD:
            raise UnsafeFileError(path, f"/{_text(raw)} is an external link to {_external_target(f.id, raw)}: xafm reads only the file it was given")
        oid = h5py.h5o.open(f.id, raw)
        if isinstance(oid, h5py.h5d.DatasetID):
            check_inside(oid, path, "/" + _text(raw))
        try:
            members.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return members


def check_inside(dsid: Any, path: str, name: str) -> None:
    """Refuse a dataset (its low-level id) whose values would come from another file."""
    import h5py

    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        sources = sorted({_text(dcpl.get_virtual_filename(i)) for i in range(min(dcpl.get_virtual_count(), 16))})
        raise UnsafeFileError(path, f"{name} is a virtual dataset reading {', '.join(sources)}: xafm reads only the file it was given")
    if dcpl.get_external_count() > 0:
        names = [_text(dcpl.get_external(i)[0]) for i in range(min(dcpl.get_external_count(), 16))]
        raise UnsafeFileError(path, f"{name} stores its values in external file(s) {', '.join(names)}: xafm reads only the file it was given")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def dataset_at(f: Any, name: str, path: str) -> Any:
    """The dataset ``name`` of an open file, reached without leaving the file.

    Each component of the path is looked up as a link first (``getlink=True`` resolves
    nothing): an external or user-defined link is refused before HDF5 could follow it, a
    soft link is resolved by its own path (at most :data:`MAX_SOFT_LINKS` in a row). The
    dataset's creation properties are checked too (:func:`check_inside`).
    """
    import h5py

    parts = [p for p in name.split("/") if p]
    group, done, hops = f, "", 0
    while parts:
        part = parts.pop(0)
        link = group.get(part, getlink=True)
        if link is None:
            raise CorruptFileError(path, f"{name}: no member {done}/{part}")
        if isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > MAX_SOFT_LINKS:
                raise CorruptFileError(path, f"{name}: more than {MAX_SOFT_LINKS} soft links in a row")
            target = [p for p in link.path.split("/") if p]
            parts = target + parts
            group, done = (f, "") if link.path.startswith("/") else (group, done)
            continue
        if not isinstance(link, h5py.HardLink):
            outside = _external_target(group.id, part.encode("utf-8"))
            raise UnsafeFileError(path, f"{done}/{part} is an external link to {outside}: xafm reads only the file it was given")
        group, done = group[part], f"{done}/{part}"
    if not isinstance(group, h5py.Dataset):
        raise CorruptFileError(path, f"{name} is not a dataset")
    check_inside(group.id, path, group.name)
    return group


def declared_bytes(ds: Any) -> int:
    """Bytes the dataset's shape and element type declare (the file's claim)."""
    count = math.prod(int(s) for s in ds.shape) if ds.shape else (0 if ds.shape is None else 1)
    return count * int(ds.id.get_type().get_size())


def stored_limit(ds: Any) -> tuple[int, int]:
    """(bytes stored, the most bytes they can decode to) for a dataset."""
    stored = int(ds.id.get_storage_size())
    filtered = ds.id.get_create_plist().get_nfilters() > 0
    return stored, stored * MAX_COMPRESSION_RATIO if filtered else stored


def check_stored(ds: Any, path: str, *, frames_axis: int | None = None) -> None:
    """Refuse a dataset that declares more bytes than its storage can hold.

    Unfiltered data must be stored in full (HDF5 would return fill values for the rest);
    filtered (compressed) data may decode to at most :data:`MAX_COMPRESSION_RATIO` times
    its stored bytes. Checked before anything of the declared size is allocated.
    """
    need = declared_bytes(ds)
    if need == 0:
        return
    stored, limit = stored_limit(ds)
    if need <= limit:
        return
    if frames_axis is not None and ds.ndim > frames_axis:
        claim = f"declares {int(ds.shape[frames_axis])} frames ({need} bytes)"
    else:
        claim = f"declares shape {tuple(int(s) for s in ds.shape)} ({need} bytes)"
    ratio = f", more than {MAX_COMPRESSION_RATIO} times that decompressed" if limit != stored else ""
    raise CorruptFileError(path, f"{ds.name} {claim} but stores only {stored} bytes{ratio}")


def read_checked(ds: Any, path: str, *, frames_axis: int | None = None) -> np.ndarray:
    """A whole (small, numeric) dataset, after :func:`check_stored`."""
    check_stored(ds, path, frames_axis=frames_axis)
    return np.asarray(ds[()])
