"""Synthetic Nanonis ``.sxm`` files, as ``docs/formats.md`` describes them."""

from __future__ import annotations

import numpy as np


def write_sxm(
    path,
    signals,
    *,
    nx,
    ny,
    scan_range=(5e-6, 4e-6),
    scan_dir="up",
    scanit_type="FLOAT            MSBFIRST",
    pixels=None,
    end_tag=True,
    marker=b"\x1a\x04",
    data_info_sep="\t",
):
    """Write an ``.sxm`` file: a latin-1 ``:TAG:`` header up to ``:SCANIT_END:``, the data
    start marker ``\\x1a\\x04``, then every signal's frames in ``DATA_INFO`` order.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    signals : list of tuple
        ``(name, unit, direction, frames)``, one ``DATA_INFO`` row each; ``frames`` is a list
        of (ny, nx) arrays in file order (2 for ``both``: forward then backward).
    nx, ny : int
        Pixels in x and y.
    scan_range : tuple
        ``SCAN_RANGE`` x and y extent in m (written with ``repr``).
    scan_dir : str
        ``SCAN_DIR``, ``up`` or ``down``.
    scanit_type : str
        ``SCANIT_TYPE``: ``FLOAT``, ``DOUBLE``, ``INT`` or ``UINT`` and ``MSBFIRST`` or
        ``LSBFIRST``; it sets how the data are encoded (an unknown one raises ``KeyError``).
    pixels : tuple or None
        ``SCAN_PIXELS`` to claim instead of ``(nx, ny)`` (to build lying headers).
    end_tag : bool
        Whether to write ``:SCANIT_END:``.
    marker : bytes
        The data start marker (``b""`` for none).
    data_info_sep : str
        The ``DATA_INFO`` column separator.
    """
    order, kind = scanit_type.split()
    dtype = np.dtype({"MSBFIRST": ">", "LSBFIRST": "<"}[kind] + {"FLOAT": "f4", "DOUBLE": "f8", "INT": "i4", "UINT": "u4"}[order])
    sep = data_info_sep
    rows = [sep + sep.join(["Channel", "Name", "Unit", "Direction", "Calibration", "Offset"])]
    for i, (name, unit, direction, _) in enumerate(signals):
        rows.append(sep + sep.join([str(i), name, unit, direction, "1.000E+0", "0.000E+0"]))
    header = [
        ":NANONIS_VERSION:", "2",
        ":SCANIT_TYPE:", f"              {scanit_type}",
        ":REC_DATE:", " 10.03.2016",
        ":REC_TIME:", "09:36:05",
        ":ACQ_TIME:", "       12.5",
        ":SCAN_PIXELS:", f"       {nx if pixels is None else pixels[0]}       {ny if pixels is None else pixels[1]}",
        ":SCAN_FILE:", "C:\\data\\test.sxm",
        ":SCAN_TIME:", "             2.500E-1             2.500E-1",
        ":SCAN_RANGE:", f"           {scan_range[0]!r}           {scan_range[1]!r}",
        ":SCAN_DIR:", scan_dir,
        ":Z-CONTROLLER:", "\tName\ton\tSetpoint", "\tlog Current\t1\t2.000E-10 A",
        ":DATA_INFO:", *rows, "",
    ]
    if end_tag:
        header.append(":SCANIT_END:")
    blob = b"".join(np.asarray(f, dtype=dtype).tobytes() for *_, frames in signals for f in frames)
    path.write_bytes(("\n".join(header) + "\n\n\n").encode("latin-1") + marker + blob)
    return path
