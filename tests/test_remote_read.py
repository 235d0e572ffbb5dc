"""Reading URLs (issue 15): the entry points, the core plumbing, and the HDF5-, NPZ- and
ASD-based readers, against real servers on 127.0.0.1 (moto's S3 server, Python's
http.server; tests/servers.py), counting on the server side what each open and read
fetches.

Every real and xafm-written sample of these formats is uploaded and read back from its
URL with the same values, coordinates and attributes as from the local file (the path in
the provenance records aside). Lazy opens of large synthetic files read a few byte
ranges, then a few per frame; a missing object, a wrong bucket and a closed port are xafm
errors naming the URL; an object overwritten after the open is a ``FileChangedError``;
a lazy remote stack pickles with its storage options (a fresh process, a two-worker
``LocalCluster``).
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xafm
from tests.samples import SAMPLES
from tests.servers import HttpServer, running
from xafm.core import sources
from xafm.core.contract import HEAD_BYTES
from xafm.exceptions import FileChangedError, ObjectNotFoundError, RemoteError
from xafm.testing.asd import write_asd
from xafm.xarray_plugin import XafmBackendEntrypoint

pytest.importorskip("s3fs", reason="s3fs reads s3:// URLs (pip install -e '.[remote]')") if not os.environ.get("CI") else None

#: The formats this module covers (other readers' remote tests live with them).
FORMATS = ("h5", "npz", "asd", "h5-jpk", "topostats")
MY_SAMPLES = [s for s in SAMPLES if s.format in FORMATS]
REPO = Path(__file__).resolve().parents[1]


def _options(s3) -> dict:
    """The S3 server's storage options, with fsspec's instance cache on (as users have it):
    xafm asks the store afresh where a version matters (``sources.info``)."""
    opts = dict(s3.storage_options)
    opts.pop("skip_instance_cache", None)
    return opts


_bucket_count = [0]


@pytest.fixture
def bucket(s3_server, request):
    """A fresh bucket and its fsspec file system: ``(name, fs)``."""
    import s3fs

    _bucket_count[0] += 1
    name = f"r1-{_bucket_count[0]}-{abs(hash(request.node.name)) % 10**6}"
    s3_server.make_bucket(name)
    return name, s3fs.S3FileSystem(**_options(s3_server))


def _upload(fs, local: Path, bucket: str, key: str) -> str:
    fs.put(str(local), f"{bucket}/{key}")
    return f"s3://{bucket}/{key}"


def _comparable(da: xr.DataArray) -> dict:
    """What must match between a local and a remote read: attrs with the provenance
    records' path and timestamp left out (they name where and when it was read)."""
    attrs = dict(da.attrs)
    raw = attrs.pop("xafm_provenance", None)
    recs = json.loads(raw) if raw else []
    for r in recs:
        if r.get("type") == "read":
            r.pop("path", None)
        r.pop("timestamp", None)
    attrs["records"] = recs
    return attrs


def _assert_same(remote: xr.DataArray, local: xr.DataArray) -> None:
    assert remote.dims == local.dims and remote.shape == local.shape
    np.testing.assert_array_equal(remote.values, local.values)
    assert set(remote.coords) == set(local.coords)
    for name in local.coords:
        np.testing.assert_array_equal(remote[name].values, local[name].values, err_msg=name)
        assert remote[name].attrs == local[name].attrs, name
    assert _comparable(remote) == _comparable(local)


def _local(sample, tmp_path: Path) -> Path:
    folder = tmp_path / "made"
    folder.mkdir(exist_ok=True)
    return Path(sample.make(folder))


# --------------------------------------------------------------------------------------
# every sample of these formats, over S3 and over HTTP
# --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("sample", MY_SAMPLES, ids=lambda s: s.id)
def test_sample_reads_back_from_s3_and_http(sample, tmp_path, s3_server, bucket):
    local = _local(sample, tmp_path)
    name, fs = bucket
    url = _upload(fs, local, name, f"deep/{local.name}")
    opts = _options(s3_server)
    want = xafm.open(local)
    _assert_same(xafm.open(url, storage_options=opts), want)
    lazy = xafm.open(url, chunks={}, storage_options=opts)
    assert lazy.chunks is not None
    _assert_same(lazy.compute(), want)
    assert xafm.channels(url, storage_options=opts) == xafm.channels(local)
    ds = xr.open_dataset(url, engine="xafm", storage_options=opts)
    np.testing.assert_array_equal(next(iter(ds.data_vars.values())).values, want.values)
    # the same file over plain HTTP (Range requests), with no storage options at all
    served = tmp_path / "served"
    served.mkdir()
    os.symlink(local, served / local.name)
    with running(HttpServer(served)) as http:
        _assert_same(xafm.open(http.url_of(local.name)), want)
        assert all(r.range is not None for r in http.requests if r.method == "GET"), "a GET without a Range: a whole-file download"


