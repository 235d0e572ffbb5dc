"""Drift correction with known answers: synthetic drifts of a textured frame recovered,
the limits respected, the stack lazy and the shifts recorded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter, shift

import xafm
from tests.helpers import raise_if_dask_computes
from xafm.exceptions import StackError
from xafm.processing import drift

PX = 0.5  # nm per pixel


def _texture(seed: int, size: tuple[int, int] = (160, 160), sigma: float = 1.5) -> np.ndarray:
    return gaussian_filter(np.random.default_rng(seed).normal(size=size), sigma)


def _drifted(applied: np.ndarray, seed: int = 0, frame: int = 96) -> np.ndarray:
    """Frames cut from one texture moved by ``-applied`` (so ``applied`` re-aligns them)."""
    big = _texture(seed)
    lo = (big.shape[0] - frame) // 2
    return np.stack([shift(big, -np.asarray(t, float), order=3, mode="wrap")[lo : lo + frame, lo : lo + frame] for t in applied])


def _shifts_px(da):
    return np.column_stack([da.coords[drift.SHIFT_Y].values, da.coords[drift.SHIFT_X].values]) / PX


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subpixel_drift_is_recovered_within_a_tenth_of_a_pixel(seed):
    rng = np.random.default_rng(seed)
    applied = np.vstack([[0, 0], rng.uniform(-6, 6, (7, 2))])
    out = xafm.processing.align_frames(xafm.stack(_drifted(applied, seed), pixel_size_nm=PX))
    np.testing.assert_allclose(_shifts_px(out), applied, atol=0.1)
    assert out.coords[drift.SHIFT_Y].attrs["units"] == "nm"


def test_aligned_frames_agree_with_the_reference_where_valid():
    applied = np.array([[0, 0], [2.4, -1.6], [-3.2, 2.7]])
    frames = _drifted(applied)
    out = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=PX), mode="crop")
    assert np.isfinite(out.values).all()
    ref = out.values[0]
    for f in out.values[1:]:
        # bilinear re-sampling smooths a little; the aligned frames match far better than the raw ones
        assert np.abs(f - ref).mean() < 0.25 * np.abs(frames[1] - frames[0]).mean()


def test_integer_drift_is_exact_and_the_canvas_keeps_the_reference_place():
    applied = np.array([[0, 0], [3, -2], [-1, 4]])
    frames = _drifted(applied)
    da = xafm.stack(frames, pixel_size_nm=PX)
    out = xafm.processing.align_frames(da, subpixel=False)
    np.testing.assert_array_equal(_shifts_px(out), applied)
    assert out.shape == (3, 96 + 3 + 1, 96 + 4 + 2)
    # the reference frame sits unchanged where its coordinates say
    np.testing.assert_array_equal(out.sel(y=da.y, x=da.x).values[0], frames[0])
    np.testing.assert_allclose(out.y.values[:2], [-1 * PX, 0.0])
    # frame 1's pixel (0, 0) lands 3 rows down, 2 columns left
    assert out.values[1, 1 + 3, 2 - 2] == frames[1][0, 0]


def test_max_shift_and_max_jump_are_respected():
    applied = np.array([[0, 0], [1, 1], [2, 2], [9, -9], [4, 4]], dtype=float)
    frames = _drifted(applied)
    da = xafm.stack(frames, pixel_size_nm=PX)
    clipped = _shifts_px(xafm.processing.align_frames(da, max_shift=5))
    assert np.abs(clipped).max() <= 5 + 1e-9
    np.testing.assert_allclose(clipped[:3], applied[:3], atol=0.1)
    jumped = _shifts_px(xafm.processing.align_frames(da, max_jump=3, subpixel=False))
    # frame 3 jumps by 7: replaced by the linear extrapolation of frames 1 and 2 (playNano's rule)
    np.testing.assert_array_equal(jumped[3], [3, 3])
    np.testing.assert_array_equal(jumped[4], [4, 4])


def test_limit_jumps_follows_playnano_rule():
    raw = np.array([[0, 0], [5, 0], [6, 0], [20, 0], [8, 1]], dtype=float)
    out = drift.limit_jumps(raw, 0, 2, integer=True)
    # frame 1 clipped to +2; frame 2 jumps 4 > 2 -> 2*2-0 = 4; frame 3 -> 2*4-2 = 6; frame 4: |8-6| = 2 kept
    np.testing.assert_array_equal(out[:, 0], [0, 2, 4, 6, 8])


def test_dask_stack_stays_lazy_with_one_pass_for_the_shifts():
    applied = np.array([[0, 0], [1.5, -0.5], [2.5, 1.0], [-1.0, 2.0]])
    da = xafm.stack(_drifted(applied), pixel_size_nm=PX)
    eager = xafm.processing.align_frames(da, max_shift=8)
    lazy_in = da.chunk({"time": 2})
    with raise_if_dask_computes(max_computes=1) as sched:
        lazy = xafm.processing.align_frames(lazy_in, max_shift=8, keep_layer=True)
    assert sched.total_computes == 1
    assert xafm.core.blocks.is_dask(lazy)
    np.testing.assert_allclose(lazy.values, eager.values, equal_nan=True)
    assert "raw" in lazy.afm.layers
    with raise_if_dask_computes(max_computes=1):
        cropped = xafm.processing.align_frames(lazy_in, max_shift=8, mode="crop")  # the box from the shifts: no second pass
    assert xafm.core.blocks.is_dask(cropped) and np.isfinite(cropped.values).all()
    with raise_if_dask_computes(max_computes=1):
        rolled = xafm.processing.rolling_frame_align(lazy_in, window=2, max_shift=8)
    assert xafm.core.blocks.is_dask(rolled)
    np.testing.assert_allclose(_shifts_px(rolled), applied, atol=0.15)


def test_memory_stays_bounded_on_a_large_lazy_stack():
    import tracemalloc

    import dask.array as dsa

    n, h, w = 400, 256, 256  # 200 MiB as float64, made chunk by chunk
    tex = _texture(3, (h + 16, w + 16))

    def make(block_info=None):
        a, b = block_info[None]["array-location"][0]
        return np.stack([tex[(i % 7) : (i % 7) + h, (i % 5) : (i % 5) + w] for i in range(a, b)])

    data = dsa.map_blocks(make, chunks=((20,) * (n // 20), (h,), (w,)), dtype=np.float64, meta=np.empty((0, 0, 0)))
    da = xafm.stack(data, pixel_size_nm=PX)
    tracemalloc.start()
    out = xafm.processing.align_frames(da, max_shift=10, subpixel=False)
    total = 0.0
    import dask

    with dask.config.set(scheduler="synchronous"):
        for a in range(0, n, 40):
            total += float(np.nansum(out.data[a : a + 40].compute()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(total)
    assert peak < 150 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # frame i starts (i % 7, i % 5) pixels into the texture: moving it back down/right aligns it
    expected = np.array([[i % 7, i % 5] for i in range(n)], dtype=float)
    np.testing.assert_array_equal(_shifts_px(out), expected)


def test_record_masks_layers_and_repeated_alignment():
    applied = np.array([[0, 0], [2, 0], [0, -3]])
    frames = _drifted(applied)
    mask = np.zeros(frames.shape, bool)
    mask[:, 10:20, 30:40] = True
    da = xafm.stack(frames, pixel_size_nm=PX, masks={"spot": mask}, frame_metadata=[{"line_rate": 10 + i} for i in range(3)])
    out = xafm.processing.align_frames(da, subpixel=False, keep_layer=True)
    rec = out.afm.provenance[-1]
    assert rec["name"] == "align_frames" and rec["params"]["subpixel"] == 0 and rec["shifts_px"][2] == [0.0, -3.0]
    # canvas: rows 0..97 (dy 0..2), columns from -3 (dx -3..0); frame 1 moves 2 rows down
    moved = out.afm.masks["spot"].values
    assert moved[1].sum() == mask[1].sum() and moved[1][12, 33] and not moved[1][11, 33]
    assert moved[2][10, 30] and not moved[2][10, 40]  # frame 2 moves 3 columns left of the canvas's 3
    raw = out.afm.layers["raw"].values  # the input, unshifted, at its own coordinates
    np.testing.assert_array_equal(raw[1, 0:96, 3:99], frames[1])
    assert np.isnan(raw[1, 96:, :]).all() and np.isnan(raw[1, :, :3]).all()
    assert list(out.afm.frame_metadata[2]) == ["timestamp", "line_rate", drift.SHIFT_Y, drift.SHIFT_X]
    again = xafm.processing.align_frames(out, subpixel=False)
    np.testing.assert_array_equal(_shifts_px(again), applied)  # nothing left to correct: totals unchanged


def test_bad_parameters_are_refused():
    da = xafm.stack(np.zeros((2, 8, 8)), pixel_size_nm=1)
    for kwargs in ({"reference_frame": 2}, {"method": "phase"}, {"mode": "wide"}, {"max_shift": -1}):
        with pytest.raises(StackError):
            xafm.processing.align_frames(da, **kwargs)
    with pytest.raises(StackError):
        xafm.processing.rolling_frame_align(da, window=0)
    with pytest.raises(xafm.exceptions.UnknownOptionError):
        xafm.processing.run(da, "align_frames", max_shfit=3)


@pytest.mark.parametrize("fmt", ["h5", "npz", "zarr"])
def test_shift_coordinates_survive_the_files(tmp_path, fmt):
    """The shifts are per-frame metadata, which the bundles and OME-Zarr keep."""
    applied = np.array([[0, 0], [1.25, -0.5], [-2.0, 3.0]])
    out = xafm.processing.align_frames(xafm.stack(_drifted(applied), pixel_size_nm=PX), subpixel=False)
    path = out.afm.export(tmp_path, "aligned", [fmt])[fmt]
    back = xafm.open(path)
    np.testing.assert_allclose(back.coords[drift.SHIFT_Y].values, out.coords[drift.SHIFT_Y].values)
    np.testing.assert_allclose(back.coords[drift.SHIFT_X].values, out.coords[drift.SHIFT_X].values)


_TEXTURE = _texture(11, (140, 140))


@settings(max_examples=25, deadline=None)
@given(offsets=st.lists(st.tuples(st.integers(-9, 9), st.integers(-9, 9)), min_size=1, max_size=4), ref=st.integers(0, 4))
def test_whole_pixel_drifts_are_undone_exactly(offsets, ref):
    """Frames cut at whole-pixel offsets: every shift is found, and on the canvas every frame
    equals the reference wherever both have data."""
    cuts = [(0, 0), *offsets]
    ref = ref % len(cuts)
    frames = np.stack([_TEXTURE[20 + dy : 100 + dy, 20 + dx : 110 + dx] for dy, dx in cuts])
    out = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=PX), reference_frame=ref, subpixel=False, max_shift=20)
    want = np.asarray(cuts, dtype=float) - cuts[ref]
    np.testing.assert_array_equal(_shifts_px(out), want)
    values = out.values
    both = np.isfinite(values) & np.isfinite(values[ref])[None]
    np.testing.assert_array_equal(values[both], np.broadcast_to(values[ref], values.shape)[both])
