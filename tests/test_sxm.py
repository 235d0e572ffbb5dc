"""Nanonis SXM reader: the real file against pySPM's numbers, synthetic round trips,
damaged files, and the x-mirroring lazy array."""

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
from xafm.formats import sxm
from xafm.testing import write_sxm

REAL = ("afm", "pyspm_test.sxm")


def shown(frame, direction, scan_dir):
    """How a stored frame must come out: backward mirrored in x, up-scans flipped in y."""
    out = np.asarray(frame, dtype=np.float64)
    if direction == "backward":
        out = out[:, ::-1]
    if scan_dir == "up":
        out = out[::-1]
    return out


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    return shared_file(*REAL)


def test_real_file_matches_reference(real):
    ref = reference("afm")[REAL[1]]
    da = xafm.open(real)
    assert da.name == "Z_forward" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)


def test_real_file_orientation(real):
    """File order (what pySPM returns) flipped in y for SCAN_DIR up; backward also in x."""
    raw = np.fromfile(real, dtype=">f4", offset=800).reshape(4, 256, 256).astype(np.float64) * 1e9
    np.testing.assert_array_equal(xafm.open(real).values[0], raw[0][::-1])
    np.testing.assert_array_equal(xafm.open(real, channel="Z_backward").values[0], raw[1][::-1, ::-1])
    current = xafm.open(real, channel="Current_forward")
    assert current.attrs["units"] == "A"
    np.testing.assert_array_equal(current.values[0], raw[2][::-1] / 1e9)


def test_real_file_metadata(real):
    da = xafm.open(real)
    fm = xafm.core.model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(1 / (2 * 0.4992))
    assert fm["frame_duration_s"] == pytest.approx(255.6)
    assert fm["scan_direction"] == "up"
    assert fm["start_epoch_ms"] == 1457602565000.0  # 10.03.2016 09:36:05, read as UTC
    acq = json.loads(da.attrs["acquisition_json"])
    assert acq["raw_unit"] == "m" and acq["scan_pixels"] == [256, 256]
    assert "Gold 111" in acq["header"]["SCAN_FILE"]


def test_real_file_engine_lazy_channels(real, monkeypatch):
    eager = xafm.open(real)
    np.testing.assert_array_equal(xr.open_dataarray(real, engine="xafm").values, eager.values)
    assert xafm.channels(real) == ["Z_forward", "Z_backward", "Current_forward", "Current_backward"]
    with raise_if_dask_computes():
        lazy = xafm.open(real, chunks={}, channel="Z_backward")
    assert type(lazy.data).__module__.startswith("dask")
    back = xafm.open(real, channel="Z_backward")
    np.testing.assert_array_equal(lazy.values, back.values)
    np.testing.assert_array_equal(lazy[0, 3:40:3, 250:10:-9].values, back.values[0, 3:40:3, 250:10:-9])
    np.testing.assert_array_equal(xafm.open(real, channel="Z").values, eager.values)  # bare name = forward

    def boom(self, key):
        raise AssertionError("data read while opening")

    monkeypatch.setattr(RawFramesArray, "_read", boom)
    ds = sxm.read(str(real), channel="Current_backward")
    pickle.loads(pickle.dumps(ds["Current_backward"].variable._data))


def test_unknown_channel(real):
    with pytest.raises(xafm.ChannelError, match=r"no channel 'Phase'; available: \['Z_forward'"):
        xafm.open(real, channel="Phase")


# --------------------------------------------------------------------------------------
# the mirrored lazy array
# --------------------------------------------------------------------------------------
def index_entries(n):
    """Outer-index entries valid for an axis of length n: ints, slices, int arrays."""
    return st.one_of(
        st.integers(-n, n - 1),
        st.builds(slice, st.none() | st.integers(-9, 9), st.none() | st.integers(-9, 9), st.none() | st.integers(-4, 4).filter(bool)),
        st.lists(st.integers(-n, n - 1), min_size=0, max_size=5).map(lambda v: np.array(v, dtype=np.intp)),
    )


