"""The xarray backend: entry point, guess_can_open, chunks, pickling, thread safety."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xafm
from xafm.formats import _lazy
from xafm.xarray_plugin import XafmBackendEntrypoint


def test_entry_point_is_registered():
    assert "xafm" in xr.backends.list_engines()
    assert isinstance(xr.backends.list_engines()["xafm"], XafmBackendEntrypoint)


@pytest.mark.parametrize("name,ok", [("a.h5", True), ("a.npz", True), ("a.OME.TIF", True), ("a.asd", True), ("a.001", True), ("a.txt", False), ("a.tif", False)])
def test_guess_can_open(tmp_path, name, ok):
    assert XafmBackendEntrypoint().guess_can_open(str(tmp_path / name)) is ok


def test_chunks_are_honoured_and_lazy_arrays_pickle(tmp_path, rng):
    data = rng.normal(size=(10, 6, 5)).astype(np.float32)
    path = xafm.stack(data, pixel_size_nm=1.0).afm.to_h5(tmp_path / "s.h5")
    da = xr.open_dataarray(path, engine="xafm", chunks={"time": 3})
    assert da.chunks[0] == (3, 3, 3, 1)
    restored = pickle.loads(pickle.dumps(da))
    np.testing.assert_array_equal(restored.values, data)
    src = _lazy.H5DatasetArray(str(path), "data")
    assert "File" not in repr(vars(src)), "no open handles kept"
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
