"""Park Systems TIFF reader: the real files against reference.json and against their tags
decoded by hand here, orientation from the thumbnail, identification beside the other
TIFF readers, spectroscopy refused, synthetic round trips, damaged files."""

from __future__ import annotations

import datetime as dt
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xafm
from tests.helpers import assert_matches_reference, reference, shared_file
from xafm import registry
from xafm.core import model
from xafm.testing.park import park_header, spectroscopy_header, write_park

EXAMPLE = "park_example.tiff"
FORCECURVE = "park_forcecurve.tiff"


def acquisition(da) -> dict:
    return json.loads(da.attrs["acquisition_json"])


def park_tags(path: Path) -> tuple[bytes, int, int]:
    """The header bytes and the data's (offset, byte count), straight from the first IFD."""
    with tifffile.TiffFile(path) as tf:
        tags = tf.pages.first.tags
        return bytes(tags[50435].value), int(tags[50434].valueoffset), int(tags[50434].count)


def utf16(raw: bytes) -> str:
    return raw.decode("utf-16-le").split("\x00")[0]


# --------------------------------------------------------------------------------------
# the real files
# --------------------------------------------------------------------------------------
def test_example_matches_reference():
    """Shape exact, pixel size, min and max to 1e-6 relative. The mean of this levelled
    image is ~1e-11 nm (a float32 sum's rounding), so it is compared to 1e-6 of the range."""
    path = shared_file("afm", EXAMPLE)
    ref = reference("afm")[EXAMPLE]
    da = xafm.open(path)
    assert da.dims == ("time", "y", "x") and da.shape == (1, *ref["shape"])
    assert model.pixel_size_nm(da) == pytest.approx((ref["pixel_to_nm"],) * 2, rel=1e-6)
    v = da.values
    assert v.min() == pytest.approx(ref["min"], rel=1e-6)
    assert v.max() == pytest.approx(ref["max"], rel=1e-6)
    assert v.mean() == pytest.approx(ref["mean"], abs=1e-6 * (ref["max"] - ref["min"]))
    assert da.name == ref["channel"] == "Z Height" and da.attrs["units"] == "nm"
    assert xafm.channels(path) == ref["channels"]


def test_forcecurve_matches_reference():
    path = shared_file("afm", FORCECURVE)
    ref = reference("afm")[FORCECURVE]
    da = xafm.open(path)
    assert_matches_reference(da, ref)
    assert da.name == ref["channel"] == "Topography" and da.attrs["units"] == "nm"
    assert xafm.channels(path) == ref["channels"]


@pytest.mark.parametrize("name", [EXAMPLE, FORCECURVE])
def test_values_are_the_tags_decoded_by_hand(name):
    """gain (header byte 220) times the float32 data of tag 50434, µm (byte 244) into nm,
    the file's bottom row first; size at bytes 100/104, scan size (µm) at 140/148."""
    path = shared_file("afm", name)
    header, offset, count = park_tags(path)
    nx, ny = struct.unpack_from("<II", header, 100)
    sx, sy = struct.unpack_from("<dd", header, 140)
    gain, scale, z0 = struct.unpack_from("<ddd", header, 220)
    assert utf16(header[244:260]) == "um" and (scale, z0) == (1.0, 0.0)
    assert struct.unpack_from("<I", header, 348)[0] == 2 and count == nx * ny * 4  # float32
    raw = np.fromfile(path, dtype="<f4", count=nx * ny, offset=offset).reshape(ny, nx)
    da = xafm.open(path)
    np.testing.assert_allclose(da.values[0], raw[::-1].astype(np.float64) * gain * 1e3, rtol=1e-12)
    assert model.pixel_size_nm(da) == pytest.approx((sy * 1e3 / ny, sx * 1e3 / nx), rel=1e-12)
    assert da.name == utf16(header[4:68])


