"""Colormaps, z-scale, colour indices, upscaling, annotations and the render options
(xafm.render, xafm.render.colormaps)."""

from __future__ import annotations

import dataclasses
import threading
import time

import dask.array as dsa
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from matplotlib import colormaps as registry

import xafm
from xafm import render
from xafm.core import percentiles as core_percentiles
from xafm.exceptions import StackError, XafmWarning
from xafm.render import BG_INDEX, FG_INDEX, N_DATA, NAN_INDEX, RenderError, RenderOptions, colormaps

from .helpers import raise_if_dask_computes


# --------------------------------------------------------------------------------------
# colormaps
# --------------------------------------------------------------------------------------
def test_colormaps_registered_with_matplotlib():
    for name in ("xafm_afm", "xafm_afm_uniform", "xafm_afm_r", "xafm_afm_uniform_r"):
        assert name in registry
    assert render.colormap("xafm_afm").name == "xafm_afm"


@pytest.mark.parametrize(
    ("rgb", "lab"),
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
        ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
        ((0.5, 0.5, 0.5), (53.3889, 0.0, 0.0)),
    ],
)
def test_srgb_to_lab_matches_reference_values(rgb, lab):
    # published CIELAB (D65) values of sRGB primaries and grey
    np.testing.assert_allclose(colormaps.srgb_to_lab(np.array(rgb)), lab, atol=0.02)
    np.testing.assert_allclose(colormaps.lab_to_srgb(np.array(lab)), rgb, atol=1e-3)


def _lightness(name: str, n: int, bits8: bool) -> np.ndarray:
    rgb = np.asarray(registry[name](np.linspace(0, 1, n)))[:, :3]
    if bits8:
        rgb = np.round(rgb * 255) / 255
    return colormaps.srgb_to_lab(rgb)


@pytest.mark.parametrize("name", ["xafm_afm", "xafm_afm_uniform"])
def test_lightness_strictly_increases(name):
    for n, bits8 in ((256, False), (N_DATA, True)):  # the colormap, and the 8-bit LUT xafm draws with
        lab = _lightness(name, n, bits8)
        assert np.all(np.diff(lab[:, 0]) > 0), f"{name}: L* not monotone ({n} entries, 8-bit={bits8})"


def test_uniform_colormap_is_perceptually_uniform():
    lab = _lightness("xafm_afm_uniform", 256, False)
    step = np.linalg.norm(np.diff(lab, axis=0), axis=1)
    assert step.max() / step.min() < 1.05  # equal CIE76 colour differences between neighbours
    assert lab[0, 0] < 10 and lab[-1, 0] > 95  # dark to near white
    assert np.all(np.diff(lab[:, 0]) > 0.2)


def test_classic_afm_colormap_goes_dark_brown_gold_white():
    rgb = np.asarray(registry["xafm_afm"]([0.0, 0.25, 0.7, 1.0]))[:, :3] * 255
    dark, brown, gold, white = rgb
    assert dark.max() < 30 and dark[0] >= dark[1] >= dark[2]
    assert brown[0] > brown[1] > brown[2]  # brown: red > green > blue
    assert gold[0] > 180 and gold[1] > 120 and gold[2] < 100
    np.testing.assert_array_equal(white, [255, 255, 255])


def test_palette_layout_and_distinct_nan_colour():
    pal = render.build_palette("viridis")
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    np.testing.assert_array_equal(pal[FG_INDEX], [255, 255, 255])
    np.testing.assert_array_equal(pal[BG_INDEX], [0, 0, 0])
    lut = pal[:N_DATA].astype(float)
    assert np.min(np.linalg.norm(lut - pal[NAN_INDEX].astype(float), axis=1)) > 60
    np.testing.assert_array_equal(render.build_palette("gray", nan_color="red")[NAN_INDEX], [255, 0, 0])
    # the LUT is the colormap sampled at 252 points
    expected = np.round(np.asarray(registry["viridis"](np.linspace(0, 1, N_DATA)))[:, :3] * 255)
    np.testing.assert_array_equal(pal[:N_DATA], expected)


