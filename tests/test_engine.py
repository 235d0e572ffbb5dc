"""The xarray backend: entry point, guess_can_open, chunks, pickling, thread safety."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xafm
import xafm.registry
from xafm.formats import _hdf5
from xafm.testing import write_asd
from xafm.xarray_plugin import XafmBackendEntrypoint


def test_entry_point_is_registered():
    assert "xafm" in xr.backends.list_engines()
    assert isinstance(xr.backends.list_engines()["xafm"], XafmBackendEntrypoint)


@pytest.fixture(scope="module")
def own_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    da = xafm.stack(np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4), pixel_size_nm=1.0)
    files = da.afm.export(folder, "s", ["h5", "npz", "tif", "zarr"])
    files["asd"] = write_asd(folder / "s.asd", np.zeros((2, 3, 4), np.int16))
    files["tif_upper"] = da.afm.to_ome_tiff(folder / "S.OME.TIF")
    return files


@pytest.mark.parametrize("kind", ["h5", "npz", "tif", "zarr", "asd", "tif_upper"])
def test_guess_can_open_claims_what_xafm_reads_by_content(own_files, kind):
    assert XafmBackendEntrypoint().guess_can_open(str(own_files[kind])) is True


@pytest.mark.parametrize("name", ["a.h5", "a.npz", "a.ome.tif", "a.asd", "a.001", "a.ome.zarr", "a.txt", "a.tif"])
def test_guess_can_open_refuses_names_without_content(tmp_path, name):
    assert XafmBackendEntrypoint().guess_can_open(str(tmp_path / name)) is False  # missing
    path = tmp_path / name
    if name.endswith("zarr"):
        path.mkdir()
    else:
        path.write_bytes(b"not what the name says" * 10)
    assert XafmBackendEntrypoint().guess_can_open(str(path)) is False


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory):
    """Files that xarray's own engines write and read: xafm must leave them alone."""
    folder = tmp_path_factory.mktemp("plain")
    ds = xr.Dataset({"v": (("a", "b"), np.arange(6.0).reshape(2, 3))}, coords={"a": [10, 20]}, attrs={"title": "plain"})
    ds.to_zarr(folder / "v2.zarr", zarr_format=2, consolidated=False)
    ds.to_zarr(folder / "v3.zarr", zarr_format=3, consolidated=False)
    ds.to_netcdf(folder / "plain.nc", engine="netcdf4")
    ds.to_netcdf(folder / "netcdf4.h5", engine="h5netcdf")
    return {p.name: p for p in folder.iterdir()}


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
@pytest.mark.parametrize("name", ["v2.zarr", "v3.zarr", "plain.nc", "netcdf4.h5"])
def test_other_engines_files_open_exactly_as_without_xafm(plain_files, name):
    """The engine xarray picks is the one it would pick without xafm installed, and the
    Dataset is the one that engine gives."""
    from xarray.backends.plugins import guess_engine

    path = plain_files[name]
    engines = xr.backends.list_engines()
    assert "xafm" in engines and not engines["xafm"].guess_can_open(str(path))
    without_xafm = next(e for e, backend in engines.items() if e != "xafm" and backend.guess_can_open(str(path)))
    assert guess_engine(str(path)) == without_xafm
    with xr.open_dataset(path) as got, xr.open_dataset(path, engine=without_xafm) as want:
        xr.testing.assert_identical(got, want)
        assert got.attrs["title"] == "plain"


def test_xafm_files_open_without_engine(own_files):
    """Where no standard engine claims a file first (HDF5 files go to netcdf4, as they did
    before xafm), xarray picks xafm by content and gets the stack."""
    from xarray.backends.plugins import guess_engine

    for kind in ("npz", "tif", "zarr", "asd"):
        path = own_files[kind]
        assert guess_engine(str(path)) == "xafm", kind
        with xr.open_dataset(path) as ds:
            assert list(ds.data_vars) == ["height"] if kind != "asd" else ["topography"]
    assert guess_engine(str(own_files["h5"])) == "netcdf4"  # an HDF5 file: netcdf4 asks first
    with xr.open_dataset(own_files["h5"]) as ds:  # and reads it as the netCDF-4 file it is
        assert ds["data"].dims == ("time", "y", "x")


