"""HDF5 bundle (``.h5``): playNano's bundle layout, also readable as netCDF-4.

Layout: ``/data`` float32 (time, y, x); ``/processed/<layer>`` float32; ``/masks/<mask>``
int8 0/1; ``/timestamps`` float64; ``/frame_metadata_json``, ``/provenance_json`` (and
``/state_backups_json``) as UTF-8 string datasets; root attrs ``pixel_size_nm`` and
``channel``. xafm adds the dimension-scale datasets ``/time``, ``/y``, ``/x`` (with units;
``/y`` and ``/x`` start at a crop's origin) attached to every 3-D dataset, so netCDF-C, netCDF4-python, h5netcdf and xarray see named
dims, and the root attr ``xafm_attrs_json``. xafm's JSON is stored as fixed-length UTF-8
strings (no global heap to damage; playNano writes and reads them so too); the root
``channel`` stays a variable-length string, which playNano's ``str(attrs["channel"])``
needs, and is repeated in ``xafm_attrs_json`` so that reading xafm's own file needs no
heap read. Masks are int8 with CF ``flag_values`` /
``flag_meanings`` and xarray's ``dtype = "bool"`` marker: netCDF tools see ordinary ``byte``
variables, xarray decodes them to bool, playNano's ``astype(bool)`` loads them (h5py's own
bool is an anonymous enum netCDF-C 4.9 skips). Masks stored as bool (playNano's files,
xafm's before) read the same.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import chunks, conventions, model
from ..core.blocks import iter_blocks
from ..core.contract import Format, Probe
from ..core.output import atomic_output, check_free_space
from ..exceptions import CorruptFileError, FormatError, reading
from . import _bundle
from ._h5guard import check_stored, read_checked
from ._h5strings import Values
from ._hdf5 import H5DatasetArray, has_member, identify_with, open_h5, stored_chunks

NAME = "h5"
#: Members every bundle holds (playNano's and xafm's alike).
REQUIRED = ("data", "frame_metadata_json", "provenance_json")
COMPRESSIONS = (None, "gzip", "lzf")
_CHUNK_BYTES = 2**20
#: How masks are stored: netCDF's ``byte`` (0/1), not h5py's bool (an uncommitted enum type).
MASK_DTYPE = np.dtype(np.int8)
#: Longest text stored as a fixed-length attribute (an attribute lives in one object-header
#: message, at most 64 KiB with its name, type and shape).
MAX_FIXED_ATTR_BYTES = 60_000
#: CF's flag attributes, and xarray's marker for a boolean stored as bytes.
MASK_ATTRS: dict[str, Any] = {"flag_values": np.array([0, 1], MASK_DTYPE), "flag_meanings": "false true", "dtype": "bool"}


def fixed_text(text: str) -> np.ndarray:
    """UTF-8 text as a fixed-length HDF5 string (numpy ``S``): no global-heap object,
    read back by h5py as bytes (what playNano's loader decodes)."""
    raw = text.encode("utf-8")
    return np.array(raw, dtype=f"S{max(1, len(raw))}")


def _attr_text(text: str) -> Any:
    """An attribute's text: fixed-length when it fits an object-header message (HDF5's limit
    is 64 KiB per message), else variable-length (read back through the bounded heap read)."""
    return fixed_text(text) if len(text.encode("utf-8")) <= MAX_FIXED_ATTR_BYTES else text


def _string_dataset(group: Any, name: str, text: str) -> None:
    group.create_dataset(name, data=fixed_text(text))


def _create_3d(f: Any, name: str, obj: xr.DataArray, dtype: Any, scales: list, compression: Any, compression_opts: Any) -> Any:
    shape = tuple(obj.shape)
    kwargs: dict[str, Any] = {}
    if compression is not None:
        frames = max(1, min(shape[0], _CHUNK_BYTES // max(1, shape[1] * shape[2] * np.dtype(dtype).itemsize)))
        kwargs = {"compression": compression, "compression_opts": compression_opts, "chunks": (frames,) + shape[1:]}
        if np.dtype(dtype).itemsize > 1:
            kwargs["shuffle"] = True
    ds = f.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
    for a, b, block in iter_blocks(obj, dtype):
        ds[a:b] = block
    for axis, scale in enumerate(scales):
        ds.dims[axis].attach_scale(scale)
    return ds


def _label(ds: Any, encoded: str) -> None:
    """``long_name``: a layer's or mask's own name (the dataset's is percent-encoded); none
    for a name with NUL, which an HDF5 string cannot hold."""
    name = conventions.decode_name(encoded)
    if "\x00" not in name:
        ds.attrs["long_name"] = name


def _size_estimate(content: _bundle.BundleContent) -> int:
    """Bytes a bundle takes at least: its arrays as stored, its JSON, and HDF5's own."""
    frames = int(np.prod(content.data.shape))
    texts = (content.frame_metadata_json, content.provenance_json, content.state_backups_json or "")
    return frames * (4 * (1 + len(content.layers)) + len(content.masks)) + sum(len(t.encode("utf-8")) for t in texts) + 2**16


def _with_room(dest: Path, tmp: Path, needed: int) -> Path:
    """``tmp``, once the disk is known to have room for ``needed`` bytes: HDF5 (2.0, h5py
    3.16) fails to close a file whose writes hit a full disk, and freeing its objects
    afterwards crashes the interpreter, so a bundle that cannot fit is refused first."""
    check_free_space(dest, tmp.parent, needed)
    return tmp


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    raw: bool = False,
    overwrite: bool = False,
    compression: str | None = None,
    compression_opts: Any = None,
    fsync: bool = True,
) -> Path:
    """Write the stack as an HDF5 bundle.

    ``compression`` is None (default), ``"gzip"`` or ``"lzf"``. The default is uncompressed
    because AFM heights are noisy floats: gzip saves little on them and costs several
    times the write time (see docs/formats.md). ``fsync=False`` skips making the file
    durable before it is reported written (for scratch output).
    """
    import h5py

    if compression not in COMPRESSIONS:
        raise FormatError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    path = Path(path)
    content = _bundle.bundle_content(da, raw=raw, fmt=NAME, path=path)
    _, n_y, n_x = content.data.shape
    needed = _size_estimate(content)
    # locking=False: HDF5's own flock would clash with the temporary file's (core.leftovers)
    with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp, h5py.File(_with_room(path, tmp, needed), "w", locking=False) as f:
        scales = []
        for dimid, (dim, values, units) in enumerate(
            (
                (conventions.TIME, content.times, "s"),
                (conventions.Y, model.axis_coordinate(n_y, content.pixel_size_y_nm, content.origin_nm[0]), "nm"),
                (conventions.X, model.axis_coordinate(n_x, content.pixel_size_nm, content.origin_nm[1]), "nm"),
            )
        ):
            s = f.create_dataset(dim, data=np.asarray(values, dtype=np.float64))
            s.make_scale(dim)
            s.attrs["units"] = units
            s.attrs["_Netcdf4Dimid"] = np.int32(dimid)  # netCDF-C's dim order: time, y, x (hidden by netCDF tools)
            scales.append(s)
        _create_3d(f, "data", content.data, np.float32, scales, compression, compression_opts)
        f["data"].attrs["units"] = content.units
        f["data"].attrs["long_name"] = content.channel
        ts = f.create_dataset("timestamps", data=content.times)
        ts.attrs["units"] = "s"
        ts.dims[0].attach_scale(scales[0])
        g = f.create_group("processed")
        for name, obj in content.layers.items():
            ds = _create_3d(g, name, obj, np.float32, scales, compression, compression_opts)
            ds.attrs["units"] = content.units  # layers are kept in the stack's units
            _label(ds, name)
        g = f.create_group("masks")
        for name, obj in content.masks.items():
            ds = _create_3d(g, name, obj, MASK_DTYPE, scales, compression, compression_opts)
            _label(ds, name)
            for key, value in MASK_ATTRS.items():
                ds.attrs[key] = value
        _string_dataset(f, "frame_metadata_json", content.frame_metadata_json)
        _string_dataset(f, "provenance_json", content.provenance_json)
        if content.state_backups_json:
            _string_dataset(f, "state_backups_json", content.state_backups_json)
        f.attrs["pixel_size_nm"] = float(content.pixel_size_nm)
        f.attrs["channel"] = content.channel  # variable-length: playNano's str() needs a str
        attrs_json = json.loads(content.attrs_json)
        attrs_json["channel"] = content.channel
        f.attrs["xafm_attrs_json"] = _attr_text(json.dumps(attrs_json, ensure_ascii=False))
    return path


def _read_text(f: Any, values: Values, name: str) -> Any:
    if not has_member(f, name):
        return None
    obj = f[name]
    if not hasattr(obj, "shape") or obj.shape not in ((), (1,)):
        raise CorruptFileError(values.path, f"/{name} must be a scalar string dataset")
    return values.value(obj)


def _attrs_json(values: Values, f: Any) -> tuple[Any, str | None]:
    """The root's ``xafm_attrs_json`` (None in playNano's files) and the channel it repeats."""
    raw = values.attr(f, "xafm_attrs_json")
    try:
        parsed = json.loads(_bundle.text(raw) or "null")
    except ValueError:
        return raw, None  # the bundle's reader names the damage
    channel = parsed.get("channel") if isinstance(parsed, dict) else None
    return raw, channel if isinstance(channel, str) else None


def _channel(values: Values, f: Any, repeated: str | None) -> Any:
    """The stored channel: the copy in ``xafm_attrs_json`` (xafm's files, no heap read), else
    the root attribute (playNano's variable-length string)."""
    if repeated is not None:
        return repeated
    if "channel" not in f.attrs:
        raise CorruptFileError(values.path, "root attribute 'channel' is missing")
    return values.attr(f, "channel")


def identify(probe: Probe) -> bool:
    """An HDF5 file with the bundle's ``/data`` and JSON members (not any netCDF-4 file)."""
    return identify_with(probe, lambda f, _: all(has_member(f, k) for k in REQUIRED))


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        _, repeated = _attrs_json(values, f)
        stored = repeated if repeated is not None else values.attr(f, "channel")
        return [conventions.safe_channel(_bundle.text(stored) or "height")]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The bundle as the stack it was written from (lazy).

    ``channel`` may name the bundle's one channel (anything else is a ``ChannelError``).
    """
    import h5py

    path = os.fspath(path)
    with reading(path, "reading the HDF5 structure"), open_h5(path) as (f, values):
        if not has_member(f, "data") or not isinstance(f["data"], h5py.Dataset):
            raise CorruptFileError(path, "no /data dataset: not an HDF5 AFM bundle")
        d = f["data"]
        if d.ndim != 3 or d.dtype.kind not in "iuf":
            raise CorruptFileError(path, f"/data must be a numeric 3-D dataset, found {d.dtype} {d.shape}")
        check_stored(d, path, frames_axis=0)
        for key in ("frame_metadata_json", "provenance_json"):
            if not has_member(f, key):
                raise CorruptFileError(path, f"/{key} is missing: not a complete AFM bundle")
        data = H5DatasetArray(path, "data", shape=d.shape, dtype=d.dtype)
        stored = stored_chunks(d, conventions.DIMS)
        groups: dict[str, dict[str, Any]] = {"processed": {}, "masks": {}}
        for group, dtype in (("processed", None), ("masks", bool)):
            if has_member(f, group) and isinstance(f[group], h5py.Group):
                for name, ds in f[group].items():
                    if isinstance(ds, h5py.Dataset) and ds.ndim == 3:
                        check_stored(ds, path, frames_axis=0)
                        groups[group][name] = H5DatasetArray(path, f"{group}/{name}", shape=ds.shape, dtype=ds.dtype, out_dtype=dtype)
        timestamps = None
        if has_member(f, "timestamps"):
            ts = f["timestamps"]
            if not isinstance(ts, h5py.Dataset) or ts.shape != (d.shape[0],):
                raise CorruptFileError(path, f"/timestamps has shape {getattr(ts, 'shape', None)}, /data has {d.shape[0]} frames")
            timestamps = read_checked(ts, path, frames_axis=0)
        if "pixel_size_nm" not in f.attrs:
            raise CorruptFileError(path, "root attribute 'pixel_size_nm' is missing")
        texts = {k: _read_text(f, values, k) for k in ("frame_metadata_json", "provenance_json", "state_backups_json")}
        attrs_json, repeated = _attrs_json(values, f)
        pixel_size, stored_channel = values.attr(f, "pixel_size_nm"), _channel(values, f, repeated)
    ds = _bundle.assemble_bundle(
        path,
        NAME,
        channel_asked=channel,
        data=data,
        layers=groups["processed"],
        masks=groups["masks"],
        timestamps=timestamps,
        frame_metadata_json=texts["frame_metadata_json"],
        provenance_json=texts["provenance_json"],
        state_backups_json=texts["state_backups_json"],
        pixel_size_nm=pixel_size,
        channel=stored_channel,
        attrs_json=attrs_json,
        reader=__name__,
    )
    if stored:
        chunks.declare_stored(next(iter(ds.data_vars.values())).variable, stored)
    return ds


FORMAT = Format(
    name=NAME,
    description="HDF5 bundle (playNano layout, netCDF-4 readable)",
    suffixes=(".h5", ".hdf5"),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
