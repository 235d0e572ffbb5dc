"""A folder index: one row per file xafm reads, from the files' headers only
(``xafm.index(folder)``, ``xafm index FOLDER``; docs/folder-index.md).

Each file is opened the way ``xafm.open(path, chunks={})`` opens it, but through the
format table directly (:func:`xafm.registry.open_dataset`): the reader parses the header
and returns lazy arrays that keep only a path and offsets, and no dask graph is built.
The index then reads the sizes, the ``y``/``x``/``time`` coordinates and the first and
last frame's ``start_epoch_ms``/``frame_duration_s``; never the values, masks or
layers. That is what keeps it fast on folders of large videos.
"""

from __future__ import annotations

import json
import math
import os
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core import conventions, model, sources
from .exceptions import FileError, ObjectNotFoundError, SpecialFileError, XafmError, XafmWarning

#: The columns of an index, in order (docs/folder-index.md says what each holds).
COLUMNS = (
    "path", "format", "channel", "channels", "frames", "ny", "nx", "height_nm", "width_nm",
    "pixel_y_nm", "pixel_x_nm", "other_dims", "date", "duration_s", "warnings", "error", "problem",
)  # fmt: skip
#: What a file can be told to be: xafm's errors, a missing optional package, the system's
#: errors. Anything else is a bug in xafm and stops the index.
VERDICTS = (XafmError, ImportError, OSError)
#: The error of a file no format claims, listed only with ``unknown=True``.
UNKNOWN = "not a file xafm reads (no format claims its name or content)"


@dataclass
class _Walk:
    """What one index run has seen: rows so far, and the files a multi-file OME-TIFF set
    already listed (absolute paths), which are not listed again. ``root`` is a URL
    prefix (a ``str``) when the folder is one."""

    root: Path | str
    recursive: bool
    unknown: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    #: subfolders not searched (not recursive), for the table's footnote
    not_searched: int = 0

    def rel(self, path: Path | str) -> str:
        if isinstance(self.root, str):  # a URL below the prefix
            return str(path)[len(self.root.rstrip("/")) + 1 :]
        return Path(path).relative_to(self.root).as_posix()


def index(folder: str | os.PathLike[str], recursive: bool = False, *, unknown: bool = False, storage_options: dict[str, Any] | None = None) -> Any:
    """One row per file xafm reads in ``folder``, from headers only, as a pandas DataFrame.

    Parameters
    ----------
    folder
        The folder whose entries are listed (the folder itself is never read as a video,
        even when it is a folder of frames), or a URL prefix (``s3://bucket/run1``): then
        each prefix is listed in one request and each object's header read in byte ranges.
    recursive
        Also list the files of subfolders (folders that are a format, an OME-Zarr store
        or a folder of frames, are one row with or without it).
    unknown
        Also list the files no format claims, with an ``error`` saying so (by default
        they are skipped: a folder's notes, exports and scripts are not AFM data).
    storage_options
        fsspec's options for a URL prefix (credentials, endpoint, ``anon``), used for
        every object below it.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`COLUMNS`, rows sorted by ``path`` (relative to ``folder``,
        ``/``-separated). A file that cannot be read has its xafm error's class in
        ``error`` and its message in ``problem`` (the other columns empty); the index of
        the rest goes on. ``date`` is UTC (``datetime64[ns, UTC]``).
    """
    text = sources.local_path(folder)
    if sources.is_url(text):
        return _index_prefix(text.rstrip("/"), recursive, unknown, storage_options)
    if storage_options is not None:
        raise TypeError(f"storage_options are for URLs (s3://, gs://, https://, ...), not the path {text!r}")
    root = Path(folder)
    if not root.exists():
        raise FileError(root, "no such folder")
    if not root.is_dir():
        raise FileError(root, "not a folder (xafm info FILE describes one file)")
    return _walked(_Walk(root, recursive, unknown), root)