def test_bad_colormap_and_colour():
    with pytest.raises(RenderError, match="unknown colormap 'nope'"):
        render.colormap("nope")
    with pytest.raises(RenderError, match="cmap must be"):
        render.colormap(3)
    with pytest.raises(RenderError, match="not a colour"):
        render.build_palette(None, nan_color="notacolour")


# --------------------------------------------------------------------------------------
# z-scale
# --------------------------------------------------------------------------------------
def _check_percentiles(data: np.ndarray, qs=(1.0, 99.0)) -> None:
    got = render.percentiles(xafm.stack(data, pixel_size_nm=1.0), qs)
    finite = data[np.isfinite(data)].astype(np.float64)
    if finite.size == 0:
        assert got is None
        return
    expected = np.percentile(finite, qs)
    spread = max(float(np.ptp(expected)), 1e-300)
    # documented accuracy: within 1/1000 of the spread between the percentiles (plus the
    # float32 rounding of values relative to the centre)
    tol = spread / 1000 + 1e-6 * np.max(np.abs(finite - np.median(finite))) + 1e-12 * np.max(np.abs(finite)) + 1e-30
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32),
    ),
    st.floats(0, 100),
)
def test_percentiles_property(data, q):
    _check_percentiles(data, (q, 100 - q))


@pytest.mark.parametrize(
    "case",
    ["normal", "offset", "spikes", "ints", "nan_inf", "first_frame_flat", "negative"],
)
def test_percentiles_accuracy(case, rng):
    data = {
        "normal": lambda: rng.normal(5, 2, (20, 64, 64)),
        "offset": lambda: rng.normal(1e6, 0.01, (10, 64, 64)),  # small spread on a big offset
        "spikes": lambda: np.where(rng.random((10, 64, 64)) < 0.003, 1e9, rng.normal(0, 1, (10, 64, 64))),
        "ints": lambda: rng.integers(-300, 300, (5, 32, 32)).astype(np.int16),
        "nan_inf": lambda: np.where(rng.random((10, 64, 64)) < 0.2, np.nan, rng.normal(0, 1, (10, 64, 64))),
        "first_frame_flat": lambda: np.concatenate([np.full((3, 64, 64), 50.0), rng.normal(0, 1, (8, 64, 64))]),
        "negative": lambda: rng.normal(-196, 20, (10, 64, 64)).astype(np.float32),
    }[case]()
    if case == "nan_inf":
        data.reshape(-1)[:300] = np.inf
        data.reshape(-1)[300:500] = -np.inf
    _check_percentiles(data)


@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 5), st.integers(1, 24), st.integers(1, 24)),
        elements=st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0]),
    ),
    st.sampled_from([np.float64, np.float32, np.int16]),
    st.sampled_from([(1.0, 99.0), (0.0, 100.0), (3.0, 96.0), (1.0,), (99.5,)]),
    st.integers(1, 5),
)
def test_percentiles_do_not_depend_on_backing_or_chunks(data, dtype, qs, chunk):
    """A numpy stack (tail shortcut) and the same stack as dask (full histogram, any
    chunking) get the very same numbers, so .chunk() never changes a video's colours."""
    if dtype == np.int16:
        data = np.clip(np.nan_to_num(data, nan=0, posinf=7, neginf=-7), -3e4, 3e4)
    data = data.astype(dtype)
    eager = render.percentiles(xafm.stack(data, pixel_size_nm=1.0), qs)
    lazy = render.percentiles(xafm.stack(dsa.from_array(data, chunks=(chunk, -1, -1)), pixel_size_nm=1.0), qs)
    assert eager == lazy