def test_file_url_is_the_local_path(tmp_path):
    path = write_asd(tmp_path / "v.asd", np.arange(2 * 4 * 4, dtype=np.int16).reshape(2, 4, 4))
    da = xafm.open(f"file://{path}", chunks={})
    np.testing.assert_array_equal(da.values, xafm.open(path).values)
    assert xafm.channels(f"file://{path}") == ["topography"]


# --------------------------------------------------------------------------------------
# lazy remote opens read byte ranges, not files
# --------------------------------------------------------------------------------------
N, NY, NX = 500, 128, 128


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 4096, size=(N, NY, NX), dtype=np.int16)
    asd = write_asd(folder / "big.asd", levels, frame_time_ms=20.0)
    h5 = folder / "big.h5"
    xafm.stack(levels.astype(np.float32), pixel_size_nm=1.0, times=np.arange(N) * 0.02).afm.to_h5(h5)
    return asd, h5


def _settled(server) -> list:
    """The server's requests once its log is complete (a request is logged after its
    response body has gone out, so the client may see the answer a moment earlier)."""
    import time

    seen, still = -1, 0
    while still < 3:
        time.sleep(0.05)
        now = len(server.requests)
        still = still + 1 if now == seen else 0
        seen = now
    return server.requests


def _cost(server) -> tuple[int, int]:
    reqs = _settled(server)
    return len(reqs), sum(r.nbytes for r in reqs if r.method == "GET")


@pytest.mark.parametrize("kind", ["asd", "h5"])
def test_lazy_remote_open_reads_a_few_ranges(kind, big_files, s3_server, bucket):
    local = big_files[0] if kind == "asd" else big_files[1]
    size = local.stat().st_size
    name, fs = bucket
    url = _upload(fs, local, name, local.name)
    opts = _options(s3_server)
    _settled(s3_server)
    s3_server.clear()
    da = xafm.open(url, chunks={}, storage_options=opts)
    n_open, bytes_open = _cost(s3_server)
    assert da.shape == (N, NY, NX)
    assert n_open <= 12 and bytes_open < 0.01 * size, (n_open, bytes_open, size)
    want = xafm.open(local, chunks={})
    frame_bytes = NY * NX * (2 if kind == "asd" else 4)
    for t in (0, 257, N - 1):
        _settled(s3_server)
        s3_server.clear()
        got = da.isel(time=t).compute()
        n_frame, bytes_frame = _cost(s3_server)
        _assert_same(got, want.isel(time=t).compute())
        # asd: the frame, and its 5 frame-header coordinates (3 requests each: check, GET, check)
        assert n_frame <= (18 if kind == "asd" else 10), (t, n_frame)
        assert bytes_frame < 3 * frame_bytes + 2**20, (t, bytes_frame)
    # ten frames in a row: one ranged GET for the data, not ten
    _settled(s3_server)
    s3_server.clear()
    da.isel(time=slice(100, 110)).variable.compute()
    gets = [r for r in _settled(s3_server) if r.method == "GET"]
    assert sum(r.nbytes for r in gets) < 10 * frame_bytes + 2**20
    if kind == "asd":
        assert len(gets) == 1


def test_guess_can_open_reads_only_the_head(big_files, s3_server, bucket):
    name, fs = bucket
    url = _upload(fs, big_files[0], name, "video.asd")
    fs.pipe(f"{name}/notes.h5", b"not hdf5 at all" * 1000)
    sources.remember_options(f"s3://{name}", _options(s3_server))
    _settled(s3_server)
    s3_server.clear()
    assert XafmBackendEntrypoint().guess_can_open(url)
    gets = [r for r in _settled(s3_server) if r.method == "GET"]
    assert [r.range for r in gets] == [(0, HEAD_BYTES - 1)]
    assert not XafmBackendEntrypoint().guess_can_open(f"s3://{name}/notes.h5")
    assert not XafmBackendEntrypoint().guess_can_open(f"s3://{name}/missing.asd")


# --------------------------------------------------------------------------------------
# errors name the URL
# --------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_object_and_bucket_are_xafm_errors(s3_server, bucket):
    name, _ = bucket
    opts = _options(s3_server)
    for url in (f"s3://{name}/nothing.asd", "s3://no-such-bucket-r1/video.asd"):
        with pytest.raises(ObjectNotFoundError, match=url.replace(".", r"\.")) as info:
            xafm.open(url, chunks={}, storage_options=opts)
        assert isinstance(info.value, FileNotFoundError) and info.value.path == url
        with pytest.raises(ObjectNotFoundError, match="no such object"):
            xafm.channels(url, storage_options=opts)


