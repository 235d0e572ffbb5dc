"""OME-TIFF written by other tools: the real Bio-Formats file, files tifffile writes with
every OME dim combination, RGB, compression, missing planes, and damaged pages."""

from __future__ import annotations

import itertools
import json
import struct

import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError, FormatError, XafmWarning
from xafm.testing.ometiff import write_foreign_ome_tiff

SAMPLE = ("other", "multi-channel.ome.tif")
NO_SIZE = "no physical pixel size"


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*SAMPLE)
    ref = reference("other")["multi-channel.ome.tif"]
    with pytest.warns(XafmWarning, match=NO_SIZE):
        da = xafm.open(path)
    assert da.dims == ("time", "channel", "y", "x") and da.shape == (1,) + tuple(ref["shape"])
    assert da.dtype == np.dtype(ref["dtype"])  # big-endian int8 on disk
    v = da.values
    assert (v.min(), v.max()) == (ref["min"], ref["max"])
    assert v.mean() == pytest.approx(ref["mean"], rel=1e-12)
    np.testing.assert_array_equal(v[0], tifffile.imread(path))
    assert da.channel.values.tolist() == ["C0", "C1", "C2"]  # the file names no channel
    assert da.name == "intensity" and da.attrs["units"] == "" and da.attrs[conventions.PIXEL_SIZE_ATTR] == 1.0
    acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
    assert acq["creator"] == "OME Bio-Formats 5.2.2" and acq["pixels"]["BigEndian"] == "true"
    assert provenance.records(da)[-1]["format"] == "tif"


@pytest.mark.filterwarnings("ignore:.*no physical pixel size")
def test_real_file_lazy_engine_and_channels():
    path = shared_file(*SAMPLE)
    ref = tifffile.imread(path)
    assert xafm.channels(path) == ["C0", "C1", "C2"]
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(channel=[2, 0], y=slice(3, 90, 7), x=[400, 5])
        lazy_one = xr.open_dataarray(path, engine="xafm", channel="C1", chunks={})
    np.testing.assert_array_equal(part.values[0], ref[[2, 0]][:, 3:90:7][:, :, [400, 5]])
    assert float(lazy.mean()) == pytest.approx(47.49190912025607, rel=1e-12)
    assert lazy_one.dims == ("time", "y", "x") and lazy_one.name == "C1"
    np.testing.assert_array_equal(lazy_one.values[0], ref[1])
    with pytest.raises(ChannelError, match=r"no channel 'DAPI'; available: \['C0', 'C1', 'C2'\]"):
        xafm.open(path, channel="DAPI")
    with pytest.raises(FormatError, match="no OME image 3"):
        xafm.open(path, series=3)


# --------------------------------------------------------------------------------------
# files tifffile writes
# --------------------------------------------------------------------------------------
AXES = ["YX", "TYX", "ZYX", "CYX", "TZYX", "TCYX", "ZCYX", "CZYX", "TZCYX", "CTZYX"]


