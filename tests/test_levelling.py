"""The levelling, filter and mask catalogue with known answers: surfaces removed exactly,
masked particles left out of the fit, scipy's Gaussian, hand-computed masks, the current
mask and ``clear``, laziness and the records."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import xafm
from tests.helpers import raise_if_dask_computes
from xafm import processing
from xafm.processing import levelling


def _stack(data):
    return xafm.stack(np.asarray(data), pixel_size_nm=1.0)


def _surface(order, coeffs, ny, nx):
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    terms = [xx ** (i - j) * yy**j for i in range(order + 1) for j in range(i + 1)]
    return sum(c * t for c, t in zip(coeffs, terms, strict=True))


def _particle(ny, nx, cy, cx, height=5.0):
    yy, xx = np.mgrid[0:ny, 0:nx]
    return np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= 9, height, 0.0)


# --------------------------------------------------------------------------------------
# known answers
# --------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(4, 20), st.integers(4, 20), st.integers(0, 2**31))
def test_polynomial_flatten_removes_any_polynomial_of_its_order(order, ny, nx, seed):
    rng = np.random.default_rng(seed)
    n_terms = (order + 1) * (order + 2) // 2
    frames = [_surface(order, rng.normal(0, 1, n_terms) / np.maximum(ny, nx) ** np.repeat(np.arange(order + 1), np.arange(1, order + 2)), ny, nx) for _ in range(2)]
    out = _stack(np.stack(frames)).afm.polynomial_flatten(order=order).values
    np.testing.assert_allclose(out, 0.0, atol=1e-9)


def test_polynomial_flatten_of_order_1_is_remove_plane_and_order_2_leaves_a_cubic(rng):
    data = rng.normal(size=(3, 11, 13))
    np.testing.assert_allclose(_stack(data).afm.polynomial_flatten(order=1).values, _stack(data).afm.remove_plane().values, atol=1e-12)
    cubic = _surface(3, [0, 0, 0, 0, 0, 0, 1e-2, 0, 0, 0], 11, 13)  # x^3
    assert np.abs(_stack(cubic[None]).afm.polynomial_flatten().values).max() > 1e-3  # order 2 cannot remove it
    np.testing.assert_allclose(_stack(cubic[None]).afm.polynomial_flatten(order=3).values, 0.0, atol=1e-12)


@pytest.mark.parametrize(
    ("step", "order"), [("remove_plane", 1), ("polynomial_flatten", 2)]
)
def test_masked_particle_is_left_out_of_the_fit(step, order, rng):
    ny, nx = 30, 40
    n_terms = (order + 1) * (order + 2) // 2
    bg = _surface(order, rng.normal(0, 0.05, n_terms) / 10 ** np.repeat(np.arange(order + 1), np.arange(1, order + 2)), ny, nx)
    bump = _particle(ny, nx, 7, 9)
    da = _stack((bg + bump)[None]).afm.mask_threshold(1e9, name="none")  # an empty mask changes nothing
    da = da.afm.with_mask("particle", (bump > 0)[None])
    out = processing.run(da, step, mask="particle").values[0]
    np.testing.assert_allclose(out, bump, atol=1e-9)  # the surface exactly, the particle kept whole
    unmasked = processing.run(da, step).values[0]
    assert np.abs(unmasked - bump).max() > 0.1  # without the mask the particle drags the fit


def test_masked_offsets_leave_the_particle_out(rng):
    base = rng.normal(0, 0.1, (2, 12, 16))
    offsets = rng.normal(0, 3, (2, 12, 1))
    bump = np.stack([_particle(12, 16, 5, 6), _particle(12, 16, 8, 10)])
    mask = bump > 0
    da = _stack(base + offsets + bump).afm.with_mask("p", mask)
    bg = np.where(mask, np.nan, base + offsets)
    rows = da.afm.row_median_align(mask="p").values
    np.testing.assert_allclose(rows, base + offsets + bump - np.nanmedian(bg, axis=2, keepdims=True), atol=1e-12)
    means = da.afm.zero_mean(mask=True).values
    np.testing.assert_allclose(means, base + offsets + bump - np.nanmean(bg, axis=(1, 2), keepdims=True), atol=1e-12)
    medians = da.afm.zero_median(mask="latest").values
    np.testing.assert_allclose(medians, base + offsets + bump - np.nanmedian(bg, axis=(1, 2), keepdims=True), atol=1e-12)
    rows_mean = da.afm.align_rows("mean", mask="p").values
    np.testing.assert_allclose(rows_mean, base + offsets + bump - np.nanmean(bg, axis=2, keepdims=True), atol=1e-12)


def test_nothing_left_to_fit_leaves_rows_and_frames_as_they_were(rng):
    data = rng.normal(size=(2, 4, 5))
    mask = np.zeros(data.shape, bool)
    mask[0] = True  # frame 0 all masked
    mask[1, 2] = True  # row 2 of frame 1 all masked
    da = _stack(data).afm.with_mask("m", mask)
    for step in ("remove_plane", "polynomial_flatten", "zero_mean", "zero_median", "row_median_align"):
        np.testing.assert_array_equal(processing.run(da, step, mask="m").values[0], data[0], err_msg=step)
    np.testing.assert_array_equal(da.afm.row_median_align(mask="m").values[1, 2], data[1, 2])


def test_zero_mean_and_median_and_row_median_ignore_nan():
    data = np.array([[[1.0, 2.0, np.nan], [4.0, 6.0, 11.0]]])
    np.testing.assert_allclose(_stack(data).afm.zero_mean().values, data - 24 / 5)
    np.testing.assert_allclose(_stack(data).afm.zero_median().values, data - 4.0)
    np.testing.assert_allclose(_stack(data).afm.row_median_align().values, [[[-0.5, 0.5, np.nan], [-2.0, 0.0, 5.0]]])


def test_gaussian_filter_is_scipys_on_every_frame(rng):
    data = rng.normal(size=(3, 20, 17))
    for sigma in (1.0, 0.6, 2.5):
        want = np.stack([ndimage.gaussian_filter(f, sigma) for f in data])
        np.testing.assert_allclose(_stack(data).afm.gaussian_filter(sigma=sigma).values, want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(_stack(data).afm.gaussian_filter().values, np.stack([ndimage.gaussian_filter(f, 1.0) for f in data]), atol=1e-14)
    out32 = _stack(data.astype(np.float32)).afm.gaussian_filter()
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(_stack(data).afm.gaussian_filter(sigma=0).values, data)
    with pytest.raises(xafm.StackError, match="sigma"):
        _stack(data).afm.gaussian_filter(sigma=-1)


def test_vertical_flip_reverses_rows_and_masks_not_coordinates_or_layers(rng):
    data = rng.normal(size=(2, 4, 3))
    da = _stack(data).afm.mask_threshold(0.0, name="pos").afm.zero_mean(keep_layer=True)
    flipped = da.afm.vertical_flip()
    np.testing.assert_array_equal(flipped.values, da.values[:, ::-1, :])
    np.testing.assert_array_equal(flipped.afm.masks["pos"].values, (data > 0)[:, ::-1, :])
    np.testing.assert_array_equal(flipped.afm.layers["raw"].values, data)
    np.testing.assert_array_equal(flipped["y"].values, da["y"].values)
    np.testing.assert_array_equal(flipped.afm.vertical_flip().values, da.values)


# --------------------------------------------------------------------------------------
# masks, by hand
# --------------------------------------------------------------------------------------
FRAME = np.array(
    [
        [0.0, 1.0, 2.0, np.nan],
        [3.0, -1.0, 9.0, 2.0],
        [-4.0, 0.5, 1.0, 7.0],
    ]
)


def test_threshold_masks_by_hand():
    da = _stack(FRAME[None])
    above = da.afm.mask_threshold(1.0).afm.masks["step_1_mask_threshold"].values[0]
    np.testing.assert_array_equal(above, [[0, 0, 1, 0], [1, 0, 1, 1], [0, 0, 0, 1]])
    default = da.afm.mask_threshold().afm.masks["step_1_mask_threshold"].values[0]  # playNano's default 0.0
    np.testing.assert_array_equal(default, [[0, 1, 1, 0], [1, 0, 1, 1], [0, 1, 1, 1]])
    below = da.afm.mask_below_threshold(0.5).afm.masks["step_1_mask_below_threshold"].values[0]
    np.testing.assert_array_equal(below, [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    old_style = da.afm.mask_threshold(0.5, name="low", above=False).afm.masks["low"].values[0]
    np.testing.assert_array_equal(old_style, below)


def test_mean_offset_mask_by_hand():
    finite = FRAME[np.isfinite(FRAME)]  # 11 values, sum 19.5
    mean = 19.5 / 11
    std = np.sqrt(sum((v - mean) ** 2 for v in finite) / 11)
    assert 3.0 < mean + std < 7.0  # so exactly 9 and 7 are more than one std above the mean
    m = _stack(FRAME[None]).afm.mask_mean_offset().afm.masks["step_1_mask_mean_offset"].values[0]
    np.testing.assert_array_equal(m, [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert not _stack(FRAME[None]).afm.mask_mean_offset(factor=3).afm.masks["step_1_mask_mean_offset"].values.any()


def test_morphological_mask_closes_holes_and_keeps_scipys_border():
    frame = np.zeros((7, 7))
    frame[1:6, 1:6] = 2.0
    frame[3, 3] = 0.0  # a hole in the particle
    frame[0, 6] = -3.0  # |value| counts
    m = _stack(frame[None]).afm.mask_morphological(threshold=1.0).afm.masks["step_1_mask_morphological"].values[0]
    want = np.zeros((7, 7), bool)
    want[1:6, 1:6] = True  # hole closed
    # the corner pixel is eroded away: scipy's closing treats outside the frame as unmasked
    np.testing.assert_array_equal(m, want)
    none = _stack(frame[None]).afm.mask_morphological(threshold=1.0, structure_size=1).afm.masks["step_1_mask_morphological"].values[0]
    np.testing.assert_array_equal(none, np.abs(frame) > 1.0)


def test_adaptive_mask_by_hand():
    frame = np.array([[1.0, 3.0, 10.0], [5.0, 7.0, 0.0], [2.0, np.nan, 4.0]])
    # 2 x 2 tiles from the top left: means 4 | 5 (over 10, 0) / 2 | 4 (NaN left out)
    m = _stack(frame[None]).afm.mask_adaptive(block_size=2).afm.masks["step_1_mask_adaptive"].values[0]
    np.testing.assert_array_equal(m, [[0, 0, 1], [1, 1, 0], [0, 0, 0]])
    m = _stack(frame[None]).afm.mask_adaptive(block_size=2, offset=1.5).afm.masks["step_1_mask_adaptive"].values[0]
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 1, 0], [0, 0, 0]])
    whole = _stack(frame[None]).afm.mask_adaptive().afm.masks["step_1_mask_adaptive"].values[0]  # one tile: mean 4
    np.testing.assert_array_equal(whole, np.nan_to_num(frame) > 4.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda da: da.afm.polynomial_flatten(order=0), "positive integer"),
        (lambda da: da.afm.polynomial_flatten(order=1.5), "positive integer"),
        (lambda da: da.afm.polynomial_flatten(order="two"), "positive integer"),
        (lambda da: da.afm.mask_morphological(structure_size=0), "structure_size"),
        (lambda da: da.afm.mask_adaptive(block_size=2.5), "block_size"),
        (lambda da: da.afm.mask_threshold("high"), "threshold must be a number"),
        (lambda da: da.afm.remove_plane(mask="nope"), "no mask 'nope'"),
        (lambda da: da.afm.remove_plane(mask=True), "has no mask"),
        (lambda da: da.afm.remove_plane(mask=3), "mask must be"),
    ],
)
def test_bad_parameters_are_stack_errors(call, match, rng):
    with pytest.raises(xafm.StackError, match=match):
        call(_stack(rng.normal(size=(1, 4, 4))))


# --------------------------------------------------------------------------------------
# the current mask, overlays and clear (playNano's pipeline rules)
# --------------------------------------------------------------------------------------
def test_current_mask_overlay_and_clear(rng):
    data = rng.normal(size=(2, 6, 7))
    da = _stack(data)
    assert processing.current_mask(da) is None and processing.resolve_mask(da, "latest") is None
    a = da.afm.mask_threshold(1.0)
    assert processing.current_mask(a) == "step_1_mask_threshold"
    b = a.afm.mask_below_threshold(-1.0, overlay="latest")
    assert processing.current_mask(b) == "step_2_mask_threshold_mask_below_threshold"  # playNano's overlay key
    np.testing.assert_array_equal(b.afm.masks["step_2_mask_threshold_mask_below_threshold"].values, (data > 1) | (data < -1))
    assert b.afm.provenance[-1]["params"] == {"threshold": -1.0, "overlay": "step_1_mask_threshold"}
    c = b.afm.clear_mask()
    assert processing.current_mask(c) is None and processing.resolve_mask(c, "latest") is None
    assert processing.resolve_mask(c, True) == "step_2_mask_threshold_mask_below_threshold"  # True: the last one still
    assert c.afm.provenance[-1]["mask_cleared"] == 1 and c.afm.provenance[-1]["index"] == 3
    np.testing.assert_array_equal(c.afm.zero_mean(mask="latest").values, data - data.mean(axis=(1, 2), keepdims=True))
    d = c.afm.mask_threshold(0.0, overlay="latest")  # nothing current: a mask of its own
    assert processing.current_mask(d) == "step_4_mask_threshold"
    # a stack read back from a file starts with no current mask, as a playNano pipeline does
    read = d.copy()
    read.attrs = dict(d.attrs)
    read = xafm.core.provenance.append(read, xafm.core.provenance.make_record("read", path="x.h5"))
    assert processing.current_mask(read) is None and processing.resolve_mask(read, True) == "step_4_mask_threshold"


# --------------------------------------------------------------------------------------
# laziness, records, blocks
# --------------------------------------------------------------------------------------
STEPS = [
    ("remove_plane", {}),
    ("polynomial_flatten", {"order": 2}),
    ("row_median_align", {}),
    ("align_rows", {"method": "mean"}),
    ("zero_mean", {}),
    ("zero_median", {}),
    ("gaussian_filter", {"sigma": 1.5}),
    ("vertical_flip", {}),
    ("mask_threshold", {"threshold": 0.2}),
    ("mask_below_threshold", {"threshold": -0.2}),
    ("mask_mean_offset", {"factor": 0.5}),
    ("mask_morphological", {"threshold": 0.5, "structure_size": 3}),
    ("mask_adaptive", {"block_size": 4, "offset": 0.1}),
]


@pytest.mark.parametrize(("name", "params"), STEPS)
def test_every_step_is_lazy_recorded_and_keeps_layers(name, params, rng):
    data = rng.normal(size=(6, 9, 11))
    data[2, 3, 4] = np.nan
    eager = _stack(data).afm.mask_threshold(0.8, name="m")
    lazy = xafm.stack(dsa.from_array(data, chunks=(2, 5, 11)), pixel_size_nm=1.0).afm.mask_threshold(0.8, name="m")
    found = processing.get(name)
    extra = {"mask": "m"} if "mask" in found.parameters() else {}
    with raise_if_dask_computes():
        out = processing.run(lazy, name, **params, **extra)
        if found.kind == "filter":
            kept = processing.run(lazy, name, **params, keep_layer=True)
    assert isinstance(out.data, dsa.Array)
    want = processing.run(eager, name, **params, **extra)
    np.testing.assert_allclose(out.values, want.values, atol=1e-12)
    rec = out.afm.provenance[-1]
    assert rec["name"] == name and rec["index"] == 2
    assert {k: rec["params"][k] for k in params} == params
    if found.kind == "mask":
        key = f"step_2_{name}"
        assert rec["type"] == "mask" and rec["mask"] == key
        assert isinstance(out.coords[f"mask__{key}"].data, dsa.Array)
        np.testing.assert_array_equal(out.afm.masks[key].values, want.afm.masks[key].values)
        if name != "mask_morphological":  # (its closing may cover a NaN inside a particle, as playNano's)
            assert not np.isnan(data[out.afm.masks[key].values]).any()  # NaN is never masked
    else:
        assert rec["type"] == "step" and rec["output_key"] == f"step_2_{name}"
        assert rec["params"].get("mask") == extra.get("mask")
        np.testing.assert_array_equal(kept.afm.layers["raw"].values, data)
        assert found.description and not found.description.endswith(":")


def test_in_memory_blocks_give_the_same_answer_as_one_block(rng, monkeypatch):
    data = rng.normal(size=(7, 10, 12)) + np.arange(12)
    mask = data > 5
    whole = _stack(data).afm.with_mask("m", mask)
    want = {s: processing.run(whole, s, mask="m").values for s in ("remove_plane", "polynomial_flatten", "row_median_align")}
    monkeypatch.setattr(levelling, "BLOCK_BYTES", 2 * 10 * 12 * 8)  # two frames a piece, two threads
    for s, w in want.items():
        np.testing.assert_allclose(processing.run(whole, s, mask="m").values, w, rtol=0, atol=1e-12)


def test_plane_fit_on_a_huge_offset_stays_exact(rng):
    # centred, scaled coordinates: a 1e6 nm offset does not cost precision
    plane = _surface(1, [1e6, 0.3, -0.2], 64, 64)
    out = _stack(plane[None] + rng.normal(0, 1e-3, (1, 64, 64)))
    assert np.abs(out.afm.remove_plane().values).max() < 5e-3


def test_a_bundle_read_back_has_its_masks_but_none_current(rng, tmp_path):
    da = _stack(rng.normal(size=(2, 5, 6))).afm.mask_threshold(0.3)
    assert processing.current_mask(da) == "step_1_mask_threshold"
    back = xafm.open(da.afm.to_h5(tmp_path / "m.h5"))
    assert "step_1_mask_threshold" in back.afm.masks
    assert processing.current_mask(back) is None and processing.resolve_mask(back, "latest") is None
    assert processing.resolve_mask(back, True) == "step_1_mask_threshold"
    np.testing.assert_allclose(
        back.afm.remove_plane(mask="step_1_mask_threshold").values, da.afm.remove_plane(mask=True).values, atol=1e-5
    )


def test_run_as_playnano_applies_the_pipeline_rules(rng):
    data = rng.normal(size=(2, 8, 9)) + np.arange(9)
    da = xafm.stack(data, pixel_size_nm=1.0)
    steps = [("remove_plane", {}), ("mask_threshold", {"threshold": 0.5}), ("mask_below_threshold", {"threshold": -0.5}),
             ("zero_mean", {}), ("gaussian_filter", {}), ("clear", {}), ("zero_median", {})]  # fmt: skip
    for name, params in steps:
        da = processing.run_as_playnano(da, name, **params)
    recs = [r for r in da.afm.provenance if r["type"] in ("step", "mask")]
    assert [r["name"] for r in recs] == [n for n, _ in steps]
    both = "step_3_mask_threshold_mask_below_threshold"
    assert recs[2]["mask"] == both and recs[3]["params"]["mask"] == both
    assert "mask" not in recs[4]["params"] and recs[6]["params"]["mask"] is None
    levelled = _stack(data).afm.remove_plane().values
    m = (levelled > 0.5) | (levelled < -0.5)
    np.testing.assert_array_equal(da.afm.masks[both].values, m)
    zeroed = np.stack([f - f[~mf].mean() for f, mf in zip(levelled, m, strict=True)])
    smooth = np.stack([ndimage.gaussian_filter(f, 1.0) for f in zeroed])
    np.testing.assert_allclose(da.values, smooth - np.median(smooth, axis=(1, 2), keepdims=True), atol=1e-12)
