"""The JPK high-speed ``.h5-jpk`` reader: the real sample against the reference, every
channel, laziness, synthetic files written to the documented layout, damaged files, and a
write -> read property test."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError, XafmWarning
from xafm.formats import h5jpk
from xafm.testing import write_h5jpk

SAMPLE = ("afm", "sample_0.h5-jpk")
SAMPLE_CHANNELS = [
    "error_trace", "height_trace", "phase_retrace", "height_retrace", "measuredHeight_trace",
    "error_retrace", "amplitude_trace", "amplitude_retrace", "phase_trace",
]


# --------------------------------------------------------------------------------------
# a writer of synthetic files following docs/formats.md (also used by the benchmark)
# --------------------------------------------------------------------------------------
def expected(raw, multiplier=1.0, offset=0.0, unit="m", flip=True):
    """The documented conversion written out independently: flip rows, scale, m -> nm."""
    v = np.asarray(raw, dtype=np.float64)
    if flip:
        v = v[:, ::-1, :]
    v = v * multiplier + offset
    return v * 1e9 if unit == "m" else v


def acquisition(da):
    return json.loads(da.attrs[conventions.ACQUISITION_ATTR])


def simple_file(tmp_path, rng, *, n=3, rows=4, cols=5, name="x.h5-jpk", **kw):
    raw = rng.integers(-1000, 1000, size=(n, rows, cols)).astype(np.int32)
    starts = kw.pop("start_ms", 1_700_000_000_000 + np.arange(n) * 1500)
    ends = kw.pop("end_ms", starts + 1400)
    chans = kw.pop("channels", [{"name": "height", "retrace": False, "raw": raw, "multiplier": 1e-12, "offset": 2e-7}])
    p = write_h5jpk(tmp_path / name, chans, start_ms=starts, end_ms=ends, **kw)
    return p, raw


# --------------------------------------------------------------------------------------
# the real sample
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*SAMPLE)
    ref = reference("afm")["sample_0.h5-jpk"]
    da = xafm.open(path)
    assert da.shape == tuple(ref["shape"])
    assert da.name == "height_trace" and da.attrs["units"] == "nm" and da.dtype == np.float64
    assert_matches_reference(da, ref)
    # times: the file's recorded start times, as playNano 0.5 reports them
    np.testing.assert_allclose(da.time.values, ref["playnano_crosscheck"]["timestamps_s_first5"], rtol=0, atol=1e-12)
    fm = model.frame_metadata(da)
    assert [f["start_epoch_ms"] for f in fm] == ref["file_start_times_epoch_ms"]
    durations = (np.array(ref["file_end_times_epoch_ms"]) - np.array(ref["file_start_times_epoch_ms"])) / 1000.0
    np.testing.assert_allclose([f["frame_duration_s"] for f in fm], durations, rtol=1e-12)
    want = ref["playnano_crosscheck"]["frame_metadata_0"]
    for key in ("timestamp", "frame_duration_s", "start_epoch_ms", "line_rate"):
        assert fm[0][key] == pytest.approx(want[key], rel=1e-12), key
    assert fm[0]["scan_direction"] == want["scan_direction"] == "topDown"
    assert fm[0]["relative_setpoint"] == pytest.approx(0.7642388757525779)


def test_real_file_afmreader_times_are_the_nominal_ones():
    """AFMReader's 0, 3.2, 6.4, 9.6 s are jlength / scanRate per frame; the file records
    later starts (the frame takes 3.262 s plus a pause), and those are what xafm uses."""
    path = shared_file(*SAMPLE)
    ref = reference("afm")["sample_0.h5-jpk"]
    da = xafm.open(path)
    acq = acquisition(da)
    nominal = np.arange(4) * acq["grid_jlength"] / acq["scan_rate_lines_per_s"]
    np.testing.assert_allclose(nominal, ref["afmreader_timestamps_s"])
    assert not np.allclose(da.time.values, nominal)
    assert acq["frame_times"] == "meta-data/start-times"


def test_real_file_acquisition_and_provenance():
    da = xafm.open(shared_file(*SAMPLE))
    acq = acquisition(da)
    assert acq["format"] == "JPK SCAN 3.0"
    assert acq["scan_rate_lines_per_s"] == 40.0
    assert acq["relative_setpoint"] == pytest.approx(0.7642388757525779)
    assert acq["i_gain"] == -12650.0 and acq["p_gain"] == pytest.approx(-0.05033435)
    assert acq["motion"] == "topDown" and acq["bidirectional"] is False
    assert acq["start_time"] == "2025-05-28 14:41:58.548 +0100"
    assert acq["channel"]["dataset"] == "/Measurement_000/Channel_001/Height"
    assert acq["channel"]["scaling_unit"] == "m"
    assert acq["header"]["position-pattern.grid.ilength"] == 128
    (rec,) = provenance.records(da)
    assert rec["type"] == "read" and rec["format"] == "h5-jpk" and rec["channel"] == "height_trace"
    assert rec["reader"] == "xafm.formats.h5jpk"


def test_real_file_orientation_is_the_flipped_columns():
    """Frame k is column k reshaped to (jlength, ilength), rows reversed, then scaled."""
    path = shared_file(*SAMPLE)
    with h5py.File(path, "r") as f:
        g = f["Measurement_000/Channel_003"]
        raw = g["Height"][()]
        m, o = g.attrs["net-encoder.scaling.multiplier"], g.attrs["net-encoder.scaling.offset"]
    da = xafm.open(path, channel="height_retrace")
    for k in range(4):
        want = np.flipud(raw[:, k].reshape(128, 128)) * m * 1e9 + o * 1e9
        np.testing.assert_allclose(da.values[k], want, rtol=1e-12)


def test_real_file_channels():
    path = shared_file(*SAMPLE)
    assert xafm.channels(path) == SAMPLE_CHANNELS
    units = {}
    for name in SAMPLE_CHANNELS:
        da = xafm.open(path, channel=name)
        assert da.name == name and da.shape == (4, 128, 128)
        assert np.isfinite(da.values).all()
        units[name] = da.attrs["units"]
    assert units["phase_trace"] == units["phase_retrace"] == "deg"
    assert all(units[n] == "nm" for n in SAMPLE_CHANNELS if not n.startswith("phase"))
    # AFMReader lower-cases the names; those work too
    lower = xafm.open(path, channel="measuredheight_trace")
    assert lower.name == "measuredHeight_trace"
    with pytest.raises(ChannelError, match=r"no channel 'topography'; available: \[.*height_trace"):
        xafm.open(path, channel="topography")


def test_real_file_engine_and_lazy():
    path = shared_file(*SAMPLE)
    eager = xafm.open(path)
    via_engine = xr.open_dataarray(path, engine="xafm")
    assert via_engine.name == "height_trace"
    np.testing.assert_array_equal(via_engine.values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(time=slice(1, 3), y=slice(5, 40, 3), x=[0, 7, 127])
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(part.values, eager.values[1:3, 5:40:3][:, :, [0, 7, 127]])
    np.testing.assert_array_equal(lazy.time.values, eager.time.values)
    retrace = xr.open_dataarray(path, engine="xafm", channel="error_retrace")
    assert retrace.name == "error_retrace"


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
def test_synthetic_values_times_and_metadata(tmp_path, rng):
    p, raw = simple_file(tmp_path, rng, n=4, rows=6, cols=3)
    da = xafm.open(p)
    assert da.name == "height_trace" and da.shape == (4, 6, 3)
    np.testing.assert_allclose(da.values, expected(raw, 1e-12, 2e-7), rtol=1e-12)
    np.testing.assert_allclose(da.time.values, [0, 1.5, 3.0, 4.5])
    fm = model.frame_metadata(da)
    assert fm[2]["start_epoch_ms"] == 1_700_000_003_000.0
    assert fm[2]["frame_duration_s"] == pytest.approx(1.4)
    assert fm[2]["line_rate"] == 40.0 and fm[2]["scan_direction"] == "topDown"
    assert fm[3]["relative_setpoint"] == pytest.approx(0.8) and fm[0]["i_gain"] == -1000.0
    dy, dx = model.pixel_size_nm(da)
    assert dx == pytest.approx(150 / 3) and dy == pytest.approx(150 / 6)


def test_non_metre_units_are_kept(tmp_path, rng):
    raw = rng.integers(-50, 50, size=(2, 3, 3)).astype(np.int32)
    chans = [
        {"name": "height", "retrace": False, "raw": raw, "multiplier": 1e-9},
        {"name": "phase", "retrace": False, "raw": raw, "multiplier": 0.5, "offset": 10.0, "unit": "deg"},
        {"name": "error", "retrace": True, "raw": raw, "multiplier": 2.0, "unit": "V"},
        {"name": "vDeflection", "retrace": False, "raw": raw, "multiplier": None},
    ]
    p, _ = simple_file(tmp_path, rng, n=2, channels=chans)
    assert xafm.channels(p) == ["height_trace", "phase_trace", "error_retrace", "vDeflection_trace"]
    phase = xafm.open(p, channel="phase_trace")
    assert phase.attrs["units"] == "deg"
    np.testing.assert_allclose(phase.values, expected(raw, 0.5, 10.0, unit="deg"))
    err = xafm.open(p, channel="error_retrace")
    assert err.attrs["units"] == "V"
    np.testing.assert_allclose(err.values, expected(raw, 2.0, unit="V"))
    uncal = xafm.open(p, channel="vDeflection_trace")
    assert uncal.attrs["units"] == "raw"
    np.testing.assert_array_equal(uncal.values, raw[:, ::-1, :])


def test_default_channel_fallbacks_and_duplicates(tmp_path, rng):
    raw = rng.integers(0, 9, size=(1, 2, 2)).astype(np.int32)
    chans = [
        {"name": "amplitude", "retrace": False, "raw": raw},
        {"name": "height", "retrace": True, "raw": raw + 1},
        {"name": "height", "retrace": True, "raw": raw + 2},
    ]
    p, _ = simple_file(tmp_path, rng, n=1, channels=chans)
    assert xafm.channels(p) == ["amplitude_trace", "height_retrace", "height_retrace_2"]
    da = xafm.open(p)
    assert da.name == "height_retrace"
    np.testing.assert_allclose(da.values, expected(raw + 1))
    np.testing.assert_allclose(xafm.open(p, channel="height_retrace_2").values, expected(raw + 2))
    only_amp = [{"name": "amplitude", "retrace": False, "raw": raw}]
    q, _ = simple_file(tmp_path, rng, n=1, channels=only_amp, name="amp.h5-jpk")
    assert xafm.open(q).name == "amplitude_trace"


def test_reflect_keeps_row_order(tmp_path, rng):
    p, raw = simple_file(tmp_path, rng, reflect=True)
    np.testing.assert_allclose(xafm.open(p).values, expected(raw, 1e-12, 2e-7, flip=False), rtol=1e-12)


def test_missing_start_times_use_lines_over_scan_rate(tmp_path, rng):
    raw = rng.integers(0, 9, size=(3, 8, 2)).astype(np.int32)
    p = write_h5jpk(tmp_path / "a.h5-jpk", [{"name": "height", "retrace": False, "raw": raw}], scan_rate=16.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = xafm.open(p)
    np.testing.assert_allclose(da.time.values, [0.0, 0.5, 1.0])
    fm = model.frame_metadata(da)
    assert fm[1]["start_epoch_ms"] is None and fm[1]["frame_duration_s"] == 0.5
    assert acquisition(da)["frame_times"] == "jlength / timing-settings.scanRate"
    q = write_h5jpk(tmp_path / "b.h5-jpk", [{"name": "height", "retrace": False, "raw": raw}], scan_rate=None,
                    extra_meta=False)
    with pytest.warns(XafmWarning, match="frame index"):
        db = xafm.open(q)
    np.testing.assert_array_equal(db.time.values, [0, 1, 2])


def test_unusable_start_times_warn_and_fall_back(tmp_path, rng):
    p, _ = simple_file(tmp_path, rng, n=3, rows=10, start_ms=np.array([5000, 5000, 9000]))
    with pytest.warns(XafmWarning, match="start times are unusable"):
        da = xafm.open(p)
    np.testing.assert_allclose(da.time.values, [0.0, 0.25, 0.5])
    assert model.frame_metadata(da)[1]["start_epoch_ms"] == 5000.0


def test_uncompressed_contiguous_dataset(tmp_path, rng):
    p, raw = simple_file(tmp_path, rng, compression=None)
    np.testing.assert_allclose(xafm.open(p).values, expected(raw, 1e-12, 2e-7), rtol=1e-12)


def test_lazy_array_outer_indexing(tmp_path, rng):
    p, raw = simple_file(tmp_path, rng, n=5, rows=7, cols=6)
    full = expected(raw, 1e-12, 2e-7)
    arr = h5jpk.H5JPKFramesArray(p, "/Measurement_000/Channel_000/Height", n_frames=5, rows=7, cols=6,
                                 multiplier=1e-3, offset=200.0)
    keys = [
        (slice(None),) * 3,
        (2, slice(None), slice(None)),
        (-1, slice(1, 6, 2), 3),
        (np.array([4, 0, 2]), np.array([6, 0]), slice(None, None, -1)),
        (slice(1, 1), slice(None), slice(None)),
        (slice(None), slice(2, 5), np.array([5, 1])),
    ]
    for key in keys:
        want = model_outer(full, key)
        got = arr[key]
        assert got.shape == want.shape, key
        np.testing.assert_allclose(got, want, rtol=1e-12)


def model_outer(arr, key):
    from xafm.core.lazy import outer_index

    return outer_index(arr, key)


def test_opening_reads_no_pixel_data(tmp_path, rng, monkeypatch):
    p, _ = simple_file(tmp_path, rng, n=6)

    def boom(self, key):
        raise AssertionError("pixel data read while opening")

    monkeypatch.setattr(h5jpk.H5JPKFramesArray, "_read", boom)
    with raise_if_dask_computes():
        da = xafm.open(p, chunks={})
    assert da.shape == (6, 4, 5) and da.chunks is not None


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
def _damaged(tmp_path, rng, how):
    p, _ = simple_file(tmp_path, rng, n=3)
    with h5py.File(p, "r+") as f:
        m = f["Measurement_000"]
        if how == "no-measurement":
            del f["Measurement_000"]
        elif how == "ilength":
            m.attrs["position-pattern.grid.ilength"] = np.int32(7)
        elif how == "ilength-missing":
            del m.attrs["position-pattern.grid.ilength"]
        elif how == "ilength-huge":
            m.attrs["position-pattern.grid.ilength"] = np.int32(2**30)
        elif how == "ulength":
            del m.attrs["position-pattern.grid.ulength"]
        elif how == "no-dataset":
            del m["Channel_000/Height"]
        elif how == "more-frames-than-stored":
            m["Channel_000/Height"].resize((20, 10**6))
        elif how == "zero-frames":
            m["Channel_000/Height"].resize((20, 0))
        elif how == "frame-mismatch":
            g = m.create_group("Channel_001")
            g.attrs["channel.name"] = np.bytes_("error")
            g.create_dataset("Error", data=np.zeros((20, 2), np.int32))
    return p


@pytest.mark.parametrize(
    "how,match",
    [
        ("no-measurement", "no Measurement_"),
        ("ilength", "the grid is 7 x 4"),
        ("ilength-missing", "ilength .* is missing"),
        ("ilength-huge", "expected a pixel count"),
        ("ulength", "ulength"),
        ("no-dataset", "holds no channel datasets"),
        ("more-frames-than-stored", r"declares 1000000 frames .* but stores only 192 bytes"),
        ("zero-frames", "no frames"),
        ("frame-mismatch", "has 2 frames, other channels have 3"),
    ],
)
def test_bad_structure(tmp_path, rng, how, match):
    p = _damaged(tmp_path, rng, how)
    with pytest.raises(CorruptFileError, match=match):
        xafm.open(p)
    if how == "ulength":  # listing channels does not need the scan size
        assert xafm.channels(p) == ["height_trace"]
    else:
        with pytest.raises(CorruptFileError):
            xafm.channels(p)


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x89HDF\r\n\x1a\n" + b"\x00" * 50])
def test_not_hdf5(tmp_path, content):
    p = tmp_path / "bad.h5-jpk"
    p.write_bytes(content)
    with pytest.raises(CorruptFileError, match="cannot read as HDF5"):
        xafm.open(p)


def test_truncated_real_file(tmp_path):
    src = shared_file(*SAMPLE)
    data = src.read_bytes()
    for frac in (0.3, 0.9):
        p = tmp_path / f"cut{frac}.h5-jpk"
        p.write_bytes(data[: int(len(data) * frac)])
        with pytest.raises(CorruptFileError):
            xafm.open(p)


def test_file_changed_after_opening(tmp_path, rng):
    p, _ = simple_file(tmp_path, rng, n=3)
    lazy = xafm.open(p, chunks={})
    with h5py.File(p, "r+") as f:
        f["Measurement_000/Channel_000/Height"].resize((20, 2))
    with pytest.raises(xafm.FileChangedError, match="changed since"):
        _ = lazy.values


# --------------------------------------------------------------------------------------
# property: write -> read
# --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 5),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    multiplier=st.floats(-1e-9, 1e-9, allow_nan=False).filter(lambda v: abs(v) > 1e-15),
    offset=st.floats(-1e-5, 1e-5, allow_nan=False),
    unit=st.sampled_from(["m", "V", "deg"]),
    retrace=st.booleans(),
    gaps=st.lists(st.integers(1, 10**6), min_size=4, max_size=4),
    t0=st.integers(1_000_000_000_000, 2_000_000_000_000),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_round_trip(tmp_path_factory, n, rows, cols, multiplier, offset, unit, retrace, gaps, t0, seed):
    rng = np.random.default_rng(seed)
    raw = rng.integers(-(2**31), 2**31 - 1, size=(n, rows, cols), dtype=np.int64).astype(np.int32)
    starts = t0 + np.concatenate([[0], np.cumsum(gaps[: n - 1])]).astype(np.int64)
    ends = starts + 100
    folder = tmp_path_factory.mktemp("prop")
    name = "height"
    p = write_h5jpk(folder / "p.h5-jpk", [{"name": name, "retrace": retrace, "raw": raw, "multiplier": multiplier,
                                          "offset": offset, "unit": unit}],
                    ulength=cols * 2e-9, vlength=rows * 3e-9, start_ms=starts, end_ms=ends)
    channel = f"height_{'retrace' if retrace else 'trace'}"
    assert xafm.channels(p) == [channel]
    da = xafm.open(p)
    assert da.name == channel and da.shape == (n, rows, cols)
    assert da.attrs["units"] == ("nm" if unit == "m" else unit)
    np.testing.assert_allclose(da.values, expected(raw, multiplier, offset, unit), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(da.time.values, (starts - starts[0]) / 1000.0, rtol=0, atol=1e-9)
    fm = model.frame_metadata(da)
    assert [f["start_epoch_ms"] for f in fm] == [float(s) for s in starts]
    assert all(f["frame_duration_s"] == pytest.approx(0.1) for f in fm)
    dy, dx = model.pixel_size_nm(da)
    assert dx == pytest.approx(2.0) and dy == pytest.approx(3.0)
    lazy = xafm.open(p, chunks={"time": 2})
    np.testing.assert_array_equal(lazy.values, da.values)


def test_a_member_name_that_is_not_text_is_left_out(tmp_path):
    """h5py gives a member name that is not UTF-8 (a damaged file) as bytes; found by the
    fuzz test, it used to raise a TypeError from the name matching."""
    path = tmp_path / "odd.h5-jpk"
    path.write_bytes(shared_file("afm", "sample_0.h5-jpk").read_bytes())
    with h5py.File(path, "a") as f:
        f.create_group(b"Measurement_\xff")
        f["Measurement_000"].create_group(b"Channel_\xfe")
        assert any(isinstance(k, bytes) for k in f.keys())
    da = xafm.open(path)
    expected = xafm.open(shared_file("afm", "sample_0.h5-jpk"))
    np.testing.assert_array_equal(da.values, expected.values)
    assert xafm.channels(path) == xafm.channels(shared_file("afm", "sample_0.h5-jpk"))
