"""Plain TIFF stacks and ImageJ hyperstacks that other tools write (xafm.formats.tiff):
dims from ImageJ's description, calibration from ImageJ's unit or the resolution tags,
frame times, laziness, damaged files, and which TIFF files are whose. Written by tifffile
(``xafm.testing.tiff``) and by Bio-Formats' own converter."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import xafm
from tests.bioformats import run_all
from tests.helpers import raise_if_dask_computes, shared_file
from xafm import registry
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError, FormatError, SuffixMismatchError, XafmWarning
from xafm.testing.tiff import write_imagej_tiff, write_plain_tiff

NO_CALIBRATION = "no pixel calibration"
#: xafm's dims for ImageJ's axis letters.
IJ_DIMS = {"T": "time", "Z": "z", "C": "channel", "Y": "y", "X": "x"}


def _quiet_open(path, **kw):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{NO_CALIBRATION}")
        return xafm.open(path, **kw)


def _as_xafm(arr, axes):
    """What reading an ImageJ file of ``axes`` must give, worked out from the array: dims
    in (time, z, channel, y, x) order, length-1 dims but time dropped, time added."""
    dims = [IJ_DIMS[a] for a in axes]
    out = np.asarray(arr)
    for d in [d for d, n in zip(dims, out.shape) if n == 1 and d not in ("time", "y", "x")]:
        out = out.squeeze(dims.index(d))
        dims.remove(d)
    if "time" not in dims:
        out, dims = out[None], ["time", *dims]
    order = [d for d in ("time", "z", "channel", "y", "x") if d in dims]
    return np.transpose(out, [dims.index(d) for d in order]), tuple(order)


# --------------------------------------------------------------------------------------
# ImageJ hyperstacks
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_imagej_hyperstack_dims_calibration_and_times(tmp_path, rng, compression):
    arr = rng.integers(0, 4000, size=(4, 3, 2, 9, 7)).astype(np.uint16)
    path = write_imagej_tiff(tmp_path / "h.tif", arr, "TZCYX", pixel_size_nm=(2.5, 2.0), z_step_nm=300.0, frame_interval=0.2, compression=compression)
    assert registry.find(path).name == "tiff"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a calibrated file gives no warning
        da = xafm.open(path)
    assert da.dims == ("time", "z", "channel", "y", "x") and da.shape == arr.shape
    np.testing.assert_array_equal(da.values, arr)
    assert da.dtype == np.uint16 and da.name == conventions.MULTI_CHANNEL_NAME and da.attrs["units"] == ""
    np.testing.assert_allclose(da["x"].values, np.arange(7) * 2.0)
    np.testing.assert_allclose(da["y"].values, np.arange(9) * 2.5)
    np.testing.assert_allclose(da["z"].values, [0.0, 300.0, 600.0])
    assert da["z"].attrs["units"] == "nm"
    np.testing.assert_allclose(da["time"].values, [0.0, 0.2, 0.4, 0.6])
    assert da["channel"].values.tolist() == ["C0", "C1"] == xafm.channels(path)
    one = xafm.open(path, channel="C1")
    assert one.dims == ("time", "z", "y", "x") and one.name == "C1"
    np.testing.assert_array_equal(one.values, arr[:, :, 1])
    acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
    assert acq["imagej"]["unit"] == "um" and acq["frame_interval_s"] == pytest.approx(0.2)
    rec = provenance.records(da)[-1]
    assert (rec["type"], rec["format"], rec["path"]) == ("read", "tiff", str(path))


def test_imagej_reading_is_lazy(tmp_path, rng):
    arr = rng.normal(size=(6, 2, 8, 5)).astype(np.float32)
    path = write_imagej_tiff(tmp_path / "lazy.tif", arr, "TCYX", pixel_size_nm=(1.0, 1.0), unit="nm")
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        part = lazy.isel(time=[5, 1], channel=1, y=slice(1, 7, 2), x=[4, 0])
    np.testing.assert_array_equal(part.values, arr[[5, 1], 1][:, 1:7:2][:, :, [4, 0]])


@pytest.mark.parametrize(
    "unit,meta,want",
    [
        ("nm", {}, (2.5, 2.0)),
        ("micron", {}, (2.5, 2.0)),
        ("\\u00B5m", {}, (2.5, 2.0)),  # ImageJ's escaped µm
        ("cm", {}, (2.5, 2.0)),
        ("um", {"yunit": "nm"}, (2.5e-3, 2.0)),  # y in another unit: 1/YResolution nm
    ],
)
def test_imagej_units(tmp_path, unit, meta, want):
    arr = np.zeros((2, 4, 5), np.float32)
    per = {"nm": 1.0, "micron": 1e3, "\\u00B5m": 1e3, "cm": 1e7, "um": 1e3}[unit]
    path = tmp_path / "u.tif"
    tifffile.imwrite(path, arr, imagej=True, resolution=(per / 2.0, per / 2.5), metadata={"axes": "TYX", "unit": unit, **meta})
    da = xafm.open(path)
    assert model.pixel_size_nm(da) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    "meta,times",
    [
        ({"finterval": 50.0, "tunit": "ms"}, [0.0, 0.05, 0.1]),
        ({"finterval": 2.0, "tunit": "min"}, [0.0, 120.0, 240.0]),
        ({"fps": 4.0}, [0.0, 0.25, 0.5]),
        ({}, [0.0, 1.0, 2.0]),
    ],
)
def test_imagej_frame_times(tmp_path, meta, times):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 4), np.uint8), imagej=True, resolution=(1.0, 1.0), metadata={"axes": "TYX", "unit": "nm", **meta})
    np.testing.assert_allclose(xafm.open(path)["time"].values, times)


def test_imagej_without_calibration_warns_naming_the_file(tmp_path):
    for name, unit in (("none.tif", None), ("pixel.tif", "pixel")):
        path = tmp_path / name
        tifffile.imwrite(path, np.ones((2, 3, 4), np.uint8), imagej=True, metadata={"axes": "ZYX", **({"unit": unit} if unit else {})})
        with pytest.warns(XafmWarning, match=f"{path}: {NO_CALIBRATION}"):
            da = xafm.open(path)
        assert model.pixel_size_nm(da) == (1.0, 1.0)
        assert da.dims == ("time", "z", "y", "x") and da.sizes["z"] == 2  # slices are z
        assert da["z"].attrs == {"long_name": "z index"}


AXES = ["YX", "TYX", "ZYX", "CYX", "TZYX", "TCYX", "ZCYX", "TZCYX"]


@given(data=st.data(), axes=st.sampled_from(AXES), dtype=st.sampled_from(["u1", "u2", "f4"]), compression=st.sampled_from([None, "zlib"]))
def test_imagej_axes_round_trip(tmp_path_factory, data, axes, dtype, compression):
    """Any ImageJ hyperstack reads as the array it was written from, with xafm's dims."""
    shape = tuple(data.draw(st.integers(1, 3)) if a in "TZC" else data.draw(st.integers(2, 6)) for a in axes)  # tifffile mangles 1-pixel ImageJ pages
    dy, dx = data.draw(st.floats(0.05, 500.0)), data.draw(st.floats(0.05, 500.0))
    arr = np.arange(int(np.prod(shape))).reshape(shape).astype(dtype)
    path = write_imagej_tiff(tmp_path_factory.mktemp("ij") / "a.tif", arr, axes, pixel_size_nm=(dy, dx), unit="nm", compression=compression)
    want, dims = _as_xafm(arr, axes)
    da = xafm.open(path)
    assert da.dims == dims
    np.testing.assert_array_equal(da.values, want)
    assert model.pixel_size_nm(da) == pytest.approx((dy, dx), rel=1e-6)
    np.testing.assert_array_equal(_quiet_open(path, chunks={}).values, want)


