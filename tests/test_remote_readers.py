"""Every file reader but HDF5, NPZ, ASD and OME-Zarr reads URLs (issue 15): the samples of
those formats, put on a local S3 server and a local HTTP server, read back with the same
values, coords and attrs as from disk; a lazy remote open of a large OME-TIFF reads a few
byte ranges, and a frame about one more; frame folders and multi-file OME-TIFF sets read
from URL prefixes. Requests are counted on the server side (tests/servers.py)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

import xafm
from tests.samples import SAMPLES, Sample
from tests.servers import HttpServer, S3Server, running
from xafm.core import sources

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
pytest.importorskip("aiohttp")

#: The formats this file covers (HDF5, NPZ, ASD and OME-Zarr are tested elsewhere; frame
#: folders below, with what listing a prefix costs).
FORMATS = ("tif", "ome-companion", "tiff", "jpk", "park", "nid", "nhf", "mdt", "nanoscope", "ibw", "gwy", "sxm", "wsxm", "nd2")
REMOTE_SAMPLES = [s for s in SAMPLES if s.format in FORMATS]
BUCKET = "r2-readers"
#: The large synthetic OME-TIFF: frames of 256 x 256 uint16 (128 KiB each).
BIG_FRAMES, BIG_SIDE = 500, 256


# --------------------------------------------------------------------------------------
# servers and what they serve
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A folder of samples (and the large OME-TIFF, a set, a frame folder), served by an
    HTTP server, and an S3 server holding the same files in a bucket."""
    root = tmp_path_factory.mktemp("served")
    with running(HttpServer(root)) as http, running(S3Server()) as s3:
        s3.make_bucket(BUCKET)
        # one cached file system for the reads: a fresh S3 client costs ~1 s to set up
        sources.remember_options(f"s3://{BUCKET}", {k: v for k, v in s3.storage_options.items() if k != "skip_instance_cache"})
        yield root, http, s3


_UPLOADERS: dict[int, Any] = {}


def _upload(s3: S3Server, local: Path, key: str) -> str:
    import s3fs

    if id(s3) not in _UPLOADERS:  # one client for the module's uploads: each costs ~1 s to set up
        _UPLOADERS[id(s3)] = s3fs.S3FileSystem(**s3.storage_options)
    _UPLOADERS[id(s3)].put(str(local), f"{BUCKET}/{key}", recursive=local.is_dir())
    return f"s3://{BUCKET}/{key}"


def _place(served: Any, local: Path, key: str) -> dict[str, str]:
    """``local`` (a file or folder) copied under the HTTP root and uploaded to S3 as
    ``key``: its URL on each server."""
    root, http, s3 = served
    dest = root / key
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if local.is_dir() else shutil.copyfile)(local, dest)
    return {"http": http.url_of(key), "s3": _upload(s3, dest, key)}


# --------------------------------------------------------------------------------------
# comparing a remote read with a local one
# --------------------------------------------------------------------------------------
def _without(value: Any, named: tuple[str, ...]) -> Any:
    """An attr value with the files named as ``<source>`` (provenance records name the
    file read, and xafm's own files the file they were written to) and without the time
    of the read (provenance records say when)."""
    if not isinstance(value, str):
        return value
    for source in named:
        value = value.replace(source, "<source>")
    return re.sub(r'"timestamp": "[^"]*"', '"timestamp": "<when>"', value)


def _normalised(ds: xr.Dataset, *named: str) -> xr.Dataset:
    ds = ds.load()
    ds.attrs = {k: _without(v, named) for k, v in ds.attrs.items()}
    for name in list(ds.variables):
        ds[name].attrs = {k: _without(v, named) for k, v in ds[name].attrs.items()}
    return ds


def _read(sample: Sample, path: str) -> xr.Dataset:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warnings either way: the local tests check them
        return xafm.registry.get(sample.format).read(path)


_MADE: dict[str, tuple[Path, dict[str, str]]] = {}