@given(k=index_entries(7), rows=index_entries(5))
def test_mirrored_reads_match_numpy(tmp_path_factory, k, rows):
    values = np.arange(5 * 7, dtype="<f4").reshape(5, 7)
    path = tmp_path_factory.mktemp("mirror") / "f.bin"
    path.write_bytes(b"0123" + values.tobytes())
    arr = xafm.core.lazy.RawFramesArray(path, offset=4, n_frames=1, frame_shape=(5, 7), raw_dtype="<f4", flip_x=True, flip_y=True)
    got = arr[(0, rows, k)]
    shown_ = values[::-1, ::-1]
    want = xafm.core.lazy.outer_index(shown_, (rows, k))
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
@given(
    nx=st.integers(1, 9),
    ny=st.integers(1, 9),
    scan_dir=st.sampled_from(["up", "down"]),
    scanit=st.sampled_from(["FLOAT MSBFIRST", "FLOAT LSBFIRST", "DOUBLE MSBFIRST", "INT LSBFIRST"]),
    directions=st.lists(st.sampled_from(["both", "forward", "backward"]), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    sep=st.sampled_from(["\t", "  "]),
)
def test_round_trip(tmp_path_factory, nx, ny, scan_dir, scanit, directions, seed, sep):
    rng = np.random.default_rng(seed)
    signals = []
    for i, d in enumerate(directions):
        n = 2 if d == "both" else 1
        frames = [rng.integers(-1000, 1000, size=(ny, nx)) * (1e-9 if not scanit.startswith("INT") else 1) for _ in range(n)]
        unit = "m" if i == 0 else "A"
        signals.append(("Z" if i == 0 else f"Sig{i}", unit, d, frames))
    if scanit.startswith("FLOAT") and nx * ny > 2:
        signals[0][3][0][0, 0] = np.nan  # unscanned points are NaN in real files
    path = write_sxm(tmp_path_factory.mktemp("sxm") / "f.sxm", signals, nx=nx, ny=ny, scan_dir=scan_dir, scanit_type=scanit, data_info_sep=sep)
    expect_names = []
    for name, unit, d, frames in signals:
        dirs = ["forward", "backward"] if d == "both" else [d]
        for direction, frame in zip(dirs, frames):
            cname = f"{name}_{direction}"
            expect_names.append(cname)
            da = xafm.open(path, channel=cname)
            stored = np.asarray(frame, dtype=np.dtype(">f4" if scanit.startswith("FLOAT") else "f8")).astype(np.float64)
            want = shown(stored, direction, scan_dir) * (1e9 if unit == "m" else 1.0)
            np.testing.assert_allclose(da.values[0], want, rtol=1e-12, equal_nan=True)
            assert da.attrs["units"] == ("nm" if unit == "m" else "A")
    assert xafm.channels(path) == expect_names
    da = xafm.open(path)
    assert da.name == expect_names[0]
    assert da.attrs["pixel_size_nm"] == pytest.approx(5e-6 * 1e9 / nx)
    assert xafm.core.model.pixel_size_nm(da)[0] == pytest.approx(4e-6 * 1e9 / ny)


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    frames = [np.zeros((4, 5)), np.ones((4, 5))]
    return write_sxm(tmp_path / "good.sxm", [("Z", "m", "both", frames)], nx=5, ny=4)


def test_good_fixture_reads(good):
    assert xafm.open(good).shape == (1, 4, 5)


def test_truncated_data(good):
    good.write_bytes(good.read_bytes()[:-1])
    with pytest.raises(xafm.CorruptFileError, match="truncated"):
        xafm.open(good)


def test_header_lies_about_size(tmp_path):
    path = write_sxm(tmp_path / "x.sxm", [("Z", "m", "both", [np.zeros((4, 5))] * 2)], nx=5, ny=4, pixels=(5000, 4000))
    with pytest.raises(xafm.CorruptFileError, match="the header lies"):
        xafm.open(path)
    path = write_sxm(tmp_path / "y.sxm", [("Z", "m", "both", [np.zeros((4, 5))] * 2)], nx=5, ny=4, pixels=(2**31 - 1, 2))
    with pytest.raises(xafm.CorruptFileError, match="plausible"):
        xafm.open(path)


def test_missing_header_end(tmp_path):
    path = write_sxm(tmp_path / "x.sxm", [("Z", "m", "forward", [np.zeros((2, 2))])], nx=2, ny=2, end_tag=False)
    with pytest.raises(xafm.CorruptFileError, match="SCANIT_END"):
        xafm.open(path)
    path = write_sxm(tmp_path / "y.sxm", [("Z", "m", "forward", [np.zeros((2, 2))])], nx=2, ny=2, marker=b"")
    with pytest.raises(xafm.CorruptFileError, match="data start marker"):
        xafm.channels(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a Nanonis SXM file"),
        (b"\x00\xff" * 500, "not a Nanonis SXM file"),
        (b":NANONIS_VERSION:\n2\n:SCANIT_END:\n\x1a\x04", "DATA_INFO"),
        (b":NANONIS_VERSION:\n2\n:DATA_INFO:\n\tChannel\tName\n:SCANIT_END:\n\x1a\x04", "lacks the columns"),
    ],
)
def test_garbage(tmp_path, content, match):
    path = tmp_path / "bad.sxm"
    path.write_bytes(content)
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.channels(path)
    with pytest.raises(xafm.CorruptFileError):
        xafm.open(path)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scanit_type": "COMPLEX MSBFIRST"}, "SCANIT_TYPE"),
        ({"scan_range": ("x", "y")}, "SCAN_RANGE"),
        ({"scan_range": (-1.0, 1.0)}, "positive"),
    ],
)
def test_bad_header_values(tmp_path, kwargs, match):
    frames = [np.zeros((2, 2))]
    try:
        path = write_sxm(tmp_path / "x.sxm", [("Z", "m", "forward", frames)], nx=2, ny=2, **kwargs)
    except KeyError:  # the writer cannot encode an unknown type: write FLOAT data under its name
        path = write_sxm(tmp_path / "x.sxm", [("Z", "m", "forward", frames)], nx=2, ny=2)
        path.write_bytes(path.read_bytes().replace(b"FLOAT            MSBFIRST", kwargs["scanit_type"].encode()))
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.open(path)


