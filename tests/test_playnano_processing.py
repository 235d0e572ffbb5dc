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


# --------------------------------------------------------------------------------------
# drift correction and stack edits
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drifting_stack():
    """Frames cut from one smooth texture at known integer offsets (plus a sub-pixel
    variant): the drift both tools should find."""
    from scipy.ndimage import gaussian_filter, shift

    big = gaussian_filter(np.random.default_rng(7).normal(size=(120, 130)), 1.5)
    applied = np.array([[0, 0], [1, -2], [3, 1], [-2, 4], [0, 1], [-5, 6]])
    integer = np.stack([np.roll(big, tuple(-t), axis=(0, 1))[20:84, 20:100] for t in applied])
    frac = applied + np.array([[0, 0], [0.3, -0.2], [0.25, 0.35], [-0.3, 0.1], [0.2, 0.2], [-0.1, -0.3]])
    subpixel = np.stack([shift(big, -t, order=3, mode="wrap")[20:84, 20:100] for t in frac])
    return integer, subpixel, frac


def _placement(aligned: np.ndarray) -> np.ndarray:
    """Each frame's (row, column) offset on a padded canvas: its first finite pixel."""
    out = []
    for f in aligned:
        rows, cols = np.flatnonzero(np.isfinite(f).any(axis=1)), np.flatnonzero(np.isfinite(f).any(axis=0))
        out.append((rows[0], cols[0]))
    return np.asarray(out, dtype=float)


@pytest.mark.parametrize(
    "pipeline",
    [
        "align_frames",
        "align_frames:max_shift=4",
        "align_frames:max_shift=8,max_jump=2",
        "align_frames:reference_frame=2,mode=crop",
        "align_frames:mode=crop_square,pre_filter_sigma=1.0",
        "align_frames:method=full_cross_correlation,max_shift=6",
        "rolling_frame_align:window=3",
        "rolling_frame_align:window=2,mode=crop,max_shift=7",
        "align_frames; intersection_crop",
        "align_frames; intersection_crop:pad=2",
        "align_frames; crop_square",
        "align_frames; replace_nan",
        "align_frames; replace_nan:mode=mean",
        "align_frames; replace_nan:mode=median",
        "align_frames; replace_nan:mode=global_mean",
        "align_frames; replace_nan:mode=constant,value=-1.5",
    ],
)
def test_integer_alignment_and_crops_match_playnano(drifting_stack, pipeline):
    """With ``subpixel=False`` xafm measures playNano's integer shifts and places the frames
    as it does: the same numbers (playNano computes in float32)."""
    frames = drifting_stack[0]
    theirs = playnano_ref.run_pipeline(frames, pipeline, pixel_size_nm=1.0)
    da = xafm.stack(frames, pixel_size_nm=1.0)
    for part in (p.strip() for p in pipeline.split(";")):
        name, _, args = part.partition(":")
        params = {}
        for pair in filter(None, args.split(",")):
            key, value = pair.split("=")
            params[key] = float(value) if "." in value else int(value) if value.lstrip("-").isdigit() else value
        if name in ("align_frames", "rolling_frame_align"):
            params["subpixel"] = False
        da = xafm.processing.run(da, name, **params)
    assert da.shape == theirs["data"].shape
    np.testing.assert_allclose(da.values, theirs["data"], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_subpixel_alignment_agrees_with_playnano_to_the_rounding(drifting_stack):
    """By default xafm keeps the fraction playNano rounds away: its shifts lie within half a
    pixel (plus the 0.1 px accuracy) of playNano's integer ones, and nearer the truth."""
    _, frames, truth = drifting_stack
    theirs = playnano_ref.run_pipeline(frames, "align_frames", pixel_size_nm=1.0)
    placed = _placement(theirs["data"])
    their_shifts = placed - placed[0]
    ours = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=1.0))
    our_shifts = np.column_stack([ours.align_shift_y_nm.values, ours.align_shift_x_nm.values])
    assert np.all(np.abs(our_shifts - their_shifts) <= 0.6)
    np.testing.assert_allclose(our_shifts, truth, atol=0.1)
    assert np.abs(our_shifts - truth).max() < np.abs(their_shifts - truth).max()


@pytest.mark.parametrize(
    ("pipeline", "steps"),
    [
        ("drop_frame_range:start=1,end=4", [("drop_frame_range", {"start": 1, "end": 4})]),
        ("drop_final_frames:n_frames_to_drop=2", [("drop_final_frames", {"n_frames_to_drop": 2})]),
        ("drop_final_frames", [("drop_final_frames", {})]),
    ],
)
def test_frame_edits_match_playnano(drifting_stack, pipeline, steps):
    """(playNano's drop_frames and select_frames take lists, which its pipeline strings
    cannot spell; tests/test_edits.py checks them against isel.)"""
    frames = drifting_stack[0]
    times = np.linspace(0.0, 1.0, frames.shape[0])
    theirs = playnano_ref.run_pipeline(frames, pipeline, pixel_size_nm=1.0, timestamps=times)
    da = xafm.stack(frames, pixel_size_nm=1.0, times=times)
    for name, params in steps:
        da = xafm.processing.run(da, name, **params)
    np.testing.assert_array_equal(da.values, theirs["data"])
    np.testing.assert_array_equal(da.time.values, theirs["timestamps"])
