"""NPZ bundle (``.npz``): playNano's keys, streamed member by member, read without pickle.

Keys: ``data``, ``processed__<layer>``, ``masks__<mask>``, ``timestamps``,
``frame_metadata_json``, ``provenance_json``, ``state_backups_json`` (when present),
``pixel_size_nm``, ``channel``, plus xafm's ``xafm_attrs_json``. Strings are 0-d unicode
arrays, so reading never needs pickle. playNano itself stores strings as pickled object
arrays; those are read with a restricted unpickler that admits nothing but numpy's array
reconstruction and plain strings.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions, sources
from ..core.blocks import iter_blocks
from ..core.contract import Format, Probe
from ..core.lazy import InMemoryArray, LazyArray, RawFramesArray
from ..core.output import atomic_output
from ..exceptions import CorruptFileError
from . import _bundle, _zipmember
from ._inflate import DeflatedFramesArray

NAME = "npz"
#: Members every bundle holds (playNano's and xafm's alike).
REQUIRED = ("data", "pixel_size_nm", "channel", "frame_metadata_json", "provenance_json")
LAYER_KEY = "processed__"
MASK_KEY = "masks__"
#: Longest text member (characters) read: 32 Mi characters hold the per-frame metadata of
#: 100,000 frames of xafm's richest per-frame metadata (ASD files, about 280 characters a
#: frame in a bundle: 27 MiB) with room to spare.
MAX_TEXT_CHARS = 32 * 2**20
#: Most JSON values (a count of ``{``, ``[`` and ``,``) parsed from one member: the ASD
#: metadata of 100,000 frames has 1.1 million; the cap bounds what parsing can build
#: (about 80 bytes a value) whatever the text's length.
MAX_JSON_ITEMS = 2**21
#: Longest ``.npy`` header read (numpy itself refuses headers above 10,000 bytes).
MAX_NPY_HEADER = 16384


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
def _write_member(zf: zipfile.ZipFile, key: str, obj: Any, dtype: Any = None) -> None:
    """Stream one array into the zip as ``key.npy``, block by block for stacks."""
    with zf.open(key + ".npy", "w", force_zip64=True) as fp:
        if isinstance(obj, xr.DataArray):
            dtype = np.dtype(dtype or obj.dtype)
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(obj.shape)}
            np.lib.format.write_array_header_1_0(fp, header)
            for _, _, block in iter_blocks(obj, dtype):
                fp.write(np.ascontiguousarray(block).data.cast("B"))
        else:
            np.lib.format.write_array(fp, np.asanyarray(obj), allow_pickle=False)


def write(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    raw: bool = False,
    overwrite: bool = False,
    compress: bool = False,
    fsync: bool = True,
) -> Path:
    """Write the stack as an NPZ bundle (uncompressed by default, like ``np.savez``);
    ``fsync=False`` skips making it durable before it is reported written (scratch output)."""
    path = Path(path)
    content = _bundle.bundle_content(da, raw=raw, fmt=NAME, path=path)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_output(path, overwrite=overwrite, fsync=fsync) as tmp, zipfile.ZipFile(tmp, "w", compression=method, allowZip64=True) as zf:
        _write_member(zf, "data", content.data, np.float32)
        for name, obj in content.layers.items():
            _write_member(zf, LAYER_KEY + name, obj, np.float32)
        for name, obj in content.masks.items():
            _write_member(zf, MASK_KEY + name, obj, bool)
        _write_member(zf, "timestamps", content.times.astype(np.float64))
        _write_member(zf, "frame_metadata_json", np.array(content.frame_metadata_json))
        _write_member(zf, "provenance_json", np.array(content.provenance_json))
        if content.state_backups_json:
            _write_member(zf, "state_backups_json", np.array(content.state_backups_json))
        _write_member(zf, "pixel_size_nm", np.array(content.pixel_size_nm, dtype=np.float64))
        _write_member(zf, "channel", np.array(content.channel))
        _write_member(zf, "xafm_attrs_json", np.array(content.attrs_json))
    return path


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def _npy_header(fp: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {version}")


def _member_header(fh: Any, layout: _zipmember.MemberLayout, path: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """A member's ``.npy`` header (shape, Fortran order, dtype, header length), read from
    at most its first ``MAX_NPY_HEADER`` bytes."""
    head = _zipmember.read_member(fh, layout, path, layout.file_size) if layout.file_size <= MAX_NPY_HEADER else _head(fh, layout, path)
    fp = io.BytesIO(head)
    shape, fortran, dtype = _npy_header(fp)
    return tuple(int(s) for s in shape), bool(fortran), dtype, fp.tell()


def _head(fh: Any, layout: _zipmember.MemberLayout, path: str) -> bytes:
    """The first ``MAX_NPY_HEADER`` bytes of a member (no CRC: the member is not read whole)."""
    fh.seek(layout.data_offset)
    if layout.method == zipfile.ZIP_STORED:
        return bytes(fh.read(MAX_NPY_HEADER))
    inflater = zlib.decompressobj(-15)
    try:
        return inflater.decompress(fh.read(min(layout.compress_size, MAX_NPY_HEADER + 4096)), MAX_NPY_HEADER)
    except zlib.error as exc:
        raise CorruptFileError(path, f"member {layout.name!r} is not valid deflate data: {exc}") from None


def _check_text(path: str, key: str, arr: np.ndarray) -> np.ndarray:
    """Refuse a text member beyond ``MAX_TEXT_CHARS``, or JSON with more than
    ``MAX_JSON_ITEMS`` values (objects, arrays and separators counted), before it is parsed."""
    value = _bundle.text(arr) or ""
    if len(value) > MAX_TEXT_CHARS:
        raise CorruptFileError(path, f"member {key!r} holds {len(value)} characters, more than the {MAX_TEXT_CHARS} xafm reads")
    if key.endswith("_json"):
        items = value.count("{") + value.count("[") + value.count(",")
        if items > MAX_JSON_ITEMS:
            raise CorruptFileError(path, f"member {key!r} holds about {items} JSON values, more than the {MAX_JSON_ITEMS} xafm parses")
    return arr


def _read_small(fh: Any, info: zipfile.ZipInfo, path: str, limit: int) -> np.ndarray:
    """A metadata member, whole, with a bounded read (at most ``limit`` bytes)."""
    key = info.filename[:-4]
    layout = _zipmember.member_layout(fh, info, path)
    body = _zipmember.read_member(fh, layout, path, limit)
    fp = io.BytesIO(body)
    shape, fortran, dtype = _npy_header(fp)
    payload = body[fp.tell():]
    if dtype.hasobject:
        from . import _safepickle  # pickletools' tables: only for files that pickle strings

        arr = _safepickle.load_string_array(payload, path, key, MAX_TEXT_CHARS)
    else:
        count = math.prod(shape)
        if count * dtype.itemsize != len(payload):
            raise CorruptFileError(path, f"member {key!r} holds {len(payload)} bytes, its header promises {count * dtype.itemsize}")
        arr = np.frombuffer(payload, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
    return _check_text(path, key, arr) if arr.dtype.kind in "OUS" else arr


def _array_member(fh: Any, info: zipfile.ZipInfo, path: str) -> LazyArray:
    """A stack member, checked: its header's shape and dtype against the member's sizes, and
    those against the file, before anything of the declared size exists."""
    key = info.filename[:-4]
    layout = _zipmember.member_layout(fh, info, path)
    shape, fortran, dtype, header_len = _member_header(fh, layout, path)
    if dtype.hasobject or len(shape) != 3:
        raise CorruptFileError(path, f"member {key!r} must be a numeric 3-D array, found {dtype} {shape}")
    if min(shape) == 0:
        raise CorruptFileError(path, f"member {key!r} has shape {shape}: a stack has at least one frame of 1x1 pixels")
    need = header_len + math.prod(shape) * dtype.itemsize
    if need != layout.file_size:
        raise CorruptFileError(path, f"member {key!r} is {layout.file_size} bytes, its header promises {need} ({dtype} {shape})")
    if fortran:  # frames are not contiguous: read whole
        body = _zipmember.read_member(fh, layout, path, layout.file_size)
        values = np.frombuffer(body, dtype=dtype, offset=header_len).reshape(shape, order="F")
        return InMemoryArray(path, values.astype(dtype.newbyteorder("=")))
    if layout.method == zipfile.ZIP_DEFLATED:
        return DeflatedFramesArray(path, layout, header_len, shape, dtype)
    return RawFramesArray(path, offset=layout.data_offset + header_len, n_frames=shape[0], frame_shape=(shape[1], shape[2]), raw_dtype=dtype)


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}


def _open(path: str | os.PathLike[str]) -> Any:
    """The archive as a file: a URL in byte ranges (the end record and central directory
    first, then each member's header), never whole."""
    return sources.open_binary(path, block_size=2**16)


def identify(probe: Probe) -> bool:
    """A zip archive holding the bundle's members (not any ``.npz``)."""
    if not probe.head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return False
    with _open(probe.path) as fh, _zipmember.open_archive(fh, os.fspath(probe.path)) as zf:
        return all(k in _members(zf) for k in REQUIRED)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    with _open(path) as fh, _zipmember.open_archive(fh, path) as zf:
        infos = _members(zf)
        value = _read_small(fh, infos["channel"], path, _text_limit()) if "channel" in infos else None
    return [conventions.safe_channel(_bundle.text(value) or "height")]


def _text_limit() -> int:
    """Most bytes a text member may have: ``MAX_TEXT_CHARS`` as 4-byte unicode, plus header."""
    return 4 * MAX_TEXT_CHARS + MAX_NPY_HEADER


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The bundle as the stack it was written from (lazy; stored members memory-mapped,
    deflated ones inflated on demand in bounded memory).

    ``channel`` may name the bundle's one channel (anything else is a ``ChannelError``).
    """
    path = os.fspath(path)
    try:
        with _open(path) as fh, _zipmember.open_archive(fh, path) as zf:
            infos = _members(zf)
            for key in REQUIRED:
                if key not in infos:
                    raise CorruptFileError(path, f"member {key!r} is missing: not an AFM NPZ bundle")
            data = _array_member(fh, infos["data"], path)
            layers = {k[len(LAYER_KEY):]: _array_member(fh, i, path) for k, i in infos.items() if k.startswith(LAYER_KEY)}
            masks = {k[len(MASK_KEY):]: _array_member(fh, i, path) for k, i in infos.items() if k.startswith(MASK_KEY)}
            for m in masks.values():
                m.dtype = np.dtype(bool)
            numbers_limit = MAX_NPY_HEADER + 16 * data.shape[0]  # timestamps: one number per frame
            small = {
                k: (_read_small(fh, infos[k], path, numbers_limit if k in ("timestamps", "pixel_size_nm") else _text_limit()) if k in infos else None)
                for k in ("timestamps", "frame_metadata_json", "provenance_json", "state_backups_json", "pixel_size_nm", "channel", "xafm_attrs_json")
            }
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error) as exc:
        raise CorruptFileError(path, f"not a readable NPZ archive: {exc}") from None
    ts = small["timestamps"]
    if ts is not None and (ts.dtype.kind not in "iuf" or ts.shape != (data.shape[0],)):
        raise CorruptFileError(path, f"'timestamps' must be {data.shape[0]} numbers, found {ts.dtype} {ts.shape}")
    return _bundle.assemble_bundle(
        path,
        NAME,
        channel_asked=channel,
        data=data,
        layers=layers,
        masks=masks,
        timestamps=ts,
        frame_metadata_json=small["frame_metadata_json"],
        provenance_json=small["provenance_json"],
        state_backups_json=small["state_backups_json"],
        pixel_size_nm=small["pixel_size_nm"],
        channel=small["channel"],
        attrs_json=small["xafm_attrs_json"],
        reader=__name__,
    )


FORMAT = Format(
    name=NAME,
    description="NumPy NPZ bundle (playNano keys)",
    suffixes=(".npz",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
