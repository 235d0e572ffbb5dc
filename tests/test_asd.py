"""The RIBM/Kanazawa ``.asd`` reader: the real sample, synthetic files of every version,
both channels, long lazy videos, damaged files, and a write -> read property test."""

from __future__ import annotations

import json
import mmap
import struct
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.core import lazy as _lazy
from xafm.exceptions import ChannelError, CorruptFileError, FormatError, TruncatedFileWarning, XafmWarning
from xafm.formats import asd
from xafm.testing import write_asd

SAMPLE = ("afm", "asd_sample_0.asd")
AD_CODES = {0x1: (1.0, False), 0x2: (2.5, False), 0x3: (9.99, False), 0x4: (5.0, False),
            0x10000: (1.0, True), 0x20000: (2.5, True), 0x40000: (5.0, True)}


def expected_values(levels, *, code="TP", ad_range=0x3, ad_bits=12, z_gain=2.0, z_extension=10.0,
                    scanner_sensitivity=1.0, phase_sensitivity=1.0):
    """The documented conversion, written out independently of the reader (float32 header
    floats widened to float64)."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    factor = {"TP": f32(z_gain) * f32(z_extension), "ER": -f32(scanner_sensitivity), "PH": -f32(phase_sensitivity)}[code]
    volts, bipolar = AD_CODES[ad_range]
    res = 2.0**ad_bits
    lv = np.asarray(levels, dtype=np.float64)
    if bipolar:
        return (volts - 2.0 * lv * volts / res) * factor
    return lv * (-volts / res * factor)


def acquisition(da):
    return json.loads(da.attrs[conventions.ACQUISITION_ATTR])


def levels(rng, shape, lo=0, hi=4096):
    return rng.integers(lo, hi, size=shape).astype(np.int16)


# --------------------------------------------------------------------------------------
# the real sample
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*SAMPLE)
    ref = reference("afm")["asd_sample_0.asd"]
    da = xafm.open(path)
    assert da.name == "topography" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)
    np.testing.assert_allclose(da.time.values, np.arange(32) * ref["frame_time_s"])
    assert da.time.values[:5].tolist() == ref["playnano_crosscheck"]["timestamps_s_first5"]
    fm0 = model.frame_metadata(da)[0]
    want = ref["playnano_crosscheck"]["frame_metadata_0"]
    for key in ("timestamp", "frame_duration_s", "line_rate", "start_epoch_ms"):
        assert fm0[key] == pytest.approx(want[key], rel=1e-12), key
    assert fm0["asd_frame_number"] == 1
    acq = acquisition(da)
    hdr = ref["header"]
    assert acq["date"] == hdr["date"]
    assert acq["file_version"] == hdr["file_version"] == 1
    assert acq["header"]["z_piezo_extension"] == pytest.approx(hdr["z_piezo_extension"], rel=1e-6)
    assert acq["conversion"]["ad_range_code"] == hdr["analogue_digital_range"]
    assert acq["data_offset"] == hdr["header_length"] == 174
    assert acq["user_name"] == "Anonymous"
    rec = provenance.records(da)[-1]
    assert (rec["type"], rec["format"], rec["channel"], rec["frames_read"]) == ("read", "asd", "topography", 32)


def test_real_file_engine_lazy_and_channels():
    path = shared_file(*SAMPLE)
    eager = xafm.open(path)
    via_engine = xr.open_dataarray(path, engine="xafm")
    np.testing.assert_array_equal(via_engine.values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        assert lazy.coords["asd_max_data"].chunks is not None
        part = lazy.isel(time=slice(3, 9), y=slice(10, 50))
    np.testing.assert_array_equal(part.values, eager.values[3:9, 10:50])
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(lazy.coords["asd_min_data"].values, eager.coords["asd_min_data"].values)
    assert xafm.channels(path) == ["topography"]
    for name in ("TP", "tp", "height", "topography"):
        np.testing.assert_array_equal(xafm.open(path, channel=name).values, eager.values)
    with pytest.raises(ChannelError, match=r"no channel 'phase'; available: \['topography'\]"):
        xafm.open(path, channel="phase")


def test_real_file_frame_headers_match_the_data():
    """min/max levels in each frame header are the frame's own levels (frames 0..27 of the sample)."""
    path = shared_file(*SAMPLE)
    da = xafm.open(path)
    acq = acquisition(da)
    levels_back = np.rint((da.values - acq["conversion"]["add"]) / acq["conversion"]["scale"]).astype(int)
    assert levels_back.min() >= 0 and levels_back.max() <= 4095
    assert da.coords["asd_max_data"].values[0] == levels_back[0].max() == 3607
    assert da.coords["asd_min_data"].values[0] == levels_back[0].min() == 3578
    np.testing.assert_array_equal(da.coords["asd_frame_number"].values, np.arange(1, 33))


