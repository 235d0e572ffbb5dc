"""xafm's processing steps against playNano 0.5's own output on the same data, run in
playNano's environment (``tests/playnano_ref.py``; skipped where it is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

import xafm
from tests import playnano_ref


@pytest.fixture(scope="module")
def tilted_stack():
    rng = np.random.default_rng(12)
    yy, xx = np.mgrid[0:48, 0:64]
    frames = [a * xx + b * yy + c + rng.normal(0, 0.05, xx.shape) for a, b, c in rng.normal(0, 1, (4, 3))]
    return np.stack(frames)


@pytest.mark.parametrize("pipeline", ["remove_plane", "remove_plane; row_median_align"])
def test_levelling_matches_playnano(tilted_stack, pipeline):
    theirs = playnano_ref.run_pipeline(tilted_stack, pipeline, pixel_size_nm=0.5)
    da = xafm.stack(tilted_stack, pixel_size_nm=0.5)
    for name in (s.strip() for s in pipeline.split(";")):
        da = xafm.processing.run(da, "align_rows" if name == "row_median_align" else name)
    np.testing.assert_allclose(da.values, theirs["data"], rtol=0, atol=1e-9)