def test_backend_declares_what_xarray_asks():
    be = XafmBackendEntrypoint
    assert be.description and be.url.startswith("https://")
    declared = set(be.open_dataset_parameters)
    options = {name for f in xafm.registry.readable() for name in f.read_options()}
    assert declared == {"filename_or_obj", "drop_variables", "storage_options"} | options
    assert {"channel", "on_truncated", "series", "level"} <= declared


def test_engine_refuses_unknown_options_and_channels(own_files):
    path = own_files["asd"]
    with pytest.raises(xafm.UnknownOptionError, match="'chanel' \\(did you mean 'channel'\\?\\)") as err:
        xr.open_dataset(path, engine="xafm", chanel="topography")
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
    with pytest.raises(xafm.ChannelError, match="nonexistent"):
        xr.open_dataset(path, engine="xafm", channel="nonexistent")


# xarray compares requested chunks with the preferred ones (docs/formats.md, "Chunks")
@pytest.mark.filterwarnings("ignore:The specified chunks separate the stored chunks")
def test_chunks_are_honoured_and_lazy_arrays_pickle(tmp_path, rng):
    data = rng.normal(size=(10, 6, 5)).astype(np.float32)
    path = xafm.stack(data, pixel_size_nm=1.0).afm.to_h5(tmp_path / "s.h5")
    da = xr.open_dataarray(path, engine="xafm", chunks={"time": 3})
    assert da.chunks[0] == (3, 3, 3, 1)
    restored = pickle.loads(pickle.dumps(da))
    np.testing.assert_array_equal(restored.values, data)
    src = _hdf5.H5DatasetArray(str(path), "data")
    assert "HDF5" not in repr(vars(src)), "no open handles kept"  # an h5py File shows as <HDF5 file ...>
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(src))[2:4, 1, ::2], data[2:4, 1, ::2])


@pytest.mark.parametrize("fmt", ["h5", "npz", "tif"])
def test_concurrent_reads_are_consistent(fmt, tmp_path, rng):
    data = rng.normal(size=(24, 16, 16)).astype(np.float32)
    da = xafm.stack(data, pixel_size_nm=1.0)
    path = da.afm.export(tmp_path, "s", [fmt])[fmt]
    lazy = xafm.open(path, chunks={"time": 1})
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: lazy.isel(time=t).values, range(24)))
    np.testing.assert_array_equal(np.stack(results), data)
    assert isinstance(lazy.data, dsa.Array)


def test_outer_indexing_matches_numpy(tmp_path, rng):
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    for fmt in ("h5", "npz", "tif"):
        path = xafm.stack(data, pixel_size_nm=1.0).afm.export(tmp_path / fmt, "s", [fmt])[fmt]
        ds = xr.open_dataarray(path, engine="xafm")  # lazily indexed, not dask
        got = ds.isel(time=[4, 0, 2], y=slice(1, 5, 2), x=3).values
        np.testing.assert_array_equal(got, data[[4, 0, 2]][:, 1:5:2, 3])
        ds.close()


def test_xafm_open_warns_only_when_chunks_split_what_the_file_stores_together(tmp_path):
    import warnings

    da = xafm.stack(np.zeros((8, 4, 4), np.float32), pixel_size_nm=1.0)
    h5 = da.afm.to_h5(tmp_path / "s.h5")  # contiguous: any whole-frame split is free
    zarr_store = da.afm.to_ome_zarr(tmp_path / "s.ome.zarr", chunks=(2, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert xafm.open(h5, chunks={"time": 3}).chunks[0] == (3, 3, 2)
        assert xafm.open(zarr_store, chunks={"time": 4}).chunks[0] == (4, 4)
    with pytest.warns(xafm.XafmWarning, match="split the 2 that the file stores together"):
        xafm.open(zarr_store, chunks={"time": 3})
