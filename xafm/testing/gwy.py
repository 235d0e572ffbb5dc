"""Synthetic Gwyddion ``.gwy`` files, as ``docs/formats.md`` describes them.

:func:`write_gwy` writes well-formed files with gwyfile (MIT); :func:`gwy_component` and
:func:`gwy_container` build raw serializations byte by byte, so that tests can make
deliberately malformed ones that gwyfile would never write.
"""

from __future__ import annotations

import struct

import numpy as np


def write_gwy(path, fields, *, masks=None, meta=None):
    """Write a ``.gwy`` file: a top-level ``GwyContainer`` of ``GwyDataField`` channels.

    Parameters
    ----------
    path
        Where to write; returned.
    fields
        List of ``(title, values, xreal, yreal, unit_xy, unit_z)``: ``values`` is
        (yres, xres), first row at the top, stored as float64 under ``/N/data`` (``N`` the
        list index); ``title`` (``None`` for none) goes to ``/N/data/title``.
    masks
        Optional ``{N: values}``: a mask field stored under ``/N/mask`` (``xreal = yreal = 1``).
    meta
        Optional dict of strings stored as the ``GwyContainer`` ``/0/meta``.

    Notes
    -----
    Needs the ``gwyfile`` package (imported here, not when ``xafm.testing`` is imported).
    """
    from gwyfile.objects import GwyContainer, GwyDataField

    c = GwyContainer()
    for i, (title, values, xreal, yreal, uxy, uz) in enumerate(fields):
        c[f"/{i}/data"] = GwyDataField(np.asarray(values, dtype=np.float64), xreal=xreal, yreal=yreal, si_unit_xy=uxy, si_unit_z=uz)
        if title is not None:
            c[f"/{i}/data/title"] = title
    for i, m in (masks or {}).items():
        c[f"/{i}/mask"] = GwyDataField(np.asarray(m, dtype=np.float64), xreal=1.0, yreal=1.0)
    if meta is not None:
        c["/0/meta"] = GwyContainer(meta)
    c.tofile(str(path))
    return path


def gwy_component(name, type_, payload):
    """One serialized component: ``name\\0``, the one-byte type code, then ``payload`` as given.

    Parameters
    ----------
    name : str
        Component name (encoded as UTF-8, NUL-terminated).
    type_ : str
        Type code (``"s"``, ``"d"``, ``"o"``, ``"D"``, ...; any character, valid or not).
    payload : bytes
        The value bytes, written unchecked (so they may lie about counts or lack a NUL).
    """
    return name.encode() + b"\0" + type_.encode() + payload


def gwy_container(components):
    """A whole ``.gwy`` file body: ``GWYP`` magic and a ``GwyContainer`` holding ``components``.

    Parameters
    ----------
    components : sequence of bytes
        Serialized components (see :func:`gwy_component`); their total length is the
        container's ``uint32`` size (little-endian).

    Returns
    -------
    bytes
        The file content, to be written with ``Path.write_bytes``.
    """
    body = b"".join(components)
    return b"GWYP" + b"GwyContainer\0" + struct.pack("<I", len(body)) + body