def test_unknown_direction(tmp_path):
    path = write_sxm(tmp_path / "x.sxm", [("Z", "m", "sideways", [np.zeros((2, 2))])], nx=2, ny=2)
    with pytest.raises(xafm.CorruptFileError, match="unknown direction"):
        xafm.open(path)


@given(before=st.integers(0, 60), after=st.integers(0, 30), chunk=st.integers(1, 17), extra=st.integers(0, 40))
def test_read_until_finds_markers_across_chunks(tmp_path_factory, before, after, chunk, extra):
    content = b"x" * before + b"<END>" + b"y" * after
    path = tmp_path_factory.mktemp("ru") / "f"
    path.write_bytes(content)
    head, pos, size = sxm.read_until(str(path), b"<END>", limit=1000, extra=extra, chunk=chunk)
    assert (pos, size) == (before, len(content))
    assert content.startswith(head) and len(head) >= min(len(content), before + 5 + extra)
    head, pos, _ = sxm.read_until(str(path), b"<END>", limit=before + 4, chunk=chunk)
    assert pos == -1 and len(head) <= before + 4
    head, pos, _ = sxm.read_until(str(path), b"<END>", limit=1000, chunk=chunk, starts=(b"zz",))
    assert len(head) <= max(chunk, 0) and (pos == -1 or before + 5 <= chunk)
