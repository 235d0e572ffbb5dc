"""What viewers show of an OME-Zarr xafm wrote: the omero windows (the animations'
automatic z-scale, from ``xafm.render.colorscale.zscale``, the real consumer of the same
percentiles), and the warning for foreign stores whose axes have no length unit."""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr

import xafm
from tests.helpers import shared_file
from tests.test_omezarr import validate_store
from xafm.exceptions import XafmWarning
from xafm.formats import omezarr
from xafm.render.colorscale import zscale
from xafm.testing.omezarr import write_foreign_ome_zarr


def ome_of(path) -> dict:
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    return attrs.get("ome", attrs)


def window(attrs: dict) -> dict:
    (ch,) = attrs["omero"]["channels"]
    assert ch["active"] is True and ch["color"] == "FFFFFF"
    return ch["window"]


def finite_range(a: np.ndarray) -> tuple[float, float]:
    fin = a[np.isfinite(a)]
    return float(fin.min()), float(fin.max())


def heights(rng, shape=(6, 40, 30), dtype=np.float32):
    """Heights with a few spikes, so the z-scale differs clearly from the range."""
    data = rng.normal(size=shape) * 2 + 50
    data.reshape(-1)[:: 997] = 400.0
    return data.astype(dtype)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
@pytest.mark.parametrize("backing", ["numpy", "dask", "lazy"])
def test_omero_windows_are_the_auto_zscale(version, backing, tmp_path, rng):
    data = heights(rng)
    data[1, 2, 3] = np.nan
    layer = -3 * data
    da = xafm.stack(data, pixel_size_nm=1.0, masks={"spikes": data > 300}, layers={"raw": layer})
    if backing == "dask":
        da = da.chunk({"time": 2})
    elif backing == "lazy":
        da = xr.open_dataarray(da.afm.to_h5(tmp_path / "s.h5"), engine="xafm")
        assert not isinstance(da.variable._data, np.ndarray)
    path = omezarr.write(da, tmp_path / "s.ome.zarr", version=version, levels=2)
    validate_store(path)
    win = window(ome_of(path))
    assert (win["start"], win["end"]) == pytest.approx(zscale(xafm.stack(data, pixel_size_nm=1.0)), rel=1e-12)
    assert (win["min"], win["max"]) == finite_range(data)
    assert win["max"] == 400.0 and win["end"] < 60  # the spikes do not wash out the contrast
    lw = window(ome_of(path / "layers" / "raw"))
    assert (lw["start"], lw["end"]) == pytest.approx(zscale(xafm.stack(layer, pixel_size_nm=1.0)), rel=1e-12)
    assert (lw["min"], lw["max"]) == finite_range(layer)
    labels = ome_of(path / "labels" / "spikes")
    assert "omero" not in labels and labels["image-label"]["colors"] == [{"label-value": 1, "rgba": omezarr.MASK_COLOR}]