def test_in_memory_tails_bin_only_a_few_percent(rng, monkeypatch):
    """The shortcut is taken for a typical stack and bins only the tails."""
    data = rng.normal(0, 1, (20, 128, 128))
    binned = []
    real = core_percentiles._hist_chunk
    monkeypatch.setattr(core_percentiles, "_hist_chunk", lambda x, ref: binned.append(x.size) or real(x, ref))
    got = render.percentiles(xafm.stack(data, pixel_size_nm=1.0))
    assert 0 < sum(binned) < 0.06 * data.size
    np.testing.assert_allclose(got, np.percentile(data, [1, 99]), atol=np.ptp(np.percentile(data, [1, 99])) / 1000)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_percentiles_near_the_float32_limit_stay_finite(sign):
    """A value in the top finite float32 bin (found by the OME-Zarr round trip's
    hypothesis run): the bin's upper edge is the float32 maximum, not inf, so the z-scale
    stays finite and close to numpy's percentile."""
    data = sign * np.array([[[3.4011621e38, 0.0, 0.0]]], dtype=np.float32)
    got = render.percentiles(xafm.stack(data, pixel_size_nm=1.0))
    assert got is not None and all(np.isfinite(got))
    want = np.percentile(data.astype(np.float64), [1, 99])
    np.testing.assert_allclose(got, want, atol=float(np.ptp(want)) / 1000)


def test_percentiles_none_without_finite_values():
    assert render.percentiles(xafm.stack(np.full((2, 4, 4), np.nan), pixel_size_nm=1.0)) is None


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("lazy", [False, True])
def test_percentiles_tell_whether_every_value_is_finite(rng, bad, lazy):
    """The z-scale pass reports NaN/inf anywhere in the stack (a single one, in the
    middle of the value range or not), numpy (tail shortcut) and dask (full histogram) alike."""
    data = rng.normal(0, 1, (6, 64, 64))
    if bad is not None:
        data[4, 33, 17] = bad
    arr = dsa.from_array(data, chunks=(2, 64, 64)) if lazy else data
    found, finite = core_percentiles.percentiles_and_finite(xafm.stack(arr, pixel_size_nm=1.0))
    assert finite is (bad is None)
    assert found == render.percentiles(xafm.stack(data, pixel_size_nm=1.0))
    assert core_percentiles.percentiles_and_finite(np.arange(50, dtype=np.int16))[1] is True


def test_renderer_skips_the_nan_search_only_when_the_pass_found_none(rng):
    data = rng.normal(0, 1, (3, 32, 32))
    data[2, 5, 5] = np.nan
    r = render.FrameRenderer(xafm.stack(data, pixel_size_nm=1.0), RenderOptions(upscale=1, scale_bar=False, timestamps=False))
    frames = dict(r.frames())
    assert r._finite is False and r.indices(frames[2], 2)[5, 5] == NAN_INDEX
    fixed = render.FrameRenderer(xafm.stack(data, pixel_size_nm=1.0), RenderOptions(upscale=1, scale_bar=False, timestamps=False, zmin=-1, zmax=1))
    assert fixed.indices(frames[2], 2)[5, 5] == NAN_INDEX  # no pass: always searched
    clean = data[:2]
    lo, hi = -1.5, 1.5
    np.testing.assert_array_equal(render.to_indices(clean[0], lo, hi, finite=True), render.to_indices(clean[0], lo, hi))


def test_zscale_numbers_auto_none_and_errors(rng):
    data = rng.normal(0, 1, (4, 32, 32))
    data[0, 0, 0] = 40.0
    da = xafm.stack(data, pixel_size_nm=1.0)
    assert render.zscale(da, -1, 2) == (-1.0, 2.0)
    lo, hi = render.zscale(da)
    np.testing.assert_allclose([lo, hi], np.percentile(data, [1, 99]), atol=0.01)
    lo, hi = render.zscale(da, None, None)
    np.testing.assert_allclose([lo, hi], [data.min(), 40.0], rtol=2e-3)
    assert render.zscale(da, "auto", 5.0)[1] == 5.0
    with pytest.raises(RenderError, match="zmin .* above zmax"):
        render.zscale(da, 3, 1)
    with pytest.raises(RenderError, match="zmin must be a number, 'auto' or None"):
        render.zscale(da, "automatic", 1)
    with pytest.raises(RenderError, match="zmax must be finite"):
        render.zscale(da, 0, float("inf"))


