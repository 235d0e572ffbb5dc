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
import os
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core import conventions
from ..core.blocks import iter_blocks
from ..core.contract import Format, Probe
from ..core.lazy import InMemoryArray, LazyArray, RawFramesArray, outer_index
from ..core.output import atomic_output
from ..exceptions import CorruptFileError, UnsafeFileError
from . import _bundle

NAME = "npz"
#: Members every bundle holds (playNano's and xafm's alike).
REQUIRED = ("data", "pixel_size_nm", "channel", "frame_metadata_json", "provenance_json")
LAYER_KEY = "processed__"
MASK_KEY = "masks__"
#: Largest string member (bytes) read into memory.
MAX_TEXT_BYTES = 256 * 2**20


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
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_ALLOWED_OPCODES = {
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "NEWOBJ",
    "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET",
    "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS", "LIST",
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1",
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
    "SHORT_BINSTRING", "BINSTRING", "STRING", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
}


class _StringsOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else: no code can run."""

    def __init__(self, fp: Any, path: str):
        super().__init__(fp, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            from numpy._core import multiarray

            return {"_reconstruct": multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}[name]
        raise UnsafeFileError(self.path, f"refusing to unpickle {module}.{name}: only plain strings are accepted")


def _load_pickled_strings(payload: bytes, path: str, key: str) -> np.ndarray:
    try:
        for op, arg, _ in pickletools.genops(payload):
            if op.name not in _ALLOWED_OPCODES:
                raise UnsafeFileError(path, f"member {key!r} holds a pickle with opcode {op.name}; refused")
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > 2**24:
                raise UnsafeFileError(path, f"member {key!r} holds a pickle with an implausible number {arg}; refused")
        obj = _StringsOnlyUnpickler(io.BytesIO(payload), path).load()
    except UnsafeFileError:
        raise
    except Exception as exc:
        raise CorruptFileError(path, f"member {key!r} is not a readable string array: {exc}") from None
    if not isinstance(obj, np.ndarray) or not all(isinstance(v, (str, bytes)) for v in obj.ravel().tolist()):
        raise UnsafeFileError(path, f"member {key!r} holds objects other than strings; refused")
    return obj


def _npy_header(fp: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy format version {version}")


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> np.ndarray:
    key = info.filename[:-4]
    if info.file_size > MAX_TEXT_BYTES:
        raise CorruptFileError(path, f"member {key!r} is {info.file_size} bytes, too large for a metadata value")
    with zf.open(info) as fp:
        shape, fortran, dtype = _npy_header(fp)
        body = fp.read()
    if dtype.hasobject:
        return _load_pickled_strings(body, path, key)
    count = int(np.prod(shape))
    if count * dtype.itemsize != len(body):
        raise CorruptFileError(path, f"member {key!r} holds {len(body)} bytes, its header promises {count * dtype.itemsize}")
    arr = np.frombuffer(body, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


class ZipMemberArray(LazyArray):
    """A compressed (deflated) member: decompress up to the last frame asked for."""

    def __init__(self, path: str, member: str, header_len: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.member, self.header_len = path, member, header_len
        self.shape, self.dtype = tuple(shape), np.dtype(dtype).newbyteorder("=")
        self.raw_dtype = np.dtype(dtype)

    def _read(self, key: tuple) -> np.ndarray:
        frames = np.arange(self.shape[0])[key[0]]
        stop = int(np.max(frames)) + 1 if np.size(frames) else 0
        frame_bytes = int(np.prod(self.shape[1:])) * self.raw_dtype.itemsize
        with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as fp:
            fp.read(self.header_len)
            body = fp.read(stop * frame_bytes)
        if len(body) != stop * frame_bytes:
            raise CorruptFileError(self.path, f"member {self.member!r} ends early")
        arr = np.frombuffer(body, dtype=self.raw_dtype).reshape((stop,) + self.shape[1:])
        return np.array(outer_index(arr, key), dtype=self.dtype)


def _array_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, fh: Any) -> LazyArray:
    key = info.filename[:-4]
    with zf.open(info) as fp:
        shape, fortran, dtype = _npy_header(fp)
        header_len = fp.tell()
    if dtype.hasobject or len(shape) != 3:
        raise CorruptFileError(path, f"member {key!r} must be a numeric 3-D array, found {dtype} {shape}")
    need = header_len + int(np.prod(shape)) * dtype.itemsize
    if need != info.file_size:
        raise CorruptFileError(path, f"member {key!r} is {info.file_size} bytes, its header promises {need}")
    if fortran:
        with zf.open(info) as fp:
            return InMemoryArray(path, np.lib.format.read_array(fp, allow_pickle=False))
    if info.compress_type != zipfile.ZIP_STORED:
        return ZipMemberArray(path, info.filename, header_len, shape, dtype)
    fh.seek(info.header_offset)
    local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise CorruptFileError(path, f"member {key!r}: bad local zip header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header_len
    return RawFramesArray(path, offset=offset, n_frames=shape[0], frame_shape=shape[1:], raw_dtype=dtype)


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    return {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}


def identify(probe: Probe) -> bool:
    """A zip archive holding the bundle's members (not any ``.npz``)."""
    if not probe.head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return False
    with zipfile.ZipFile(probe.path) as zf:
        return all(k in _members(zf) for k in REQUIRED)


def channels(path: str | os.PathLike[str]) -> list[str]:
    path = os.fspath(path)
    with zipfile.ZipFile(path) as zf:
        infos = _members(zf)
        value = _read_small(zf, infos["channel"], path) if "channel" in infos else None
    return [conventions.safe_channel(_bundle.text(value) or "height")]


def read(path: str | os.PathLike[str], *, channel: str | None = None) -> xr.Dataset:
    """The bundle as the stack it was written from (lazy; stored members memory-mapped).

    ``channel`` may name the bundle's one channel (anything else is a ``ChannelError``).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            infos = _members(zf)
            for key in REQUIRED:
                if key not in infos:
                    raise CorruptFileError(path, f"member {key!r} is missing: not an AFM NPZ bundle")
            data = _array_member(zf, infos["data"], path, fh)
            layers = {k[len(LAYER_KEY):]: _array_member(zf, i, path, fh) for k, i in infos.items() if k.startswith(LAYER_KEY)}
            masks = {k[len(MASK_KEY):]: _array_member(zf, i, path, fh) for k, i in infos.items() if k.startswith(MASK_KEY)}
            for m in masks.values():
                m.dtype = np.dtype(bool)
            small = {
                k: (_read_small(zf, infos[k], path) if k in infos else None)
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
