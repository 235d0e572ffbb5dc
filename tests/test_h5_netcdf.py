"""The HDF5 bundle as netCDF tools, xarray's engines, h5py and playNano's loader see it.

docs/formats.md, "HDF5 bundle": masks are int8 0/1 with CF flag attributes and xarray's
``dtype = "bool"`` marker (h5py's bool is an uncommitted enum that netCDF-C 4.9 skips and
netCDF4-python shows as ``_AnonymousEnum1``); masks stored as bool (playNano's bundles,
xafm's before) still read as masks.
"""

from __future__ import annotations

import h5py
import netCDF4
import numpy as np
import pytest
import xarray as xr

import xafm
from xafm.testing import write_playnano_h5

#: mask name -> the variable name it is stored under (percent-encoded, docs/data model)
MASKS = {"m": "m", "a/b": "a%2Fb", "..": "%2E%2E", "ü": "%C3%BC"}
SHAPE = (3, 4, 5)
PIXEL = 2.5
TIMES = [0.0, 0.5, 1.5]


@pytest.fixture(params=[None, "gzip"], ids=["contiguous", "gzip"])
def bundle(request, rng, tmp_path):
    """An xafm bundle with a kept layer and four masks, and the masks it was written from."""
    da = xafm.stack(rng.normal(size=SHAPE), pixel_size_nm=PIXEL, times=TIMES, channel="height").afm.remove_plane(keep_layer=True)
    for i, name in enumerate(MASKS):
        da = da.afm.mask_threshold(-0.6 + 0.4 * i, name=name)
    masks = {name: m.values for name, m in da.afm.masks.items()}
    for m in masks.values():  # equality below means something only for mixed masks
        assert m.dtype == bool and m.any() and not m.all()
    path = da.afm.to_h5(tmp_path / "video.h5", compression=request.param)
    return path, da, masks


def test_netcdf4_sees_masks_as_byte_variables(bundle):
    path, _, masks = bundle
    with netCDF4.Dataset(path) as nc:
        assert [(d.name, d.size) for d in nc.dimensions.values()] == [("time", 3), ("y", 4), ("x", 5)]
        group = nc["masks"]
        assert sorted(group.variables) == sorted(MASKS.values())
        assert group.enumtypes == {} and nc.enumtypes == {}  # no user-defined types anywhere
        for name, stored in MASKS.items():
            v = group[stored]
            assert v.dimensions == ("time", "y", "x") and v.dtype == np.int8
            np.testing.assert_array_equal(np.asarray(v[:]), masks[name].astype(np.int8))
            assert list(v.flag_values) == [0, 1] and v.flag_values.dtype == np.int8
            assert v.flag_meanings == "false true" and v.long_name == name


def test_netcdf4_sees_layers_and_root_with_dims_and_units(bundle):
    path, da, _ = bundle
    with netCDF4.Dataset(path) as nc:
        raw = nc["processed"]["raw"]
        assert raw.dimensions == ("time", "y", "x") and raw.dtype == np.float32
        assert raw.units == "nm" and raw.long_name == "raw"
        np.testing.assert_array_equal(raw[:], da.afm.layers["raw"].values.astype(np.float32))
        assert nc["data"].dimensions == ("time", "y", "x") and nc["data"].units == "nm"
        assert {k: nc[k].units for k in ("time", "y", "x", "timestamps")} == {"time": "s", "y": "nm", "x": "nm", "timestamps": "s"}
        np.testing.assert_allclose(nc["time"][:], TIMES)
        np.testing.assert_allclose(nc["x"][:], np.arange(5) * PIXEL)
        assert nc["timestamps"].dimensions == ("time",)
        assert nc.pixel_size_nm == PIXEL and nc.channel == "height"
        assert "_Netcdf4Dimid" not in nc["time"].ncattrs()  # netCDF-C's own attribute, hidden


