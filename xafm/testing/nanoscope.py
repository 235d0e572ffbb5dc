"""Synthetic Bruker / Digital Instruments Nanoscope files (``.spm``, ``.001``, ...), as
``docs/formats.md`` describes them: the header layout of a v5.31 file, trimmed to what the
reader uses."""

from __future__ import annotations

import numpy as np


def write_nanoscope(
    path,
    layers,
    *,
    bpp=2,
    scan_size="15 15 ~m",
    sens="V 15.06800 nm/V",
    scan_rate="1.5",
    date="12:34:38 PM Tue Jul 30 2019",
    header_len=8192,
    data_length=None,
    samps=None,
    lines=None,
    end_marker=True,
):
    """Write a Nanoscope file: a latin-1 ``\\r\\n`` header padded with ``\\x1a`` to
    ``header_len`` bytes, then each layer's little-endian integers in turn.

    The header holds ``\\*File list``, ``\\*Scanner list`` (``@Sens. Zscan``),
    ``\\*Ciao scan list`` and one ``\\*Ciao image list`` per layer (data offset and length,
    bytes/pixel, frame and line direction, samps/line, number of lines, scan size,
    ``@2:Image Data``, ``@2:Z scale``, ``@2:Z offset``), then ``\\*File list end``.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    layers : list of dict
        Each with ``name`` and ``raw`` ((lines, samps) integers), optional ``hard`` (the Z
        scale hard value, V), ``soft`` (the soft-scale name), ``direction`` (``Trace`` or
        ``Retrace``) and ``frame`` (``Up`` or ``Down``).
    bpp : int
        Bytes per pixel, 2 (int16) or 4 (int32).
    scan_size, sens, scan_rate, date
        The header values as text.
    header_len : int
        Header block size (the File list ``Data length``); the first layer starts there.
    data_length, samps, lines
        Override each layer's ``Data length``, ``Samps/line``, ``Number of lines`` (to build
        lying headers); by default the true ones.
    end_marker : bool
        Whether to write ``\\*File list end``.
    """
    lines_ = [
        "\\*File list",
        "\\Version: 0x05310001",
        f"\\Date: {date}",
        f"\\Data length: {header_len}",
        "\\*Scanner list",
        "\\Scanner type: Dimension",
        f"\\@Sens. Zscan: {sens}",
        "\\@Sens. Phase: V 1.000000 ",
        "\\*Ciao scan list",
        f"\\Scan rate: {scan_rate}",
        "\\Operating mode: Image",
    ]
    offset = header_len
    blobs = []
    for layer in layers:
        raw = np.asarray(layer["raw"])
        n_lines, n_samps = raw.shape
        blob = raw.astype("<i2" if bpp == 2 else "<i4").tobytes()
        lines_ += [
            "\\*Ciao image list",
            f"\\Data offset: {offset}",
            f"\\Data length: {len(blob) if data_length is None else data_length}",
            f"\\Bytes/pixel: {bpp}",
            f"\\Frame direction: {layer.get('frame', 'Up')}",
            f"\\Samps/line: {n_samps if samps is None else samps}",
            f"\\Number of lines: {n_lines if lines is None else lines}",
            f"\\Scan size: {scan_size}",
            f"\\Line direction: {layer.get('direction', 'Trace')}",
            f'\\@2:Image Data: S [{layer["name"]}] "{layer["name"]}"',
            f"\\@2:Z scale: V [{layer.get('soft', 'Sens. Zscan')}] (0.006713765 V/LSB) {layer.get('hard', 439.9866)} V",
            f"\\@2:Z offset: V [{layer.get('soft', 'Sens. Zscan')}] (0.006713765 V/LSB) 0 V",
        ]
        blobs.append(blob)
        offset += len(blob)
    if end_marker:
        lines_.append("\\*File list end")
    text = ("\r\n".join(lines_) + "\r\n").encode("latin-1")
    assert len(text) <= header_len
    path.write_bytes(text + b"\x1a" * (header_len - len(text)) + b"".join(blobs))
    return path


def patch_nanoscope_header(path, old, new, header_len=8192):
    """Replace text in the header of a file :func:`write_nanoscope` wrote, keeping the data
    where the header says it is.

    Parameters
    ----------
    path : pathlib.Path
        The file, rewritten in place.
    old, new : bytes
        The first occurrence of ``old`` in the header becomes ``new``; the header block is
        cut or padded with ``\\x1a`` back to ``header_len`` bytes.
    header_len : int
        The header block size the file was written with.
    """
    content = path.read_bytes()
    head, data = content[:header_len], content[header_len:]
    assert old in head
    head = head.replace(old, new, 1)
    head = head[:header_len] + b"\x1a" * (header_len - len(head))
    path.write_bytes(head + data)