def _index_prefix(url: str, recursive: bool, unknown: bool, storage_options: dict[str, Any] | None) -> Any:
    """:func:`index` of a URL prefix: a missing bucket or prefix, or an object, is an
    xafm error naming the URL; a store that refuses is a :class:`RemoteError`."""
    sources.remember_options(url, storage_options)
    try:
        found = sources.info(url)
    except ObjectNotFoundError:
        raise ObjectNotFoundError(url, "no such bucket or prefix on the server") from None
    # an HTTP server's folder is a page of links (fsspec lists them): an object to ``info``
    listing = sources.protocol(url) in ("http", "https") and "html" in str(found.get("mimetype", ""))
    if found.get("type") != "directory" and not listing:
        raise FileError(url, "not a prefix (a folder) but an object (xafm info URL describes one file)")
    return _walked(_Walk(url, recursive, unknown), url)


def _walked(walk: _Walk, root: Path | str) -> Any:
    """The rows found from ``root`` (a folder or a URL prefix), as the DataFrame."""
    _list_folder(walk, root)
    df = _frame(walk.rows, root)
    df.attrs["folders_not_searched"] = walk.not_searched
    return df


# --------------------------------------------------------------------------------------
# walking the folder
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    """One entry of a folder or a URL prefix: its path, ``"dir"``, ``"file"`` or
    ``"other"`` (a FIFO, a device, a broken link), and whether it is a symlink."""

    path: Path | str
    kind: str
    is_link: bool = False


def _entries(walk: _Walk, folder: Path | str) -> list[_Entry] | None:
    """The entries of ``folder`` (one ``sources.scan`` listing for a URL prefix, where
    stores have no links or FIFOs), the hidden ones left out; None when it cannot be
    listed (a row says why), unless it is the root: then the command fails."""
    try:
        if isinstance(folder, str):
            found = [_Entry(sources.join(folder, n), kind) for n, kind in sources.scan(folder) if not n.startswith(".")]
        else:
            with os.scandir(folder) as it:
                found = [
                    _Entry(Path(e.path), "dir" if e.is_dir() else "file" if e.is_file() else "other", e.is_symlink())
                    for e in it if not e.name.startswith(".")
                ]
    except OSError as exc:  # the store's failures are xafm errors (FileError is an OSError)
        if folder == walk.root:  # nothing indexed: the command fails
            if isinstance(folder, str):
                raise
            raise FileError(folder, f"cannot list the folder: {exc.strerror or exc}") from None
        why = _reason(exc, folder, walk.root) if isinstance(folder, str) else exc.strerror or str(exc)
        walk.rows.append(_problem(walk.rel(folder) + "/", "", type(exc).__name__, why))
        return None
    # the companion of a multi-file OME-TIFF set before its members, so it is the set's row
    return sorted(found, key=lambda e: (not sources.name(e.path).lower().endswith(".companion.ome"), sources.name(e.path)))


def _list_folder(walk: _Walk, folder: Path | str) -> None:
    """The rows of a folder or a URL prefix (a prefix below is a folder: an OME-Zarr
    store, a folder of frames, or a subfolder)."""
    from . import registry

    entries = _entries(walk, folder)
    if entries is None:
        return
    subfolders = []
    for entry in entries:
        path = entry.path
        if entry.kind == "dir":
            if _is_folder_format(path):
                opened = _add_file(walk, path)
                # a folder claimed by its content only (frames) that does not open as one
                # video is a folder of separate files: list them too, when recursing
                if not opened and walk.recursive and not registry.named(path) and not entry.is_link:
                    subfolders.append(path)
            elif not walk.recursive:
                walk.not_searched += 1
            elif not entry.is_link:  # links to folders are not followed: no loops
                subfolders.append(path)
        elif sources.absolute(path) in walk.claimed:
            continue
        elif entry.kind != "file":
            _add_special(walk, path)
        elif registry.named(path) or registry.identify(path) is not None:
            _add_file(walk, path)
        elif walk.unknown:
            walk.rows.append(_problem(walk.rel(path), "", "UnknownFormatError", UNKNOWN))
    for sub in subfolders:
        _list_folder(walk, sub)


