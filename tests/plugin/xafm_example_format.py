"""A tiny third-party format for xafm, as another package would ship one (docs/formats.md,
"Adding a format"). Its distribution declares, in ``entry_points.txt``::

    [xafm.formats]
    example = xafm_example_format

Layout (little-endian): the magic ``XAFMEX01``, then uint32 frames, rows, columns,
float64 pixel size in nm, then the frames as float32.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import xarray as xr

from xafm.core import model, provenance
from xafm.core.blocks import iter_blocks
from xafm.core.contract import Format, Probe
from xafm.core.lazy import RawFramesArray
from xafm.core.output import atomic_output
from xafm.exceptions import ChannelError, CorruptFileError

MAGIC = b"XAFMEX01"
HEADER = struct.Struct("<8s3Id")


def identify(probe: Probe) -> bool:
    return probe.head.startswith(MAGIC)


def channels(path: str) -> list[str]:
    return ["height"]


def read(path: str, *, channel: str | None = None) -> xr.Dataset:
    """The frames, lazily (a memory map per read)."""
    if channel not in (None, "height"):
        raise ChannelError(f"{path}: no channel {channel!r}; available: ['height']")
    with open(path, "rb") as fh:
        head = fh.read(HEADER.size)
        size = os.fstat(fh.fileno()).st_size
    if len(head) < HEADER.size:
        raise CorruptFileError(path, "the file ends inside its header")
    _, n, ny, nx, pixel = HEADER.unpack(head)
    if HEADER.size + 4 * n * ny * nx != size or not pixel > 0:
        raise CorruptFileError(path, f"the header promises {n} x {ny} x {nx} frames of {pixel} nm pixels; the file has {size} bytes")
    data = RawFramesArray(path, offset=HEADER.size, n_frames=n, frame_shape=(ny, nx), raw_dtype="<f4")
    record = provenance.make_record("read", path=path, format="example", reader=__name__)
    return model.assemble(data, pixel_size_nm=pixel, channel="height", provenance=[record])


def write(da: xr.DataArray, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """The stack's values as float32 frames, streamed block by block."""
    da = model.check_stack(da, "the example writer")
    n, ny, nx = da.shape
    with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        fh.write(HEADER.pack(MAGIC, n, ny, nx, model.pixel_size_nm(da)[1]))
        for _, _, block in iter_blocks(da, "<f4"):
            fh.write(block.tobytes())
    return Path(path)


FORMAT = Format(
    name="example",
    description="xafm's example plugin format",
    suffixes=(".xex",),
    lazy=True,
    identify=identify,
    read=read,
    channels=channels,
    write=write,
)
