"""Bruker Nanoscope reader: the real files (v5.31 to v10) against the reference readers'
numbers and against values decoded by hand from their headers, synthetic round trips,
force-curve files, damaged files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from tests.test_fuzz import check_mutated_copy
from xafm.core.lazy import RawFramesArray
from xafm.formats import _nanoscope_header, nanoscope
from xafm.testing import patch_nanoscope_header, write_nanoscope, write_nanoscope_force

REAL = ("afm", "old_bruker.002")


def expected(raw, bpp, hard=439.9866, sens=15.068):
    return np.asarray(raw, dtype=np.float64)[::-1] * (hard / 2 ** (8 * bpp) * sens)


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    return shared_file(*REAL)


def test_real_file_matches_reference(real):
    ref = reference("afm")[REAL[1]]
    da = xafm.open(real)
    assert da.name == "Height" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)
    assert float(da.x[-1]) == pytest.approx(255 * ref["pixel_to_nm"])


def test_real_file_rows_are_flipped(real):
    """The file stores the bottom line first; row 0 must be the file's last line."""
    da = xafm.open(real)
    raw = np.fromfile(real, dtype="<i2", count=256 * 256, offset=40960).reshape(256, 256)
    np.testing.assert_allclose(da.values[0], raw[::-1] * (439.9866 / 65536 * 15.068), rtol=1e-12)


def test_real_file_metadata(real):
    da = xafm.open(real)
    fm = xafm.core.model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(1.50498)
    assert fm["frame_duration_s"] == pytest.approx(256 / 1.50498)
    assert fm["scan_direction"] == "up"
    assert fm["start_epoch_ms"] == 1564490078000.0  # 2019-07-30 12:34:38, read as UTC
    acq = json.loads(da.attrs["acquisition_json"])
    assert acq["version"] == "0x05310001"
    assert acq["sensitivity"] == "V 15.06800 nm/V"
    assert acq["header"]["Ciao scan list"]["Scan size"] == "15000 nm"
    prov = json.loads(da.attrs["xafm_provenance"])
    assert prov[0]["type"] == "read" and prov[0]["format"] == "nanoscope" and prov[0]["channel"] == "Height"


def test_real_file_engine_lazy_and_channels(real):
    eager = xafm.open(real)
    da = xr.open_dataarray(real, engine="xafm")
    np.testing.assert_array_equal(da.values, eager.values)
    assert xafm.channels(real) == ["Height"]
    with raise_if_dask_computes():
        lazy = xafm.open(real, chunks={})
    assert type(lazy.data).__module__.startswith("dask")
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(lazy[0, 5:9, 100:3:-7].values, eager.values[0, 5:9, 100:3:-7])
    np.testing.assert_array_equal(xafm.open(real, channel="Height").values, eager.values)


def test_opening_reads_no_data(real, monkeypatch):
    def boom(self, key):
        raise AssertionError("data read while opening")

    monkeypatch.setattr(RawFramesArray, "_read", boom)
    ds = nanoscope.read(str(real))
    assert ds["Height"].shape == (1, 256, 256)
    pickle.loads(pickle.dumps(ds["Height"].variable._data))


