"""The data model: building stacks, validation, names, per-frame metadata, netCDF safety."""

from __future__ import annotations

import json
import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes
from xafm.core import conventions, model


def test_stack_layout(rng):
    data = rng.normal(size=(3, 4, 5))
    da = xafm.stack(data, pixel_size_nm=0.5, times=[0.0, 0.25, 1.0], channel="height", units="nm")
    assert da.dims == ("time", "y", "x") and da.name == "height"
    np.testing.assert_array_equal(da.values, data)
    np.testing.assert_array_equal(da["x"].values, [0, 0.5, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(da["y"].values, [0, 0.5, 1.0, 1.5])
    assert da["time"].dtype == np.float64 and da["x"].dtype == np.float64
    assert (da["time"].attrs["units"], da["y"].attrs["units"], da["x"].attrs["units"]) == ("s", "nm", "nm")
    assert da.attrs["units"] == "nm" and da.attrs["channel"] == "height"
    assert da.afm.provenance[0]["type"] == "create" and da.afm.provenance[0]["xafm_version"] == xafm.__version__
    assert da.afm.pixel_size_nm == 0.5


def test_default_times_and_times_from_frame_metadata():
    assert list(xafm.stack(np.zeros((3, 2, 2)), pixel_size_nm=1)["time"].values) == [0, 1, 2]
    fm = [{"timestamp": 0.0, "line_rate": 5.0}, {"timestamp": 0.4, "line_rate": 5.0}]
    da = xafm.stack(np.zeros((2, 2, 2)), pixel_size_nm=1, frame_metadata=fm)
    assert list(da["time"].values) == [0.0, 0.4] and "timestamp" not in da.coords


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"data": np.zeros((2, 2))}, "3-D.*data\\[None\\]"),
        ({"data": np.zeros((1, 2, 2, 2))}, "3-D"),
        ({"pixel_size_nm": 0}, "positive and finite"),
        ({"pixel_size_nm": -1.0}, "positive and finite"),
        ({"pixel_size_nm": np.nan}, "positive and finite"),
        ({"pixel_size_nm": np.inf}, "positive and finite"),
        ({"pixel_size_nm": "big"}, "must be a number"),
        ({"times": [0, 1]}, "shape \\(2,\\), expected \\(3,\\)"),
        ({"times": [0, 1, 1]}, "strictly increasing"),
        ({"times": [0, 2, 1]}, "strictly increasing"),
        ({"times": [0, np.nan, 2]}, "finite"),
        ({"data": np.zeros((3, 2, 2), dtype=complex)}, "numeric"),
        ({"data": np.zeros((0, 2, 2))}, "at least one frame"),
        ({"channel": ""}, "non-empty"),
        ({"channel": "a/b"}, "netCDF"),
        ({"channel": "x"}, "clashes"),
        ({"frame_metadata": [{}]}, "1 entries for 3 frames"),
        ({"masks": {"m": np.zeros((3, 2, 3), bool)}}, "mask 'm' has shape"),
        ({"masks": {"": np.zeros((3, 2, 2), bool)}}, "non-empty"),
        ({"attrs": {"flag": True}}, "not netCDF-safe"),
        ({"attrs": {"nested": {"a": 1}}}, "JSON string"),
    ],
)
def test_bad_arguments_raise_stack_error(kwargs, match):
    args = {"data": np.zeros((3, 2, 2)), "pixel_size_nm": 1.0}
    args.update(kwargs)
    data = args.pop("data")
    with pytest.raises(xafm.StackError, match=match) as err:
        xafm.stack(data, **args)
    assert isinstance(err.value, ValueError) and isinstance(err.value, xafm.XafmError)


def test_dask_stays_lazy():
    arr = dsa.zeros((10, 8, 8), chunks=(2, 8, 8))
    with raise_if_dask_computes():
        da = xafm.stack(arr, pixel_size_nm=1.0, masks={"m": arr > 0}, layers={"raw": arr})
    assert isinstance(da.data, dsa.Array) and isinstance(da.afm.masks["m"].data, dsa.Array)