def test_zscale_constant_and_all_nan_stacks_do_not_divide_by_zero():
    lo, hi = render.zscale(xafm.stack(np.full((3, 8, 8), 7.0), pixel_size_nm=1.0))
    assert lo < 7.0 < hi and hi - lo < 1e-3
    idx = render.to_indices(np.full((8, 8), 7.0), lo, hi)
    assert np.all(idx == N_DATA // 2)
    assert render.zscale(xafm.stack(np.full((3, 8, 8), np.nan), pixel_size_nm=1.0)) == (0.0, 1.0)
    with np.errstate(all="raise"):
        idx = render.to_indices(np.full((4, 4), 3.0), 3.0, 3.0)  # equal ends given directly
    assert np.all(idx == N_DATA // 2)


def test_percentiles_stream_dask_block_by_block(rng):
    data = rng.normal(0, 1, (40, 64, 64))
    darr = dsa.from_array(data, chunks=(4, 64, 64))
    old = render.RENDER_BLOCK_BYTES
    render.RENDER_BLOCK_BYTES = 4 * 64 * 64 * 8  # one chunk per block
    try:
        with raise_if_dask_computes(max_computes=10) as sched:
            got = render.percentiles(xafm.stack(darr, pixel_size_nm=1.0))
    finally:
        render.RENDER_BLOCK_BYTES = old
    assert sched.total_computes == 10  # one compute per chunk, one pass
    np.testing.assert_allclose(got, np.percentile(data, [1, 99]), atol=0.01)


# --------------------------------------------------------------------------------------
# indices
# --------------------------------------------------------------------------------------
def test_to_indices_scale_clip_and_nan():
    frame = np.array([[0.0, 0.5, 1.0, 2.0], [-5.0, np.nan, np.inf, -np.inf]])
    idx = render.to_indices(frame, 0.0, 1.0)
    assert idx.dtype == np.uint8
    assert idx[0, 0] == 0 and idx[0, 1] == N_DATA // 2 and idx[0, 2] == N_DATA - 1
    assert idx[0, 3] == N_DATA - 1 and idx[1, 0] == 0  # clipped
    assert list(idx[1, 1:]) == [NAN_INDEX] * 3  # NaN and inf: the NaN colour
    ints = render.to_indices(np.array([[0, 10]], dtype=np.int16), 0, 10)
    assert list(ints[0]) == [0, N_DATA - 1]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_indices_finds_a_lone_non_finite_value(bad):
    frame = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    frame[40, 7] = bad
    idx = render.to_indices(frame, 0.0, 1.0)
    assert idx[40, 7] == NAN_INDEX and np.count_nonzero(idx == NAN_INDEX) == 1


def test_upscale_factor():
    assert render.upscale_factor(8, 8) == 40  # 8 px -> 320 px
    assert render.upscale_factor(512, 512) == 1
    assert render.upscale_factor(200, 200) == 2
    assert render.upscale_factor(10, 1000) == 2  # the long side caps it at 2048
    assert render.upscale_factor(3000, 3000) == 1
    assert render.upscale_factor(64, 64, 3) == 3
    for bad in (0, -1, 1.5, "big", True):
        with pytest.raises(RenderError, match="upscale"):
            render.upscale_factor(64, 64, bad)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8])
def test_repeat_columns_is_nearest_neighbour_along_x(rng, k):
    a = rng.integers(0, 256, (7, 9)).astype(np.uint8)
    np.testing.assert_array_equal(render.frames.repeat_columns(a, k), np.repeat(a, k, axis=1))


def test_display_shape_is_true_to_scale():
    assert render.display_shape(200, 200, (0.5, 0.5)) == (2, 400, 400)  # square: as upscale_factor
    assert render.display_shape(512, 512, (1.0, 1.0), 3) == (3, 1536, 1536)
    k, H, W = render.display_shape(200, 160, (0.98, 1.25))  # columns coarser: they are resampled
    assert H == 200 * k and abs(W / H - (160 * 1.25) / (200 * 0.98)) < 1 / H
    k, H, W = render.display_shape(160, 200, (1.25, 0.98))  # rows coarser
    assert W == 200 * k and abs(H / W - (160 * 1.25) / (200 * 0.98)) < 1 / W
    assert min(H, W) >= render.MIN_SIDE
    k, H, W = render.display_shape(1000, 2000, (3.0, 1.0))  # 3000 px tall at k=1: shrunk to the cap
    assert k == 1 and H == render.MAX_SIDE and abs(W / H - 2000 / 3000) < 1 / W


