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
    version="0x05310001",
    sens_lines=(),
    scan_list=(),
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
        scale hard value), ``hard_unit`` (its unit, ``V``), ``soft`` (the soft-scale name),
        ``direction`` (``Trace`` or ``Retrace``), ``scan_line`` (``Main`` or
        ``Interleave``), ``frame`` (``Up`` or ``Down``), ``bpp`` (this layer's
        ``Bytes/pixel``) and ``stored`` (the bytes each sample is stored in, 2 or 4; by
        default ``bpp``: version 9.2 and later files store 4 while saying 2).
    bpp : int
        Bytes per pixel, 2 (int16) or 4 (int32), of layers that do not say.
    scan_size, sens, scan_rate, date
        The header values as text.
    header_len : int
        Header block size (the File list ``Data length``); the first layer starts there.
    data_length, samps, lines
        Override each layer's ``Data length``, ``Samps/line``, ``Number of lines`` (to build
        lying headers); by default the true ones.
    end_marker : bool
        Whether to write ``\\*File list end``.
    version : str
        The File list ``Version``.
    sens_lines : iterable of str
        Extra soft scales for the Ciao scan list, e.g. ``"Sens. ForceSens: V 0.32 nN/Arb"``.
    scan_list : iterable of str
        Extra Ciao scan list lines, e.g. ``"Lines: 512"`` or ``"Operating mode: Force"``.
    """
    lines_ = [
        "\\*File list",
        f"\\Version: {version}",
        f"\\Date: {date}",
        f"\\Data length: {header_len}",
        "\\*Scanner list",
        "\\Scanner type: Dimension",
        f"\\@Sens. Zscan: {sens}",
        "\\@Sens. Phase: V 1.000000 ",
        "\\*Ciao scan list",
        f"\\Scan rate: {scan_rate}",
        *(f"\\{line}" for line in (scan_list or ["Operating mode: Image"])),
        *(f"\\@{line}" for line in sens_lines),
    ]
    offset = header_len
    blobs = []
    for layer in layers:
        raw = np.asarray(layer["raw"])
        n_lines, n_samps = raw.shape
        layer_bpp = layer.get("bpp", bpp)
        soft_name = layer.get("soft", "Sens. Zscan")  # None: a Z scale without a soft scale
        soft = f"[{soft_name}] " if soft_name else ""
        blob = raw.astype("<i2" if layer.get("stored", layer_bpp) == 2 else "<i4").tobytes()
        lines_ += [
            "\\*Ciao image list",
            f"\\Data offset: {offset}",
            f"\\Data length: {len(blob) if data_length is None else data_length}",
            f"\\Bytes/pixel: {layer_bpp}",
            f"\\Frame direction: {layer.get('frame', 'Up')}",
            f"\\Samps/line: {n_samps if samps is None else samps}",
            f"\\Number of lines: {n_lines if lines is None else lines}",
            f"\\Scan size: {scan_size}",
            f"\\Line direction: {layer.get('direction', 'Trace')}",
            f"\\Scan line: {layer.get('scan_line', 'Main')}",
            f'\\@2:Image Data: S [{layer["name"]}] "{layer["name"]}"',
            f"\\@2:Z scale: V {soft}(0.006713765 V/LSB) {layer.get('hard', 439.9866)} {layer.get('hard_unit', 'V')}",
            f"\\@2:Z offset: V {soft}(0.006713765 V/LSB) 0 V",
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


def write_nanoscope_force(path, *, kind="curve", samples=64, curves=1, header_len=8192):
    """Write a Nanoscope force-curve file as Bruker's instruments do (the layout
    ``docs/formats.md`` gives), for the refusal tests: a header and ``curves`` pairs of
    approach/retract curves of ``samples`` int16 values each.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    kind : str
        ``"curve"``: a ``\\*Force file list`` header (single force curves);
        ``"volume"``: a ``\\*File list`` header whose only data sections are
        ``\\*Ciao force image list`` (a force-volume map saved without an image, start
        context ``FVOL``); ``"mode"``: a ``\\*File list`` header whose scan list says
        ``Operating mode: Force``, with the curves in a ``\\*Ciao image list``.
    samples, curves : int
        Points per curve and number of approach/retract pairs.
    header_len : int
        Header block size; the data start there.
    """
    magic = "\\*Force file list" if kind == "curve" else "\\*File list"
    mode = {"curve": "Force", "volume": "Force Volume", "mode": "Force"}[kind]
    section = "\\*Ciao image list" if kind == "mode" else "\\*Ciao force image list"
    blob = (np.arange(2 * samples * curves) % 4000 - 2000).astype("<i2").tobytes()
    lines = [
        magic,
        "\\Version: 0x09400202",
        "\\Date: 05:08:50 PM Thu May 26 2022",
        f"\\Start context: {'FVOL' if kind == 'volume' else 'FOL'}",
        f"\\Data length: {header_len}",
        "\\*Scanner list",
        "\\@Sens. Zsens: V 4.217561 nm/V",
        "\\*Ciao scan list",
        f"\\Operating mode: {mode}",
        "\\Scan Size: 400 nm",
        "\\*Ciao force list",
        f"\\force/line: {curves}",
        "\\@4:Ramp channel: S [RampZ] \"Z\"",
        section,
        f"\\Data offset: {header_len}",
        f"\\Data length: {len(blob)}",
        "\\Bytes/pixel: 2",
        f"\\Samps/line: {samples} {samples}",
        "\\Scan Size: 400 400 nm",
        '\\@4:Image Data: S [DeflectionError] "Deflection Error"',
        "\\@4:Z scale: V [Sens. DeflSens] (0.0003750000 V/LSB) 24.57600 V",
        "\\@4:Ramp size: V [Sens. Zsens] (0.006713867 V/LSB) 100 V",
    ]
    if kind == "mode":  # looks like an image section, but the mode says force curves
        lines += ["\\Number of lines: 1", '\\@2:Image Data: S [DeflectionError] "Deflection Error"']
    lines += [
        "\\*File list end",
    ]
    text = ("\r\n".join(lines) + "\r\n").encode("latin-1")
    assert len(text) <= header_len
    path.write_bytes(text + b"\x1a" * (header_len - len(text)) + blob)
    return path
