"""Processing steps: values, provenance records, layers, masks and laziness."""

from __future__ import annotations

import datetime as dt
import inspect

import dask.array as dsa
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes
from xafm import processing


def _planes(n, ny, nx, rng):
    yy, xx = np.mgrid[0:ny, 0:nx]
    a, b, c = rng.normal(size=(3, n, 1, 1))
    return a * xx + b * yy + c


@given(st.integers(1, 4), st.integers(2, 12), st.integers(2, 12), st.integers(0, 2**31))
def test_remove_plane_removes_any_plane(n, ny, nx, seed):
    rng = np.random.default_rng(seed)
    da = xafm.stack(_planes(n, ny, nx, rng), pixel_size_nm=1.0)
    np.testing.assert_allclose(da.afm.remove_plane().values, 0.0, atol=1e-9)


def test_remove_plane_ignores_nan_and_keeps_them(rng):
    data = _planes(2, 6, 7, rng)
    data[0, 2, 3] = np.nan
    out = xafm.stack(data, pixel_size_nm=1.0).afm.remove_plane().values
    assert np.isnan(out[0, 2, 3]) and np.count_nonzero(np.isnan(out)) == 1
    np.testing.assert_allclose(np.nan_to_num(out), 0.0, atol=1e-9)


def test_remove_plane_leaves_features_above_the_plane(rng):
    data = _planes(1, 9, 9, rng)
    bump = np.zeros((9, 9))
    bump[4, 4] = 9.0
    out = xafm.stack(data + bump, pixel_size_nm=1.0).afm.remove_plane().values[0]
    # a symmetric bump at the centre does not tilt the fitted plane, only shifts it
    np.testing.assert_allclose(out - out[0, 0], bump, atol=1e-9)


def test_align_rows_removes_row_offsets(rng):
    base = rng.normal(size=(2, 5, 8))
    offsets = rng.normal(size=(2, 5, 1)) * 10
    flat = base - np.median(base, axis=2, keepdims=True)
    out = xafm.stack(base + offsets, pixel_size_nm=1.0).afm.align_rows().values
    np.testing.assert_allclose(out, flat, atol=1e-12)
    out_mean = xafm.stack(base + offsets, pixel_size_nm=1.0).afm.align_rows("mean").values
    np.testing.assert_allclose(out_mean, base - base.mean(axis=2, keepdims=True), atol=1e-12)
    with pytest.raises(xafm.StackError, match="'median' or 'mean'"):
        xafm.stack(base, pixel_size_nm=1.0).afm.align_rows("mode")


def test_apply_records_provenance_and_layers(rng):
    da = xafm.stack(rng.normal(size=(2, 3, 4)), pixel_size_nm=1.0)

    def scale(frame, factor):
        return frame * factor

    out = da.afm.apply(scale, factor=3.0, keep_layer=True)
    np.testing.assert_allclose(out.values, da.values * 3)
    rec = out.afm.provenance[-1]
    assert rec["type"] == "step" and rec["name"] == "scale" and rec["params"] == {"factor": 3.0}
    assert rec["module"] == __name__ and rec["xafm_version"] == xafm.__version__
    assert rec["index"] == 1 and rec["output_key"] == "step_1_scale" and rec["kept_layer"] == "raw"
    stamp = dt.datetime.fromisoformat(rec["timestamp"])
    assert stamp.tzinfo is not None and abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    np.testing.assert_array_equal(out.afm.layers["raw"].values, da.values)
    # the second kept layer is named after what the data was: the output of step 1
    out2 = out.afm.remove_plane(keep_layer=True)
    assert set(out2.afm.layers) == {"raw", "step_1_scale"}
    np.testing.assert_allclose(out2.afm.layers["step_1_scale"].values, da.values * 3)
    # layers slice with the data
    np.testing.assert_array_equal(out2.isel(time=1).afm.layers["raw"].values, da.values[1])
    assert len(da.afm.provenance) == 1  # the input stack is left as it was


def test_apply_whole_stack_and_shape_errors(rng):
    da = xafm.stack(rng.normal(size=(2, 3, 4)), pixel_size_nm=1.0)
    out = da.afm.apply(lambda a: a - a.mean(), name="centre", per_frame=False)
    np.testing.assert_allclose(out.values, da.values - da.values.mean())
    assert out.afm.provenance[-1]["per_frame"] == 0
    with pytest.raises(xafm.StackError, match="returned shape"):
        da.afm.apply(lambda f: f[:1])
    with pytest.raises(xafm.StackError, match="returned shape"):
        da.afm.apply(lambda a: a[:1], per_frame=False)