def test_labels():
    assert render.time_label(12.4) == "12.40 s"
    assert render.length_label(100) == "100 nm"
    assert render.length_label(2000) == "2 µm"
    assert render.length_label(2.5) == "2.5 nm"
    assert render.nice_length(73) == 50 and render.nice_length(0.3) == 0.2 and render.nice_length(1000) == 1000


# --------------------------------------------------------------------------------------
# renderer and overlays
# --------------------------------------------------------------------------------------
def _runs(row: np.ndarray, value: int) -> list[int]:
    """Lengths of runs of ``value`` in a 1-D array."""
    hit = np.concatenate([[0], (row == value).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(hit))
    return list(edges[1::2] - edges[::2])


@pytest.mark.parametrize(("shape", "px", "bar_nm"), [((64, 64), 2.0, 40), ((8, 8), 0.5, 2), ((200, 300), 1.0, 100), ((17, 33), 3.0, 25)])
def test_scale_bar_length_matches_pixel_size(shape, px, bar_nm):
    da = xafm.stack(np.zeros((1, *shape)), pixel_size_nm=px)
    r = render.FrameRenderer(da, RenderOptions(scale_bar_nm=bar_nm, timestamps=False, zmin=-1, zmax=1))
    idx = r.indices(next(r.frames())[1], 0)
    expected = bar_nm / px * r.k
    longest = max(max(_runs(row, FG_INDEX), default=0) for row in idx)
    assert abs(longest - expected) <= 1
    assert r.scale_bar_nm == bar_nm


def test_scale_bar_too_long_is_replaced_with_warning():
    da = xafm.stack(np.zeros((1, 32, 32)), pixel_size_nm=1.0)
    with pytest.warns(XafmWarning, match="does not fit"):
        r = render.FrameRenderer(da, RenderOptions(scale_bar_nm=1000))
    assert r.scale_bar_nm == 5.0  # the automatic length: the 1-2-5 length nearest a fifth of the 32 nm width
    assert render.FrameRenderer(da, RenderOptions(scale_bar_nm=None)).scale_bar_nm == 5.0
    assert render.FrameRenderer(da, RenderOptions(scale_bar_nm="auto")).scale_bar_nm == 5.0


@pytest.mark.parametrize(("w", "px", "bar_nm"), [(100, 1.0, 20), (256, 0.39, 20), (128, 2.34, 50), (200, 25.0, 1000), (64, 0.5, 5), (150, 2.0, 50)])
def test_automatic_scale_bar_is_a_round_fifth_of_the_width(w, px, bar_nm):
    """The default bar: the 1-2-5 length nearest width/5 (100 nm -> 20, 300 nm -> 50,
    5 um -> 1 um), without a warning, on every scan size (a fixed 100 nm bar did not fit
    a 100 nm HS-AFM frame)."""
    import warnings

    da = xafm.stack(np.zeros((1, 8, w)), pixel_size_nm=px)
    assert RenderOptions().scale_bar_nm == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = render.FrameRenderer(da, RenderOptions(timestamps=False, zmin=-1, zmax=1))
    assert r.scale_bar_nm == bar_nm
    assert 0.1 <= bar_nm / (w * px) <= 0.35
    idx = r.indices(next(r.frames())[1], 0)
    longest = max(max(_runs(row, FG_INDEX), default=0) for row in idx)
    assert abs(longest - bar_nm / px * r.k) <= 1


def test_timestamps_drawn_and_absent(rng):
    data = np.zeros((3, 64, 64))
    da = xafm.stack(data, pixel_size_nm=1.0, times=[0.0, 1.25, 12.4])
    on = render.FrameRenderer(da, RenderOptions(scale_bar=False, zmin=-1, zmax=1))
    off = render.FrameRenderer(da, RenderOptions(scale_bar=False, timestamps=False, zmin=-1, zmax=1))
    frames = [f for _, f in on.frames()]
    a, b = on.indices(frames[0], 0), on.indices(frames[1], 1)
    corner = (slice(0, 60), slice(0, 160))  # the timestamp's corner
    assert (a[corner] == FG_INDEX).sum() > 20
    assert not np.array_equal(a[corner], b[corner])
    c = off.indices(frames[0], 0)
    assert not np.any(c == FG_INDEX) and not np.any(c == BG_INDEX)
    assert np.array_equal(off.indices(frames[1], 1), c)


@pytest.mark.parametrize("side", [64, 200, 512, 2048])
def test_time_labels_from_cached_glyphs_match_pillow(side):
    """Labels composed glyph by glyph look like Pillow's whole-string rendering: about
    the same ink, on the same rows, outlined; Pillow places glyphs at fractional pen
    positions, so pixels may differ by one column a glyph."""
    ov = render.Overlay(side, side, times=["0.00 s"])
    for text in ("12.40 s", "0.37 s", "1234.5 s"):
        composed = ov._text_stamp(text, ov.margin, ov.margin)
        pillow = ov._place(ov._text_mask(text), ov.margin, ov.margin)
        a, b = np.zeros(side * side, np.uint8), np.zeros(side * side, np.uint8)
        composed.apply(a)
        pillow.apply(b)
        a, b = a.reshape(side, side), b.reshape(side, side)
        ink_a, ink_b = (a == FG_INDEX).sum(), (b == FG_INDEX).sum()
        assert abs(int(ink_a) - int(ink_b)) <= 0.1 * ink_b
        rows_a, rows_b = np.nonzero((a == FG_INDEX).any(axis=1))[0], np.nonzero((b == FG_INDEX).any(axis=1))[0]
        assert (rows_a[0], rows_a[-1]) == (rows_b[0], rows_b[-1])
        cols_a, cols_b = np.nonzero((a == FG_INDEX).any(axis=0))[0], np.nonzero((b == FG_INDEX).any(axis=0))[0]
        assert abs(int(cols_a[0]) - int(cols_b[0])) <= 1 and abs(int(cols_a[-1]) - int(cols_b[-1])) <= len(text)
        fg = a == FG_INDEX  # every ink pixel touches no background pixel directly
        outline = np.zeros_like(fg)
        outline[1:] |= fg[:-1]
        outline[:-1] |= fg[1:]
        outline[:, 1:] |= fg[:, :-1]
        outline[:, :-1] |= fg[:, 1:]
        assert np.all(a[outline & ~fg] == BG_INDEX)


def test_render_options_normalise_and_are_frozen():
    opts = RenderOptions(cmap=None, zmin=0, zmax=np.float32(2), scale_bar_nm=20, upscale=np.int64(3), scale_bar=np.bool_(False))
    assert opts == RenderOptions(cmap="xafm_afm", zmin=0.0, zmax=2.0, scale_bar_nm=20.0, upscale=3, scale_bar=False)
    assert type(opts.zmin) is float and type(opts.upscale) is int and type(opts.scale_bar) is bool
    assert RenderOptions(zmin=None, zmax="auto").zmin is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.cmap = "gray"
    assert dataclasses.replace(opts, cmap="gray").cmap == "gray" and opts.cmap == "xafm_afm"
    assert "nan_color" in RenderOptions.__doc__


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cmap": "nope"}, "unknown colormap 'nope'"),
        ({"cmap": 3}, "cmap must be"),
        ({"zmin": "automatic"}, "zmin must be a number, 'auto' or None"),
        ({"zmax": float("inf")}, "zmax must be finite"),
        ({"zmin": 3, "zmax": 1}, "zmin .* above zmax"),
        ({"scale_bar_nm": -1}, "scale_bar_nm must be .auto. or a positive number"),
        ({"scale_bar_nm": "long"}, "scale_bar_nm must be .auto. or a positive number"),
        ({"scale_bar": "yes"}, "scale_bar must be True or False"),
        ({"timestamps": 1}, "timestamps must be True or False"),
        ({"nan_color": "notacolour"}, "not a colour"),
        ({"upscale": 1.5}, "upscale must be 'auto' or a positive integer"),
        ({"upscale": True}, "upscale must be 'auto' or a positive integer"),
    ],
)
def test_render_options_refuse_bad_values_when_made(options, message):
    with pytest.raises(RenderError, match=message):
        RenderOptions(**options)


