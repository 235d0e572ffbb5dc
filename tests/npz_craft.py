"""Zip archives built by hand for the NPZ guard tests: local headers, central directory and
end record written byte by byte, so that every claim (a member's sizes and CRC, the
archive's member count and directory size) can lie on its own; deflate streams assembled
from independent pieces, so that a member of hundreds of MiB costs one compression."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np


def npy_bytes(arr) -> bytes:
    fp = io.BytesIO()
    np.lib.format.write_array(fp, np.asanyarray(arr), allow_pickle=True)
    return fp.getvalue()


def npy_header(shape, dtype="<f4", fortran=False) -> bytes:
    fp = io.BytesIO()
    np.lib.format.write_array_header_1_0(fp, {"descr": dtype, "fortran_order": fortran, "shape": tuple(shape)})
    return fp.getvalue()


def deflate(data: bytes, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def deflate_piece(data: bytes, level: int = 1) -> bytes:
    """A byte-aligned, non-final piece of deflate stream that refers to nothing before it:
    pieces concatenate into one valid stream (end it with ``FINAL``)."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)


FINAL = b"\x03\x00"  # an empty final block


class Member:
    """One zip member as written: its raw bytes and what the archive claims about them."""

    def __init__(self, name, raw, *, method=zipfile.ZIP_STORED, file_size=None, crc=None, compress_size=None, content=None):
        self.name = name.encode()
        self.raw = raw  # bytes, or a list of byte pieces written one after the other
        self.method = method
        body = content if content is not None else raw
        self.file_size = len(body) if file_size is None else file_size
        self.crc = zlib.crc32(body) if crc is None else crc
        self.compress_size = (sum(map(len, raw)) if isinstance(raw, list) else len(raw)) if compress_size is None else compress_size


def stored(name, arr) -> Member:
    return Member(name, npy_bytes(arr))


def deflated(name, arr, **claims) -> Member:
    body = npy_bytes(arr)
    return Member(name, deflate(body), method=zipfile.ZIP_DEFLATED, content=body, **claims)


def write_zip(path: Path, members, *, entries=None, cd_size=None) -> Path:
    """Write ``members`` as a zip (32-bit sizes); ``entries`` / ``cd_size`` override the
    end record's claims."""
    with open(path, "wb") as f:
        offsets = []
        for m in members:
            offsets.append(f.tell())
            f.write(struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, m.method, 0, 0, m.crc, m.compress_size, m.file_size, len(m.name), 0))
            f.write(m.name)
            for piece in m.raw if isinstance(m.raw, list) else [m.raw]:
                f.write(piece)
        cd_start = f.tell()
        for m, off in zip(members, offsets):
            f.write(struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, m.method, 0, 0, m.crc, m.compress_size, m.file_size,
                                len(m.name), 0, 0, 0, 0, 0, off))
            f.write(m.name)
        cd_len = f.tell() - cd_start
        n = len(members) if entries is None else entries
        f.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), cd_len if cd_size is None else cd_size, cd_start, 0))
    return path


def metadata_members(n_frames: int) -> list[Member]:
    """The bundle's small members, as xafm writes them (0-d unicode strings)."""
    return [
        stored("pixel_size_nm.npy", np.array(1.0)),
        stored("channel.npy", np.array("height")),
        stored("frame_metadata_json.npy", np.array("[]")),
        stored("provenance_json.npy", np.array("{}")),
    ]


def bundle(path: Path, data: Member, extra=(), n_frames: int = 1) -> Path:
    return write_zip(path, [data, *metadata_members(n_frames), *extra])
