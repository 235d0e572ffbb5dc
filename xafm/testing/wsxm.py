"""Synthetic WSxM images (``.stp``, ``.top``), as ``docs/formats.md`` describes them (the
layout WSxM and Gwyddion write)."""

from __future__ import annotations

import numpy as np


def write_wsxm(
    path,
    stored,
    *,
    data_type="double",
    x_amp="500 nm",
    y_amp="400 nm",
    z_amp="59.7449 nm",
    channel="Topography",
    rows=None,
    cols=None,
    end_marker=True,
    stated_size=None,
    extra="",
):
    """Write a WSxM image: the three-line pre-header (``Image header size``), the
    ``[Control]`` and ``[General Info]`` sections, ``[Header end]``, then the little-endian
    values.

    Parameters
    ----------
    path : pathlib.Path
        Where to write; returned.
    stored
        The (rows, cols) array in file order (bottom row first, right to left).
    data_type : str
        ``Image Data Type``, a key of ``xafm.formats.wsxm.DATA_TYPES``; sets the encoding.
    x_amp, y_amp, z_amp, channel
        ``X Amplitude``, ``Y Amplitude``, ``Z Amplitude`` and ``Acquisition channel`` as text.
    rows, cols
        ``Number of rows`` / ``Number of columns`` to claim instead of the true ones.
    end_marker : bool
        Whether to write ``[Header end]``.
    stated_size
        ``Image header size`` to claim instead of the true header length.
    extra : str
        Text added to the end of ``[General Info]``.
    """
    from xafm.formats import wsxm

    stored = np.asarray(stored)
    dtype = wsxm.DATA_TYPES[data_type]
    body = (
        "\r\n[Control]\r\n\r\n"
        f"    X Amplitude: {x_amp}\r\n    Y Amplitude: {y_amp}\r\n    X-Frequency: 2.5 Hz\r\n\r\n"
        "[General Info]\r\n\r\n"
        f"    Acquisition channel: {channel}\r\n"
        "    Acquisition time: 18/06/2021, 14:12:26.398\r\n"
        f"    Image Data Type: {data_type}\r\n"
        f"    Number of columns: {stored.shape[1] if cols is None else cols}\r\n"
        f"    Number of rows: {stored.shape[0] if rows is None else rows}\r\n"
        "    Y scanning direction: Down\r\n"
        f"    Z Amplitude: {z_amp}\r\n{extra}\r\n"
    )
    if end_marker:
        body += "[Header end]\r\n"
    pre = "WSxM file copyright UAM\r\nSxM Image file\r\nImage header size: {:5d}\r\n"
    size = len(pre.format(0)) + len(body.encode("latin-1"))
    header = (pre.format(size if stated_size is None else stated_size) + body).encode("latin-1")
    path.write_bytes(header + stored.astype(dtype).tobytes())
    return path