# --------------------------------------------------------------------------------------
# the real version-0 sample (AFMReader's extra_sample.asd)
# --------------------------------------------------------------------------------------
V0_SAMPLE = ("afm", "asd_v0_sample.asd")


def _v0_header_by_hand(raw: bytes) -> dict:
    """The version-0 header fields decoded here, offset by offset (docs/formats.md), not by the reader."""
    u = lambda fmt, at: struct.unpack_from("<" + fmt, raw, at)[0]  # noqa: E731
    return {
        "version": u("i", 0), "ch1": raw[4:6], "ch2": raw[6:8], "header_length": u("i", 8),
        "frame_header_length": u("i", 12), "user_size": u("i", 16), "comment_offset_size": u("i", 20),
        "comment_size": u("i", 24), "x": u("h", 28), "y": u("h", 30), "x_nm": u("h", 32), "y_nm": u("h", 34),
        "frame_time_ms": u("f", 36), "z_ext": u("f", 40), "z_gain": u("f", 44), "ad_range": u("I", 48),
        "ad_bits": u("i", 52), "date": (u("h", 63), *raw[65:70]), "initial_frames": u("i", 91), "frames": u("i", 95),
        "user": raw[105:119], "scanner_sens": u("f", 119), "phase_sens": u("f", 123), "scan_direction": u("i", 127),
        "comment": raw[131 + 88 : 131 + 88 + 8],
    }


def test_real_v0_file_matches_reference():
    path = shared_file(*V0_SAMPLE)
    ref = reference("afm")["asd_v0_sample.asd"]
    da = xafm.open(path)
    assert da.name == "topography" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)  # 64 x 256 x 256, 500 nm / 256 = 1.953125 nm, -26.147 .. 450 (101.065)
    raw = path.read_bytes()
    h = _v0_header_by_hand(raw)
    assert (h["version"], h["ch1"], h["ch2"]) == (0, b"TP", b"PH")
    assert (h["x"], h["y"], h["x_nm"], h["y_nm"], h["frames"], h["initial_frames"]) == (256, 256, 500, 500, 64, 64)
    assert (h["z_ext"], h["z_gain"], h["ad_range"], h["ad_bits"]) == (45.0, 2.0, 0x40000, 12)  # bipolar 5 V
    # bipolar: value = (5 - 2 * level * 5 / 4096) * 2 * 45 nm: level 0 is the reference maximum, 450 nm
    assert (5.0 - 0.0) * h["z_gain"] * h["z_ext"] == ref["max"]
    # the header length field counts the fixed 105 bytes, the user name and the 12 bytes after it;
    # the comment offset area and the comment follow, then the frames, which fill the file exactly
    assert h["header_length"] == 105 + h["user_size"] + 12 == 131
    offset = h["header_length"] + h["comment_offset_size"] + h["comment_size"]
    stride = h["frame_header_length"] + 2 * 256 * 256
    assert offset == 227 and offset + 2 * 64 * stride == len(raw)
    acq = acquisition(da)
    assert acq["data_offset"] == offset and acq["file_version"] == 0
    assert acq["channels_in_file"] == ["TP", "PH"] and xafm.channels(path) == ["topography", "phase"]
    # text: two bytes per character, NUL first; xafm drops the NULs
    assert h["user"] == "biophys".encode("utf-16-be") and h["comment"] == "mica".encode("utf-16-be")
    assert (acq["user_name"], acq["comment"]) == ("biophys", "mica")
    assert acq["date"] == "2022-07-15 16:08:30" and h["date"] == (2022, 7, 15, 16, 8, 30)
    assert acq["scan_direction"] == "x_backward+y_backward" and h["scan_direction"] == 2 | 8
    # frame times: k x the header's frame time (float32, 1007.58 ms)
    np.testing.assert_array_equal(da.time.values, np.arange(64) * (float(np.float32(h["frame_time_ms"])) / 1000.0))
    assert model.frame_metadata(da)[1]["frame_duration_s"] == pytest.approx(1.00758136, rel=1e-8)


