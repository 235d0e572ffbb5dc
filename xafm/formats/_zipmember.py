"""Zip archives as NPZ bundles use them: every size the archive claims checked against the
file before anything of that size is read or allocated.

A zip's end record claims how many members there are and where the central directory is;
each central-directory entry claims a member's compressed and uncompressed sizes. All are
claims: :func:`check_archive` bounds the end record before ``zipfile`` parses the
directory, :func:`member_layout` checks one member's claims against the file (the data lies
inside the file; a stored member is as long as it says; a deflated member cannot inflate
beyond deflate's maximum ratio), and :func:`read_member` reads a whole small member with a
bounded read that stops with a :class:`CorruptFileError` when the data runs out before, or
goes on past, the size the member claims.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from ..core.sources import file_size
from ..exceptions import CorruptFileError

#: Deflate's largest possible expansion: at best a 258-byte match costs two bits, so a
#: deflate stream inflates to at most about 1032 times its length (zlib's FAQ; zeros at
#: level 9 reach 1029:1). ``MAX_DEFLATE_SLACK`` covers the first bytes of tiny streams.
MAX_DEFLATE_RATIO = 1032
MAX_DEFLATE_SLACK = 258
#: Most members an NPZ bundle may hold: a bundle has ten members plus one per layer and mask.
MAX_MEMBERS = 10_000
#: Largest central directory read (bytes): MAX_MEMBERS entries with long names.
MAX_CENTRAL_DIRECTORY_BYTES = 8 * 2**20
#: Compressed bytes read at a time.
READ_CHUNK = 2**20

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_LOCAL = b"PK\x03\x04"


def _end_record(fh: BinaryIO, size: int) -> tuple[int, int, int] | None:
    """(entries, directory size, directory offset) the end record claims, or None when
    there is no end record (``zipfile`` then says it is not a zip)."""
    tail_len = min(size, 22 + 65535)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    _, _, _, entries, cd_size, cd_offset, _ = struct.unpack("<4HIIH", tail[at + 4 : at + 22])
    locator = at - 20
    if locator >= 0 and tail[locator : locator + 4] == _EOCD64_LOCATOR:
        (eocd64_offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        if eocd64_offset + 56 <= size:
            fh.seek(eocd64_offset)
            rec = fh.read(56)
            if rec[:4] == _EOCD64:
                entries, cd_size, cd_offset = struct.unpack("<QQQ", rec[32:56])
    return entries, cd_size, cd_offset


def check_archive(fh: BinaryIO, path: str) -> None:
    """Refuse an end record whose member count or central directory does not fit the file
    (or xafm's bounds) before ``zipfile`` reads and parses the directory."""
    size = file_size(fh)
    claims = _end_record(fh, size)
    fh.seek(0)
    if claims is None:
        return
    entries, cd_size, cd_offset = claims
    if cd_size > size or cd_offset > size:
        raise CorruptFileError(path, f"zip central directory claims {cd_size} bytes at offset {cd_offset}; the file is {size} bytes")
    if cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise CorruptFileError(path, f"zip central directory is {cd_size} bytes, more than the {MAX_CENTRAL_DIRECTORY_BYTES} an NPZ bundle may have")
    if entries > MAX_MEMBERS:
        raise CorruptFileError(path, f"zip claims {entries} members, more than the {MAX_MEMBERS} an NPZ bundle may hold")
    if entries * 46 > cd_size:  # a central-directory entry is at least 46 bytes
        raise CorruptFileError(path, f"zip claims {entries} members in a central directory of {cd_size} bytes")


def open_archive(fh: BinaryIO, path: str) -> zipfile.ZipFile:
    """``zipfile.ZipFile(fh)`` after :func:`check_archive`, with at most ``MAX_MEMBERS``."""
    check_archive(fh, path)
    zf = zipfile.ZipFile(fh)
    if len(zf.infolist()) > MAX_MEMBERS:
        raise CorruptFileError(path, f"zip holds more than {MAX_MEMBERS} members")
    return zf


@dataclass(frozen=True)
class MemberLayout:
    """Where a member's bytes are and what the archive claims about them (checked)."""

    name: str
    method: int
    data_offset: int
    compress_size: int
    file_size: int
    crc: int


def member_layout(fh: BinaryIO, info: zipfile.ZipInfo, path: str) -> MemberLayout:
    """A member's data offset (from its local header) and sizes, each claim checked
    against the file: the data lies inside the file, a stored member's two sizes agree, and
    a deflated member's uncompressed size is reachable from its compressed size."""
    size = file_size(fh)
    name = info.filename
    if info.flag_bits & 0x1:
        raise CorruptFileError(path, f"member {name!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CorruptFileError(path, f"member {name!r} uses zip compression method {info.compress_type}; NPZ members are stored or deflated")
    if info.header_offset + 30 > size:
        raise CorruptFileError(path, f"member {name!r}: local header at byte {info.header_offset} is past the end of the {size}-byte file")
    fh.seek(info.header_offset)
    local = fh.read(30)
    if local[:4] != _LOCAL:
        raise CorruptFileError(path, f"member {name!r}: bad local zip header at byte {info.header_offset}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    data_offset = info.header_offset + 30 + name_len + extra_len
    if data_offset + info.compress_size > size:
        raise CorruptFileError(
            path, f"member {name!r} claims {info.compress_size} bytes at byte {data_offset}; the file is {size} bytes"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise CorruptFileError(path, f"stored member {name!r} claims {info.file_size} bytes but holds {info.compress_size}")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + MAX_DEFLATE_SLACK:
        raise CorruptFileError(
            path,
            f"deflated member {name!r} claims {info.file_size} bytes from {info.compress_size} compressed bytes, "
            f"more than deflate can expand to ({MAX_DEFLATE_RATIO}:1)",
        )
    return MemberLayout(name, info.compress_type, data_offset, info.compress_size, info.file_size, info.CRC)


def corrupt_size(path: str, layout: MemberLayout, got: int, *, beyond: bool) -> CorruptFileError:
    """The error for a member whose data does not hold the size it claims."""
    if beyond:
        return CorruptFileError(path, f"member {layout.name!r} inflates beyond the {layout.file_size} bytes it claims")
    return CorruptFileError(path, f"member {layout.name!r} ends after {got} bytes; it claims {layout.file_size}")


def read_member(fh: BinaryIO, layout: MemberLayout, path: str, limit: int) -> bytes:
    """A whole member's bytes, read with a bounded read: refused when it claims more than
    ``limit`` bytes, and when its data ends before or runs past that claim, or fails its CRC."""
    if layout.file_size > limit:
        raise CorruptFileError(path, f"member {layout.name!r} claims {layout.file_size} bytes, more than the {limit} xafm reads for it")
    fh.seek(layout.data_offset)
    if layout.method == zipfile.ZIP_STORED:
        body = fh.read(layout.file_size)
        if len(body) != layout.file_size:
            raise corrupt_size(path, layout, len(body), beyond=False)
    else:
        inflater = zlib.decompressobj(-15)
        parts: list[bytes] = []
        got, left = 0, layout.compress_size
        while not inflater.eof:
            chunk = inflater.unconsumed_tail or fh.read(min(READ_CHUNK, left))
            if not inflater.unconsumed_tail:
                left -= len(chunk)
            if not chunk:
                raise corrupt_size(path, layout, got, beyond=False)
            try:
                out = inflater.decompress(chunk, layout.file_size - got + 1)
            except zlib.error as exc:
                raise CorruptFileError(path, f"member {layout.name!r} is not valid deflate data: {exc}") from None
            got += len(out)
            if got > layout.file_size:
                raise corrupt_size(path, layout, got, beyond=True)
            parts.append(out)
        if got != layout.file_size:
            raise corrupt_size(path, layout, got, beyond=False)
        body = b"".join(parts)
    if zlib.crc32(body) != layout.crc:
        raise CorruptFileError(path, f"member {layout.name!r} fails its CRC check")
    return body