def test_row_zero_is_the_top_as_the_thumbnail_shows():
    """The thumbnail page (row 0 at the top, as every TIFF viewer draws it) is the image
    shrunk 2x; it matches the flipped data, not the data in file order."""
    path = shared_file("afm", EXAMPLE)
    with tifffile.TiffFile(path) as tf:
        thumb = tf.pages.first.asarray().astype(np.float64)
    da = xafm.open(path)
    small = da.values[0].reshape(256, 2, 256, 2).mean(axis=(1, 3))
    assert np.corrcoef(thumb.ravel(), small.ravel())[0, 1] > 0.99
    assert abs(np.corrcoef(thumb.ravel(), small[::-1].ravel())[0, 1]) < 0.2


def test_real_metadata():
    path = shared_file("afm", EXAMPLE)
    da = xafm.open(path)
    fm = model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(0.2)  # header byte 172
    assert fm["frame_duration_s"] == pytest.approx(512 / 0.2)
    assert fm["scan_direction"] == "down" and fm["line_direction"] == "forward"  # bytes 132 (0), 128 (1)
    assert fm["start_epoch_ms"] == dt.datetime(2022, 10, 15, 17, 7, 6, tzinfo=dt.UTC).timestamp() * 1000  # DateTime, as UTC
    acq = acquisition(da)
    assert acq["version"] == "0x01000002" and acq["mode"] == "Tapping" and acq["image_type"] == "2-D mapped image"
    assert acq["software"] == "Park Systems SmartScan" and acq["data_type"] == "float32"
    assert acq["header"]["cantilever_name"] == "NCHR"  # UTF-16 at byte 384
    assert acq["header"]["image_quality_index"] == pytest.approx(99.0338, abs=1e-4)
    prov = json.loads(da.attrs["xafm_provenance"])
    assert prov[0]["format"] == "park" and prov[0]["channel"] == "Z Height"


def test_forcecurve_is_spectroscopy_with_an_image():
    """Image type 2 (byte 0); the spectroscopy header (tag 50438) says 5 channels, 1024
    points a curve, 7 curves and a reference image: the image is read."""
    path = shared_file("afm", FORCECURVE)
    header, _, _ = park_tags(path)
    assert struct.unpack_from("<I", header, 0)[0] == 2
    acq = acquisition(xafm.open(path))
    assert acq["image_type"] == "spectroscopy" and acq["mode"] == "NCM"
    spect = acq["spectroscopy"]
    assert (spect["channels"], spect["points_per_curve"], spect["curves"], spect["has_reference_image"]) == (5, 1024, 7, 1)
    assert [c["name"] for c in spect["channel_records"]] == ["Vertical (A-B)", "Force", "Z Scan", "Z Detector", "Time Stamp"]
    assert spect["spectroscopy_kind"] == "force-distance"


def test_opening_reads_neither_thumbnail_nor_data(monkeypatch):
    path = shared_file("afm", EXAMPLE)
    original = tifffile.TiffTag.value

    def guarded(tag):
        if tag.code == 50434:
            raise AssertionError("the data tag's value was loaded")
        return original.fget(tag)

    monkeypatch.setattr(tifffile.TiffTag, "value", property(guarded))
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: pytest.fail("the thumbnail was decoded"))
    da = xafm.open(path, chunks={})
    assert da.shape == (1, 512, 512)
    assert np.isfinite(da.isel(time=0, y=slice(0, 3)).values).all()


def test_channel_option():
    path = shared_file("afm", EXAMPLE)
    assert xafm.open(path, channel="Z Height").name == "Z Height"
    with pytest.raises(xafm.ChannelError, match="Z Height"):
        xafm.open(path, channel="Topography")