@given(st.text(min_size=1, max_size=20))
def test_name_encoding_is_reversible_and_path_safe(name):
    enc = conventions.encode_name(name)
    assert conventions.decode_name(enc) == name
    assert enc and "/" not in enc and "." not in enc and enc.isascii()
    assert enc not in ("..", ".")


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "line_rate": st.floats(0.1, 1e5),
                "scan_direction": st.sampled_from(["up", "down"]),
                "count": st.integers(-(2**40), 2**40),
                "maybe": st.none() | st.floats(-5, 5),
                "mixed": st.none() | st.text(max_size=4),
                "flag": st.booleans(),
                "nested": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            }
        ),
        min_size=3,
        max_size=3,
    )
)
def test_frame_metadata_round_trips_through_coords(frames):
    da = xafm.stack(np.zeros((3, 2, 2)), pixel_size_nm=1.0, frame_metadata=frames)
    back = da.afm.frame_metadata
    for got, want in zip(back, frames):
        assert got.pop("timestamp") in (0.0, 1.0, 2.0)
        assert got == want
    # slicing keeps them aligned
    assert da.isel(time=[2, 0]).afm.frame_metadata[0]["count"] == frames[2]["count"]


def _every_kind_of_stack():
    rng = np.random.default_rng(0)
    fm = [{"line_rate": 10.0, "scan_direction": None if i else "up", "nested": {"a": i}, "flag": bool(i)} for i in range(3)]
    base = xafm.stack(rng.normal(size=(3, 4, 5)), pixel_size_nm=1.5, frame_metadata=fm, channel="Höhe",
                      attrs={"acquisition_json": json.dumps({"instrument": "x"})})
    done = base.afm.remove_plane(keep_layer=True).afm.align_rows(keep_layer=True).afm.mask_threshold(0.0, name="a/b ..")
    lazy = xafm.stack(dsa.from_array(rng.normal(size=(3, 4, 5)), chunks=(1, 4, 5)), pixel_size_nm=2.0).afm.remove_plane(keep_layer=True)
    return {"created": base, "processed": done, "dask": lazy}


@pytest.mark.parametrize("kind", ["created", "processed", "dask"])
def test_plain_to_netcdf_and_to_zarr_work(kind, tmp_path):
    da = _every_kind_of_stack()[kind]
    for key, value in da.attrs.items():
        assert isinstance(value, (str, int, float, np.integer, np.floating)), key
    da.to_netcdf(tmp_path / "s.nc")
    with xr.open_dataarray(tmp_path / "s.nc") as back:
        np.testing.assert_allclose(back.values, da.values)
        assert json.loads(back.attrs["xafm_provenance"]) == da.afm.provenance
        assert set(back.afm.masks) == set(da.afm.masks) and set(back.afm.layers) == set(da.afm.layers)
    da.to_zarr(tmp_path / "s.zarr")
    back = xr.open_dataarray(tmp_path / "s.zarr", engine="zarr")
    np.testing.assert_allclose(back.values, da.values)
    assert back.afm.frame_metadata == da.afm.frame_metadata


def test_check_stack_names_extra_dims():
    da = xr.DataArray(np.zeros((2, 3, 4, 5)), dims=("c", "time", "y", "x"))
    with pytest.raises(xafm.StackError, match="extra dims \\('c',\\)"):
        da.afm.to_h5("never.h5")


def test_pixel_size_follows_slicing():
    da = xafm.stack(np.zeros((1, 8, 8)), pixel_size_nm=0.5)
    assert da[:, ::2, ::2].afm.pixel_size_nm == 1.0
    assert model.pixel_size_nm(da[:, :1, :1]) == (0.5, 0.5)
    with pytest.raises(xafm.StackError, match="not evenly spaced"):
        model.pixel_size_nm(da.isel(x=[0, 1, 5]))


@pytest.mark.parametrize(
    "values",
    [np.arange(3.0), np.arange(3, dtype=np.float32), np.arange(3, dtype=np.float16), np.arange(3), np.array([True, False]),
     np.array(["a", "b"]), model._vlen(["a", "b"]), np.array([0.5, "a"], dtype=object)],
    ids=["f8", "f4", "f2", "i8", "bool", "U", "vlen", "mixed-object"],
)  # fmt: skip
def test_variable_is_what_xarray_makes(values):
    # model.variable skips xarray's duck-array checks (they import dask and pint); what it
    # makes must be what xr.Variable makes, as a coordinate and as a dimension coordinate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # xarray's float16 index cast
        ours = xr.Dataset(coords={"d": model.variable(("d",), values, {"u": 1}, index=True), "c": model.variable(("d",), values)})
        theirs = xr.Dataset(coords={"d": xr.Variable(("d",), values, {"u": 1}), "c": xr.Variable(("d",), values)})
    assert ours.identical(theirs)
    assert ours.indexes["d"].dtype == theirs.indexes["d"].dtype and ours["c"].dtype == theirs["c"].dtype