def test_a_dask_stack_is_computed_once(tmp_path, rng):
    """The z-scale pass reads the store back: the stack's own graph runs once per block."""
    data = heights(rng, shape=(8, 32, 32))
    calls = []

    def expensive(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return block

    arr = dsa.from_array(data, chunks=(2, 32, 32)).map_blocks(expensive, dtype=data.dtype)
    path = omezarr.write(xafm.stack(arr, pixel_size_nm=1.0), tmp_path / "s.ome.zarr", chunks=(2, 32, 32), levels=2)
    assert sorted(calls) == [(i, 0, 0) for i in range(4)]
    assert (window(ome_of(path))["start"], window(ome_of(path))["end"]) == pytest.approx(zscale(xafm.stack(data, pixel_size_nm=1.0)), rel=1e-12)


def test_constant_and_nonfinite_stacks(tmp_path):
    const = xafm.stack(np.full((2, 4, 4), 7.0), pixel_size_nm=1.0)
    w = window(ome_of(omezarr.write(const, tmp_path / "c.ome.zarr")))
    assert (w["start"], w["end"]) == zscale(const) and w["start"] < 7.0 < w["end"]
    assert w["min"] <= w["start"] and w["max"] >= w["end"]
    nan = xafm.stack(np.full((2, 4, 4), np.nan), pixel_size_nm=1.0)
    w = window(ome_of(omezarr.write(nan, tmp_path / "n.ome.zarr")))
    assert (w["start"], w["end"], w["min"], w["max"]) == (0.0, 1.0, 0.0, 1.0) == (*zscale(nan), 0.0, 1.0)
    ints = xafm.stack(np.arange(2 * 10 * 10, dtype=np.int16).reshape(2, 10, 10), pixel_size_nm=1.0)
    w = window(ome_of(omezarr.write(ints, tmp_path / "i.ome.zarr")))
    want = np.percentile(np.arange(200), [1, 99])  # numpy's, to the histogram's 1/1000 of the spread
    assert (w["start"], w["end"]) == pytest.approx(want, abs=(want[1] - want[0]) / 1000)
    assert (w["min"], w["max"]) == (0.0, 199.0)


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_appending_widens_the_windows_to_the_union(version, tmp_path, rng):
    parts = [heights(rng, shape=(3, 16, 16)) + shift for shift in (0.0, 30.0, -10.0)]
    times = 0.0
    path = tmp_path / "g.ome.zarr"
    for i, part in enumerate(parts):
        da = xafm.stack(part, pixel_size_nm=1.0, times=times + np.arange(3) * 0.1, layers={"neg": -part})
        omezarr.write(da if i != 1 else da.chunk({"time": 1}), path, mode="a", append_dim="time", version=version)
        times += 1.0
    validate_store(path)
    allv = np.concatenate(parts)
    scales = [zscale(xafm.stack(p, pixel_size_nm=1.0)) for p in parts]
    win = window(ome_of(path))
    assert (win["start"], win["end"]) == pytest.approx((min(s[0] for s in scales), max(s[1] for s in scales)), rel=1e-12)
    exact = zscale(xafm.stack(allv, pixel_size_nm=1.0))
    assert win["start"] <= exact[0] and win["end"] >= exact[1]  # never narrower than the exact z-scale
    assert (win["min"], win["max"]) == finite_range(allv)
    lw = window(ome_of(path / "layers" / "neg"))
    assert (lw["min"], lw["max"]) == finite_range(-allv)
    assert lw["start"] == pytest.approx(min(zscale(xafm.stack(-p, pixel_size_nm=1.0))[0] for p in parts), rel=1e-12)


# --------------------------------------------------------------------------------------
# foreign stores without units
# --------------------------------------------------------------------------------------
SPACE = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]


@pytest.mark.parametrize("version", ["0.5", "0.4"])
@pytest.mark.parametrize(
    ("units", "warns"),
    [((None, None), True), (("pixel", "pixel"), True), (("micrometer", None), True), (("micrometer", "micrometer"), False)],
)
def test_axes_without_a_length_unit_warn_naming_the_store(version, units, warns, tmp_path, rng):
    axes = [dict(a, **({"unit": u} if u else {})) for a, u in zip(SPACE, units)]
    path = tmp_path / "f.ome.zarr"
    write_foreign_ome_zarr(path, version, axes, rng.random((6, 5)), [{"type": "scale", "scale": [0.5, 0.25]}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        da = xafm.open(path)
    ours = [w for w in caught if issubclass(w.category, XafmWarning)]
    if warns:
        (w,) = ours
        assert str(path) in str(w.message) and "no physical pixel size" in str(w.message)
        assert "'x'" in str(w.message)
    else:
        assert ours == []
    f = 1000.0 if units[0] == "micrometer" else 1.0
    assert float(da.y[1] - da.y[0]) == pytest.approx(0.5 * f)


def test_the_real_spatialdata_store_warns():
    with pytest.warns(XafmWarning, match="blobs_image_v04.ome.zarr.*no physical pixel size.*1 x 1 nm per pixel"):
        xafm.open(shared_file("other", "blobs_image_v04.ome.zarr"))


def test_xafm_stores_never_warn(tmp_path, rng):
    path = omezarr.write(xafm.stack(rng.random((1, 4, 4)), pixel_size_nm=1.0), tmp_path / "s.ome.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xafm.open(path)