# --------------------------------------------------------------------------------------
# which files are Park files
# --------------------------------------------------------------------------------------
def test_park_files_open_as_park_and_other_tiffs_as_their_own(tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3), photometric="minisblack")
    ome = xafm.stack(np.ones((2, 4, 3), np.float32), pixel_size_nm=1.0).afm.to_ome_tiff(tmp_path / "own.tif")
    park = write_park(tmp_path / "park.tif", np.ones((4, 3), np.float32))
    assert registry.find(plain).name == "tiff" and registry.identify(plain).name == "tiff"
    assert registry.find(ome).name == "tif" and registry.identify(ome).name == "tif"
    assert registry.find(park).name == "park" and registry.identify(park).name == "park"
    assert registry.find(shared_file("afm", EXAMPLE)).name == "park"
    for other in (plain, ome):
        assert not registry.confirms(registry.get("park"), registry.Probe(other))
    for fmt in ("tiff", "tif"):
        assert not registry.confirms(registry.get(fmt), registry.Probe(park))
    renamed = tmp_path / "park.dat"  # a name no format uses: the content decides
    renamed.write_bytes(Path(park).read_bytes())
    assert registry.find(renamed).name == "park"


def test_an_ifd_beyond_the_first_bytes_is_found_with_tifffile(tmp_path):
    """The content check reads the magic from the first 4 KiB; a writer that puts the IFD
    at the end of the file is checked with tifffile instead."""
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    src = Path(write_park(tmp_path / "front.tiff", raw, gain=2.0))
    b = bytearray(src.read_bytes())
    at = struct.unpack_from("<I", b, 4)[0]
    n = struct.unpack_from("<H", b, at)[0]
    ifd = bytes(b[at : at + 2 + 12 * n + 4])
    b += bytes(5000 + (len(b) % 2))
    struct.pack_into("<I", b, 4, len(b))
    b += ifd
    moved = tmp_path / "moved.tiff"
    moved.write_bytes(bytes(b))
    assert struct.unpack_from("<I", moved.read_bytes(), 4)[0] > 4096
    assert registry.identify(moved).name == "park"
    np.testing.assert_array_equal(xafm.open(moved).values, xafm.open(src).values)


def test_a_tag_50432_without_parks_magic_is_not_park(tmp_path):
    path = write_park(tmp_path / "not_park.tif", np.ones((4, 3), np.float32), magic=12345)
    assert not registry.confirms(registry.get("park"), registry.Probe(path))
    with pytest.raises(xafm.XafmError):
        xafm.open(path)


def test_a_truncated_park_file_is_still_park_and_says_truncated(tmp_path):
    src = shared_file("afm", EXAMPLE)
    cut = tmp_path / EXAMPLE
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert registry.find(cut).name == "park"
    with pytest.raises(xafm.CorruptFileError, match="truncated") as err:
        xafm.open(cut)
    assert str(cut) in str(err.value)


# --------------------------------------------------------------------------------------
# what is not an image
# --------------------------------------------------------------------------------------
def test_spectroscopy_only_is_not_an_image(tmp_path):
    path = write_park(tmp_path / "fd.tiff", np.ones((4, 4), np.float32), image_type=2, with_data=False, spectroscopy=spectroscopy_header(curves=3))
    for call in (xafm.open, xafm.channels):
        with pytest.raises(xafm.NotAnImageError, match="force-distance") as err:
            call(path)
        assert not isinstance(err.value, xafm.CorruptFileError)
        assert str(path) in str(err.value) and "3 curves" in str(err.value)


def test_spectroscopy_that_says_it_has_no_image_is_not_an_image(tmp_path):
    raw = np.ones((4, 4), np.float32)
    without = write_park(tmp_path / "no_ref.tiff", raw, image_type=2, spectroscopy=spectroscopy_header(has_reference_image=False))
    with pytest.raises(xafm.NotAnImageError):
        xafm.open(without)
    with_ref = write_park(tmp_path / "ref.tiff", raw * 2, image_type=2, spectroscopy=spectroscopy_header(has_reference_image=True))
    np.testing.assert_array_equal(xafm.open(with_ref).values, np.full((1, 4, 4), 2000.0))