def test_real_v0_frame_headers_and_channels():
    """Each channel's frame headers count 1..64, and their min/max are the frame's own levels;
    the first three and the last topography frames are empty (all levels 0, 450 nm)."""
    path = shared_file(*V0_SAMPLE)
    raw = path.read_bytes()
    stride = 32 + 2 * 256 * 256
    for channel in range(2):
        for k in range(64):
            at = 227 + (channel * 64 + k) * stride
            number, top, bottom = struct.unpack_from("<ihh", raw, at)
            lv = np.frombuffer(raw, "<i2", 256 * 256, at + 32)
            assert (number, top, bottom) == (k + 1, lv.max(), lv.min())
    da = xafm.open(path)
    np.testing.assert_array_equal(da.coords["asd_frame_number"].values, np.arange(1, 65))
    assert [bool((da.values[k] == 450.0).all()) for k in (0, 1, 2, 3, 63)] == [True, True, True, False, True]
    # the phase sensitivity in the header is 0: the phase levels are given as the A/D voltage, with a warning
    assert _v0_header_by_hand(raw)["phase_sens"] == 0.0
    with pytest.warns(XafmWarning, match="phase sensitivity is 0"):
        phase = xafm.open(path, channel="phase")
    assert phase.attrs["units"] == "V"
    first = np.frombuffer(raw, "<i2", 256 * 256, 227 + 64 * stride + 32).reshape(256, 256)
    np.testing.assert_array_equal(phase.values[0], 5.0 - 2.0 * first * 5.0 / 4096)


def test_zero_sensitivity_gives_volts(tmp_path, rng):
    lv = levels(rng, (2, 3, 4))
    p = write_asd(tmp_path / "er.asd", lv, channel="ER", scanner_sensitivity=0.0, ad_range=0x1)
    with pytest.warns(XafmWarning, match="scanner sensitivity is 0.*A/D voltage"):
        da = xafm.open(p)
    assert da.attrs["units"] == "V" and acquisition(da)["conversion"]["uncalibrated"] is True
    np.testing.assert_allclose(da.values, lv * (-1.0 / 4096), rtol=1e-12)  # unipolar 1 V, factor 1


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, 1, 2])
def test_versions_round_trip(tmp_path, rng, version):
    lv = levels(rng, (5, 6, 7))
    p = write_asd(tmp_path / f"v{version}.asd", lv, version=version, frame_time_ms=40.0, x_nm=70, y_nm=30,
                  z_gain=3.5, z_extension=8.25, user="Kodera", comment="scan of actin", date=(2020, 2, 29, 23, 59, 58),
                  anchors=(2, 1, 3) if version == 2 else (0, 0, 0), x_tilt=np.arange(5) * 0.5)
    da = xafm.open(p)
    np.testing.assert_allclose(da.values, expected_values(lv, z_gain=3.5, z_extension=8.25), rtol=1e-13)
    assert model.pixel_size_nm(da) == pytest.approx((5.0, 10.0))
    np.testing.assert_allclose(da.time.values, np.arange(5) * 0.04)
    np.testing.assert_allclose(da.coords["line_rate"].values, 6 / 0.04)
    np.testing.assert_array_equal(da.coords["asd_max_data"].values, lv.reshape(5, -1).max(axis=1))
    np.testing.assert_array_equal(da.coords["asd_min_data"].values, lv.reshape(5, -1).min(axis=1))
    np.testing.assert_allclose(da.coords["asd_x_tilt"].values, np.arange(5) * 0.5)
    acq = acquisition(da)
    assert acq["file_version"] == version
    assert acq["user_name"] == "Kodera" and acq["comment"] == "scan of actin"
    assert acq["date"] == "2020-02-29 23:59:58"
    end_ms = 1583020798000.0  # 2020-02-29 23:59:58 UTC
    np.testing.assert_allclose(da.coords["start_epoch_ms"].values, end_ms - 5 * 40.0 + np.arange(5) * 40.0)
    if version == 2:
        assert acq["header"]["red_anchors"] == 2 and acq["header"]["blue_anchors"] == 3


