"""Synthetic JPK single images (``.jpk``, ``.jpk-qi-image``), as ``docs/formats.md`` describes them."""

from __future__ import annotations

import numpy as np


def jpk_slot_tags(n, name, *, scaling="LinearScaling", multiplier=1.0, offset=0.0, unit="m", parent="raw"):
    """The TIFF tags of calibration slot ``n`` of a channel page (tags ``32912 + 48 n`` on).

    Parameters
    ----------
    n : int
        Slot index.
    name : str
        Slot name (``raw``, ``calibrated``, ``nominal``, ...).
    scaling : str
        ``"LinearScaling"`` (writes ``multiplier`` and ``offset``), ``"NullScaling"`` or any
        other (unsupported) scaling name.
    unit : str or None
        Slot unit, or ``None`` to write no unit tag.
    parent : str
        Parent slot name.

    Returns
    -------
    list of tuple
        ``tifffile`` ``extratags`` entries.
    """
    base = 32912 + 48 * n
    tags = [(base, "s", 0, name, True), (base + 1, "s", 0, "RelativeCalibration", True),
            (base + 2, "s", 0, parent, True), (base + 16, "s", 0, name.title(), True),
            (base + 17, "s", 0, "SignedInteger", True)]
    if unit is not None:
        tags.append((base + 18, "s", 0, unit, True))
    tags.append((base + 19, "s", 0, scaling, True))
    if scaling == "LinearScaling":
        tags += [(base + 20, "d", 1, multiplier, True), (base + 21, "d", 1, offset, True)]
    return tags


def write_jpk(path, channels, *, ulength=3e-7, vlength=None, start="2017-01-16 16:00:32.334 GMT",
              end="2017-01-16 16:01:36.264 GMT", unique_id="1484582432334", scan_rate=4.0, motion="bottomUp",
              reflect=0, grid=True):
    """Write a big-endian JPK TIFF: thumbnail page with the file tags, then one page per channel.

    Parameters
    ----------
    path
        Where to write; returned.
    channels : list of dict
        Each with ``name``, ``retrace``, ``raw`` (int32, rows x cols as stored, row 0 the
        bottom line) and either ``multiplier``/``offset``/``unit`` (a ``raw`` null slot and a
        linear default slot ``calibrated``) or ``slots`` (a list of :func:`jpk_slot_tags` keyword
        dicts) plus ``default`` (the default slot name).
    ulength, vlength
        Grid extent in m (tags 32834/32835); ``vlength`` defaults to ``ulength``.
    start, end, unique_id, scan_rate, motion
        File tags 32771, 32774, 32776, 32841, 32843; ``None`` leaves a tag out.
    reflect
        Grid reflect tag 32837.
    grid
        Whether to write the grid tags (32834-32839) at all.

    Notes
    -----
    Needs ``tifffile`` (imported here, not when ``xafm.testing`` is imported).
    """
    import tifffile

    rows, cols = np.asarray(channels[0]["raw"]).shape
    file_tags = [(32768, "s", 0, "6.0.41", True), (32769, "d", 1, 2.0, True)]
    if start is not None:
        file_tags.append((32771, "s", 0, start, True))
    if end is not None:
        file_tags.append((32774, "s", 0, end, True))
    if unique_id is not None:
        file_tags.append((32776, "s", 0, unique_id, True))
    if grid:
        file_tags += [(32834, "d", 1, ulength, True), (32835, "d", 1, ulength if vlength is None else vlength, True),
                      (32837, "h", 1, reflect, True), (32838, "i", 1, cols, True), (32839, "i", 1, rows, True)]
    if scan_rate is not None:
        file_tags.append((32841, "d", 1, scan_rate, True))
    if motion is not None:
        file_tags.append((32843, "s", 0, motion, True))
    with tifffile.TiffWriter(path, byteorder=">") as tw:
        tw.write(np.zeros((4, 4), np.uint8), photometric="minisblack",
                 extratags=file_tags + [(32848, "s", 0, "thumbnail", True)])
        for ch in channels:
            if "slots" in ch:
                slots = ch["slots"]
                default = ch["default"]
            else:
                slots = [dict(name="raw", scaling="NullScaling", unit=None),
                         dict(name="calibrated", multiplier=ch.get("multiplier", 1.0), offset=ch.get("offset", 0.0),
                              unit=ch.get("unit", "m"))]
                default = "calibrated"
            tags = [(32848, "s", 0, ch["name"], True), (32849, "h", 1, int(ch["retrace"]), True),
                    (32850, "s", 0, ch["name"].title(), True), (32896, "i", 1, len(slots), True),
                    (32897, "s", 0, default, True)]
            for n, slot in enumerate(slots):
                tags += jpk_slot_tags(n, **slot)
            tw.write(np.asarray(ch["raw"], np.int32), photometric="minisblack", extratags=tags)
    return path