@pytest.mark.parametrize("engine", ["netcdf4", "h5netcdf"])
def test_xarray_engines_open_the_masks_group_as_booleans(bundle, engine):
    path, da, masks = bundle
    with xr.open_dataset(path, group="masks", engine=engine) as ds:
        assert sorted(ds.data_vars) == sorted(MASKS.values())
        for name, stored in MASKS.items():
            v = ds[stored]
            assert v.dims == ("time", "y", "x") and v.dtype == bool
            np.testing.assert_array_equal(v.values, masks[name])
            assert v.attrs["flag_meanings"] == "false true" and v.attrs["long_name"] == name
    with xr.open_dataset(path, group="processed", engine=engine) as ds:
        assert ds["raw"].dims == ("time", "y", "x") and ds["raw"].dtype == np.float32 and ds["raw"].attrs["units"] == "nm"
        np.testing.assert_array_equal(ds["raw"].values, da.afm.layers["raw"].values.astype(np.float32))
    with xr.open_datatree(path, engine=engine) as tree:
        assert set(tree.children) == {"masks", "processed"}
        assert tree["masks"].dataset["m"].dtype == bool
        np.testing.assert_allclose(tree["masks"]["x"].values, np.arange(5) * PIXEL)  # the root's coords, inherited


def test_h5py_and_playnano_layout(bundle):
    """playNano's loader takes every member of /masks as ``ds[()].astype(bool)``: each
    must be a (time, y, x) dataset, nothing else may live there."""
    path, _, masks = bundle
    with h5py.File(path, "r") as f:
        members = dict(f["masks"].items())
        assert all(isinstance(ds, h5py.Dataset) for ds in members.values())
        loaded = {name: ds[()].astype(bool) for name, ds in members.items()}  # playNano 0.5's line
        assert set(loaded) == set(MASKS.values())
        for name, stored in MASKS.items():
            ds = f["masks"][stored]
            assert ds.dtype == np.int8 and ds.attrs["dtype"] == "bool"
            assert [ds.dims[i][0].name for i in range(3)] == ["/time", "/y", "/x"]
            np.testing.assert_array_equal(loaded[stored], masks[name])
        assert f["processed/raw"].dtype == np.float32 and f["data"].dtype == np.float32


def test_xafm_round_trip_keeps_masks_boolean(bundle):
    path, da, masks = bundle
    for back in (xafm.open(path), xafm.open(path, chunks={})):
        assert set(back.afm.masks) == set(MASKS)
        for name, values in masks.items():
            assert back.afm.masks[name].dtype == bool
            np.testing.assert_array_equal(back.afm.masks[name].values, values)
        np.testing.assert_array_equal(back.afm.layers["raw"].values, da.afm.layers["raw"].values.astype(np.float32))


def test_reads_bool_masks_xafm_wrote_before(tmp_path, rng):
    """Bundles from before the change store masks as h5py's bool (an uncommitted enum)."""
    da = xafm.stack(rng.normal(size=SHAPE), pixel_size_nm=1.0).afm.mask_threshold(0.0, name="m")
    path = da.afm.to_h5(tmp_path / "old.h5")
    with h5py.File(path, "r+") as f:  # the earlier writer's dataset: bool, scales attached, no flags
        del f["masks/m"]
        old = f["masks"].create_dataset("m", data=da.afm.masks["m"].values)
        for i, dim in enumerate(("time", "y", "x")):
            old.dims[i].attach_scale(f[dim])
        assert f["masks/m"].dtype == bool and f["masks/m"].id.get_type().get_class() == h5py.h5t.ENUM
    back = xafm.open(path)
    assert back.afm.masks["m"].dtype == bool
    np.testing.assert_array_equal(back.afm.masks["m"].values, da.afm.masks["m"].values)


def test_reads_playnano_bundle_masks(tmp_path, rng):
    data = rng.normal(size=SHAPE).astype(np.float32)
    mask = data > 0.2
    path = write_playnano_h5(tmp_path / "pn.h5", data, processed={"raw": data + 1}, masks={"step_2_mask_threshold": mask})
    with h5py.File(path, "r") as f:
        assert f["masks/step_2_mask_threshold"].dtype == bool  # playNano's own layout
    back = xafm.open(path)
    assert back.afm.masks["step_2_mask_threshold"].dtype == bool
    np.testing.assert_array_equal(back.afm.masks["step_2_mask_threshold"].values, mask)