@settings(max_examples=30)
@given(
    data=st.data(),
    axes=st.sampled_from(AXES),
    dtype=st.sampled_from(["u1", "i2", "u2", "f4", "f8"]),
    compression=st.sampled_from([None, "zlib"]),
)
def test_every_dim_combination(tmp_path_factory, data, axes, dtype, compression):
    shape = tuple(data.draw(st.integers(1, 3)) if a in "TZC" else data.draw(st.integers(1, 6)) for a in axes)
    arr = (np.arange(int(np.prod(shape))) % 120).astype(dtype).reshape(shape)
    p = tmp_path_factory.mktemp("ome") / "a.ome.tif"
    tifffile.imwrite(p, arr, ome=True, compression=compression, photometric="minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 2.0, "PhysicalSizeYUnit": "nm"})
    da = xafm.open(p)
    sizes = dict(zip(axes, shape))
    want_dims = ["time"] + [n for a, n in (("Z", "z"), ("C", "channel")) if sizes.get(a, 1) > 1] + ["y", "x"]
    assert list(da.dims) == want_dims
    order = [a for a in "TZCYX" if a in axes]
    want = arr.transpose([axes.index(a) for a in order])
    keep = [a for a in order if a in "YXT" or sizes[a] > 1]
    want = want.reshape([sizes[a] for a in keep]) if "T" in axes else want.reshape([1] + [sizes[a] for a in keep])
    np.testing.assert_array_equal(da.values, want)
    assert model.pixel_size_nm(da) == (2.0, 500.0)
    if "channel" in da.dims:
        first = xafm.open(p, channel="C1")
        np.testing.assert_array_equal(first.values, np.take(want, 1, axis=list(da.dims).index("channel")))


def test_times_z_names_and_units(tmp_path):
    arr = np.arange(2 * 3 * 2 * 4 * 5, dtype=np.uint16).reshape(2, 3, 2, 4, 5)
    n = 2 * 3 * 2
    deltas = [1.5 + 250.0 * (i // 6) for i in range(n)]  # ms, per plane (t slowest)
    p = write_foreign_ome_tiff(tmp_path / "t.ome.tif", arr, "TZCYX", PhysicalSizeX=0.5, PhysicalSizeXUnit="µm", PhysicalSizeY=0.25,
                               PhysicalSizeZ=2.0, PhysicalSizeZUnit="nm", Channel={"Name": ["DAPI", "GFP"]},
                               Plane={"DeltaT": deltas, "DeltaTUnit": ["ms"] * n})
    da = xafm.open(p)
    assert da.dims == ("time", "z", "channel", "y", "x")
    np.testing.assert_allclose(da.time.values, [0.0, 0.25])
    np.testing.assert_allclose(da.coords["delta_t_s"].values, [0.0015, 0.2515])
    np.testing.assert_allclose(da.z.values, [0.0, 2.0, 4.0])
    assert da.channel.values.tolist() == ["DAPI", "GFP"] and xafm.channels(p) == ["DAPI", "GFP"]
    assert model.pixel_size_nm(da) == (250.0, 500.0)
    assert da.attrs[conventions.PIXEL_SIZE_Y_ATTR] == 250.0
    gfp = xafm.open(p, channel="GFP")
    assert gfp.name == "GFP" and gfp.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(gfp.values, arr[:, :, 1])
    # every attr and coordinate is netCDF-safe
    da.to_netcdf(tmp_path / "t.nc", engine="h5netcdf")
    with xr.open_dataarray(tmp_path / "t.nc", engine="h5netcdf") as back:
        np.testing.assert_array_equal(back.values, da.values)
        assert back.channel.values.tolist() == ["DAPI", "GFP"] and back.attrs["units"] == ""
        assert provenance.records(back)[-1]["type"] == "read"
    # TimeIncrement when planes carry no DeltaT
    p2 = write_foreign_ome_tiff(tmp_path / "inc.ome.tif", arr[:, 0, 0], "TYX", TimeIncrement=2.0, TimeIncrementUnit="min", PhysicalSizeX=1.0)
    da2 = xafm.open(p2)
    assert da2.dims == ("time", "y", "x") and da2.time.values.tolist() == [0.0, 120.0]
    assert model.pixel_size_nm(da2) == (1000.0, 1000.0)  # Y falls back to X


def test_rgb_samples(tmp_path, rng):
    arr = rng.integers(0, 255, size=(2, 4, 5, 3), dtype=np.uint8)
    p = write_foreign_ome_tiff(tmp_path / "rgb.ome.tif", arr, "TYXS", PhysicalSizeX=1.0, PhysicalSizeY=1.0)
    da = xafm.open(p)
    assert da.dims == ("time", "sample", "y", "x")
    np.testing.assert_array_equal(da.values, arr.transpose(0, 3, 1, 2))
    assert xafm.channels(p) == ["C0"] and da.name == "C0"  # one RGB channel, three samples


def test_missing_size_warns_and_acquisition_date(tmp_path, rng):
    arr = rng.integers(0, 9, size=(3, 2, 2), dtype=np.uint8)
    p = tmp_path / "d.ome.tif"
    tifffile.imwrite(p, arr, ome=True, photometric="minisblack", metadata={"axes": "TYX", "Plane": {"DeltaT": [0.0, 0.5, 1.0]}})
    with tifffile.TiffFile(p) as tf:
        xml = tf.ome_metadata.replace('<Pixels', '<AcquisitionDate>2020-01-02T03:04:05Z</AcquisitionDate><Pixels', 1)
    tifffile.imwrite(p, arr, description=xml.encode(), metadata=None, photometric="minisblack")
    with pytest.warns(XafmWarning, match=NO_SIZE):
        da = xafm.open(p)
    np.testing.assert_allclose(da.coords["start_epoch_ms"].values, 1577934245000.0 + np.array([0.0, 500.0, 1000.0]))
    assert da.attrs[conventions.PIXEL_SIZE_ATTR] == 1.0


def test_missing_planes_read_as_zeros(tmp_path, rng):
    arr = rng.integers(1, 9, size=(2, 3, 4), dtype=np.uint8)
    p = tmp_path / "m.ome.tif"
    tifffile.imwrite(p, arr, ome=True, photometric="minisblack", metadata={"axes": "TYX", "PhysicalSizeX": 1.0})
    with tifffile.TiffFile(p) as tf:
        xml = tf.ome_metadata.replace('SizeT="2"', 'SizeT="3"').replace('PlaneCount="2"', 'PlaneCount="2"')
    tifffile.imwrite(p, arr, description=xml.encode(), metadata=None, photometric="minisblack")
    with pytest.warns(XafmWarning, match="1 OME planes are missing"):
        da = xafm.open(p)
    assert da.sizes["time"] == 3
    np.testing.assert_array_equal(da.values[:2], arr)
    assert not da.values[2].any()


def test_two_images_and_series(tmp_path, rng):
    a = rng.integers(0, 9, size=(2, 3, 4), dtype=np.uint8)
    b = rng.integers(0, 9, size=(5, 6), dtype=np.uint16)
    p = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(p, ome=True) as tw:
        tw.write(a, photometric="minisblack", metadata={"axes": "TYX", "PhysicalSizeX": 1.0})
        tw.write(b, photometric="minisblack", metadata={"axes": "YX", "PhysicalSizeX": 3.0, "Channel": {"Name": "second"}})
    np.testing.assert_array_equal(xafm.open(p).values, a)
    second = xafm.open(p, series=1)
    assert second.name == "second" and second.attrs[conventions.PIXEL_SIZE_ATTR] == 3000.0
    np.testing.assert_array_equal(second.values[0], b)


# --------------------------------------------------------------------------------------
# damaged pages
# --------------------------------------------------------------------------------------
def _strip_tag_positions(path):
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        return page.tags["StripByteCounts"].valueoffset, page.tags["StripOffsets"].valueoffset, tf.byteorder


@pytest.mark.parametrize("which", ["count", "offset"])
def test_lying_strips_are_refused_before_decoding(tmp_path, rng, which):
    arr = rng.integers(0, 9, size=(2, 16, 16), dtype=np.uint8)
    p = tmp_path / "s.ome.tif"
    tifffile.imwrite(p, arr, ome=True, photometric="minisblack", metadata={"axes": "TYX", "PhysicalSizeX": 1.0}, rowsperstrip=16)
    counts_at, offsets_at, bo = _strip_tag_positions(p)
    raw = bytearray(p.read_bytes())
    struct.pack_into(bo + "I", raw, counts_at if which == "count" else offsets_at, 2**31 - 1)
    p.write_bytes(bytes(raw))
    lazy = xafm.open(p, chunks={})  # opening reads no page
    with pytest.raises(CorruptFileError, match="lies outside"):
        _ = lazy.isel(time=0).values
    np.testing.assert_array_equal(lazy.isel(time=1).values, arr[1])


def test_truncations_are_clean_errors(tmp_path, rng):
    arr = rng.integers(0, 9, size=(3, 8, 8), dtype=np.uint8)
    p = tmp_path / "t.ome.tif"
    tifffile.imwrite(p, arr, ome=True, photometric="minisblack", metadata={"axes": "TYX", "PhysicalSizeX": 1.0})
    good = p.read_bytes()
    for n in itertools.chain(range(0, 64, 8), range(64, len(good), 97)):
        p.write_bytes(good[:n])
        try:
            da = xafm.open(p)
        except xafm.XafmError:
            continue
        assert da.ndim >= 3  # a cut after the needed bytes may still read