def test_shift_jis_comment(tmp_path, rng):
    p = write_asd(tmp_path / "jp.asd", levels(rng, (1, 4, 4)), user="小寺", comment="アクチン", text_encoding=932)
    acq = acquisition(xafm.open(p))
    assert (acq["user_name"], acq["comment"]) == ("小寺", "アクチン")


@pytest.mark.parametrize("version", [0, 1, 2])
def test_two_channels(tmp_path, rng, version):
    tp, er = levels(rng, (4, 5, 6)), levels(rng, (4, 5, 6))
    p = write_asd(tmp_path / "two.asd", tp, version=version, channel="TP", second_channel=("ER", er),
                  scanner_sensitivity=2.75, ad_range=0x20000)
    assert xafm.channels(p) == ["topography", "error"]
    top = xafm.open(p)
    err = xafm.open(p, channel="ER")
    assert top.name == "topography" and err.name == "error" and err.attrs["units"] == "nm"
    np.testing.assert_allclose(top.values, expected_values(tp, ad_range=0x20000), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(err.values, expected_values(er, code="ER", ad_range=0x20000, scanner_sensitivity=2.75), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(err.coords["asd_frame_number"].values, np.arange(1, 5))
    np.testing.assert_array_equal(xafm.open(p, channel="error").values, err.values)
    with pytest.raises(ChannelError, match=r"available: \['topography', 'error'\]"):
        xafm.open(p, channel="PH")


def test_default_channel_is_topography_even_when_second(tmp_path, rng):
    ph, tp = levels(rng, (2, 3, 3)), levels(rng, (2, 3, 3))
    p = write_asd(tmp_path / "ph_tp.asd", ph, channel="PH", second_channel=("TP", tp), phase_sensitivity=0.5)
    assert xafm.channels(p) == ["phase", "topography"]
    np.testing.assert_allclose(xafm.open(p).values, expected_values(tp), rtol=1e-13)
    phase = xafm.open(p, channel="phase")
    assert phase.attrs["units"] == "deg"
    np.testing.assert_allclose(phase.values, expected_values(ph, code="PH", phase_sensitivity=0.5), rtol=1e-13)


@pytest.mark.parametrize("code", sorted(AD_CODES))
def test_ad_ranges(tmp_path, code):
    lv = np.array([[[0, 1, 2048, 4095]]], dtype=np.int16)
    p = write_asd(tmp_path / "ad.asd", lv, ad_range=code, z_gain=1.5, z_extension=4.0)
    np.testing.assert_allclose(xafm.open(p).values, expected_values(lv, ad_range=code, z_gain=1.5, z_extension=4.0), rtol=1e-13)


def test_ad_bits_from_header(tmp_path):
    lv = np.array([[[0, 100, 65535 // 2]]], dtype=np.int16)
    p = write_asd(tmp_path / "bits.asd", lv, ad_bits=16, ad_range=0x1, z_gain=1.0, z_extension=1.0)
    np.testing.assert_allclose(xafm.open(p).values, lv * (-1.0 / 65536))
    # an implausible bit count falls back to the 12 bits every public reader assumes
    p = write_asd(tmp_path / "bits0.asd", lv, ad_bits=0, ad_range=0x1, z_gain=1.0, z_extension=1.0)
    np.testing.assert_allclose(xafm.open(p).values, lv * (-1.0 / 4096))


def test_header_length_disagreements(tmp_path, rng):
    lv = levels(rng, (3, 4, 4))
    # version 0: a wrong header length field is ignored in favour of the parsed header end
    p0 = write_asd(tmp_path / "v0.asd", lv, version=0, header_length=999, comment_offset_size=6, comment="abc")
    np.testing.assert_allclose(xafm.open(p0).values, expected_values(lv), rtol=1e-13)
    # version 1: the field is used when it fits the file, the parsed end when only that fits
    p1 = write_asd(tmp_path / "v1.asd", lv, version=1, header_length=170, user="abcdefghij")
    da = xafm.open(p1)
    np.testing.assert_allclose(da.values, expected_values(lv), rtol=1e-13)
    assert acquisition(da)["notes"]


def test_trailing_bytes_are_noted(tmp_path, rng):
    lv = levels(rng, (2, 3, 3))
    p = write_asd(tmp_path / "tail.asd", lv)
    p.write_bytes(p.read_bytes() + b"extra")
    da = xafm.open(p)
    np.testing.assert_allclose(da.values, expected_values(lv), rtol=1e-13)
    assert "5 bytes after the last frame" in acquisition(da)["notes"][0]


def test_bad_frame_time_falls_back_to_index(tmp_path, rng):
    p = write_asd(tmp_path / "t.asd", levels(rng, (3, 2, 2)), frame_time_ms=0.0, date=(2020, 13, 40, 0, 0, 0))
    with pytest.warns(XafmWarning, match="frame time"):
        da = xafm.open(p)
    np.testing.assert_array_equal(da.time.values, [0, 1, 2])
    assert np.isnan(da.coords["line_rate"].values).all() and np.isnan(da.coords["start_epoch_ms"].values).all()
    assert acquisition(da)["date"] is None


# --------------------------------------------------------------------------------------
# long videos: opening is metadata only
# --------------------------------------------------------------------------------------
class _Counter:
    def __init__(self):
        self.frames_reads = 0
        self.memmaps = 0
        self.preads = 0
        self.header_bytes = 0


@pytest.fixture
def io_counter(monkeypatch):
    """Counts every way the reader touches the file: header reads, frame reads, memmaps, preads."""
    c = _Counter()
    real_read = _lazy.RawFramesArray._read
    real_pread = _lazy._pread_into
    real_memmap = np.memmap
    real_open = asd.sources.open_binary

    def counting_read(self, key):
        c.frames_reads += 1
        return real_read(self, key)

    def counting_memmap(*a, **k):
        c.memmaps += 1
        return real_memmap(*a, **k)

    class CountingFile:
        def __init__(self, fh):
            self._fh = fh

        def read(self, n=-1):
            out = self._fh.read(n)
            c.header_bytes += len(out)
            return out

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    monkeypatch.setattr(_lazy.RawFramesArray, "_read", counting_read)
    monkeypatch.setattr(np, "memmap", counting_memmap)

    class CountingMmap:  # what RawFramesArray maps a read's frames with
        ACCESS_READ, ALLOCATIONGRANULARITY = mmap.ACCESS_READ, mmap.ALLOCATIONGRANULARITY
        MADV_RANDOM, MADV_WILLNEED = mmap.MADV_RANDOM, mmap.MADV_WILLNEED

        @staticmethod
        def mmap(*a, **k):
            c.memmaps += 1
            return mmap.mmap(*a, **k)

    monkeypatch.setattr(_lazy, "mmap", CountingMmap)

    def counting_pread(*a, **k):  # what RawFramesArray reads a run of frames with
        c.preads += 1
        return real_pread(*a, **k)

    monkeypatch.setattr(_lazy, "_pread_into", counting_pread)
    monkeypatch.setattr(asd.sources, "open_binary", lambda *a, **k: CountingFile(real_open(*a, **k)))
    return c


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    rng = np.random.default_rng(7)
    lv = rng.integers(0, 4096, size=(2000, 64, 64), dtype=np.int16)
    folder = tmp_path_factory.mktemp("long-asd")
    short = write_asd(folder / "short.asd", lv[:20], frame_time_ms=20.0)
    long = write_asd(folder / "long.asd", lv, frame_time_ms=20.0, second_channel=("ER", lv[::-1]))
    return lv, short, long


def test_long_video_open_reads_no_frame_data(long_video, io_counter):
    lv, short, long = long_video
    with raise_if_dask_computes():
        small = xafm.open(short, chunks={"time": 100})
    small_bytes = io_counter.header_bytes
    io_counter.header_bytes = 0
    with raise_if_dask_computes():
        da = xafm.open(long, chunks={"time": 100})
    assert da.shape == (2000, 64, 64) and small.shape == (20, 64, 64)
    assert io_counter.frames_reads == 0 and io_counter.memmaps == 0 and io_counter.preads == 0
    # the same few header bytes for 20 or 2000 frames: opening does not grow with the video
    assert io_counter.header_bytes == small_bytes and 165 <= small_bytes < 1024
    assert len(da.data.chunks[0]) == 20
    # reading one frame touches only that frame's chunk
    frame = da.isel(time=1234).values
    assert io_counter.frames_reads == 1 and io_counter.memmaps + io_counter.preads == 1
    np.testing.assert_allclose(frame, expected_values(lv[1234]), rtol=1e-13)


def test_a_lazy_open_reads_the_frame_headers_in_one_pass(long_video, io_counter):
    """``lazy=True`` on a local file: the five header fields of the 2000 frames come from one
    strided read at open, so that a fetch reads its frame and nothing else."""
    lv, _, long = long_video
    da = xafm.open(long, lazy=True)
    assert io_counter.frames_reads == 1, "one read of the frame headers for all five fields"
    np.testing.assert_array_equal(da.coords["asd_frame_number"].values, np.arange(1, 2001))
    np.testing.assert_array_equal(da.coords["asd_max_data"].values, lv.reshape(2000, -1).max(axis=1))
    np.testing.assert_array_equal(da.coords["asd_min_data"].values, lv.reshape(2000, -1).min(axis=1))
    io_counter.frames_reads = 0
    frame = da.isel(time=1234)
    np.testing.assert_allclose(frame.values, expected_values(lv[1234]), rtol=1e-13)
    assert frame.coords["asd_max_data"].values == lv[1234].max()
    assert io_counter.frames_reads == 1, "the frame only: its header fields were read at open"


def test_long_video_lazy_equals_eager(long_video):
    lv, _, long = long_video
    eager = xafm.open(long)
    lazy = xafm.open(long, chunks={"time": 128})
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_allclose(eager.values[::97], expected_values(lv[::97]), rtol=1e-13)
    np.testing.assert_array_equal(lazy.coords["asd_frame_number"].values, np.arange(1, 2001))
    err = xafm.open(long, channel="ER", chunks={})
    np.testing.assert_allclose(err.isel(time=[0, 1999]).values, expected_values(lv[[1999, 0]], code="ER"), rtol=1e-13)
    np.testing.assert_allclose(lazy.time.values[-1], 1999 * 0.02)


# --------------------------------------------------------------------------------------
# damaged and foreign files
# --------------------------------------------------------------------------------------
def _truncate(path, n_bytes):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n_bytes])
    return path


def test_truncated_video_raises_by_default(tmp_path, rng):
    lv = levels(rng, (10, 8, 8))
    p = _truncate(write_asd(tmp_path / "cut.asd", lv), 2 * (32 + 128) + 5)  # 2 whole frames + a bit
    with pytest.raises(CorruptFileError) as info:
        xafm.open(p)
    msg = str(info.value)
    assert str(p) in msg and "promises 10 frames" in msg and "holds only 7 topography complete frames" in msg and "on_truncated='warn'" in msg


def test_truncated_video_warn_reads_complete_frames(tmp_path, rng):
    lv = levels(rng, (10, 8, 8))
    p = _truncate(write_asd(tmp_path / "cut.asd", lv), 2 * (32 + 128) + 5)
    with pytest.warns(TruncatedFileWarning, match="3 frames lost"):
        da = xafm.open(p, on_truncated="warn")
    assert da.shape == (7, 8, 8)
    np.testing.assert_allclose(da.values, expected_values(lv[:7]), rtol=1e-13)
    assert acquisition(da)["frames_read"] == 7 and acquisition(da)["frames_promised"] == 10
    with pytest.warns(TruncatedFileWarning):
        lazy = xafm.open(p, on_truncated="warn", chunks={})
    np.testing.assert_array_equal(lazy.values, da.values)


def test_header_promising_more_frames(tmp_path, rng):
    lv = levels(rng, (4, 5, 5))
    p = write_asd(tmp_path / "liar.asd", lv, num_frames=1_000_000)
    with pytest.raises(CorruptFileError, match="promises 1000000 frames.*holds only 4 topography"):
        xafm.open(p)
    with pytest.warns(TruncatedFileWarning, match="999996 frames lost"):
        da = xafm.open(p, on_truncated="warn")
    np.testing.assert_allclose(da.values, expected_values(lv), rtol=1e-13)


def test_truncated_second_channel(tmp_path, rng):
    tp, er = levels(rng, (6, 4, 4)), levels(rng, (6, 4, 4))
    p = _truncate(write_asd(tmp_path / "two.asd", tp, second_channel=("ER", er)), 3 * (32 + 32))
    with pytest.raises(CorruptFileError, match="6 topography and 3 error complete frames"):
        xafm.open(p)
    with pytest.warns(TruncatedFileWarning, match="0 frames lost"):
        top = xafm.open(p, on_truncated="warn")
    assert top.shape[0] == 6
    with pytest.warns(TruncatedFileWarning, match="3 frames lost"):
        err = xafm.open(p, channel="ER", on_truncated="warn")
    np.testing.assert_allclose(err.values, expected_values(er[:3], code="ER"), rtol=1e-13)


def _patch(path, offset, fmt, value):
    buf = bytearray(path.read_bytes())
    struct.pack_into(fmt, buf, offset, value)
    path.write_bytes(bytes(buf))
    return path


@pytest.mark.parametrize(
    "damage,match",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"\x01\x00"), "too short"),
        (lambda p: p.write_bytes(b"GIF89a" + bytes(300)), "unknown .asd file version"),
        (lambda p: _patch(p, 0, "<i", 7), "unknown .asd file version 7"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "ends inside the version-1 file header"),
        (lambda p: p.write_bytes(p.read_bytes()[:174]), "promises 3 frames"),
        (lambda p: _patch(p, 48, "<i", 2**30), "implausible frame size"),
        (lambda p: _patch(p, 52, "<i", -5), "implausible frame size"),
        (lambda p: (_patch(p, 48, "<i", 40000), _patch(p, 52, "<i", 40000)), "implausible frame size"),
        (lambda p: _patch(p, 36, "<i", 0), "holds 0 frames"),
        (lambda p: _patch(p, 36, "<i", -3), "holds -3 frames"),
        (lambda p: _patch(p, 8, "<i", 2**31 - 1), "frame header length"),
        (lambda p: _patch(p, 20, "<i", 2**31 - 1), "implausible comment size"),
        (lambda p: _patch(p, 16, "<i", -1), "implausible user name size"),
        (lambda p: _patch(p, 133, "<I", 0x7), "unknown A/D range code 0x7"),
        (lambda p: _patch(p, 24, "4s", b"XY\0\0"), "unknown data kind 'XY'"),
        (lambda p: _patch(p, 24, "4s", b"\0\0\0\0"), "no channel 1"),
        (lambda p: _patch(p, 28, "4s", b"TP\0\0"), "same data kind"),
        (lambda p: _patch(p, 56, "<i", 0), "scan size"),
        (lambda p: _patch(p, 4, "<i", 2**31 - 1) and _patch(p, 20, "<i", 5000), "ends inside the comment"),
    ],
)
def test_bad_input(tmp_path, rng, damage, match):
    p = write_asd(tmp_path / "bad.asd", levels(rng, (3, 4, 4)), user="abcdefghi")
    damage(p)
    with pytest.raises(CorruptFileError, match=match) as info:
        xafm.open(p)
    assert str(p) in str(info.value)


def test_version2_bad_anchors_and_header_length(tmp_path, rng):
    p = write_asd(tmp_path / "v2.asd", levels(rng, (2, 4, 4)), version=2, user="abcdefghi")
    _patch(p, 174 + 24, "<i", -1)  # red anchor count
    np.testing.assert_allclose(xafm.open(p).values.shape, (2, 4, 4))  # the header length still finds the frames
    _patch(p, 4, "<i", 2**31 - 1)
    with pytest.raises(CorruptFileError, match="header length 2147483647 does not fit"):
        xafm.open(p)


def test_version0_bad_input(tmp_path, rng):
    p = write_asd(tmp_path / "v0.asd", levels(rng, (2, 4, 4)), version=0)
    _patch(p, 28, "<h", -1)
    with pytest.raises(CorruptFileError, match="implausible frame size"):
        xafm.open(p)
    p = write_asd(tmp_path / "v0b.asd", levels(rng, (2, 4, 4)), version=0)
    p.write_bytes(p.read_bytes()[:60])
    with pytest.raises(CorruptFileError, match="version-0 file header"):
        xafm.open(p)


def test_bad_options(tmp_path, rng):
    p = write_asd(tmp_path / "ok.asd", levels(rng, (1, 2, 2)))
    with pytest.raises(FormatError, match="on_truncated must be one of"):
        xafm.open(p, on_truncated="ignore")
    with pytest.raises(FormatError, match="has no option 'frobnicate'; its options are: channel, on_truncated"):
        xafm.open(p, frobnicate=1)


def test_garbage_never_leaks_foreign_errors(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(50):
        p = tmp_path / f"g{i}.asd"
        head = struct.pack("<i", int(rng.integers(0, 3)))
        p.write_bytes(head + rng.integers(0, 256, size=int(rng.integers(0, 600)), dtype=np.uint8).tobytes())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                da = xafm.open(p)
                assert da.dims == ("time", "y", "x") and da.values.shape == da.shape
            except xafm.XafmError as exc:  # anything else fails the test
                assert str(p) in str(exc), "errors name the file"


# --------------------------------------------------------------------------------------
# property: any levels written -> read back as the documented conversion
# --------------------------------------------------------------------------------------
f32 = st.floats(0.0625, 1024.0, width=32)


@settings(max_examples=40)
@given(
    data=st.data(),
    version=st.sampled_from([0, 1, 2]),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9)),
    ad_range=st.sampled_from(sorted(AD_CODES)),
    gain=f32, ext=f32, sens=f32,
    second=st.sampled_from([None, "ER", "PH"]),
    frame_time=st.floats(0.5, 5000, width=32),
)
def test_round_trip_property(tmp_path_factory, data, version, shape, ad_range, gain, ext, sens, second, frame_time):
    lv = data.draw(st.lists(st.integers(-32768, 32767), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    lv = np.array(lv, dtype=np.int16).reshape(shape)
    lv2 = lv[::-1].copy()
    p = tmp_path_factory.mktemp("prop") / "p.asd"
    write_asd(p, lv, version=version, ad_range=ad_range, z_gain=gain, z_extension=ext, frame_time_ms=frame_time,
              scanner_sensitivity=sens, phase_sensitivity=sens, second_channel=(second, lv2) if second else None,
              x_nm=3 * shape[2], y_nm=2 * shape[1])
    da = xafm.open(p)
    kw = dict(ad_range=ad_range, z_gain=gain, z_extension=ext, scanner_sensitivity=sens, phase_sensitivity=sens)
    want = expected_values(lv, **kw)
    np.testing.assert_allclose(da.values, want, rtol=1e-12, atol=1e-12 * np.abs(want).max(initial=1.0))
    assert model.pixel_size_nm(da) == pytest.approx((2.0, 3.0))
    np.testing.assert_allclose(da.time.values, np.arange(shape[0]) * float(np.float32(frame_time)) / 1000.0, rtol=1e-12)
    if second:
        other = xafm.open(p, channel=second)
        want2 = expected_values(lv2, code=second, **kw)
        np.testing.assert_allclose(other.values, want2, rtol=1e-12, atol=1e-12 * np.abs(want2).max(initial=1.0))