# --------------------------------------------------------------------------------------
# plain stacks
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_plain_stack_with_resolution_in_cm_and_inch(tmp_path, rng, byteorder, compression):
    frames = rng.normal(size=(4, 6, 5)).astype(np.float32)
    for unit in ("cm", "inch"):
        path = write_plain_tiff(tmp_path / f"p_{unit}.tiff", frames, pixel_size_nm=(120.0, 80.0), resolution_unit=unit, compression=compression, byteorder=byteorder)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            da = xafm.open(path)
        assert da.dims == ("time", "y", "x") and da.name == "C0"
        np.testing.assert_array_equal(da.values, frames)
        assert model.pixel_size_nm(da) == pytest.approx((120.0, 80.0), rel=1e-6)
        np.testing.assert_allclose(da["time"].values, np.arange(4.0))


@pytest.mark.parametrize("kw,why", [({}, "without a unit"), ({"dpi": 72.0}, "72 dpi display default")])
def test_plain_stack_without_calibration(tmp_path, kw, why):
    path = write_plain_tiff(tmp_path / "p.tif", np.arange(24, dtype=np.int16).reshape(2, 3, 4), **kw)
    with pytest.warns(XafmWarning, match=f"{path}: {NO_CALIBRATION}.*{why}"):
        da = xafm.open(path)
    assert model.pixel_size_nm(da) == (1.0, 1.0)
    np.testing.assert_array_equal(da.values, np.arange(24).reshape(2, 3, 4))
    other_dpi = write_plain_tiff(tmp_path / "q.tif", np.zeros((1, 3, 4), np.uint8), dpi=300.0)
    assert model.pixel_size_nm(xafm.open(other_dpi)) == pytest.approx((2.54e7 / 300,) * 2)