def test_renderer_takes_render_options_only():
    da = xafm.stack(np.zeros((1, 8, 8)), pixel_size_nm=1.0)
    with pytest.raises(RenderError, match="must be a RenderOptions"):
        render.FrameRenderer(da, {"cmap": "gray"})
    r = render.FrameRenderer(da, RenderOptions(cmap="gray", upscale=2, zmin=-1, zmax=1))
    assert r.options.cmap == "gray" and r.k == 2 and r.zscale() == (-1.0, 1.0)
    assert r.info()["cmap"] == "gray" and r.info()["nan_color"] == "#" + bytes(r.palette[NAN_INDEX]).hex()


def test_renderer_rejects_extra_dims_and_non_numeric():
    da = xafm.stack(np.zeros((2, 4, 4)), pixel_size_nm=1.0)
    extra = da.expand_dims(channel=2).transpose("time", "y", "x", "channel")
    with pytest.raises(StackError, match="extra dims \\('channel',\\)"):
        render.FrameRenderer(extra)


def test_yuv420_frame_is_bt601_limited_range():
    da = xafm.stack(np.zeros((1, 4, 4)), pixel_size_nm=1.0)
    r = render.FrameRenderer(da, RenderOptions(scale_bar=False, timestamps=False, upscale=1))
    idx = np.array([[FG_INDEX, FG_INDEX, BG_INDEX, BG_INDEX]] * 2, dtype=np.uint8)
    frame = r.yuv420(idx)
    assert frame.shape == (2 * 4 * 3 // 2,) and frame.dtype == np.uint8
    y, u, v = render.split_yuv420(frame, 2, 4)
    assert list(y[0]) == [235, 235, 16, 16]  # limited-range white and black
    assert u.shape == v.shape == (1, 2) and list(u[0]) == [128, 128] and list(v[0]) == [128, 128]
    np.testing.assert_array_equal(r.rgb(idx)[0, 0], [255, 255, 255])
    assert r.rgb0(idx).dtype == np.uint32


@given(st.integers(1, 6), st.integers(1, 9), st.data())
def test_yuv420_matches_per_pixel_bt601(half_h, half_w, data):
    """The pair look-up tables give what the BT.601 formulas give pixel by pixel: Y to
    the nearest integer, U and V the 2x2 mean to within the rounding of its x4 terms."""
    h, w = 2 * half_h, 2 * half_w
    idx = data.draw(hnp.arrays(np.uint8, (h, w)))
    r = render.FrameRenderer(xafm.stack(np.zeros((1, h, w)), pixel_size_nm=1.0), RenderOptions(scale_bar=False, timestamps=False, upscale=1))
    y, u, v = render.split_yuv420(r.yuv420(idx), h, w)
    rgb = r.palette[idx].astype(float) / 255
    luma = rgb @ [0.299, 0.587, 0.114]
    cb = 128 + 224 * (rgb[..., 2] - luma) / 1.772
    cr = 128 + 224 * (rgb[..., 0] - luma) / 1.402
    np.testing.assert_array_equal(y, np.round(16 + 219 * luma))
    for got, full in ((u, cb), (v, cr)):
        mean = full.reshape(half_h, 2, half_w, 2).mean(axis=(1, 3))
        assert np.max(np.abs(got - mean)) <= 0.5 + 1 / 8 + 1e-9


def test_map_ordered_keeps_order_and_bounds_work_in_flight():
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(i):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.002 * (i % 3))
        with lock:
            state["now"] -= 1
        return i * i

    assert list(render.map_ordered(work, range(30), n_workers=2, window=4)) == [i * i for i in range(30)]
    assert state["max"] <= 2


def test_progress_callback_and_text(capsys):
    seen = []
    p = render.Progress(lambda done, total: seen.append((done, total)), 3, "x")
    for _ in range(3):
        p.step()
    assert seen == [(1, 3), (2, 3), (3, 3)]
    t = render.Progress(True, 2, "GIF a.gif")
    t.step()
    t.step()
    assert "GIF a.gif: 2/2 frames (100%)" in capsys.readouterr().err


def test_colormaps_are_registered_by_importing_xafm():
    import subprocess
    import sys

    code = "import xafm, matplotlib; print(all(n in matplotlib.colormaps for n in ('xafm_afm', 'xafm_afm_uniform', 'xafm_afm_r')))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "True", res.stderr
