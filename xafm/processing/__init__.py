"""Processing steps that record themselves in the provenance, lazily for dask stacks.

The steps live in modules of one concern (``levelling``, ``masks``, ...) and declare
themselves in the catalogue (:mod:`xafm.processing.catalogue`) under playNano 0.5's names;
:func:`apply` runs any function as a recorded step. Importing this package imports every
step module, so the catalogue is complete.
"""

from __future__ import annotations

from . import levelling, masks  # noqa: F401  (declare their steps)
from .apply import apply, current_layer_name
from .catalogue import KINDS, Step, catalogue, get, run, step
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
