"""The folder index of a URL prefix (``xafm.index("s3://bucket/run1")``, ``xafm index URL``;
docs/folder-index.md): real samples uploaded to moto's S3 server give the rows the same
folder gives on disk, from headers only (the server's requests are counted)."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest

import xafm
from tests import samples
from tests.helpers import shared_file
from xafm import folder_index
from xafm.cli import main
from xafm.core import sources
from xafm.exceptions import FileError, ObjectNotFoundError

#: (group in ../shared/data, name, where in the folder): large videos and HDF5 files at the
#: top, an OME-Zarr store (a folder format), a truncated file, and a subfolder.
LAYOUT = [
    ("afm", "asd_v0_sample.asd", ""),
    ("afm", "asd_sample_0.asd", ""),
    ("afm", "sample_0.h5-jpk", ""),
    ("afm", "nanosurf_driveafm.nid", ""),
    ("afm", "bruker_v97_header_only.002", ""),
    ("other", "blobs_image_v04.ome.zarr", ""),
    ("other", "multi-channel.ome.tif", "day2/"),
    ("other", "cluster.nd2", "day2/"),
    ("afm", "pyspm_test.sxm", "day2/"),
]
SUBFOLDER_FILES = {f"day2/{name}" for _, name, where in LAYOUT if where}


def _s3fs(server):
    import s3fs

    return s3fs.S3FileSystem(**server.storage_options)


@pytest.fixture(scope="module")
def run1(s3_server, tmp_path_factory):
    """The same folder on disk and under ``s3://<fresh bucket>/run1``: (local, url, size
    of each uploaded object by its path relative to the folder)."""
    local = tmp_path_factory.mktemp("run1")
    for group, name, where in LAYOUT:
        src, dst = shared_file(group, name), local / where / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    (local / "notes.txt").write_text("not AFM data\n")  # no format claims it: skipped
    bucket = f"i{uuid.uuid4().hex[:12]}"
    s3_server.make_bucket(bucket)
    files = [p for p in sorted(local.rglob("*")) if p.is_file()]
    rels = [p.relative_to(local).as_posix() for p in files]
    _s3fs(s3_server).put([str(p) for p in files], [f"{bucket}/run1/{rel}" for rel in rels])  # concurrently
    time.sleep(0.2)  # the counting layer logs a request once its response is sent
    return local, f"s3://{bucket}/run1", {rel: p.stat().st_size for rel, p in zip(rels, files)}


@pytest.fixture(scope="module")
def indexed(run1, s3_server):
    """The recursive index of the folder on disk and of the prefix, and the requests the
    prefix's index sent to the server (the readers imported first, by the local index)."""
    local, url, _ = run1
    want = xafm.index(local, recursive=True)
    s3_server.clear()
    got = xafm.index(url + "/", recursive=True, storage_options=s3_server.storage_options)
    time.sleep(0.1)
    return want, got, list(s3_server.requests)


def _records(df):
    return list(folder_index.records(df))


def test_a_prefix_gives_the_rows_of_the_same_folder_on_disk(run1, indexed):
    _, url, _ = run1
    want, got, _ = indexed
    assert _records(got) == _records(want)
    assert got.attrs["folder"] == url
    # and the rows are right, not only alike: the samples' reference sizes
    by_id = {s.id: s for s in samples.SAMPLES}
    for _, name, where in LAYOUT:
        row = got[got["path"] == where + name].iloc[0]
        if name == "bruker_v97_header_only.002":
            assert row["error"] == "CorruptFileError" and row["format"] == "nanoscope"
            continue
        expected = by_id[name].expected()
        assert row["error"] == "", (name, row["problem"])
        assert (row["frames"], row["ny"], row["nx"]) == (expected.shape[0], *expected.shape[-2:]), name
        assert row["channel"] == expected.channel, name
    # the store is one row, its arrays and metadata are not
    assert not any(p.startswith("blobs_image_v04.ome.zarr/") for p in got["path"])


def test_not_recursive_lists_the_top_prefix_and_counts_the_subfolder(run1, s3_server):
    local, url, _ = run1
    got = xafm.index(url, storage_options=s3_server.storage_options)
    assert _records(got) == _records(xafm.index(local))
    assert not SUBFOLDER_FILES & set(got["path"])
    assert "blobs_image_v04.ome.zarr" in set(got["path"])  # a folder format is a row anyway
    assert got.attrs["folders_not_searched"] == 1

def test_recursive_lists_the_subfolder_too(indexed):
    _, deep, _ = indexed
    assert SUBFOLDER_FILES <= set(deep["path"])
    assert deep.attrs["folders_not_searched"] == 0