def test_single_page_and_rgb(tmp_path, rng):
    gray = rng.integers(0, 255, size=(5, 7)).astype(np.uint8)
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, gray, resolution=(1e7 / 4.0, 1e7 / 4.0), resolutionunit=3)
    da = xafm.open(p)
    assert da.shape == (1, 5, 7)
    np.testing.assert_array_equal(da.values[0], gray)
    rgb = rng.integers(0, 255, size=(5, 7, 3)).astype(np.uint8)
    q = tmp_path / "rgb.tif"
    tifffile.imwrite(q, rgb, photometric="rgb", resolution=(1e7 / 4.0, 1e7 / 4.0), resolutionunit=3)
    da = xafm.open(q)
    assert da.dims == ("time", "sample", "y", "x")
    np.testing.assert_array_equal(da.values[0], np.moveaxis(rgb, -1, 0))


def test_series_and_channel_options(tmp_path):
    p = tmp_path / "two.tif"
    with tifffile.TiffWriter(p) as tw:  # pages of two sizes: two series
        tw.write(np.zeros((2, 4, 4), np.uint8), metadata=None)
        tw.write(np.ones((3, 5), np.uint8), metadata=None)
    assert _quiet_open(p, series=1).shape == (1, 3, 5)
    with pytest.raises(FormatError, match="no TIFF series 2; the file holds 2"):
        _quiet_open(p, series=2)
    with pytest.raises(ChannelError, match=r"no channel 'height'; available: \['C0'\]"):
        _quiet_open(p, channel="height")


# --------------------------------------------------------------------------------------
# whose TIFF is it
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".ome.tif", ".ome.tiff"])
def test_whatever_xafm_writes_it_reads_back_under_every_suffix(tmp_path, rng, suffix):
    da = xafm.stack(rng.normal(size=(3, 4, 5)).astype(np.float32), pixel_size_nm=(1.5, 2.0), times=[0.0, 0.1, 0.35], channel="height")
    path = da.afm.to_ome_tiff(tmp_path / f"s{suffix}")
    assert registry.find(path).name == "tif"
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, da.values)
    np.testing.assert_allclose(back["time"].values, [0.0, 0.1, 0.35])
    assert model.pixel_size_nm(back) == pytest.approx((1.5, 2.0))


def test_plain_tiff_under_an_ome_name_and_other_names(tmp_path):
    frames = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    p = write_plain_tiff(tmp_path / "not_really.ome.tif", frames, pixel_size_nm=(3.0, 3.0))
    assert registry.find(p).name == "tiff"  # the name says OME, the content decides
    np.testing.assert_array_equal(xafm.open(p).values, frames)
    q = write_plain_tiff(tmp_path / "frames.dat", frames, pixel_size_nm=(3.0, 3.0))
    assert registry.identify(q).name == "tiff"
    with pytest.raises(SuffixMismatchError, match="TIFF stack or ImageJ hyperstack"):
        xafm.open(write_plain_tiff(tmp_path / "video.asd", frames))


