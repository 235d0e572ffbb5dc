"""``da.afm.profile`` and ``da.afm.kymograph``: values along a line in nm, interpolated,
lazily over time, as labeled ``(time, distance)`` DataArrays that xarray's own ``.plot()``
and ``k.afm.plot()`` draw with labelled axes. Expected values come from the analytic ramp
and from tifffile, never from the code under test."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import dask
import dask.array as dka
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tifffile

import xafm
from tests.helpers import raise_if_dask_computes, shared_file
from xafm.exceptions import StackError, XafmWarning

A, B, C = 0.8, -1.7, 5.0  # value = A * x + B * y + C * frame, x and y in nm


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ramp(frames=4, shape=(40, 60), pixel=(0.5, 0.7), origin=(3.0, -2.0), chunks=None):
    ny, nx = shape
    y = origin[0] + np.arange(ny) * pixel[0]
    x = origin[1] + np.arange(nx) * pixel[1]
    values = A * x[None, None, :] + B * y[None, :, None] + C * np.arange(frames)[:, None, None]
    data = dka.from_array(values, chunks=chunks) if chunks else values
    return xafm.stack(data, pixel_size_nm=pixel, origin_nm=origin, times=np.arange(frames) * 0.25,
                      frame_metadata=[{"line_rate": 100.0 + i} for i in range(frames)])  # fmt: skip


def _line(start, end, num):
    """Positions of ``num`` evenly spaced points from start to end, (y, x) nm, and the
    distances from start."""
    t = np.linspace(0, 1, num)
    ys, xs = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
    return ys, xs, t * math.hypot(end[0] - start[0], end[1] - start[1])


def test_profile_of_a_ramp_is_the_analytic_line():
    da = _ramp()
    start, end = (4.0, 1.0), (20.5, 35.0)  # (y, x) nm
    p = da.afm.profile(start, end, num=50)
    ys, xs, dist = _line(start, end, 50)
    assert p.dims == ("time", "distance") and p.shape == (4, 50)
    np.testing.assert_allclose(p.distance, dist, rtol=0, atol=1e-12)
    assert float(p.distance[-1]) == pytest.approx(math.hypot(16.5, 34.0), rel=1e-14)
    np.testing.assert_allclose(p.y, ys, atol=1e-12)
    np.testing.assert_allclose(p.x, xs, atol=1e-12)
    want = A * xs[None, :] + B * ys[None, :] + C * np.arange(4)[:, None]
    np.testing.assert_allclose(p.values, want, rtol=0, atol=1e-9)  # bilinear is exact on a plane
    near = da.afm.profile(start, end, num=50, method="nearest").values
    assert np.abs(near - want).max() <= (abs(A) * 0.7 + abs(B) * 0.5) / 2 + 1e-9  # at most half a pixel off
    cubic = da.afm.profile(start, end, num=50, method="cubic").values
    np.testing.assert_allclose(cubic, want, atol=0.01)  # the spline's edge effects: within a few pixels of the border
    np.testing.assert_allclose(cubic[:, 10:40], want[:, 10:40], atol=1e-6)  # exact away from it


def test_points_are_y_x_pairs_or_mappings_and_num_defaults_to_a_pixel_step():
    da = _ramp()
    by_pair = da.afm.profile((4.0, 1.0), (20.5, 35.0))
    by_name = da.afm.profile({"x": 1.0, "y": 4.0}, {"y": 20.5, "x": 35.0})
    xr_equal = by_pair.values.shape == by_name.values.shape and np.array_equal(by_pair.values, by_name.values)
    assert xr_equal and float(by_pair.x[0]) == 1.0 and float(by_pair.y[0]) == 4.0
    step = np.diff(by_pair.distance.values)
    length = math.hypot(16.5, 34.0)
    assert step.max() <= 0.5 + 1e-12  # samples at most one (finer, y) pixel apart ...
    assert by_pair.sizes["distance"] == math.ceil(length / 0.5) + 1  # ... and no more of them than that needs


def test_outside_the_frame_is_nan():
    da = _ramp()  # y 3.0 .. 22.5, x -2.0 .. 39.3 nm
    p = da.afm.profile((10.0, -12.0), (10.0, 10.0), num=23).isel(time=0)
    inside = p.x.values >= -2.0 - 1e-9
    assert inside.any() and not inside.all()
    assert np.isnan(p.values[~inside]).all() and np.isfinite(p.values[inside]).all()
    np.testing.assert_allclose(p.values[inside], A * p.x.values[inside] + B * 10.0, atol=1e-9)


def test_width_averages_parallel_lines_one_pixel_apart():
    y = np.arange(21.0)
    frame = np.broadcast_to(((y - 10.0) ** 2)[:, None], (21, 30))
    da = xafm.stack(frame[None], pixel_size_nm=1.0)
    p = da.afm.profile((10.0, 2.0), (10.0, 25.0), width=4.0).isel(time=0)
    offsets = np.arange(-2.0, 2.5, 1.0)  # lines one pixel apart across 4 nm: -2 .. 2
    np.testing.assert_allclose(p.values, np.mean(offsets**2), atol=1e-9)
    np.testing.assert_allclose(da.afm.profile((10.0, 2.0), (10.0, 25.0)).values, 0.0, atol=1e-12)
    np.testing.assert_allclose(p.y, 10.0)  # the coordinates are the centre line's


def test_coordinates_attrs_and_provenance():
    da = _ramp().afm.mask_threshold(10.0)
    p = da.afm.profile((4.0, 1.0), (20.5, 35.0))
    assert p.name == "height" and p.attrs["units"] == "nm" and p.attrs["channel"] == "height"
    assert "pixel_size_nm" not in p.attrs
    assert p.distance.attrs["units"] == "nm" and p.x.attrs["units"] == "nm" and p.y.attrs["units"] == "nm"
    assert p.x.dims == p.y.dims == ("distance",)
    np.testing.assert_array_equal(p.time, da.time)
    np.testing.assert_array_equal(p.coords["line_rate"], [100.0, 101.0, 102.0, 103.0])  # per-frame metadata kept
    assert not [c for c in p.coords if str(c).startswith("mask__")]  # masks are over (y, x): dropped
    rec = p.afm.provenance[-1]
    assert rec["type"] == "step" and rec["name"] == "profile" and rec["module"] == "xafm.processing.profile"
    assert rec["params"]["start_yx_nm"] == [4.0, 1.0] and rec["params"]["end_yx_nm"] == [20.5, 35.0]
    assert rec["index"] == 2  # after the mask step
    assert da.afm.kymograph((4.0, 1.0), (20.5, 35.0)).afm.provenance[-1]["name"] == "kymograph"
    assert len(da.afm.provenance) == 2  # the stack itself is untouched


def test_dask_stacks_stay_lazy_until_values():
    da = _ramp(frames=6, chunks=(2, 20, 30))
    with raise_if_dask_computes():
        p = da.afm.profile((4.0, 1.0), (20.5, 35.0), num=40)
        k = da.afm.kymograph((4.0, 1.0), (20.5, 35.0), num=40)
    assert p.chunks == ((2, 2, 2), (40,)) and k.chunks is not None
    computes = []

    class Count(dask.callbacks.Callback):
        def _start(self, dsk):
            computes.append(len(dsk))

    with Count():
        values = k.values
    assert len(computes) == 1
    ys, xs, _ = _line((4.0, 1.0), (20.5, 35.0), 40)
    np.testing.assert_allclose(values, A * xs[None, :] + B * ys[None, :] + C * np.arange(6)[:, None], atol=1e-9)


def test_real_ome_tif_profile_is_the_file_column():
    path = shared_file("other", "multi-channel.ome.tif")
    with pytest.warns(XafmWarning, match="no physical pixel size"):
        da = xafm.open(path)  # (time, channel, y, x), 1 nm pixels
    p = da.afm.profile((0.0, 300.0), (166.0, 300.0), method="nearest")
    assert p.dims == ("time", "channel", "distance") and p.sizes["distance"] == 167
    np.testing.assert_array_equal(p.values[0], tifffile.imread(path)[:, :, 300])


def test_kymograph_shape_coords_and_its_picture():
    da = _ramp(frames=5)
    k = da.afm.kymograph((4.0, 1.0), (4.0, 30.0), num=30)
    assert k.dims == ("time", "distance") and k.shape == (5, 30)
    np.testing.assert_array_equal(k.time, da.time)
    mesh = k.afm.plot()
    ax = mesh.axes
    y_lo, y_hi = ax.get_ylim()
    assert y_lo > y_hi and y_hi == pytest.approx(-0.125) and y_lo == pytest.approx(1.125)  # time downward: 0 s at the top
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(5, 30), k.values)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("distance (nm)", "time (s)", "height kymograph")
    assert mesh.colorbar.ax.get_ylabel() == "height (nm)" and mesh.get_cmap().name == "xafm_afm"
    want = np.percentile(k.values, [1, 99])
    assert mesh.get_clim() == pytest.approx(tuple(want), abs=(want[1] - want[0]) / 1000)
    with pytest.raises(StackError, match=r"got \('distance',\); a profile of one frame is a line"):
        k.isel(time=0).afm.plot()
    with pytest.raises(StackError, match="select one position of the other dims"):
        k.expand_dims(channel=["a", "b"], axis=1).afm.plot()
    with pytest.raises(StackError, match="kymograph needs a time dim"):
        xafm.processing.profile.kymograph(da.isel(time=0), (4.0, 1.0), (4.0, 30.0))


def test_xarray_plots_them_with_units():
    k = _ramp().afm.kymograph((4.0, 1.0), (20.5, 35.0))
    mesh = k.plot()
    assert mesh.axes.get_xlabel() == "distance along the line [nm]"
    assert mesh.axes.get_ylabel() == "time since first frame [s]"
    assert mesh.colorbar.ax.get_ylabel() == "height [nm]"
    plt.figure()
    (line,) = k.isel(time=0).plot()
    assert (line.axes.get_xlabel(), line.axes.get_ylabel()) == ("distance along the line [nm]", "height [nm]")


@pytest.mark.parametrize(
    ("start", "end", "options", "match"),
    [
        ((1.0, 1.0), (1.0, 1.0), {}, "same point"),
        ((1.0,), (2.0, 2.0), {}, r"start must be a \(y, x\) pair"),
        ({"x": 1.0}, (2.0, 2.0), {}, "exactly the keys 'x' and 'y'"),
        ((1.0, float("nan")), (2.0, 2.0), {}, "finite"),
        ((1.0, 1.0), (2.0, 2.0), {"method": "spline"}, "method must be one of"),
        ((1.0, 1.0), (2.0, 2.0), {"num": 1}, "num must be an integer >= 2"),
        ((1.0, 1.0), (2.0, 2.0), {"width": -1.0}, "width must be a finite number"),
    ],
)
def test_bad_lines_fail_clearly(start, end, options, match):
    with pytest.raises(StackError, match=match):
        _ramp().afm.profile(start, end, **options)
