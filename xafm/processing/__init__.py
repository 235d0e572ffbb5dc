"""Processing steps that record themselves in the provenance, lazily for dask stacks.

The steps live in modules of one concern (``levelling``, ``masks``, ...) and declare
themselves in the catalogue (:mod:`xafm.processing.catalogue`) under playNano 0.5's names;
:func:`apply` runs any function as a recorded step. Importing this package imports every
step module, so the catalogue is complete.
"""

from __future__ import annotations

from . import drift, edits, levelling, masks, rolling  # noqa: F401  (declare their steps)
from .apply import apply, current_layer_name
from .catalogue import KINDS, Step, catalogue, get, run, step
from .drift import align_frames
from .edits import crop, crop_square, drop_final_frames, drop_frame_range, drop_frames, intersection_crop, replace_nan, select_frames
from .levelling import align_rows, plane_fit, remove_plane, row_align
from .masks import mask_threshold, with_mask
from .rolling import rolling_frame_align

__all__ = [
    "KINDS", "Step", "align_rows", "apply", "catalogue", "current_layer_name", "get", "mask_threshold",
    "plane_fit", "remove_plane", "row_align", "run", "step", "with_mask",
]  # fmt: skip
__all__ += [  # drift correction and stack edits
    "align_frames", "crop", "crop_square", "drop_final_frames", "drop_frame_range", "drop_frames", "intersection_crop",
    "replace_nan", "rolling_frame_align", "select_frames",
]  # fmt: skip
