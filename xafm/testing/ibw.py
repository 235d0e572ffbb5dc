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


def _checksum(head: bytearray, byteorder: str, at: int) -> None:
    """Make the 16-bit words of ``head`` add up to zero (Igor's header checksum at byte ``at``)."""
    struct.pack_into(byteorder + "H", head, at, 0)
    total = int(np.frombuffer(bytes(head), dtype=byteorder + "u2").sum()) & 0xFFFF
    struct.pack_into(byteorder + "H", head, at, (-total) & 0xFFFF)


def write_wave(path, wave, *, units=(), sf=(), labels=None, note="", data_units="m", bname="wave0",
               byteorder="<", footer=None):
    """Write any numeric Igor v5 wave (1 to 4 dims), as Igor lays it out.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    wave
        The wave in Igor's own dimension order (dim 0 first; written column-major, dim 0 fastest).
    units, sf
        ``dimUnits`` and ``sfA`` (delta) per dimension; units longer than 3 characters go to
        the extended-units sections, as Igor writes them.
    labels
        ``{dim: [labels per index]}``; each dim's block starts with the (empty) dimension name.
    note, data_units, bname, byteorder
        The wave note (CR-separated ``Key: value`` lines), ``dataUnits``, the wave name, ``<``/``>``.
    footer
        ``{key: value}`` for Asylum's ``Key:value;`` footer ending in ``NNNN MFP3D``, or None.
    """
    wave = np.asarray(wave)
    assert 1 <= wave.ndim <= 4 and wave.dtype.str[1:] in IBW_TYPE_CODES
    raw = np.asfortranarray(wave.astype(wave.dtype.newbyteorder(byteorder))).tobytes(order="F")
    n_dim = list(wave.shape) + [0] * (4 - wave.ndim)
    units = list(units) + [""] * (4 - len(units))
    sf = list(sf) + [1.0] * (4 - len(sf))
    e_units = [u.encode("latin-1") if len(u) > 3 else b"" for u in units]
    label_blocks = [b""] * 4
    for d, names in (labels or {}).items():
        label_blocks[d] = b"".join(n.encode("latin-1")[:31].ljust(32, b"\0") for n in ["", *names])
    note_b = note.encode("latin-1")
    bo = byteorder
    head = bytearray(struct.pack(bo + "hhiiii4i4iiii", 5, 0, 320 + len(raw), 0, len(note_b), 0, *map(len, e_units),
                                 *map(len, label_blocks), 0, 0, 0))
    wh = bytearray(320)
    struct.pack_into(bo + "i", wh, 12, wave.size)
    struct.pack_into(bo + "h", wh, 16, IBW_TYPE_CODES[wave.dtype.str[1:]])
    struct.pack_into(bo + "h", wh, 26, 1)
    wh[28:28 + len(bname)] = bname.encode()
    struct.pack_into(bo + "4i", wh, 68, *n_dim)
    struct.pack_into(bo + "4d", wh, 84, *sf)
    wh[148:148 + min(len(data_units), 3)] = data_units.encode()[:3]
    for i, u in enumerate(units):
        if len(u) <= 3:
            wh[152 + 4 * i:152 + 4 * i + len(u)] = u.encode("latin-1")
    head += wh
    _checksum(head, bo, 2)
    tail = b""
    if footer is not None:
        text = "".join(f"{k}:{v};" for k, v in footer.items()).encode("latin-1")
        tail = text + f"{len(text) + 10:04d} MFP3D".encode()
    path.write_bytes(bytes(head) + raw + note_b + b"".join(e_units) + b"".join(label_blocks) + tail)
    return path


#: An Asylum force curve's note: the segment table and the settings public readers use.
FORCE_CURVE_NOTE = ("NumPtsPerSec: 2000\rSpringConstant: 0.1\rInvOLS: 5e-08\rTriggerChannel: Defl\r"
                    "ScanSize: 1e-06\rScanPoints: 256\rScanLines: 256\rIndexes: 0,{half},{end}\rDirection: NaN,1,-1\r")


def write_force_curve(path, n_points=1261, *, signals=("Raw", "Defl", "ZSnsr"), rate=2000.0, note=None,
                      time_axis=True, byteorder="<", footer=None):
    """An Asylum force curve: a 2-D float32 wave (samples, signals) over time, the signals
    labelled on dim 1, the note with the segment table (``Indexes``, ``Direction``); the
    values are an approach and a retract ramp (m). Returns the path and the wave."""
    t = np.arange(n_points) / rate
    ramp = 1e-7 * np.minimum(t, t[-1] - t) / max(t[-1], 1e-12)
    wave = np.stack([ramp * (i + 1) for i in range(len(signals))], axis=1).astype(np.float32)
    if note is None:
        note = FORCE_CURVE_NOTE.format(half=n_points // 2, end=n_points - 1)
    write_wave(path, wave, units=("s" if time_axis else "", ""), sf=(1.0 / rate, 1.0), labels={1: list(signals)},
               note=note, bname="Force0001", byteorder=byteorder, footer=footer)
    return path, wave


def write_force_map(path, grid=(4, 3), n_points=50, *, signals=("Raw", "Defl", "ZSnsr"), rate=2000.0, byteorder="<"):
    """A force map as one wave: (x, y, samples, signals) with x, y in m, the samples in s and
    the signals labelled on dim 3 (a 4-D wave; Asylum's own maps are one curve per point, each
    a force curve). Returns the path and the wave."""
    shape = (*grid, n_points, len(signals))
    wave = (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) * np.float32(1e-9))
    write_wave(path, wave, units=("m", "m", "s", ""), sf=(1e-7, 1e-7, 1.0 / rate, 1.0), labels={3: list(signals)},
               note=FORCE_CURVE_NOTE.format(half=n_points // 2, end=n_points - 1), bname="FMap", byteorder=byteorder)
    return path, wave


def write_ibw_v2(path, values, *, note="", bname="curve", byteorder="<", checksum_fix=True):
    """A version-2 Igor binary wave (always 1-D): ``BinHeader2`` (16 bytes), ``WaveHeader2``
    (110 bytes, then the data, whose first 16 bytes Igor counts as the header's ``wData``)."""
    values = np.asarray(values, dtype=np.dtype(byteorder + "f4")).ravel()
    data = values.tobytes()
    note_b = note.encode("latin-1")
    bo = byteorder
    head = bytearray(struct.pack(bo + "hiiih", 2, 110 + len(data) + 16, len(note_b), 0, 0))
    wh = bytearray(110)
    struct.pack_into(bo + "h", wh, 0, IBW_TYPE_CODES["f4"])
    wh[6:6 + len(bname)] = bname.encode()
    struct.pack_into(bo + "i", wh, 42, values.size)
    struct.pack_into(bo + "2d", wh, 48, 1.0, 0.0)
    body = bytes(wh) + data + bytes(16)
    head += body[:126]
    if checksum_fix:
        _checksum(head, bo, 14)
    path.write_bytes(bytes(head[:16]) + body + note_b)
    return path
