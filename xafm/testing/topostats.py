"""Synthetic TopoStats ``.topostats`` (HDF5) files, as ``docs/formats.md`` describes them."""

from __future__ import annotations

import numpy as np


def write_topostats(path, image, *, px=1.5, version="2.3.1", original=None, grain_masks=None, tensor=None, extra=None):
    """Write a ``.topostats`` file: the HDF5 members TopoStats' result dictionary produces.

    Parameters
    ----------
    path
        Where to write; returned.
    image
        The ``image`` dataset (any shape or dtype, so damaged files can be built).
    px
        ``pixel_to_nm_scaling``.
    version
        Stored as ``topostats_file_version`` when it compares below ``"2.4"`` as a string,
        else as ``topostats_version``.
    original
        Optional ``image_original``.
    grain_masks
        Optional ``{direction: mask}`` stored under ``grain_masks/``.
    tensor
        Optional ``image_grain_crops/above/full_mask_tensor`` (a 3 x 3 crop image is added
        next to it).
    extra
        Optional ``{member path: value}`` written last.

    Notes
    -----
    ``filename`` and ``img_path`` are always written. Needs ``h5py`` (imported here, not
    when ``xafm.testing`` is imported).
    """
    import h5py

    with h5py.File(path, "w") as f:
        f["image"] = image
        f["pixel_to_nm_scaling"] = px
        f["topostats_file_version" if str(version) < "2.4" else "topostats_version"] = version
        f["filename"] = "minicircle"
        f["img_path"] = "/data/minicircle.spm"
        if original is not None:
            f["image_original"] = original
        for k, v in (grain_masks or {}).items():
            f[f"grain_masks/{k}"] = v
        if tensor is not None:
            f["image_grain_crops/above/full_mask_tensor"] = tensor
            f["image_grain_crops/above/crops/0/image"] = np.zeros((3, 3))
        for k, v in (extra or {}).items():
            f[k] = v
    return path
