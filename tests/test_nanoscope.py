"""Bruker Nanoscope reader: the real file against AFMReader's numbers, synthetic round trips,
damaged files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm.core.lazy import RawFramesArray
from xafm.formats import nanoscope
from xafm.testing import patch_nanoscope_header, write_nanoscope

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
    raws = [rng.integers(-3000, 3000, size=(4, 6)) for _ in range(4)]
    path = write_nanoscope(
        tmp_path / "multi.spm",
        [
            {"name": "Height", "raw": raws[0]},
            {"name": "Height", "raw": raws[1], "direction": "Retrace", "frame": "Down"},
            {"name": "Phase", "raw": raws[2], "soft": "Sens. Phase", "hard": 20},
            {"name": "Height Sensor", "raw": raws[3], "soft": "Sens. Nothing", "hard": 10},
        ],
    )
    assert xafm.channels(path) == ["Height", "Height_retrace", "Phase", "Height Sensor"]
    np.testing.assert_allclose(xafm.open(path).values[0], expected(raws[0], 2))
    retrace = xafm.open(path, channel="Height_retrace")
    np.testing.assert_allclose(retrace.values[0], expected(raws[1], 2))
    assert xafm.core.model.frame_metadata(retrace)[0]["scan_direction"] == "down"
    phase = xafm.open(path, channel="Phase")
    assert phase.attrs["units"] == "deg"  # the sensitivity line has no unit
    np.testing.assert_allclose(phase.values[0], raws[2][::-1] * 20 / 65536)
    sensor = xafm.open(path, channel="Height Sensor")  # soft scale not in the header: volts
    assert sensor.attrs["units"] == "V"
    np.testing.assert_allclose(sensor.values[0], raws[3][::-1] * 10 / 65536)


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
    path = write_nanoscope(tmp_path / "z.spm", [{"name": "Height", "raw": np.ones((8, 8))}], samps=10**9, lines=1, data_length=2 * 10**9)
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
        (b"\\*Force file list\r\n\\*File list end\r\n", "force-curve"),
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

    got = nanoscope._epoch_ms(text)
    if iso is None:
        assert got is None
    else:
        assert got == dt.datetime.fromisoformat(iso + "+00:00").timestamp() * 1000
