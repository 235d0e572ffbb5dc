"""Synthetic Asylum Research / Igor Pro ``.ibw`` waves (version 5), as ``docs/formats.md`` describes them."""

from __future__ import annotations

import struct

import numpy as np

#: numpy dtype code -> Igor wave type code (``WaveHeader5.type``)
IBW_TYPE_CODES = {"f4": 0x02, "f8": 0x04, "i1": 0x08, "i2": 0x10, "i4": 0x20, "u1": 0x48, "u2": 0x50, "u4": 0x60}


def write_ibw(path, images, *, labels=None, note="", byteorder="<", dtype="f4", sf=(1e-9, 1e-9), data_units="m",
              dim_units=("m", "m"), bname="wave0", channel_dim=None, nd3=0, checksum_fix=True, type_code=None,
              npnts=None, wfm_extra=0, version=5):
    """Write an Igor v5 wave the way Asylum does.

    The layout: ``BinHeader5`` (64 bytes) and ``WaveHeader5`` (320 bytes), the data as
    (points, lines, channels) column-major with the first line at the bottom, the note, the
    dim-2 labels (32-byte NUL-padded fields, the first one empty) and an ``MFP3D`` footer.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    images
        (channels, lines, points), top line first.
    labels
        Channel labels (dim-2 labels), or ``None`` to write none.
    note
        The wave note (``Key: value`` lines separated by CR), latin-1.
    byteorder, dtype
        ``"<"`` or ``">"`` and a key of :data:`IBW_TYPE_CODES`.
    sf, data_units, dim_units, bname
        ``sfA`` of dims 0 and 1, ``dataUnits``, ``dimUnits`` of dims 0 and 1, the wave name.
    channel_dim
        Whether ``nDim[2]`` holds the channel count; by default when there are several.
    nd3, checksum_fix, type_code, npnts, wfm_extra, version
        To build damaged headers: ``nDim[3]``, whether the checksum is made right, a type code,
        ``npnts`` and extra ``wfmSize`` bytes that override the true ones, the version number.
    """
    images = np.asarray(images)
    n_c, n_l, n_p = images.shape
    raw = np.ascontiguousarray(images[:, ::-1, :]).astype(np.dtype(byteorder + dtype))
    data = raw.tobytes()
    use_cdim = n_c > 1 if channel_dim is None else channel_dim
    n_dim = (n_p, n_l, n_c if use_cdim else 0, nd3)
    label_block = b""
    if labels is not None:
        label_block = b"".join(lab.encode("latin-1")[:31].ljust(32, b"\0") for lab in [""] + list(labels))
    note_b = note.encode("latin-1")
    wfm_size = 320 + len(data) + wfm_extra
    bo = byteorder
    bin_hdr = struct.pack(bo + "hhiiii4i4iiii", version, 0, wfm_size, 0, len(note_b), 0, 0, 0, 0, 0,
                          0, 0, len(label_block), 0, 0, 0, 0)
    wave = bytearray(320)
    struct.pack_into(bo + "i", wave, 12, images.size if npnts is None else npnts)
    struct.pack_into(bo + "h", wave, 16, IBW_TYPE_CODES[dtype] if type_code is None else type_code)
    struct.pack_into(bo + "h", wave, 26, 1)
    wave[28:28 + len(bname)] = bname.encode()
    struct.pack_into(bo + "4i", wave, 68, *n_dim)
    struct.pack_into(bo + "4d", wave, 84, sf[0], sf[1], 1.0, 1.0)
    wave[148:148 + len(data_units)] = data_units.encode()
    for i, u in enumerate(dim_units):
        wave[152 + 4 * i:152 + 4 * i + len(u)] = u.encode()
    head = bytearray(bin_hdr + bytes(wave))
    if checksum_fix:
        total = int(np.frombuffer(bytes(head), dtype=bo + "u2").sum()) & 0xFFFF
        struct.pack_into(bo + "H", head, 2, (-total) & 0xFFFF)
    path.write_bytes(bytes(head) + data + note_b + label_block + b"footer MFP3D")
    return path