def _made(served: Any, factory: pytest.TempPathFactory, sample: Sample) -> tuple[Path, dict[str, str]]:
    """The sample's file, made once, and its URL on each server; what the sample made
    beside it (a set's other members) goes too, a shared file goes alone."""
    if sample.id not in _MADE:
        made = factory.mktemp(sample.id.replace(".", "_"))
        local = Path(sample.make(made))
        where = f"samples/{sample.id}"
        if local.parent == made:
            urls = {k: f"{v}/{local.name}" for k, v in _place(served, made, where).items()}
        else:
            urls = _place(served, local, f"{where}/{local.name}")
        _MADE[sample.id] = (local.resolve(), urls)
    return _MADE[sample.id]


@pytest.mark.parametrize("server", ["http", "s3"])
@pytest.mark.parametrize("sample", REMOTE_SAMPLES, ids=[s.id for s in REMOTE_SAMPLES])
def test_a_sample_reads_the_same_from_a_url(served: Any, tmp_path_factory: pytest.TempPathFactory, sample: Sample, server: str) -> None:
    local, urls = _made(served, tmp_path_factory, sample)
    here = _normalised(_read(sample, str(local)), str(local))
    there = _normalised(_read(sample, urls[server]), urls[server], str(local))  # an export record names where xafm wrote it
    xr.testing.assert_identical(here, there)
    assert there[next(iter(there.data_vars))].size > 0


@pytest.fixture(scope="module")
def big(served: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict[str, str]]:
    values = (np.arange(BIG_FRAMES * BIG_SIDE * BIG_SIDE, dtype=np.uint32) % 65521).astype(np.uint16).reshape(BIG_FRAMES, BIG_SIDE, BIG_SIDE)
    path = tmp_path_factory.mktemp("big") / "big.ome.tif"
    xafm.stack(values, pixel_size_nm=2.0, channel="height").afm.to_ome_tiff(path, fsync=False)
    return values, _place(served, path, "big/big.ome.tif")


def _log(served: Any, server: str) -> Any:
    _, http, s3 = served
    return http if server == "http" else s3


def _gets(requests: list[Any]) -> list[Any]:
    return [r for r in requests if r.method == "GET"]


@pytest.mark.parametrize("server", ["http", "s3"])
def test_a_lazy_remote_open_reads_a_few_ranges_and_a_frame_about_one(served: Any, big: tuple[np.ndarray, dict[str, str]], server: str) -> None:
    values, urls = big
    log = _log(served, server)
    size = BIG_FRAMES * BIG_SIDE * BIG_SIDE * 2
    log.clear()
    ds = xafm.registry.get("tif").read(urls[server])
    at_open = log.requests
    assert len(at_open) <= 12, at_open
    assert sum(r.nbytes for r in at_open) < size / 50, at_open  # the header and IFD 0, not the pixels
    da = ds[next(iter(ds.data_vars))]
    assert da.shape == values.shape
    for i in (0, 7, 499, 250):
        log.clear()
        np.testing.assert_array_equal(da[i].values, values[i])
        got = log.requests
        assert 1 <= len(_gets(got)) <= 2 and len(got) <= 4, got
        assert sum(r.nbytes for r in got) < 3 * BIG_SIDE * BIG_SIDE * 2, got  # about the frame, not the file


def test_a_remote_lazy_array_pickles_and_reads_its_frames_itself(served: Any, big: tuple[np.ndarray, dict[str, str]]) -> None:
    import pickle

    values, urls = big
    ds = xafm.registry.get("tif").read(urls["s3"])
    var = ds[next(iter(ds.data_vars))].variable
    lazy = var._data
    while hasattr(lazy, "array"):  # xarray's lazy indexing wrappers
        lazy = lazy.array
    again = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(np.asarray(again[3:5]), values[3:5])


