"""The JPK image reader (``.jpk``, ``.jpk-qi-image``): the real samples against the
reference, channels and slots, dates, laziness, synthetic TIFFs written with the JPK tags,
damaged files, and a write -> read property test."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError
from xafm.formats import jpk
from xafm.testing import write_jpk

JPK = ("afm", "sample_0.jpk")
QI = ("afm", "sample_0.jpk-qi-image")
JPK_CHANNELS = [f"{q}_{d}" for d in ("retrace", "trace") for q in ("height", "measuredHeight", "amplitude", "phase", "error")]


def epoch_ms(text_utc: str) -> float:
    when = dt.datetime.strptime(text_utc, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
    return when.timestamp() * 1000.0


def expected(raw, multiplier=1.0, offset=0.0, unit="m", flip=True):
    v = np.asarray(raw, dtype=np.float64)
    v = v[::-1] if flip else v
    v = v * multiplier + offset
    return (v * 1e9 if unit == "m" else v)[None]


def acquisition(da):
    return json.loads(da.attrs[conventions.ACQUISITION_ATTR])


# --------------------------------------------------------------------------------------
# the real samples
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", [JPK, QI], ids=["jpk", "qi"])
def test_real_files_match_reference(sample):
    path = shared_file(*sample)
    ref = reference("afm")[sample[1]]
    da = xafm.open(path)
    assert da.name == "height_trace" and da.attrs["units"] == "nm" and da.dtype == np.float64
    assert_matches_reference(da, ref)
    assert da.time.values.tolist() == [0.0]
    (rec,) = provenance.records(da)
    assert rec["type"] == "read" and rec["format"] == "jpk" and rec["channel"] == "height_trace"


def test_real_jpk_frame_metadata_and_acquisition():
    da = xafm.open(shared_file(*JPK))
    (fm,) = model.frame_metadata(da)
    # start date '2017-01-16 16:00:32.334 GMT'; the unique-id tag holds the same instant
    assert fm["start_epoch_ms"] == epoch_ms("2017-01-16 16:00:32.334") == 1484582432334.0
    assert fm["frame_duration_s"] == pytest.approx(63.93)
    assert fm["line_rate"] == 4.0 and fm["scan_direction"] == "bottomUp"
    acq = acquisition(da)
    assert acq["software_version"] == "6.0.41"
    assert acq["scan_rate_lines_per_s"] == 4.0 and acq["motion"] == "bottomUp"
    assert acq["setpoint"] == pytest.approx(1.7387439435348273)
    assert acq["i_gain"] == -3450.0 and acq["p_gain"] == pytest.approx(-0.1104)
    assert acq["grid_ilength"] == 256 and acq["start_time_zone"] == "zone from the date"
    assert acq["channel"]["page"] == 6 and acq["channel"]["slot"] == "calibrated"
    assert "imaging.run-id" in acq["tags"]["32791"]


def test_real_qi_frame_metadata_and_duplicate_channels():
    path = shared_file(*QI)
    da = xafm.open(path)
    (fm,) = model.frame_metadata(da)
    # '2025-05-20 17:48:42.479 CEST' is UTC+2; QI images write the same end date: no duration
    assert fm["start_epoch_ms"] == epoch_ms("2025-05-20 15:48:42.479")
    assert fm["frame_duration_s"] is None and fm["line_rate"] is None and fm["scan_direction"] is None
    assert xafm.channels(path) == ["measuredHeight_trace", "vDeflection_trace", "measuredHeight_trace_2",
                                   "adhesion_trace", "height_trace", "slope_trace"]
    assert xafm.open(path, channel="vDeflection_trace").attrs["units"] == "N"
    assert xafm.open(path, channel="slope_trace").attrs["units"] == "N/m"
    first = xafm.open(path, channel="measuredHeight_trace")
    second = xafm.open(path, channel="measuredHeight_trace_2")
    assert acquisition(first)["channel"]["page"] == 1 and acquisition(second)["channel"]["page"] == 3
    assert not np.array_equal(first.values, second.values)


def test_real_jpk_channels_units_and_orientation():
    path = shared_file(*JPK)
    assert xafm.channels(path) == JPK_CHANNELS
    units = {name: xafm.open(path, channel=name).attrs["units"] for name in JPK_CHANNELS}
    assert units["phase_trace"] == "deg" and units["error_trace"] == "V" and units["amplitude_trace"] == "nm"
    assert units["measuredHeight_retrace"] == "nm"
    with tifffile.TiffFile(path) as tif:
        raw = tif.pages[6].asarray()
    da = xafm.open(path, channel="height_trace")
    want = np.flipud(raw) * -1.1577216212539286e-15 * 1e9 + 2.486188249421139e-06 * 1e9
    np.testing.assert_allclose(da.values[0], want, rtol=1e-12)
    assert xafm.open(path, channel="HEIGHT_TRACE").name == "height_trace"
    with pytest.raises(ChannelError, match=r"no channel 'deflection_trace'; available: \['height_retrace'"):
        xafm.open(path, channel="deflection_trace")


@pytest.mark.parametrize("sample", [JPK, QI], ids=["jpk", "qi"])
def test_real_files_engine_and_lazy(sample):
    path = shared_file(*sample)
    eager = xafm.open(path)
    via_engine = xr.open_dataarray(path, engine="xafm")
    np.testing.assert_array_equal(via_engine.values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(y=slice(3, 50, 4), x=[0, 9, 2])
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(part.values, eager.values[:, 3:50:4][:, :, [0, 9, 2]])


def test_truncated_and_garbage_real_file(tmp_path):
    data = shared_file(*JPK).read_bytes()
    for frac in (0.0005, 0.5, 0.99):
        p = tmp_path / f"cut{frac}.jpk"
        p.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(CorruptFileError):
            xafm.open(p)


# --------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,utc",
    [
        ("2017-01-16 16:00:32.334 GMT", "2017-01-16 16:00:32.334"),
        ("2025-05-28 14:41:58.548 +0100", "2025-05-28 13:41:58.548"),
        ("2025-05-20 17:48:42.479 CEST", "2025-05-20 15:48:42.479"),
        ("2025-01-20 09:00:00.5 EST", "2025-01-20 14:00:00.500"),
        ("2025-01-20 09:00:00 -05:30", "2025-01-20 14:30:00.000"),
        ("2025-01-20 09:00:00 UTC+02", "2025-01-20 07:00:00.000"),
    ],
)
def test_parse_date(text, utc):
    ms, note = jpk.parse_date(text)
    assert ms == epoch_ms(utc) and note == "zone from the date"


def test_parse_date_odd_input():
    assert jpk.parse_date("2020-01-01 00:00:00")[0] == epoch_ms("2020-01-01 00:00:00.0")
    assert "read as UTC" in jpk.parse_date("2020-01-01 00:00:00")[1]
    ms, note = jpk.parse_date("2020-01-01 00:00:00.000 XYZT")
    assert ms == epoch_ms("2020-01-01 00:00:00.0") and "unknown zone 'XYZT'" in note
    for bad in (None, 17, "", "yesterday", "2020-13-45 99:00:00 GMT"):
        assert jpk.parse_date(bad)[0] is None


def test_unknown_zone_uses_the_unique_id_when_it_is_a_nearby_time(tmp_path, rng):
    raw = rng.integers(0, 99, size=(3, 3)).astype(np.int32)
    uid = int(epoch_ms("2020-06-01 08:00:00.250"))  # the real instant; date written in local time
    p = write_jpk(tmp_path / "a.jpk", [{"name": "height", "retrace": False, "raw": raw}],
                  start="2020-06-01 10:00:00.250 XYZT", end="2020-06-01 10:00:30.250 XYZT", unique_id=str(uid))
    da = xafm.open(p)
    (fm,) = model.frame_metadata(da)
    assert fm["start_epoch_ms"] == uid and fm["frame_duration_s"] == pytest.approx(30.0)
    assert "unique-id" in acquisition(da)["start_time_zone"]
    q = write_jpk(tmp_path / "b.jpk", [{"name": "height", "retrace": False, "raw": raw}],
                  start="2020-06-01 10:00:00.250 XYZT", unique_id="61")
    (fq,) = model.frame_metadata(xafm.open(q))
    assert fq["start_epoch_ms"] == epoch_ms("2020-06-01 10:00:00.250")
    r = write_jpk(tmp_path / "c.jpk", [{"name": "height", "retrace": False, "raw": raw}], start=None, end=None)
    (fr,) = model.frame_metadata(xafm.open(r))
    assert fr["start_epoch_ms"] is None and fr["frame_duration_s"] is None


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
def test_synthetic_slots_units_and_flip(tmp_path, rng):
    raw = rng.integers(-500, 500, size=(5, 4)).astype(np.int32)
    chans = [
        {"name": "height", "retrace": True, "raw": raw, "multiplier": 2e-12, "offset": 1e-6},
        {"name": "phase", "retrace": False, "raw": raw + 1, "default": "degrees",
         "slots": [dict(name="raw", scaling="NullScaling", unit=None), dict(name="degrees", multiplier=0.1, unit="deg")]},
        {"name": "error", "retrace": False, "raw": raw + 2, "default": "raw",
         "slots": [dict(name="raw", scaling="NullScaling", unit=None), dict(name="volts", multiplier=0.1, unit="V")]},
    ]
    p = write_jpk(tmp_path / "s.jpk", chans, ulength=4e-7, vlength=1e-6)
    assert xafm.channels(p) == ["height_retrace", "phase_trace", "error_trace"]
    h = xafm.open(p)
    assert h.name == "height_retrace"  # no height_trace: the retrace is the default
    np.testing.assert_allclose(h.values, expected(raw, 2e-12, 1e-6), rtol=1e-12)
    assert model.pixel_size_nm(h) == pytest.approx((200.0, 100.0))
    ph = xafm.open(p, channel="phase_trace")
    assert ph.attrs["units"] == "deg"
    np.testing.assert_allclose(ph.values, expected(raw + 1, 0.1, unit="deg"))
    er = xafm.open(p, channel="error_trace")
    assert er.attrs["units"] == "raw"
    np.testing.assert_array_equal(er.values, expected(raw + 2, unit="raw"))


def test_reflect_keeps_row_order(tmp_path, rng):
    raw = rng.integers(-500, 500, size=(5, 4)).astype(np.int32)
    p = write_jpk(tmp_path / "r.jpk", [{"name": "height", "retrace": False, "raw": raw}], reflect=1)
    np.testing.assert_allclose(xafm.open(p).values, expected(raw, flip=False))


def test_opening_reads_no_pixel_data(tmp_path, rng, monkeypatch):
    raw = rng.integers(0, 9, size=(6, 6)).astype(np.int32)
    p = write_jpk(tmp_path / "l.jpk", [{"name": "height", "retrace": False, "raw": raw}])
    monkeypatch.setattr(jpk.JPKPageArray, "_read", lambda self, key: (_ for _ in ()).throw(AssertionError("read")))
    with raise_if_dask_computes():
        da = xafm.open(p, chunks={})
    assert da.shape == (1, 6, 6)


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,channels_kw,match",
    [
        ({"grid": False}, {}, "no JPK grid tags"),
        ({}, {"default": "nominal", "slots": [dict(name="raw", scaling="NullScaling", unit=None)]},
         "default slot 'nominal' is not among its 1 slots"),
        ({}, {"default": "odd", "slots": [dict(name="odd", scaling="PolynomialScaling")]}, "unsupported scaling"),
        ({}, {"default": "raw", "slots": []}, "slot count 0"),
        ({"ulength": 0.0}, {}, "grid width"),
    ],
)
def test_bad_tags(tmp_path, rng, kwargs, channels_kw, match):
    raw = rng.integers(0, 9, size=(3, 3)).astype(np.int32)
    p = write_jpk(tmp_path / "bad.jpk", [{"name": "height", "retrace": False, "raw": raw, **channels_kw}], **kwargs)
    with pytest.raises(CorruptFileError, match=match):
        xafm.open(p)


def test_grid_disagrees_with_page(tmp_path, rng):
    p = tmp_path / "g.jpk"
    write_jpk(p, [{"name": "height", "retrace": False, "raw": np.zeros((3, 3), np.int32)}])
    data = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tif:
        tag = tif.pages[0].tags[32839]
        offset = tag.valueoffset
    data[offset : offset + 4] = (7).to_bytes(4, "big")
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="grid tags say 7 x 3"):
        xafm.open(p)


def test_plain_tiff_and_non_tiff(tmp_path):
    plain = tmp_path / "plain.jpk"
    tifffile.imwrite(plain, np.zeros((2, 4, 4), np.uint16), photometric="minisblack")
    # a plain TIFF stack is a format of its own now: the name is wrong, and the error says what it is
    with pytest.raises(xafm.SuffixMismatchError, match="the name says JPK single image.*but the content is TIFF stack"):
        xafm.open(plain)
    with pytest.raises(CorruptFileError, match="not a JPK image"):
        jpk.read(plain)  # the JPK reader itself still refuses it
    one = tmp_path / "one.jpk"
    tifffile.imwrite(one, np.zeros((4, 4), np.uint16), extratags=[(32834, "d", 1, 1e-6, True)])
    with pytest.raises(CorruptFileError, match="1 TIFF page"):
        xafm.open(one)
    for content in (b"", b"MM\x00*garbage", b"not a tiff at all"):
        p = tmp_path / "junk.jpk-qi-image"
        p.write_bytes(content)
        with pytest.raises(CorruptFileError, match="cannot read as TIFF|no readable pages"):
            xafm.open(p)
        with pytest.raises(CorruptFileError):
            xafm.channels(p)


def test_no_channel_pages(tmp_path):
    p = tmp_path / "n.jpk"
    with tifffile.TiffWriter(p, byteorder=">") as tw:
        tw.write(np.zeros((4, 4), np.uint8), extratags=[(32834, "d", 1, 1e-6, True)])
        tw.write(np.zeros((4, 4), np.int32))
    with pytest.raises(CorruptFileError, match="no channel pages"):
        xafm.open(p)


# --------------------------------------------------------------------------------------
# property: write -> read
# --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    multiplier=st.floats(-1e-9, 1e-9, allow_nan=False).filter(lambda v: abs(v) > 1e-15),
    offset=st.floats(-1e-5, 1e-5, allow_nan=False),
    unit=st.sampled_from(["m", "V", "deg"]),
    retrace=st.booleans(),
    when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1)),
    zone=st.sampled_from([("GMT", 0), ("CEST", 2), ("BST", 1), ("+0530", 5.5), ("-0800", -8), ("PDT", -7)]),
    seconds=st.integers(1, 10_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_round_trip(tmp_path_factory, rows, cols, multiplier, offset, unit, retrace, when, zone, seconds, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(-(2**31), 2**31 - 1, size=(rows, cols), dtype=np.int64).astype(np.int32)
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    fmt = lambda t: t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} {zone[0]}"  # noqa: E731
    folder = tmp_path_factory.mktemp("prop")
    p = write_jpk(folder / "p.jpk", [{"name": "height", "retrace": retrace, "raw": raw, "multiplier": multiplier,
                                      "offset": offset, "unit": unit}],
                  ulength=cols * 2e-9, vlength=rows * 3e-9, start=fmt(when),
                  end=fmt(when + dt.timedelta(seconds=seconds)), unique_id="1", scan_rate=rows / seconds)
    name = f"height_{'retrace' if retrace else 'trace'}"
    assert xafm.channels(p) == [name]
    da = xafm.open(p)
    assert da.name == name and da.shape == (1, rows, cols)
    assert da.attrs["units"] == ("nm" if unit == "m" else unit)
    np.testing.assert_allclose(da.values, expected(raw, multiplier, offset, unit), rtol=1e-12, atol=1e-9)
    (fm,) = model.frame_metadata(da)
    utc = when.replace(tzinfo=dt.UTC) - dt.timedelta(hours=zone[1])
    assert fm["start_epoch_ms"] == pytest.approx(utc.timestamp() * 1000.0, abs=1e-3)
    assert fm["frame_duration_s"] == pytest.approx(seconds)
    assert fm["line_rate"] == pytest.approx(rows / seconds)
    assert model.pixel_size_nm(da) == pytest.approx((3.0, 2.0))
    np.testing.assert_array_equal(xafm.open(p, chunks={}).values, da.values)