def test_masks_api(rng):
    da = xafm.stack(rng.normal(size=(2, 3, 4)), pixel_size_nm=1.0)
    m = da.afm.mask_threshold(0.5)
    name = "step_1_mask_threshold"
    np.testing.assert_array_equal(m.afm.masks[name].values, da.values > 0.5)
    rec = m.afm.provenance[-1]
    assert rec["type"] == "mask" and rec["params"] == {"threshold": 0.5, "above": 1} and rec["mask"] == name
    below = m.afm.mask_threshold(-0.5, name="low", above=False)
    np.testing.assert_array_equal(below.afm.masks["low"].values, da.values < -0.5)
    fn = da.afm.with_mask("neg", lambda s: s < 0)
    np.testing.assert_array_equal(fn.afm.masks["neg"].values, da.values < 0)
    assert fn.afm.provenance[-1]["function"].endswith("<lambda>")
    with pytest.raises(xafm.StackError, match="shape"):
        da.afm.with_mask("bad", np.zeros((1, 3, 4), bool))
    with pytest.raises(xafm.StackError, match="boolean"):
        da.afm.with_mask("bad", np.zeros((2, 3, 4)) + 0.5)
    # masks survive processing and slicing
    np.testing.assert_array_equal(m.afm.remove_plane().isel(time=0).afm.masks[name].values, da.values[0] > 0.5)


def test_dask_paths_do_not_compute(rng):
    data = rng.normal(size=(6, 5, 4))
    arr = dsa.from_array(data, chunks=(2, 5, 4))
    with raise_if_dask_computes():
        da = xafm.stack(arr, pixel_size_nm=1.0)
        out = da.afm.remove_plane(keep_layer=True).afm.align_rows().afm.mask_threshold(0.0)
        out = out.afm.with_mask("fn", lambda s: s > 1).afm.apply(np.abs, name="abs")
    assert isinstance(out.data, dsa.Array)
    eager = xafm.stack(data, pixel_size_nm=1.0).afm.remove_plane().afm.align_rows()
    np.testing.assert_allclose(out.values, np.abs(eager.values))
    np.testing.assert_array_equal(out.afm.masks["step_3_mask_threshold"].values, eager.values > 0)


def test_plane_fit_handles_degenerate_frames():
    assert np.all(np.isnan(processing.plane_fit(np.full((3, 3), np.nan))))
    np.testing.assert_allclose(processing.plane_fit(np.full((1, 1), 5.0)), 0.0)
    np.testing.assert_allclose(processing.plane_fit(np.arange(4.0).reshape(1, 4)), 0.0, atol=1e-12)


def test_catalogue_runs_steps_by_name_and_refuses_unknown_names_and_parameters(rng):
    da = xafm.stack(_planes(2, 5, 6, rng), pixel_size_nm=1.0)
    steps = processing.catalogue()
    assert {"remove_plane", "align_rows", "mask_threshold"} <= set(steps)
    assert all(s.kind in processing.KINDS and s.description for s in steps.values())
    assert list(steps["align_rows"].parameters()) == ["method", "mask", "keep_layer"]
    np.testing.assert_array_equal(processing.run(da, "remove_plane").values, da.afm.remove_plane().values)
    with pytest.raises(xafm.StackError, match=r"no processing step 'remove_plan' \(did you mean 'remove_plane'"):
        processing.run(da, "remove_plan")
    with pytest.raises(xafm.UnknownOptionError, match=r"no parameter 'methd' \(did you mean 'method'\?\)"):
        processing.run(da, "align_rows", methd="mean")
    with pytest.raises(ValueError, match="declared twice"):
        processing.step("filter", name="remove_plane")(lambda da: da)


def test_catalogue_has_the_levelling_filter_and_mask_steps_with_their_defaults():
    steps = processing.catalogue()
    want = {
        "remove_plane": ("filter", {}),
        "polynomial_flatten": ("filter", {"order": 2}),
        "row_median_align": ("filter", {}),
        "zero_mean": ("filter", {}),
        "zero_median": ("filter", {}),
        "gaussian_filter": ("filter", {"sigma": 1.0}),
        "vertical_flip": ("filter", {}),
        "mask_threshold": ("mask", {"threshold": 0.0}),
        "mask_below_threshold": ("mask", {"threshold": 0.0}),
        "mask_mean_offset": ("mask", {"factor": 1.0}),
        "mask_morphological": ("mask", {"threshold": 0.0, "structure_size": 3}),
        "mask_adaptive": ("mask", {"block_size": 15, "offset": 0.0}),
        "clear": ("mask", {}),
    }
    for name, (kind, defaults) in want.items():
        found = steps[name]
        assert found.kind == kind, name
        params = found.parameters()
        assert {k: params[k].default for k in defaults} == defaults, name
        assert ("mask" in params) == (name in ("remove_plane", "polynomial_flatten", "row_median_align", "zero_mean", "zero_median")), name
        assert found.description.endswith(".") and len(found.description) < 100, name
    # the accessor has every one of them, with the step's own signature and docstring
    da = xafm.stack(np.zeros((1, 3, 3)), pixel_size_nm=1.0)
    assert "order" in str(inspect.signature(da.afm.polynomial_flatten))
    assert da.afm.mask_adaptive.__doc__ == steps["mask_adaptive"].func.__doc__