def test_unreachable_endpoint_is_an_xafm_error():
    port = _closed_port()
    url = "s3://bucket-r1/video.asd"
    opts = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    with pytest.raises(RemoteError, match=r"cannot reach the server") as info:
        xafm.open(url, chunks={}, storage_options=opts)
    assert info.value.path == url
    http = f"http://127.0.0.1:{port}/video.asd"
    with pytest.raises(RemoteError, match="cannot reach the server") as info:
        xafm.open(http)
    assert info.value.path == http


def test_missing_http_file(tmp_path):
    with running(HttpServer(tmp_path)) as http:
        with pytest.raises(ObjectNotFoundError, match="missing.h5"):
            xafm.open(http.url_of("missing.h5"))


def test_storage_options_are_for_urls(tmp_path):
    with pytest.raises(TypeError, match="storage_options are for URLs"):
        xafm.open(tmp_path / "x.asd", storage_options={"anon": True})


# --------------------------------------------------------------------------------------
# one version of a remote object
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".asd", ".h5", ".npz"])
def test_overwritten_object_is_file_changed(suffix, tmp_path, s3_server, bucket):
    name, fs = bucket
    rng = np.random.default_rng(4)
    levels = rng.integers(0, 4096, size=(4, 16, 16), dtype=np.int16)
    first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    if suffix == ".asd":
        write_asd(first, levels)
        write_asd(second, levels[::-1].copy())  # same size, other bytes
    else:
        fmt = suffix[1:]
        xafm.registry.write(fmt, xafm.stack(levels.astype(np.float32), pixel_size_nm=1.0), first)
        xafm.registry.write(fmt, xafm.stack(levels[::-1].astype(np.float32), pixel_size_nm=1.0), second)
    url = _upload(fs, first, name, f"v{suffix}")
    da = xafm.open(url, chunks={}, storage_options=_options(s3_server))
    np.testing.assert_array_equal(da.isel(time=0).values, xafm.open(first).isel(time=0).values)
    fs.put(str(second), f"{name}/v{suffix}")
    with pytest.raises(FileChangedError, match="overwritten") as info:
        _ = da.values
    assert info.value.path == url
    # a fresh open reads the new version
    np.testing.assert_array_equal(xafm.open(url).values, xafm.open(second).values)


# --------------------------------------------------------------------------------------
# pickled lazy stacks read the URL themselves, with its options
# --------------------------------------------------------------------------------------
def test_lazy_remote_stack_unpickles_in_a_fresh_process(tmp_path, s3_server, bucket, big_files):
    name, fs = bucket
    url = _upload(fs, big_files[0], name, "video.asd")
    da = xafm.open(url, chunks={}, storage_options=_options(s3_server)).isel(time=slice(10, 13))
    blob = tmp_path / "stack.pickle"
    blob.write_bytes(pickle.dumps(da))
    out = tmp_path / "values.npy"
    code = (
        "import pickle, sys, numpy as np; from xafm.core import sources\n"
        "assert not sources._options, 'a fresh process knows no options'\n"
        "da = pickle.loads(open(sys.argv[1], 'rb').read()); np.save(sys.argv[2], da.values)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code, str(blob), str(out)], check=True, env=env, timeout=120)
    np.testing.assert_array_equal(np.load(out), xafm.open(big_files[0]).isel(time=slice(10, 13)).values)


def test_lazy_remote_stack_on_a_two_worker_cluster(s3_server, bucket, big_files):
    distributed = pytest.importorskip("distributed")
    name, fs = bucket
    url = _upload(fs, big_files[1], name, "video.h5")
    da = xafm.open(url, chunks={"time": 50}, storage_options=_options(s3_server)).isel(time=slice(0, 100))
    want = xafm.open(big_files[1]).isel(time=slice(0, 100))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        _settled(s3_server)
        s3_server.clear()
        total = client.compute(da.data.sum(axis=(1, 2))).result()
        workers = set(client.run(os.getpid).values())
    assert len(workers) == 2
    np.testing.assert_allclose(total, want.values.sum(axis=(1, 2), dtype=np.float64), rtol=1e-5)
    assert any(r.method == "GET" for r in s3_server.requests)


# --------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------
def test_cli_info_reads_a_url(s3_server, bucket, big_files, capsys):
    from xafm.cli import main

    name, fs = bucket
    url = _upload(fs, big_files[0], name, "cli.asd")
    opts = {"key": "testing", "secret": "testing"}
    rc = main(["info", url, "--endpoint-url", s3_server.endpoint_url, "--storage-options", json.dumps(opts)])
    out = capsys.readouterr().out
    assert rc == 0 and f"file:        {url}" in out and "'time': 500" in out and "channels:    topography" in out
    rc = main(["info", f"s3://{name}/none.asd", "--endpoint-url", s3_server.endpoint_url, "--storage-options", json.dumps(opts)])
    err = capsys.readouterr().err
    assert rc == 2 and f"s3://{name}/none.asd" in err and "no such object" in err
