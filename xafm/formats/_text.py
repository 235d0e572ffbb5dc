"""Reading a text header without reading the data behind it (Nanoscope, Nanonis, WSxM)."""

from __future__ import annotations

from ..core import sources


def read_until(
    path: str, marker: bytes, *, limit: int, extra: int = 0, starts: tuple[bytes, ...] = (), chunk: int = 65536
) -> tuple[bytes, int, int]:
    """The file's first bytes up to ``marker`` plus ``extra`` more, read in chunks so that
    opening a file reads its header, not its data (shared by the text-header readers).

    Returns (bytes, marker position or -1, file size); stops after ``limit`` bytes, or after
    the first chunk when the file does not begin with one of ``starts`` (not this format).
    """
    with sources.open_binary(path, block_size=chunk) as fh:
        size = sources.file_size(fh)
        buf = bytearray()
        pos = -1
        while len(buf) < min(size, limit):
            start = max(0, len(buf) - len(marker))
            block = fh.read(min(chunk, limit - len(buf)))
            if not block:
                break
            buf += block
            pos = buf.find(marker, start)
            if pos >= 0 or (starts and not bytes(buf[:64]).startswith(starts)):
                break
        if pos >= 0 and len(buf) < pos + len(marker) + extra:
            buf += fh.read(pos + len(marker) + extra - len(buf))
    return bytes(buf), pos, size