def test_other_formats_tiff_files_are_not_claimed(tmp_path):
    from xafm.testing import write_jpk

    jpk = write_jpk(tmp_path / "scan.jpk", [{"name": "height", "retrace": False, "raw": np.zeros((3, 3), np.int32)}])
    renamed = tmp_path / "scan.tif"
    renamed.write_bytes(jpk.read_bytes())
    probe = registry.Probe(renamed)
    assert [f.name for f in registry.readable() if registry.confirms(f, probe)] == ["jpk"]
    with pytest.raises(SuffixMismatchError, match="the content is JPK"):
        xafm.open(renamed)
    park = shared_file("afm", "park_example.tiff")  # a thumbnail page with the data in Park's tags
    assert not registry.confirms(registry.get("tiff"), registry.Probe(park))
    assert registry.identify(park).name == "park"


def test_damage_gives_corrupt_file_errors_naming_the_file(tmp_path, rng):
    arr = rng.integers(0, 9, size=(4, 6, 6)).astype(np.uint8)
    made = [
        write_imagej_tiff(tmp_path / "ij.tif", arr, "TYX", pixel_size_nm=(1.0, 1.0), unit="nm"),
        write_plain_tiff(tmp_path / "z.tif", arr, pixel_size_nm=(1.0, 1.0), compression="zlib"),
        write_plain_tiff(tmp_path / "raw.tif", arr, pixel_size_nm=(1.0, 1.0)),
    ]
    for good_path in made:
        good = good_path.read_bytes()
        cut = tmp_path / f"cut_{good_path.name}"
        for n in itertools.chain(range(0, 64, 8), range(64, len(good), 37)):
            cut.write_bytes(good[:n])
            try:
                da = _quiet_open(cut)
            except CorruptFileError as exc:
                assert str(cut) in str(exc)
                continue
            assert da.shape[-2:] == (6, 6) and da.sizes["time"] <= 4  # a cut after the needed bytes may still read
        with tifffile.TiffFile(good_path) as tf:  # a cut inside the last frame's data
            page = tf.pages[-1]
            end = max(o + c for o, c in zip(page.dataoffsets, page.databytecounts))
        cut.write_bytes(good[: end - 1])
        with pytest.raises(CorruptFileError, match=str(cut)):
            _quiet_open(cut)


# --------------------------------------------------------------------------------------
# a TIFF another program writes: Bio-Formats' converter
# --------------------------------------------------------------------------------------
def test_reads_what_bioformats_converts_to_plain_tiff(tmp_path, rng):
    """bfconvert writes an ImageJ-style description (frames, slices, channels) and the
    pixel size as pixels per cm. (It stores XResolution with a denominator of 1000 in 32
    bits, which overflows for pixels under 2.33 nm: hence 5 x 4 nm here.)"""
    da = xafm.stack(rng.normal(size=(3, 6, 8)).astype(np.float32), pixel_size_nm=(5.0, 4.0), times=[0, 1, 2], channel="height")
    src = da.afm.to_ome_tiff(tmp_path / "src.ome.tif")
    out = tmp_path / "converted.tif"
    run_all({"convert": ["loci.formats.tools.ImageConverter", "-no-upgrade", "-series", "0", str(src), str(out)]})
    assert registry.find(out).name == "tiff"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xafm.open(out)
    assert back.dims == ("time", "y", "x") and back.shape == da.shape
    np.testing.assert_array_equal(back.values, da.values)
    assert model.pixel_size_nm(back) == pytest.approx((5.0, 4.0), rel=1e-6)
    assert json.loads(back.attrs[conventions.ACQUISITION_ATTR])["imagej"]["frames"] == 3


def test_a_page_of_no_rows_is_a_corrupt_file_not_a_stack_error(tmp_path, rng):
    """Found by fuzzing: an ImageLength of 0 made a stack of shape (1, 0, 5), refused by the
    data model with a StackError that did not name the file."""
    path = write_plain_tiff(tmp_path / "rows.tif", rng.integers(0, 9, size=(1, 4, 5)).astype(np.uint8), pixel_size_nm=(1.0, 1.0))
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags["ImageLength"]
        where = tag.valueoffset
        itemsize = np.dtype(tifffile.TIFF.DATA_FORMATS[tag.dtype][-1]).itemsize
    data = bytearray(path.read_bytes())
    data[where : where + itemsize] = bytes(itemsize)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=rf"{path}: .*no pixels"):
        _quiet_open(path)