def test_unknown_channel(real):
    with pytest.raises(xafm.ChannelError, match=r"no channel 'Phase'; available: \['Height'\]"):
        xafm.open(real, channel="Phase")


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    bpp=st.sampled_from([2, 4]),
    hard=st.floats(0.5, 500),
    sens=st.floats(0.1, 100),
    unit=st.sampled_from([("~m", 1000.0), ("nm", 1.0), ("pm", 1e-3)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip(tmp_path_factory, shape, bpp, hard, sens, unit, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(np.int16 if bpp == 2 else np.int32)
    raw = rng.integers(info.min, info.max, size=shape, endpoint=True)
    path = tmp_path_factory.mktemp("ns") / "f.001"
    size_x, size_y = 3.0 * shape[1], 2.0 * shape[0]
    write_nanoscope(
        path, [{"name": "Height", "raw": raw, "hard": hard}], bpp=bpp, sens=f"V {sens!r} nm/V",
        scan_size=f"{size_x} {size_y} {unit[0]}",
    )
    da = xafm.open(path)
    np.testing.assert_allclose(da.values[0], expected(raw, bpp, hard, sens), rtol=1e-12, atol=0)
    assert da.attrs["pixel_size_nm"] == pytest.approx(3.0 * unit[1])
    assert model_pixel_y(da) == pytest.approx(2.0 * unit[1])


def model_pixel_y(da):
    return xafm.core.model.pixel_size_nm(da)[0]


def test_several_channels_and_names(tmp_path):
    rng = np.random.default_rng(0)
    raws = [rng.integers(-3000, 3000, size=(4, 6)) for _ in range(5)]
    path = write_nanoscope(
        tmp_path / "multi.spm",
        [
            {"name": "Height", "raw": raws[0]},
            {"name": "Height", "raw": raws[1], "direction": "Retrace", "frame": "Down"},
            {"name": "Phase", "raw": raws[2], "soft": "Sens. Phase", "hard": 20},
            {"name": "Height Sensor", "raw": raws[3], "soft": "Sens. Nothing", "hard": 10},
            {"name": "Height", "raw": raws[4], "direction": "Retrace", "scan_line": "Interleave"},
        ],
    )
    # duplicates all say what they are; names without a twin stay as Bruker gives them
    assert xafm.channels(path) == ["Height_trace", "Height_retrace", "Phase", "Height Sensor", "Height_interleave_retrace"]
    assert xafm.open(path).name == "Height Sensor"  # Height Sensor before Height
    np.testing.assert_allclose(xafm.open(path, channel="Height_trace").values[0], expected(raws[0], 2))
    retrace = xafm.open(path, channel="Height_retrace")
    np.testing.assert_allclose(retrace.values[0], expected(raws[1], 2))
    assert xafm.core.model.frame_metadata(retrace)[0]["scan_direction"] == "down"
    np.testing.assert_allclose(xafm.open(path, channel="height_interleave_retrace").values[0], expected(raws[4], 2))
    phase = xafm.open(path, channel="Phase")
    assert phase.attrs["units"] == "deg"  # the sensitivity line has no unit
    np.testing.assert_allclose(phase.values[0], raws[2][::-1] * 20 / 65536)
    sensor = xafm.open(path, channel="Height Sensor")  # soft scale not in the header: volts
    assert sensor.attrs["units"] == "V"
    np.testing.assert_allclose(sensor.values[0], raws[3][::-1] * 10 / 65536)
    with pytest.raises(xafm.ChannelError, match=r"'Height' is ambiguous.*Height_trace"):
        xafm.open(path, channel="Height")


def test_default_is_the_main_height_when_no_sensor(tmp_path):
    raw = np.arange(12).reshape(3, 4)
    path = write_nanoscope(
        tmp_path / "x.spm",
        [{"name": "Height", "raw": raw * 3, "scan_line": "Interleave"}, {"name": "Amplitude", "raw": raw}, {"name": "Height", "raw": raw, "direction": "Retrace"}],
    )
    assert xafm.open(path).name == "Height_retrace"


def test_default_channel_prefers_height(tmp_path):
    raw = np.arange(12).reshape(3, 4)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Amplitude", "raw": raw}, {"name": "Height Sensor", "raw": raw * 2}])
    assert xafm.open(path).name == "Height Sensor"


def test_global_size_fallback(tmp_path):
    """v5.30 files may hold bogus sizes in the image list; the scan list's are used then."""
    raw = np.arange(16 * 8).reshape(8, 16)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": raw}], samps=4, lines=4)
    patch_nanoscope_header(path, b"\\Operating mode: Image", b"\\Samps/line: 16\r\n\\Lines: 8")
    da = xafm.open(path)
    assert da.shape == (1, 8, 16)
    np.testing.assert_allclose(da.values[0], expected(raw, 2))
    # image-list sizes 4x4 with 15 um: the true 16 x 8 pixels keep 15/4 um per pixel
    assert da.attrs["pixel_size_nm"] == pytest.approx(15000 / 4)


def test_unparsable_date_gives_none(tmp_path):
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": np.ones((2, 2))}], date="sometime")
    assert np.isnan(xafm.open(path).start_epoch_ms.values[0])


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    return write_nanoscope(tmp_path / "good.spm", [{"name": "Height", "raw": np.arange(64).reshape(8, 8)}])


def test_truncated_data(good):
    good.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(xafm.CorruptFileError, match="truncated"):
        xafm.open(good)


def test_header_lies_about_size(tmp_path):
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": np.ones((8, 8))}], samps=4000, lines=4000, data_length=32000000)
    with pytest.raises(xafm.CorruptFileError, match="truncated"):
        xafm.open(path)
    path = write_nanoscope(tmp_path / "y.spm", [{"name": "Height", "raw": np.ones((8, 8))}], samps=9)
    with pytest.raises(xafm.CorruptFileError, match="does not match"):
        xafm.open(path)
    path = write_nanoscope(tmp_path / "z.spm", [{"name": "Height", "raw": np.ones((8, 8))}], samps=10**9, lines=1)
    with pytest.raises(xafm.CorruptFileError, match="not plausible"):
        xafm.open(path)


def test_missing_header_end(tmp_path):
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": np.ones((2, 2))}], end_marker=False)
    with pytest.raises(xafm.CorruptFileError, match="File list end"):
        xafm.open(path)
    with pytest.raises(xafm.CorruptFileError, match="File list end"):
        xafm.channels(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a Nanoscope file"),
        (b"garbage" * 100, "not a Nanoscope file"),
        (b"?*File list\r\n\\*File list end\r\n", "ASCII data"),
        (b"\\*File list\r\n\\Version: 1\r\n\\*File list end\r\n", "no image channel"),
    ],
)
def test_garbage(tmp_path, content, match):
    path = tmp_path / "bad.spm"
    path.write_bytes(content)
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.open(path)


@pytest.mark.parametrize(
    "old,new,match",
    [
        (b"\\Bytes/pixel: 2", b"\\Bytes/pixel: 3", "Bytes/pixel 3"),
        (b"\\Scan size: 15 15 ~m", b"\\Scan size: 15 15 furlong", "Scan size"),
        (b"\\Samps/line: 8", b"\\Samps/line: eight", "not an integer"),
        (b"(0.006713765 V/LSB) 439.9866 V", b"(0.006713765 V/LSB) lots V", "no number"),
        (b"\\Data offset: 8192", b"\\Data offset: 12", "points into the header"),
    ],
)
def test_bad_header_values(good, old, new, match):
    patch_nanoscope_header(good, old, new)
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.open(good)


def test_numeric_suffix_is_dispatched(tmp_path):
    path = write_nanoscope(tmp_path / "frame.017", [{"name": "Height", "raw": np.ones((2, 3))}])
    assert xafm.registry.find(path).name == "nanoscope"
    assert xafm.open(path).shape == (1, 2, 3)


def test_key_case_varies_between_versions(tmp_path):
    raw = np.arange(6).reshape(2, 3)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": raw}], scan_rate="2.0")
    patch_nanoscope_header(path, b"\\Scan size:", b"\\Scan Size:")
    patch_nanoscope_header(path, b"\\Scan rate:", b"\\Scan Rate:")
    patch_nanoscope_header(path, b"\\Line direction:", b"\\Line Direction:")
    da = xafm.open(path)
    assert da.attrs["pixel_size_nm"] == pytest.approx(5000.0)
    assert float(da.line_rate[0]) == 2.0 and str(da.line_direction.values[0]) == "trace"


@pytest.mark.parametrize(
    "text,iso",
    [
        ("12:34:38 PM Tue Jul 30 2019", "2019-07-30T12:34:38"),
        ("12:05:00 AM Wed Jan 01 2020", "2020-01-01T00:05:00"),
        ("06:42:39 PM Thu Jul 02 1998", "1998-07-02T18:42:39"),
        ("18:42:39 Thu Jul 02 1998", "1998-07-02T18:42:39"),
        ("13:00:00 PM Thu Jul 02 1998", None),
        ("10:00:00 AM Mon Foo 02 1998", None),
        ("", None),
    ],
)
def test_date_parsing(text, iso):
    import datetime as dt

    got = _nanoscope_header.epoch_ms(text)
    if iso is None:
        assert got is None
    else:
        assert got == dt.datetime.fromisoformat(iso + "+00:00").timestamp() * 1000


# --------------------------------------------------------------------------------------
# modern real files (v7.2 to v10), against reference.json and the headers decoded by hand
# --------------------------------------------------------------------------------------
MODERN = {
    # file: (default channel, channels as xafm names them)
    "bruker_v10_peakforce.di": ("Height Sensor", ["Height Sensor", "Peak Force Error"]),
    "bruker_v94_fastscan.spm": (
        "Height Sensor", ["Height Sensor", "Peak Force Error_retrace", "Height_retrace", "Peak Force Error_trace", "Height_trace"],
    ),
    "bruker_v91_fastscan_nonsquare.001": ("Height Sensor", ["Height Sensor", "Amplitude", "Phase"]),
    "bruker_v72_dimension.di": ("Height_trace", ["Height_trace", "Height_interleave_retrace", "Phase", "Amplitude Error"]),
}


@pytest.mark.parametrize("name", list(MODERN))
def test_modern_file_matches_reference(name):
    path = shared_file("afm", name)
    ref = reference("afm")[name]
    channel, names = MODERN[name]
    da = xafm.open(path)
    assert da.name == channel and da.attrs["units"] == "nm"
    assert xafm.channels(path) == names
    assert len(ref["channels"]) == len(names)  # SurfaceTopography lists as many images
    if "pixel_y_nm" not in ref:
        assert_matches_reference(da, ref)
        return
    # non-square pixels: 768 x 486 samples over the header's 100 x 100 nm
    assert da.shape == (1, *ref["shape"])
    assert xafm.core.model.pixel_size_nm(da) == pytest.approx((ref["pixel_y_nm"], ref["pixel_to_nm"]), rel=1e-6)
    assert float(da.y[-1] - da.y[0]) + ref["pixel_y_nm"] == pytest.approx(100.0)
    assert float(da.x[-1] - da.x[0]) + ref["pixel_to_nm"] == pytest.approx(100.0)
    v = da.values
    assert (v.min(), v.max(), v.mean()) == pytest.approx((ref["min"], ref["max"], ref["mean"]), rel=1e-6)


def _by_hand(path, offset, n_lines, n_samps, dtype, full_range, sens):
    raw = np.fromfile(path, dtype=dtype, count=n_lines * n_samps, offset=offset).reshape(n_lines, n_samps)
    return raw[::-1].astype(np.float64) * full_range * sens


@pytest.mark.parametrize(
    "name,channel,offset,shape,dtype,full_range,sens,unit",
    [
        # "Bytes/pixel: 2" while "Data length: 1638400" = 640 x 640 x 4: 4-byte data on the
        # 2-byte scale (@2:Z scale 379.0244 V over 2**16, @Sens. Zsens 4.217561 nm/V)
        ("bruker_v94_fastscan.spm", "Height_trace", 6634560, (640, 640), "<i4", 379.0244 / 2**16, 4.217561, "nm"),
        # Peak Force Error: 24.576 V over 2**16, @Sens. ForceDeflSens 53.49607 nN/V, in N
        ("bruker_v94_fastscan.spm", "Peak Force Error_retrace", 1719360, (640, 640), "<i4", 24.576 / 2**16, 53.49607e-9, "N"),
        # Bytes/pixel 4: 24.576 V over 2**32; ForceDeflSens "V 1.000000" has no unit: volts
        ("bruker_v10_peakforce.di", "Peak Force Error", 1129536, (512, 512), "<i4", 24.576 / 2**32, 1.0, "V"),
        # hard value in mV (999.9847 mV) against AmplSens 20 nm/V
        ("bruker_v91_fastscan_nonsquare.001", "Amplitude", 787456, (486, 768), "<i2", 0.9999847 / 2**16, 20.0, "nm"),
        ("bruker_v91_fastscan_nonsquare.001", "Phase", 1533952, (486, 768), "<i2", 359.9945 / 2**16, 1.0, "deg"),
        # 3999.939 mV with a unitless sensitivity: volts
        ("bruker_v72_dimension.di", "Amplitude Error", 1613824, (512, 512), "<i2", 3.999939 / 2**16, 1.0, "V"),
        ("bruker_v72_dimension.di", "Height_interleave_retrace", 565248, (512, 512), "<i2", 329.995 / 2**16, 20.82646, "nm"),
    ],
)
def test_every_channel_decoded_by_hand(name, channel, offset, shape, dtype, full_range, sens, unit):
    path = shared_file("afm", name)
    da = xafm.open(path, channel=channel)
    assert da.name == channel and da.attrs["units"] == unit
    np.testing.assert_allclose(da.values[0], _by_hand(path, offset, *shape, dtype, full_range, sens), rtol=1e-6)


PLAUSIBLE = {"nm": (-1e4, 1e4), "deg": (-360, 360), "V": (-12, 12), "N": (-1e-6, 1e-6)}


@pytest.mark.parametrize("name", list(MODERN) + ["old_bruker.002"])
def test_every_channel_has_plausible_units_and_values(name):
    """Each channel of each sample: a unit xafm reports, finite values in the range an
    instrument of that kind gives, and not a constant image (a wrong sample size shows as
    values off by 2**16 or as noise)."""
    path = shared_file("afm", name)
    for channel in xafm.channels(path):
        da = xafm.open(path, channel=channel)
        lo, hi = PLAUSIBLE[da.attrs["units"]]
        v = da.values
        assert np.isfinite(v).all() and lo < v.min() < v.max() < hi, (channel, v.min(), v.max())
        # neighbouring pixels are alike (an image), unlike a misread byte stream
        rough = np.abs(np.diff(v[0], axis=1)).mean()
        assert rough < 0.5 * (v.max() - v.min()), channel


def test_header_without_its_data_is_truncated():
    path = shared_file("afm", "bruker_v97_header_only.002")
    with pytest.raises(xafm.CorruptFileError, match="truncated") as err:
        xafm.open(path)
    message = str(err.value)
    # the last image (Height, 512 x 359 x 2 bytes) ends at 5213248 + 735232; the file is 43130 bytes
    assert str(5213248 + 735232) in message and str(path.stat().st_size) in message and str(path) in message
    assert "does not match" not in message
    # the header alone still says what the file held
    assert xafm.channels(path) == ["Height Sensor", "Peak Force Error", "DMTModulus", "LogDMTModulus", "Adhesion", "Deformation", "Dissipation", "Height"]


def test_real_file_under_other_names(tmp_path):
    """Labs name these files anything: the content decides (a copy, never in the repo)."""
    src = shared_file("afm", "bruker_v10_peakforce.di")
    want = xafm.open(src).values
    for name in ("scan.pfc", "scan.000", "scan.spm", "scan_without_suffix", "scan.afm", "scan.DI"):
        dst = tmp_path / name
        dst.symlink_to(src)
        assert xafm.registry.identify(dst).name == "nanoscope"
        np.testing.assert_array_equal(xafm.open(dst).values, want)


def test_a_folder_of_real_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("old.001", "old.002"):
        (folder / name).symlink_to(shared_file("afm", "old_bruker.002"))
    with pytest.warns(xafm.XafmWarning):  # both frames say they started at the same time
        da = xafm.open(folder)
    assert da.shape == (2, 256, 256)
    np.testing.assert_array_equal(da.values[1], xafm.open(folder / "old.002").values[0])


# --------------------------------------------------------------------------------------
# what the header says: sample size, scales, units, geometry
# --------------------------------------------------------------------------------------
@given(
    shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    bpp=st.sampled_from([2, 4]),
    hard=st.floats(0.5, 500),
    hard_unit=st.sampled_from([("V", 1.0), ("mV", 1e-3)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_modern_files_store_4_bytes_whatever_bytes_per_pixel_says(tmp_path_factory, shape, bpp, hard, hard_unit, seed):
    """Version 9.2 and later: 4-byte samples (from Data length), scaled by Bytes/pixel."""
    raw = np.random.default_rng(seed).integers(-(2**15), 2**15, size=shape)
    path = tmp_path_factory.mktemp("ns") / "f.spm"
    write_nanoscope(
        path, [{"name": "Height Sensor", "raw": raw, "hard": hard, "hard_unit": hard_unit[0], "bpp": bpp, "stored": 4}],
        version="0x09400202", sens="V 2.5 nm/V",
    )
    da = xafm.open(path)
    assert da.attrs["units"] == "nm"
    want = raw[::-1] * (hard * hard_unit[1] / 2 ** (8 * bpp) * 2.5)
    np.testing.assert_allclose(da.values[0], want, rtol=1e-12)


@pytest.mark.parametrize(
    "name,soft,sens,hard_unit,factor,unit",
    [
        ("DMTModulus", "Sens. StiffnessSens", "V 1.5 MPa/Arb", "Arb", 1.5e6, "Pa"),
        ("DMTModulus", "Sens. StiffnessSens", "V 1.000000 ", "Arb", 1.0, "Arb"),  # uncalibrated: as the header says
        ("LogDMTModulus", "Sens. LogStiffnessSens", "V 1.000000 ", "log(Arb)", 1.0, "log(Arb)"),
        ("Adhesion", "Sens. ForceSens", "V 0.3209764 nN/Arb", "Arb", 0.3209764e-9, "N"),
        ("Adhesion", "Sens. ForceSens", "V 0.006 V/Arb", "Arb", 0.006, "V"),
        ("Deformation", "Sens. DeformationSens", "V 541.2 nm\xb1/V", "V", 541.2, "nm"),
        ("Dissipation", "Sens. DissipationSens", "V 2.0 eV/Arb", "Arb", 2.0, "eV"),
        ("Dissipation", "Sens. DissipationSens", "V 3.0 fJ/Arb", "Arb", 3e-15, "J"),
        ("Current", "Sens. CurrentSens", "V 10.0 nA/V", "mV", 10e-9 * 1e-3, "A"),
        ("Potential", None, None, "mV", 1e-3, "V"),
        ("Phase", "Sens. Phase", "V 1.000000 ", "\xba", 1.0, "deg"),
    ],
)
def test_peakforce_qnm_and_other_units(tmp_path, name, soft, sens, hard_unit, factor, unit):
    raw = np.arange(-6, 6).reshape(3, 4) * 1000
    lines = [f"{soft}: {sens}"] if sens else []
    path = write_nanoscope(
        tmp_path / "qnm.spm", [{"name": name, "raw": raw, "soft": soft, "hard": 4096.0, "hard_unit": hard_unit, "bpp": 4}],
        sens_lines=lines, version="0x09700105",
    )
    da = xafm.open(path)
    assert da.attrs["units"] == unit
    np.testing.assert_allclose(da.values[0], raw[::-1] * 4096.0 / 2**32 * factor, rtol=1e-12)


def test_non_square_pixels_from_the_scan_size(tmp_path):
    raw = np.arange(4 * 6).reshape(4, 6)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": raw}], scan_size="100 100 nm", scan_list=["Lines: 4", "Aspect Ratio: 1:1"])
    assert xafm.core.model.pixel_size_nm(xafm.open(path)) == pytest.approx((25.0, 100 / 6))


def test_interrupted_capture_keeps_the_line_spacing(tmp_path):
    """5 of the frame's 8 lines captured: 300 nm over 8 lines, whatever the image holds."""
    raw = np.arange(5 * 8).reshape(5, 8)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": raw}], scan_size="300 300 nm", scan_list=["Lines: 8", "Samps/line: 8"])
    da = xafm.open(path)
    assert da.shape == (1, 5, 8)
    assert xafm.core.model.pixel_size_nm(da) == pytest.approx((37.5, 37.5))


@pytest.mark.parametrize("name", ["frame.di", "frame.pfc", "frame.000", "frame.999", "frame.xyz", "frame"])
def test_recognised_by_content_under_any_name(tmp_path, name):
    path = write_nanoscope(tmp_path / name, [{"name": "Height", "raw": np.ones((2, 3))}])
    assert xafm.registry.find(path).name == "nanoscope"
    assert xafm.open(path).shape == (1, 2, 3)


def test_a_nanoscope_file_named_as_another_format(tmp_path):
    path = write_nanoscope(tmp_path / "frame.sxm", [{"name": "Height", "raw": np.ones((2, 3))}])
    with pytest.raises(xafm.SuffixMismatchError, match="Bruker Nanoscope"):
        xafm.open(path)


def test_content_check_is_the_first_line():
    probe = xafm.core.contract.Probe
    assert nanoscope.identify.__doc__
    for head, claimed in ((b"\\*File list\r\n", True), (b"\\*EC File list\r\n", True), (b"\\*Force file list\r\n", True), (b" \\*File list", False), (b"*File list", False)):
        p = probe("unused")
        p.__dict__["head"] = head  # the cached property, as registry.confirms would see it
        assert nanoscope.identify(p) is claimed


# --------------------------------------------------------------------------------------
# force curves are not images
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["curve", "volume", "mode"])
def test_force_curve_files_are_refused(tmp_path, kind):
    path = write_nanoscope_force(tmp_path / f"curve_{kind}.spm", kind=kind)
    for call in (xafm.open, xafm.channels):
        with pytest.raises(xafm.NotAnImageError, match=r"this is a force-curve file \(Nanoscope .*\); xafm reads images$") as err:
            call(path)
        assert not isinstance(err.value, xafm.CorruptFileError) and str(path) in str(err.value)


def test_force_volume_with_an_image_reads_the_image(tmp_path):
    raw = np.arange(12).reshape(3, 4)
    path = write_nanoscope(tmp_path / "fv.pfc", [{"name": "Height", "raw": raw}], scan_list=["Operating mode: Force Volume"])
    np.testing.assert_allclose(xafm.open(path).values[0], expected(raw, 2))


@settings(max_examples=25)
@given(data=st.data())
def test_fuzz_the_header_without_data(data):
    """The header-only sample is not in test_fuzz's REAL_FILES (its every copy is refused,
    which `xafm info` over REAL_FILES would not accept); mutate it here."""
    check_mutated_copy(shared_file("afm", "bruker_v97_header_only.002"), data)


def test_info_on_the_modern_files_and_the_header_only_one(capsys):
    from xafm import cli

    assert cli.main(["info", str(shared_file("afm", "bruker_v94_fastscan.spm"))]) == 0
    out = capsys.readouterr().out
    assert "Height Sensor" in out and "Peak Force Error_trace" in out
    assert cli.main(["info", str(shared_file("afm", "bruker_v97_header_only.002"))]) == 2
    assert "truncated" in capsys.readouterr().err


@pytest.mark.parametrize("aspect,scan_size,pixel_y", [("2:1", "100 100 nm", 12.5), ("1:1", "100 100 nm", 25.0), ("2:1", "100 40 nm", 10.0), ("0.5", "100 100 nm", 25.0)])
def test_aspect_ratio_of_the_scan_area(tmp_path, aspect, scan_size, pixel_y):
    """fast:slow 2:1 halves a slow extent that only repeats the fast one; a stated y wins."""
    raw = np.arange(4 * 4).reshape(4, 4)
    path = write_nanoscope(tmp_path / "x.spm", [{"name": "Height", "raw": raw}], scan_size=scan_size, scan_list=[f"Aspect Ratio: {aspect}"])
    assert xafm.core.model.pixel_size_nm(xafm.open(path)) == pytest.approx((pixel_y, 25.0))


def test_electrochemistry_header_variant(tmp_path):
    raw = np.arange(6).reshape(2, 3)
    path = write_nanoscope(tmp_path / "ec.spm", [{"name": "Height", "raw": raw}])
    patch_nanoscope_header(path, b"\\*File list\r\n", b"\\*EC File list\r\n")
    assert xafm.registry.find(path).name == "nanoscope"
    da = xafm.open(path)
    np.testing.assert_allclose(da.values[0], expected(raw, 2))
    assert json.loads(da.attrs["acquisition_json"])["version"] == "0x05310001"
