"""Single-file writers to a URL (issue 15): written locally, uploaded once complete
(:mod:`xafm.core.remote_output`), against moto's S3 server on 127.0.0.1.

Each output is downloaded with fsspec and read locally (xafm for the bundles, Pillow for
the GIF, the container's magic for the video). A refused, failed or interrupted write
leaves no object at the destination and no temporary folder behind.
"""

from __future__ import annotations

import glob
import os
import tempfile
import uuid

import dask
import dask.array as dsa
import numpy as np
import pytest
import s3fs

import xafm
from xafm import registry
from xafm.cli import main as cli_main

pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")


@pytest.fixture
def bucket(s3_server):
    name = f"w{uuid.uuid4().hex[:12]}"
    s3_server.make_bucket(name)
    return f"s3://{name}", s3_server.storage_options


def fs_of(options):
    return s3fs.S3FileSystem(**options)


def key(url):
    return url.split("://", 1)[1]


def uploads_left() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), ".xafm-upload-*"))


@pytest.fixture
def da(rng):
    data = rng.normal(size=(5, 16, 12)).astype(np.float32)
    return xafm.stack(data, pixel_size_nm=(2.0, 1.5))


@pytest.mark.parametrize(("method", "suffix"), [("to_h5", ".h5"), ("to_npz", ".npz"), ("to_ome_tiff", ".ome.tif")])
def test_a_bundle_written_to_s3_reads_back(bucket, da, tmp_path, method, suffix):
    base, options = bucket
    url = f"{base}/run 1/out{suffix}"
    before = uploads_left()
    assert getattr(da.afm, method)(url, storage_options=options) == url
    local = tmp_path / f"out{suffix}"
    fs_of(options).get_file(key(url), str(local))
    back = xafm.open(local)
    np.testing.assert_array_equal(back.values, da.values)
    assert uploads_left() == before


def test_animations_written_to_s3(bucket, da, tmp_path):
    from PIL import Image

    base, options = bucket
    fs = fs_of(options)
    da.afm.to_gif(f"{base}/a.gif", storage_options=options, zmin=-2.0, zmax=2.0)
    fs.get_file(key(f"{base}/a.gif"), str(tmp_path / "a.gif"))
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 5
    da.afm.to_video(f"{base}/a.mp4", storage_options=options, zmin=-2.0, zmax=2.0)
    assert fs.cat_file(key(f"{base}/a.mp4"), start=4, end=8) == b"ftyp"
    da.afm.to_frames(f"{base}/a_frames", storage_options=options, zmin=-2.0, zmax=2.0)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(key(f"{base}/a_frames")))
    assert len(names) == 5 and all(n.endswith(".png") for n in names)
    with pytest.raises(xafm.OutputExistsError):
        da.afm.to_frames(f"{base}/a_frames", storage_options=options)
    da[:2].afm.to_frames(f"{base}/a_frames", storage_options=options, overwrite=True, zmin=-2.0, zmax=2.0)
    assert len(fs.find(key(f"{base}/a_frames"))) == 2  # the old frames beyond the new ones went


def test_overwrite_false_refuses_an_existing_object(bucket, da):
    base, options = bucket
    fs = fs_of(options)
    url = f"{base}/x.h5"
    fs.pipe_file(key(url), b"someone else's")
    with pytest.raises(xafm.OutputExistsError, match="already exists"):
        da.afm.to_h5(url, storage_options=options)
    assert fs.cat_file(key(url)) == b"someone else's"
    da.afm.to_h5(url, storage_options=options, overwrite=True)
    assert fs.cat_file(key(url), start=0, end=8) == b"\x89HDF\r\n\x1a\n"


def test_an_object_put_there_during_the_write_is_not_replaced(bucket, da, monkeypatch):
    """The upload is a create-only put (If-None-Match: *): the server refuses it."""
    from xafm.core import remote_output

    base, options = bucket
    fs = fs_of(options)
    url = f"{base}/race.npz"
    real = remote_output.refuse_existing
    calls = []

    def late_checks(u, **kw):  # the check before the upload sees nothing; the put must refuse
        calls.append(u)
        if len(calls) == 2:
            fs.pipe_file(key(url), b"the other writer")
            return False
        return real(u, **kw)

    monkeypatch.setattr(remote_output, "refuse_existing", late_checks)
    with pytest.raises(xafm.OutputExistsError, match="appeared while"):
        da.afm.to_npz(url, storage_options=options)
    assert fs.cat_file(key(url)) == b"the other writer"


def _failing(data, at, exc):
    def block(i):
        if i == at:
            raise exc
        return data[i : i + 1]

    parts = [dsa.from_delayed(dask.delayed(block)(i), (1,) + data.shape[1:], data.dtype) for i in range(data.shape[0])]
    return xafm.stack(dsa.concatenate(parts), pixel_size_nm=1.0)


@pytest.mark.parametrize("exc", [RuntimeError("the disk went away"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("method", ["to_h5", "to_ome_tiff"])
def test_an_interrupted_write_leaves_no_object_and_no_temp(bucket, rng, exc, method):
    base, options = bucket
    da = _failing(rng.normal(size=(6, 8, 8)).astype(np.float32), 3, exc)
    url = f"{base}/i{method}.out"
    before = uploads_left()
    with pytest.raises(xafm.WriteError if isinstance(exc, Exception) else KeyboardInterrupt):
        getattr(da.afm, method)(url.replace(".out", ".h5" if method == "to_h5" else ".ome.tif"), storage_options=options)
    assert fs_of(options).find(key(base)) == []
    assert uploads_left() == before


def test_storage_options_are_for_urls(da, tmp_path):
    with pytest.raises(xafm.FormatError, match="storage_options are for URL"):
        registry.write("h5", da, tmp_path / "x.h5", storage_options={"anon": True})


def test_the_cli_exports_to_an_s3_prefix(bucket, da, tmp_path, capsys):
    import json

    base, options = bucket
    src = tmp_path / "in.h5"
    da.afm.to_h5(src)
    code = cli_main(["convert", str(src), "--export", "h5,tif", "--make-gif", "--output-folder", f"{base}/cli", "--storage-options", json.dumps(options)])
    assert code == 0
    names = sorted(p.rsplit("/", 1)[-1] for p in fs_of(options).find(key(f"{base}/cli")))
    assert names == ["in.gif", "in.h5", "in.ome.tif"]
    assert f"{base}/cli/in.h5" in capsys.readouterr().out