def test_the_index_reads_headers_not_objects(run1, indexed):
    _, url, sizes = run1
    requests = indexed[2]
    assert requests, "the index made no request to the server"
    assert {r.method for r in requests} <= {"GET", "HEAD"}, "the index must not write"
    mib = 2**20
    for r in requests:
        if r.method == "GET":
            assert r.nbytes <= mib, r
            assert r.range is not None or r.nbytes < 64 * 1024, r  # whole GETs only for listings and metadata
    prefix = "/" + url.split("://", 1)[1] + "/"
    sent: dict[str, int] = {}
    for r in requests:
        if r.method == "GET" and r.path.startswith(prefix):
            sent[r.path[len(prefix) :]] = sent.get(r.path[len(prefix) :], 0) + r.nbytes
    # what is read of an object is its header (the open and the channel list each read it:
    # ~0.6 MiB of attributes for a JPK HDF5 file), not its size: the 16 MiB video reads no more
    assert max(sizes.values()) > 8 * mib
    for rel, nbytes in sizes.items():
        assert sent.get(rel, 0) < 2 * mib, (rel, sent.get(rel), nbytes)
        if nbytes > 4 * mib:
            assert sent.get(rel, 0) < nbytes / 10, (rel, sent.get(rel), nbytes)
    assert sum(r.nbytes for r in requests) < sum(sizes.values()) / 5


def test_a_missing_bucket_or_prefix_or_an_object_is_an_error_naming_the_url(run1, s3_server):
    _, url, _ = run1
    options = s3_server.storage_options
    for missing in (f"s3://nobucket{uuid.uuid4().hex[:8]}/run1", url + "/no-such-run"):
        with pytest.raises(ObjectNotFoundError, match=missing.replace(".", r"\.")):
            xafm.index(missing, storage_options=options)
    obj = url + "/asd_sample_0.asd"
    with pytest.raises(FileError, match="not a prefix") as err:
        xafm.index(obj, storage_options=options)
    assert obj in str(err.value)
    with pytest.raises(TypeError, match="for URLs"):
        xafm.index(str(run1[0]), storage_options=options)


def test_the_cli_indexes_a_url_with_the_url_options(run1, s3_server, capsys, monkeypatch):
    local, url, _ = run1
    url, local = url + "/day2", local / "day2"  # a smaller prefix
    want = json.loads(folder_index.to_json(xafm.index(local, recursive=True)))
    monkeypatch.setattr(sources, "_options", {})  # nothing remembered: the flags must reach the server
    # --endpoint-url joins the --storage-options given (moto refuses anonymous reads of
    # objects, so --anon is not tried here)
    keys = json.dumps({"key": "testing", "secret": "testing"})
    capsys.readouterr()
    assert main(["index", url, "-r", "--format", "json", "--storage-options", keys, "--endpoint-url", s3_server.endpoint_url]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out) == want
    # --storage-options as JSON alone
    monkeypatch.setattr(sources, "_options", {})
    assert main(["index", url, "--format", "csv", "--storage-options", json.dumps(s3_server.storage_options)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("path,format,") and [line.split(",")[0] for line in lines[1:]] == [r["path"] for r in want]
    # a missing prefix: exit status 2 and one line naming the URL
    assert main(["index", url + "/nothing-here", "--storage-options", json.dumps(s3_server.storage_options)]) == 2
    assert f"{url}/nothing-here" in capsys.readouterr().err


def test_an_http_folder_listing_is_indexed_as_the_folder_on_disk(tmp_path):
    """An HTTP server's folder is a page of links, not a prefix: it is listed all the same."""
    pytest.importorskip("aiohttp", reason="https:// URLs need aiohttp (pip install -e '.[test,remote]')")
    from tests.servers import HttpServer, running

    shutil.copyfile(shared_file("afm", "asd_sample_0.asd"), tmp_path / "asd_sample_0.asd")
    (tmp_path / "sub").mkdir()
    shutil.copyfile(shared_file("afm", "nanosurf_stm.nid"), tmp_path / "sub" / "nanosurf_stm.nid")
    want = xafm.index(tmp_path, recursive=True)
    with running(HttpServer(tmp_path)) as server:
        got = xafm.index(server.url, recursive=True)
        with pytest.raises(FileError, match="not a prefix"):
            xafm.index(server.url_of("asd_sample_0.asd"))
    assert list(got["path"]) == ["asd_sample_0.asd", "sub/nanosurf_stm.nid"]
    assert _records(got) == _records(want)


@pytest.mark.parametrize("companion", [True, False], ids=["companion", "members-only"])
def test_a_multi_file_ome_tiff_set_under_a_prefix_is_one_row(s3_server, tmp_path, companion):
    sample = next(s for s in samples.SAMPLES if s.id == ("omeset.companion.ome" if companion else "omeset_1.ome.tif"))
    samples.make(sample, tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 4 + companion
    bucket = f"k{uuid.uuid4().hex[:12]}"
    s3_server.make_bucket(bucket)
    _s3fs(s3_server).put([str(p) for p in files], [f"{bucket}/set/{p.name}" for p in files])
    got = xafm.index(f"s3://{bucket}/set", storage_options=s3_server.storage_options)
    assert list(got["path"]) == (["omeset.companion.ome"] if companion else ["omeset_0.ome.tif"])
    assert _records(got) == _records(xafm.index(tmp_path))
    assert got["frames"].iloc[0] == 4