# --------------------------------------------------------------------------------------
# folders and multi-file sets over URL prefixes
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", ["http", "s3"])
def test_a_frame_folder_reads_from_a_url_prefix(served: Any, tmp_path_factory: pytest.TempPathFactory, server: str) -> None:
    sample = next(s for s in SAMPLES if s.format == "folder")
    local, urls = _made(served, tmp_path_factory, sample)
    log = _log(served, server)
    log.clear()
    there = _read(sample, urls[server])
    listings = [r for r in log.requests if r.method == "GET" and r.range is None and not r.path.rstrip("/").endswith(".jpk")]
    # the prefix listed (HTTP: then again at its redirect to '/'; S3: and asked after as the
    # folder's identity), never each entry asked for one by one
    assert 1 <= len(listings) <= 2, log.requests
    var = there[next(iter(there.data_vars))]
    assert var.shape[0] == len(os.listdir(local)) == 3
    assert sorted(str(f) for f in var.coords["source_file"].values) == sorted(os.listdir(local))
    here = _normalised(_read(sample, str(local)), str(local))
    xr.testing.assert_identical(here, _normalised(there, urls[server]))


def _ome_set(folder: Path) -> tuple[Path, np.ndarray]:
    """A set of two TIFFs written with tifffile whose OME-XML (in the first) maps the
    first 3 planes to its own pages and the next 3 to the second file's."""
    import tifffile

    rng = np.random.default_rng(15)
    planes = rng.integers(0, 4000, size=(6, 12, 10)).astype(np.uint16)
    u1, u2 = "urn:uuid:11111111-1111-1111-1111-111111111111", "urn:uuid:22222222-2222-2222-2222-222222222222"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" UUID="{u1}">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="10" SizeY="12" SizeZ="1" SizeC="1" SizeT="6"'
        ' PhysicalSizeX="0.5" PhysicalSizeXUnit="nm" PhysicalSizeY="0.5" PhysicalSizeYUnit="nm">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        f'<TiffData FirstT="0" IFD="0" PlaneCount="3"><UUID FileName="part1.ome.tif">{u1}</UUID></TiffData>'
        f'<TiffData FirstT="3" IFD="0" PlaneCount="3"><UUID FileName="part2.ome.tif">{u2}</UUID></TiffData>'
        "</Pixels></Image></OME>"
    )
    second = xml.replace(f'UUID="{u1}"', f'UUID="{u2}"', 1)
    tifffile.imwrite(folder / "part1.ome.tif", planes[:3], description=xml, metadata=None, photometric="minisblack")
    tifffile.imwrite(folder / "part2.ome.tif", planes[3:], description=second, metadata=None, photometric="minisblack")
    return folder / "part1.ome.tif", planes


@pytest.mark.parametrize("server", ["http", "s3"])
def test_a_multi_file_ome_tiff_set_reads_its_members_from_urls(served: Any, tmp_path_factory: pytest.TempPathFactory, server: str) -> None:
    folder = tmp_path_factory.mktemp("omeset") / "set"
    folder.mkdir()
    first, planes = _ome_set(folder)
    urls = _place(served, folder, "sets/set")
    url = sources.join(urls[server], first.name)
    ds = xafm.registry.get("tif").read(url)
    da = ds[next(iter(ds.data_vars))]
    np.testing.assert_array_equal(da.values, planes)
    here = _normalised(xafm.registry.get("tif").read(str(first.resolve())), str(folder.resolve()))
    xr.testing.assert_identical(here, _normalised(ds, urls[server]))


@pytest.mark.parametrize("server", ["http", "s3"])
def test_a_missing_member_of_a_remote_set_is_named(served: Any, tmp_path_factory: pytest.TempPathFactory, server: str) -> None:
    from xafm.exceptions import CorruptFileError

    folder = tmp_path_factory.mktemp("omeset_gone") / "gone"
    folder.mkdir()
    first, _ = _ome_set(folder)
    (folder / "part2.ome.tif").unlink()
    urls = _place(served, folder, "sets/gone")
    with pytest.raises(CorruptFileError, match="part2.ome.tif"):
        xafm.registry.get("tif").read(sources.join(urls[server], first.name))