def test_a_line_profile_is_not_an_image(tmp_path):
    path = write_park(tmp_path / "profile.tiff", np.ones((1, 8), np.float32), image_type=1)
    with pytest.raises(xafm.NotAnImageError, match=r"this is a line-profile file \(.*line profile\); xafm reads images$"):
        xafm.open(path)


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"header": park_header(nx=40000, ny=40000)}, "not plausible"),  # a lying size: refused before any allocation
        ({"header": park_header(nx=5, ny=4)}, "hold 48 bytes"),
        ({"header": park_header(nx=4, ny=3, data_type="float32", size=200)}, "needs 352"),
        ({"header": park_header(nx=4, ny=3)[:348] + struct.pack("<I", 7) + park_header()[352:]}, "data type 7"),
        ({"header": park_header(nx=4, ny=3, image_type=5)}, "image type 5"),
        ({"header": park_header(nx=4, ny=3, gain=float("nan"))}, "data_gain"),
        ({"version": 3}, "version"),
        ({"with_data": False}, "without its data"),
    ],
)
def test_damaged_headers_give_corrupt_file_errors(tmp_path, kwargs, message):
    path = write_park(tmp_path / "bad.tiff", np.ones((3, 4), np.float32), **kwargs)
    with pytest.raises(xafm.CorruptFileError, match=message) as err:
        xafm.open(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------
# synthetic round trips
# --------------------------------------------------------------------------------------
UNIT_NM = {"um": 1e3, "nm": 1.0, "Å": 0.1}
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def park_files(draw):
    version = draw(st.sampled_from([1, 2]))
    kind = "int16" if version == 1 else draw(st.sampled_from(["float32", "int16", "int32"]))
    shape = draw(st.tuples(st.integers(1, 9), st.integers(1, 9)))
    elements = st.floats(-1e6, 1e6, width=32) if kind == "float32" else st.integers(*(np.iinfo(kind).min, np.iinfo(kind).max))
    raw = draw(hnp.arrays(kind, shape, elements=elements))
    fields = {
        "gain": draw(finite.filter(lambda g: g != 0)),
        "z_scale": draw(st.sampled_from([0.0, 1.0]) | finite),
        "z_offset": draw(st.just(0.0) | finite),
        "z_unit": draw(st.sampled_from([*UNIT_NM, "V", "deg", "nA"])),
        "scan_size_um": (draw(st.floats(0.01, 100.0)), draw(st.floats(0.01, 100.0))),
        "source_name": draw(st.sampled_from(["Topography", "Z Height", "Amplitude", "Current"])),
    }
    return version, kind, raw, fields


@settings(max_examples=40, deadline=None)
@given(park_files())
def test_synthetic_round_trip(case):
    """Values are gain * (raw * scale + offset) (scale 0 means 1) in the header's unit,
    lengths in nm, other units as given; rows flipped; pixel = scan size / pixels."""
    version, kind, raw, fields = case
    with tempfile.TemporaryDirectory() as tmp:
        path = write_park(Path(tmp) / "p.tiff", raw, version=version, data_type=kind, **fields)
        da = xafm.open(path)
        scale = fields["z_scale"] or 1.0
        unit = fields["z_unit"]
        factor = UNIT_NM.get(unit, 1.0)
        want = fields["gain"] * factor * (raw.astype(np.float64) * scale + fields["z_offset"])
        np.testing.assert_allclose(da.values[0], want[::-1], rtol=1e-12, atol=1e-12 * np.abs(want).max(initial=1.0))
        assert da.attrs["units"] == ("nm" if unit in UNIT_NM else unit)
        ny, nx = raw.shape
        sx, sy = fields["scan_size_um"]
        assert model.pixel_size_nm(da) == pytest.approx((sy * 1e3 / ny, sx * 1e3 / nx), rel=1e-12)
        assert da.name == fields["source_name"] and xafm.channels(path) == [fields["source_name"]]
        assert acquisition(da)["data_type"] == kind
        np.testing.assert_array_equal(xafm.open(path, chunks={}).values, da.values)
