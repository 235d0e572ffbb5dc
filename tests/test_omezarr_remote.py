"""OME-Zarr over URLs (issue 15): written to an S3 server (moto's, on 127.0.0.1) with
pyramids, shards and appends, also by the workers of a two-process ``LocalCluster``;
validated and read back; read over HTTP chunk by chunk; ``overwrite`` and the
no-overwrite guarantee as locally; a failed write leaves nothing at the destination.

The store is validated (yaozarrs, ome-zarr-models) and read by ome-zarr-py from a copy
downloaded with fsspec: the validators read local paths.
"""

from __future__ import annotations

import logging
import uuid

import dask
import dask.array as dsa
import numpy as np
import pytest
import s3fs

import xafm
from tests.servers import HttpServer, running
from tests.test_omezarr import validate_store
from xafm.core import model, sources
from xafm.formats import omezarr

pytest.importorskip("ome_zarr", reason="ome-zarr-py reads the stores back (pip install -e '.[test]')")


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket of the session's S3 server: (URL prefix, storage options, server)."""
    name = f"z{uuid.uuid4().hex[:12]}"
    s3_server.make_bucket(name)
    return f"s3://{name}", s3_server.storage_options, s3_server


def fs_of(options):
    return s3fs.S3FileSystem(**options)


def download(url, options, tmp_path):
    local = tmp_path / url.rsplit("/", 1)[-1]
    fs_of(options).get(url.split("://", 1)[1], str(local), recursive=True)
    return local


def stack(rng, n=4, ny=24, nx=20, **kw):
    data = rng.normal(size=(n, ny, nx)).astype(np.float32)
    return data, xafm.stack(data, pixel_size_nm=(2.0, 1.5), **kw)


def read_values(url):
    ds = omezarr.read(url)
    return ds[next(iter(ds.data_vars))]


def ome_zarr_py_levels(path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(path)))()))
    return [np.asarray(level) for level in node.data]


@pytest.mark.parametrize("version", ["0.5"])
def test_a_pyramid_with_masks_written_to_s3_validates_and_reads_back(bucket, tmp_path, rng, version):
    base, options, _ = bucket
    data = rng.normal(size=(4, 24, 20)).astype(np.float32)
    da = xafm.stack(data, pixel_size_nm=(2.0, 1.5), masks={"grain": data > 0.5}, layers={"raw": data * 2})
    url = f"{base}/run/a.ome.zarr"
    got = da.afm.to_ome_zarr(url, storage_options=options, levels=2, chunks=(1, 12, 20), version=version)
    assert got == url
    back = read_values(url)  # the options were remembered for the URL by the write
    np.testing.assert_array_equal(back.values, data)
    assert model.pixel_size_nm(back) == pytest.approx((2.0, 1.5))
    local = download(url, options, tmp_path)
    validate_store(local)
    levels = ome_zarr_py_levels(local)
    np.testing.assert_array_equal(levels[0], data)
    assert levels[1].shape == (4, 12, 10)
    np.testing.assert_allclose(levels[1][0, 0, 0], data[0, :2, :2].mean(), rtol=1e-5)


def test_shards_and_an_append_to_s3(bucket, tmp_path, rng):
    base, options, _ = bucket
    data, da = stack(rng, n=4, ny=16, nx=16)
    url = f"{base}/s.ome.zarr"
    da.afm.to_ome_zarr(url, storage_options=options, chunks=(1, 8, 8), shards=(2, 16, 16), levels=2)
    more = xafm.stack(data + 1, pixel_size_nm=(2.0, 1.5), times=np.arange(4, 8, dtype=float))
    more.afm.to_ome_zarr(url, storage_options=options, mode="a", append_dim="time")
    back = read_values(url)
    np.testing.assert_array_equal(back.values, np.concatenate([data, data + 1]))
    keys = fs_of(options).find(url.split("://", 1)[1])
    shard_keys = [k for k in keys if "/0/c/" in k]
    assert len(shard_keys) == 4  # 8 frames in shards of 2 whole frames: 4 objects, not 32 chunks
    validate_store(download(url, options, tmp_path))


def test_overwrite_and_the_no_overwrite_guarantee_hold_for_urls(bucket, rng):
    base, options, _ = bucket
    data, da = stack(rng)
    url = f"{base}/o.ome.zarr"
    da.afm.to_ome_zarr(url, storage_options=options, version="0.4")  # Zarr v2 over S3 too
    with pytest.raises(xafm.OutputExistsError, match="already exists"):
        (da + 1).afm.to_ome_zarr(url, storage_options=options)
    np.testing.assert_array_equal(read_values(url).values, data)
    (da + 1).afm.to_ome_zarr(url, storage_options=options, overwrite=True)
    np.testing.assert_array_equal(read_values(url).values, data + 1)
    # a prefix holding something else is not an OME-Zarr store: overwrite leaves it alone
    fs = fs_of(options)
    other = f"{base}/notes"
    fs.pipe_file(other.split("://", 1)[1] + "/readme.txt", b"keep me")
    with pytest.raises(xafm.OutputExistsError, match="not a Zarr store with OME-Zarr metadata"):
        da.afm.to_ome_zarr(other, storage_options=options, overwrite=True)
    assert fs.cat_file(other.split("://", 1)[1] + "/readme.txt") == b"keep me"


