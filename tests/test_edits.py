"""Stack edits with known answers: crops keep their place and agree with isel/sel, the
intersection is exactly the area valid in every frame, frame edits keep everything that
goes with a frame, NaN replacement by each rule; all lazy on dask stacks and recorded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes
from xafm.exceptions import StackError
from xafm.processing import edits


def _stack(n=5, h=12, w=16, px=0.5, **kw):
    values = np.arange(n * h * w, dtype=np.float64).reshape(n, h, w)
    mask = values % 3 == 0
    return xafm.stack(
        values, pixel_size_nm=px, times=np.arange(n) * 0.25 + 1, masks={"m": mask}, layers={"before": -values},
        frame_metadata=[{"z": float(i), "tag": f"f{i}"} for i in range(n)], **kw,
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(a=st.integers(0, 15), b=st.integers(1, 16), c=st.integers(0, 11), d=st.integers(1, 12))
def test_crop_in_pixels_is_isel_and_in_nm_is_sel(a, b, c, d):
    da = _stack()
    if b <= a or d <= c:
        with pytest.raises(StackError):
            xafm.processing.crop(da, x_min=a, x_max=b, y_min=c, y_max=d, units="px")
        return
    px = xafm.processing.crop(da, x_min=a, x_max=b, y_min=c, y_max=d, units="px")
    xr_isel = da.isel(x=slice(a, b), y=slice(c, d))
    np.testing.assert_array_equal(px.values, xr_isel.values)
    np.testing.assert_array_equal(px.x.values, np.arange(a, b) * 0.5)  # the offset kept
    np.testing.assert_array_equal(px.afm.masks["m"].values, xr_isel.afm.masks["m"].values)
    # the same region in nm (ends included) is the same crop
    nm = xafm.processing.crop(da, x_min=a * 0.5, x_max=(b - 1) * 0.5, y_min=c * 0.5, y_max=(d - 1) * 0.5)
    np.testing.assert_array_equal(nm.values, px.values)
    np.testing.assert_array_equal(nm.y.values, px.y.values)
    assert nm.afm.provenance[-1]["name"] == "crop" and nm.afm.provenance[-1]["params"]["units"] == "nm"


def test_crop_of_a_crop_keeps_the_offset_and_open_ends():
    da = _stack()
    once = xafm.processing.crop(da, x_min=2.0, y_min=1.0)
    twice = xafm.processing.crop(once, x_min=1, x_max=3, units="px")
    np.testing.assert_array_equal(twice.x.values, [2.5, 3.0])
    np.testing.assert_array_equal(twice.values, da.values[:, 2:, 5:7])
    assert xafm.core.model.pixel_size_nm(twice) == (0.5, 0.5)
    with pytest.raises(StackError):
        xafm.processing.crop(da, x_min=100.0)
    with pytest.raises(StackError):
        xafm.processing.crop(da, x_min=1.5, units="px")


def test_intersection_crop_is_exactly_the_area_valid_in_every_frame():
    da = _stack()
    values = da.values.copy()
    values[0, :2, :] = np.nan  # frame 0 loses two top rows
    values[3, :, 13:] = np.nan  # frame 3 loses three right columns
    values[4, 11, 0] = np.inf  # one corner pixel: the bounding box still spans row 11 and column 0
    values[2, 5, 7] = np.nan  # a hole inside stays inside
    da = da.copy(data=values)
    out = xafm.processing.intersection_crop(da)
    np.testing.assert_array_equal(out.values, values[:, 2:12, 0:13])
    np.testing.assert_array_equal(out.y.values, np.arange(2, 12) * 0.5)
    assert out.afm.provenance[-1]["bounds_px"] == [2, 12, 0, 13]
    padded = xafm.processing.intersection_crop(da, pad=(1, 2))
    np.testing.assert_array_equal(padded.y.values, np.arange(1, 13) * 0.5)  # one row beyond the data
    np.testing.assert_array_equal(padded.x.values, np.arange(-2, 15) * 0.5)
    assert np.isnan(padded.values[:, -1, :]).all() and np.isnan(padded.values[:, :, :2]).all()
    assert not padded.afm.masks["m"].values[:, -1, :].any()
    square = xafm.processing.crop_square(da)
    assert square.sizes["y"] == square.sizes["x"] == 10
    np.testing.assert_array_equal(square.x.values, np.arange(1, 11) * 0.5)  # centred in 0..13


def test_intersection_crop_after_alignment_has_no_nan():
    rng = np.random.default_rng(4)
    from scipy.ndimage import gaussian_filter

    big = gaussian_filter(rng.normal(size=(80, 80)), 1.5)
    frames = np.stack([big[10:60, 10:60], big[12:62, 7:57], big[9:59, 13:63]])
    aligned = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=1.0), subpixel=False)
    out = xafm.processing.intersection_crop(aligned)
    assert np.isfinite(out.values).all()
    assert out.shape == (3, 50 - 3, 50 - 6)
    # the same as align_frames' own mode="crop", which finds the box from the shifts
    same = xafm.processing.align_frames(xafm.stack(frames, pixel_size_nm=1.0), subpixel=False, mode="crop")
    np.testing.assert_array_equal(same.values, out.values)
    np.testing.assert_array_equal(same.x.values, out.x.values)
    rec = same.afm.provenance[-1]
    assert rec["name"] == "align_frames" and rec["crop_px"] == out.afm.provenance[-1]["bounds_px"]
    assert len(same.afm.provenance) == 2  # created, aligned: the crop is part of the step


def test_frame_edits_keep_times_metadata_masks_and_layers():
    da = _stack()
    out = xafm.processing.drop_frames(da, [3, 1, 3])
    np.testing.assert_array_equal(out.time.values, [1.0, 1.5, 2.0])
    assert [fm["tag"] for fm in out.afm.frame_metadata] == ["f0", "f2", "f4"]
    np.testing.assert_array_equal(out.afm.masks["m"].values, da.afm.masks["m"].values[[0, 2, 4]])
    np.testing.assert_array_equal(out.afm.layers["before"].values, -da.values[[0, 2, 4]])
    assert out.afm.provenance[-1]["params"] == {"indices_to_drop": [1, 3]}
    sel = xafm.processing.select_frames(da, [4, 0])
    np.testing.assert_array_equal(sel.values, da.values[[0, 4]])  # original order, as playNano
    np.testing.assert_array_equal(xafm.processing.drop_frame_range(da, 1, 4).time.values, [1.0, 2.0])
    np.testing.assert_array_equal(xafm.processing.drop_final_frames(da, 2).time.values, [1.0, 1.25, 1.5])
    for bad in ([5], [-1], ["a"]):
        with pytest.raises(StackError):
            xafm.processing.drop_frames(da, bad)
    with pytest.raises(StackError):
        xafm.processing.select_frames(da, [])
    with pytest.raises(StackError):
        xafm.processing.drop_frame_range(da, 3, 3)


def test_replace_nan_by_each_rule():
    values = np.array([[[1.0, np.nan], [3.0, 5.0]], [[np.nan, 2.0], [2.0, 8.0]]])
    da = xafm.stack(values, pixel_size_nm=1)
    expected = {
        ("zero", None): [0, 0], ("mean", None): [3, 4], ("median", None): [3, 2],
        ("global_mean", None): [3.5, 3.5], ("constant", -7.0): [-7, -7],
    }  # fmt: skip
    for (mode, value), (f0, f1) in expected.items():
        out = xafm.processing.replace_nan(da, mode=mode, value=value)
        assert out.values[0, 0, 1] == f0 and out.values[1, 0, 0] == f1, mode
        assert out.values[0, 1, 1] == 5.0
        assert out.afm.provenance[-1]["params"] == {"mode": mode, "value": value}
    with pytest.raises(StackError):
        xafm.processing.replace_nan(da, mode="constant")
    with pytest.raises(StackError):
        xafm.processing.replace_nan(da, mode="nearest")


def test_edits_are_lazy_on_dask_stacks():
    da = _stack().chunk({"time": 2})
    values = _stack().values
    with raise_if_dask_computes():
        steps = [
            xafm.processing.crop(da, x_min=1, x_max=9, units="px"),
            xafm.processing.crop(da, y_min=1.0, y_max=3.0),
            xafm.processing.drop_frames(da, [0]),
            xafm.processing.select_frames(da, [1, 2]),
            xafm.processing.replace_nan(da, mode="median"),
            xafm.processing.replace_nan(da, mode="global_mean"),
        ]
    assert all(xafm.core.blocks.is_dask(s) for s in steps)
    np.testing.assert_array_equal(steps[0].values, values[:, :, 1:9])
    with raise_if_dask_computes(max_computes=1):
        cropped = xafm.processing.intersection_crop(da, pad=1)
    assert xafm.core.blocks.is_dask(cropped)
    assert cropped.shape == (5, 14, 18)


def test_valid_box_of_shifts():
    shifts = np.array([[0.0, 0.0], [2.0, -1.5], [-1.0, 0.5]])
    # origin (1, 2): tops 1, 3, 0 -> rows 3..(0+10) ; lefts 2, 0.5, 2.5 -> columns 3..(0+8)
    assert edits.valid_box(shifts, (10, 8), (1, 2)) == (3, 10, 3, 8)
    assert edits.square_box((3, 10, 3, 8)) == (4, 9, 3, 8)