def _is_folder_format(path: Path | str) -> bool:
    """A folder that is one file to xafm: its content says so (a folder of frames), or
    its name does (``.ome.zarr``), even when its metadata is damaged (then its row says
    what is wrong, and its inner groups are not listed as files of their own)."""
    from . import registry

    return registry.identify(path) is not None or any(f.folder for f in registry.named(path))


def _add_special(walk: _Walk, path: Path | str) -> None:
    """A FIFO, socket, device or broken link a format's name claims: listed, never opened
    (opening a FIFO waits for a writer)."""
    from . import registry

    if not (registry.named(path) or walk.unknown):
        return
    try:
        mode = os.stat(path).st_mode
        what = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"
    except OSError:
        what = "a broken symbolic link"
    reason = f"{what}; xafm reads only regular files (not opened)"
    walk.rows.append(_problem(walk.rel(path), "", SpecialFileError.__name__, reason))


def _add_file(walk: _Walk, path: Path | str) -> bool:
    """List one file (or folder format); whether it opened."""
    from . import registry

    rel = walk.rel(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fmt = registry.find(path)
            ds = registry.open_dataset(path)
        except VERDICTS as exc:
            row = _problem(rel, _format_name(path), type(exc).__name__, _reason(exc, path, walk.root))
            opened = False
        else:
            try:
                names = registry.channels(path)
            except VERDICTS as exc:  # the file opened: its row stands, without the list
                names = []
                warnings.warn(f"the channels could not be listed ({type(exc).__name__}: {_reason(exc, path, walk.root)})", XafmWarning, stacklevel=1)
            row = _describe(rel, fmt.name, ds, names)
            opened = True
            try:
                _claim_set_members(walk, path, ds)
            except VERDICTS:  # the set's members are then listed one by one
                pass
    notes = (_reason(w.message, path, walk.root) for w in caught if issubclass(w.category, XafmWarning))
    row["warnings"] = "; ".join(dict.fromkeys(notes))
    for w in caught:  # other libraries' warnings are not the index's to keep
        if not issubclass(w.category, XafmWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    walk.rows.append(row)
    return opened


def _format_name(path: Path | str) -> str:
    """The format a file that failed was read as (the content's, else the name's)."""
    from . import registry

    fmt = registry.identify(path) or next(iter(registry.named(path)), None)
    return fmt.name if fmt is not None else ""


def _short(message: str, path: Path | str) -> str:
    """A message without the file's path in front (the row names the file)."""
    for prefix in (os.fspath(path), sources.absolute(path)):
        if message.startswith(prefix + ": "):
            return message[len(prefix) + 2 :]
    return message


def _reason(exc: BaseException | str, path: Path | str, root: Path | str) -> str:
    """The error's message without the file's path in front, other files of the folder
    named relative to it (as the rows name them)."""
    text = exc.strerror if isinstance(exc, OSError) and not isinstance(exc, FileError) and exc.strerror else str(exc)
    text = _short(text, path)
    if isinstance(root, str) and sources.is_url(root):
        return text.replace(root.rstrip("/") + "/", "")
    folder = os.path.abspath(root).rstrip(os.sep)
    return text.replace(folder + os.sep, "") if folder else text


def _claim_set_members(walk: _Walk, path: Path | str, ds: Any) -> None:
    """A file of a multi-file OME-TIFF set is the set's row: its other files are not
    listed (each would read the whole set again and give the same row)."""
    acq = model.acquisition(next(iter(ds.data_vars.values())))
    if not isinstance(acq.get("ome_set"), dict):
        return
    from .formats.ometiff import _describe as describe_ome  # the set's members, headers only

    the_set = describe_ome(sources.absolute(path)).get("set")
    if the_set is not None:
        walk.claimed.update(the_set.members)
        walk.claimed.add(sources.absolute(the_set.xml_path))


# --------------------------------------------------------------------------------------
# one row
# --------------------------------------------------------------------------------------
def _problem(path: str, fmt: str, error: str, problem: str) -> dict[str, Any]:
    return {"path": path, "format": fmt, "warnings": "", "error": error, "problem": problem}


def _describe(path: str, fmt: str, ds: Any, names: list[str]) -> dict[str, Any]:
    """The row of a file that opened: sizes, pixel size, date and duration from the lazy
    Dataset's coordinates; its values are never touched."""
    da = next(iter(ds.data_vars.values()))
    sizes = dict(da.sizes)
    try:
        dy, dx = model.pixel_size_nm(da)
    except XafmError:
        dy = dx = math.nan
    ny, nx = int(sizes.get(conventions.Y, 0)), int(sizes.get(conventions.X, 0))
    others = {d: n for d, n in sizes.items() if d not in conventions.DIMS}
    return {
        "path": path,
        "format": fmt,
        "channel": model.channel_of(da),
        "channels": ", ".join(names),
        "frames": int(sizes.get(conventions.TIME, 1)),
        "ny": ny,
        "nx": nx,
        "height_nm": ny * dy,
        "width_nm": nx * dx,
        "pixel_y_nm": dy,
        "pixel_x_nm": dx,
        "other_dims": ", ".join(f"{d}: {n}" for d, n in others.items()),
        "date": _start_ms(da),
        "duration_s": _duration_s(da),
        "error": "",
        "problem": "",
    }


def _one(da: Any, name: str, i: int) -> float:
    """Frame ``i`` of a per-frame coordinate (NaN without it), reading that value only."""
    if name not in da.coords or da.coords[name].dims != (conventions.TIME,):
        return math.nan
    try:
        return float(da.coords[name].variable[i].values)
    except (TypeError, ValueError):
        return math.nan


#: Dates a DataFrame holds (``datetime64[ns]``: 1677 to 2262), in ms since the epoch.
LATEST_MS = 9.2e12


def _start_ms(da: Any) -> float:
    """The first frame's ``start_epoch_ms`` (the data model's absolute start time); a
    value no date can be (a lying header) is unknown rather than the end of the index."""
    ms = _one(da, "start_epoch_ms", 0)
    return ms if abs(ms) < LATEST_MS else math.nan


def _duration_s(da: Any) -> float:
    """From the first frame's start to the last frame's end: ``time[-1] - time[0]`` plus
    the last ``frame_duration_s``; without frame durations, plus the median frame step
    (frames back to back) for a video, and unknown (NaN) for a single frame."""
    t = model.times_s(da)
    last = _one(da, "frame_duration_s", -1)
    if math.isfinite(last):
        return float(t[-1] - t[0]) + last
    if t.size > 1:
        return float(t[-1] - t[0] + np.median(np.diff(t)))
    return math.nan


def _frame(rows: list[dict[str, Any]], root: Path | str) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.sort_values("path", kind="stable", ignore_index=True)
    for name in ("format", "channel", "channels", "other_dims", "warnings", "error", "problem"):
        df[name] = pd.Series(["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in df[name]], dtype=object).astype(str)
    for name in ("frames", "ny", "nx"):
        df[name] = df[name].astype("Int64")
    for name in ("height_nm", "width_nm", "pixel_y_nm", "pixel_x_nm", "duration_s"):
        df[name] = df[name].astype("float64")
    # start_epoch_ms is in ms: what floats add below that is noise
    df["date"] = pd.to_datetime(df["date"].astype("float64"), unit="ms", utc=True).dt.round("ms").astype("datetime64[ns, UTC]")
    df.attrs["folder"] = sources.absolute(root)
    return df


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------
def _iso(value: Any) -> str | None:
    """A date as ISO 8601 (UTC, milliseconds), None when unknown."""
    import pandas as pd

    if value is None or pd.isna(value):
        return None
    text: str = value.isoformat(timespec="milliseconds")
    return text


def records(df: Any) -> Iterator[dict[str, Any]]:
    """The rows as plain JSON values: numbers as numbers, unknowns as None, dates ISO 8601."""
    import pandas as pd

    for row in df.to_dict(orient="records"):
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key == "date":
                out[key] = _iso(value)
            elif value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                out[key] = None
            elif isinstance(value, np.generic):
                out[key] = value.item()
            else:
                out[key] = value
        yield out


def to_json(df: Any) -> str:
    return json.dumps(list(records(df)), ensure_ascii=False, indent=1)


def to_csv(df: Any) -> str:
    out = df.copy()
    out["date"] = [_iso(v) for v in df["date"]]
    text: str = out.to_csv(index=False)
    return text


def to_table(df: Any, width: int = 60) -> str:
    """An aligned text table for a terminal, one line a file: the default channel and how
    many others, sizes as ``ny x nx``, numbers to 4 significant digits, dates to the
    second, unknowns as ``-``, and one note (the error, else the warnings) cut to
    ``width`` characters. CSV and JSON hold every column in full."""
    skipped = int(df.attrs.get("folders_not_searched", 0))
    note = f"({skipped} subfolder{'s' * (skipped != 1)} not searched: --recursive lists their files)" if skipped else ""
    if df.empty:
        return "\n".join(filter(None, ["(no files xafm reads here)", note]))
    header = ("path", "format", "channel", "frames", "size px", "size nm", "pixel nm", "other dims", "date (UTC)", "duration s", "note")
    lines = [header] + [_table_row(row, width) for row in df.to_dict(orient="records")]
    cols = [c for c in range(len(header)) if any(line[c] != "-" for line in lines[1:]) or c < 2]
    widths = {c: max(len(line[c]) for line in lines) for c in cols}
    right = {3, 5, 9}  # numbers line up on their last digit
    out = ["  ".join(line[c].rjust(widths[c]) if c in right else line[c].ljust(widths[c]) for c in cols).rstrip() for line in lines]
    return "\n".join(out + ([note] if note else []))


def _num(v: Any) -> str:
    """A number for the table: 4 significant digits, whole nm/s beyond 10 000, ``-`` unknown."""
    import pandas as pd

    if v is None or pd.isna(v):
        return "-"
    return f"{v:.0f}" if 1e4 <= abs(v) < 1e9 else f"{v:.4g}"


def _pair(a: Any, b: Any, *, same_as_one: bool = False) -> str:
    if _num(a) == "-" or _num(b) == "-":
        return "-"
    return _num(b) if same_as_one and _num(a) == _num(b) else f"{_num(a)} x {_num(b)}"


def _table_row(row: dict[str, Any], width: int) -> tuple[str, ...]:
    names = [n for n in str(row["channels"]).split(", ") if n]
    channel = str(row["channel"]) or "-"
    if row["channel"] and len(names) > 1:  # the others are in the file, or in the array (a channel dim)
        channel += f" (+{len(names) - 1})" if row["channel"] in names else f" ({len(names)} channels)"
    note = f"{row['error']}: {row['problem']}" if row["error"] else str(row["warnings"])
    note = note if len(note) <= width else note[: width - 3] + "..."
    date = _iso(row["date"])
    return (
        str(row["path"]), str(row["format"]) or "-", channel,
        _num(row["frames"]),
        _pair(row["ny"], row["nx"]), _pair(row["height_nm"], row["width_nm"]),
        _pair(row["pixel_y_nm"], row["pixel_x_nm"], same_as_one=True),
        str(row["other_dims"]) or "-", date[:19].replace("T", " ") if date else "-",
        _num(row["duration_s"]), note or "-",
    )  # fmt: skip