def test_a_failing_write_leaves_no_object_at_the_destination(bucket, rng):
    base, options, _ = bucket
    data = rng.normal(size=(6, 16, 16)).astype(np.float32)

    def block(i):
        if i == 4:
            raise RuntimeError("the instrument went away")
        return data[i : i + 1]

    parts = [dsa.from_delayed(dask.delayed(block)(i), (1, 16, 16), np.float32) for i in range(6)]
    da = xafm.stack(dsa.concatenate(parts), pixel_size_nm=1.0)
    url = f"{base}/f.ome.zarr"
    with pytest.raises(xafm.WriteError, match="the instrument went away"):
        da.afm.to_ome_zarr(url, storage_options=options, chunks=(1, 16, 16))
    assert fs_of(options).find(url.split("://", 1)[1]) == []


def test_a_two_worker_cluster_writes_its_own_chunks_to_s3(bucket, tmp_path, rng):
    from distributed import Client, LocalCluster, get_task_stream

    base, options, _ = bucket
    data = rng.normal(size=(8, 32, 32)).astype(np.float32)
    da = xafm.stack(dsa.from_array(data, chunks=(2, 32, 32)), pixel_size_nm=1.0)
    url = f"{base}/c.ome.zarr"
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=logging.ERROR) as cluster, Client(cluster):
        with get_task_stream() as ts:
            da.afm.to_ome_zarr(url, storage_options=options, chunks=(2, 32, 32), levels=2)
        writers = {t["worker"] for t in ts.data if "xafm-zarr-write" in str(t["key"])}
        assert len(writers) == 2  # both worker processes wrote chunks, each opening the URL itself
    np.testing.assert_array_equal(read_values(url).values, data)
    local = download(url, options, tmp_path)
    validate_store(local)
    np.testing.assert_array_equal(ome_zarr_py_levels(local)[0], data)


def test_a_lazy_read_over_http_fetches_only_the_frame_asked_for(tmp_path, rng):
    data, da = stack(rng, n=6, ny=16, nx=16)
    www = tmp_path / "www"
    www.mkdir()
    da.afm.to_ome_zarr(www / "h.ome.zarr", chunks=(1, 16, 16), levels=2)
    with running(HttpServer(www)) as http:
        url = http.url_of("h.ome.zarr")
        back = read_values(url)
        http.clear()
        frame = np.asarray(back[3].values)
        got = [r.path for r in http.requests]
    np.testing.assert_array_equal(frame, data[3])
    chunk_keys = [p for p in got if "/c/" in p]
    assert chunk_keys == ["/h.ome.zarr/0/c/3/0/0"], got  # that frame's chunk, no other
    assert all(p.endswith("zarr.json") for p in got if p not in chunk_keys), got  # and metadata only


def test_storage_options_travel_with_the_lazy_array(bucket, rng, monkeypatch):
    """A lazy array pickles the URL and its options: a process that never saw them reads."""
    import pickle

    base, options, _ = bucket
    data, da = stack(rng)
    url = f"{base}/p.ome.zarr"
    da.afm.to_ome_zarr(url, storage_options=options)
    blob = pickle.dumps(omezarr.ZarrArraySource(url, "0", data.shape, np.float32))
    monkeypatch.setattr(sources, "_options", {})  # as in a fresh worker process: nothing remembered
    with pytest.raises(Exception):  # noqa: B017 - without the options the server refuses (no credentials)
        omezarr.read(url)
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone[1:3, :, :], data[1:3])


def test_a_lazy_read_over_s3_is_two_requests_a_frame(bucket, rng):
    """The array's metadata and the frame's chunk: no HEAD before each GET, no other chunk,
    no check of the prefix (file_identity.PREFIX)."""
    base, options, server = bucket
    data, da = stack(rng, n=5, ny=16, nx=16)
    url = f"{base}/r.ome.zarr"
    da.afm.to_ome_zarr(url, storage_options=options, chunks=(1, 16, 16))
    back = read_values(url)
    server.clear()
    np.testing.assert_array_equal(back[2].values, data[2])
    got = [(r.method, r.path.split("/", 2)[-1]) for r in server.requests]
    assert got == [("GET", "r.ome.zarr/0/zarr.json"), ("GET", "r.ome.zarr/0/c/2/0/0")], got



def test_the_public_entry_points_open_ome_zarr_urls(bucket, tmp_path, rng):
    """xafm.open, the engine, xafm.channels and `xafm info` on s3:// and https:// stores,
    found by content (zarr.json read over the network), not only the format's own read."""
    import xarray as xr

    from xafm.cli import main

    base, options, _ = bucket
    data, da = stack(rng, n=5)
    da.afm.to_ome_zarr(f"{base}/e.ome.zarr", storage_options=options)
    da.afm.to_ome_zarr(tmp_path / "e.ome.zarr", fsync=False)
    with running(HttpServer(tmp_path)) as http:
        for url, opts in ((f"{base}/e.ome.zarr", options), (http.url_of("e.ome.zarr"), None)):
            lazy = xafm.open(url, lazy=True, storage_options=opts)
            np.testing.assert_array_equal(lazy.isel(time=3).values, data[3])
            np.testing.assert_array_equal(xafm.open(url, chunks={}, storage_options=opts).values, data)
            ds = xr.open_dataset(url, engine="xafm", storage_options=opts)
            np.testing.assert_array_equal(ds[next(iter(ds.data_vars))].values, data)
            assert xafm.channels(url, storage_options=opts) == list(ds.data_vars)
        assert main(["info", http.url_of("e.ome.zarr")]) == 0
