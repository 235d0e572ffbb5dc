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
from .levelling import (
    align_rows,
    gaussian_filter,
    plane_fit,
    polynomial_flatten,
    remove_plane,
    row_align,
    row_median_align,
    vertical_flip,
    zero_mean,
    zero_median,
)  # fmt: skip
from .masks import (
    clear,
    current_mask,
    mask_adaptive,
    mask_below_threshold,
    mask_mean_offset,
    mask_morphological,
    mask_threshold,
    resolve_mask,
    run_as_playnano,
    with_mask,
)  # fmt: skip
from .pipeline import active_mask, parse_pipeline, run_pipeline
from .rolling import rolling_frame_align

__all__ = [
    "KINDS",
    "Step",
    "align_rows",
    "apply",
    "catalogue",
    "clear",
    "current_layer_name",
    "current_mask",
    "gaussian_filter",
    "get",
    "mask_adaptive",
    "mask_below_threshold",
    "mask_mean_offset",
    "mask_morphological",
    "mask_threshold",
    "plane_fit",
    "polynomial_flatten",
    "remove_plane",
    "resolve_mask",
    "row_align",
    "row_median_align",
    "run",
    "run_as_playnano",
    "step",
    "vertical_flip",
    "with_mask",
    "zero_mean",
    "zero_median",
]  # fmt: skip
__all__ += ["active_mask", "parse_pipeline", "run_pipeline"]  # the pipeline (string/YAML) runner
__all__ += [  # drift correction and stack edits
    "align_frames", "crop", "crop_square", "drop_final_frames", "drop_frame_range", "drop_frames", "intersection_crop",
    "replace_nan", "rolling_frame_align", "select_frames",
]  # fmt: skip
