"""WSxM reader: the real file against AFMReader's numbers, synthetic round trips, damaged
files."""

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
from xafm.formats import wsxm
from xafm.testing import write_wsxm

REAL = ("afm", "sample_0.stp")


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    return shared_file(*REAL)


def test_real_file_matches_reference(real):
    ref = reference("afm")[REAL[1]]
    da = xafm.open(real)
    assert da.name == "Topography" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)


def test_real_file_is_rotated(real):
    """Stored bottom row first, right to left (AFMReader keeps file order): rotated 180°."""
    raw = np.fromfile(real, dtype="<f8", offset=5272).reshape(512, 512)
    np.testing.assert_array_equal(xafm.open(real).values[0], raw[::-1, ::-1])


def test_real_file_metadata(real):
    da = xafm.open(real)
    fm = xafm.core.model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(1.085)
    assert fm["frame_duration_s"] == pytest.approx(512 / 1.085)
    assert fm["scan_direction"] == "up"
    assert fm["start_epoch_ms"] == pytest.approx(1624025546398.0)  # 18/06/2021 14:12:26.398 UTC
    acq = json.loads(da.attrs["acquisition_json"])
    assert acq["stated_header_size"] == 5272 == acq["data_offset"]
    assert acq["header"]["Head Settings"]["Head Name"] == "SmallPDC_69"


def test_real_file_engine_lazy_channels(real, monkeypatch):
    eager = xafm.open(real)
    np.testing.assert_array_equal(xr.open_dataarray(real, engine="xafm").values, eager.values)
    assert xafm.channels(real) == ["Topography"]
    np.testing.assert_array_equal(xafm.open(real, channel="Topography").values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(real, chunks={})
    assert type(lazy.data).__module__.startswith("dask")
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(lazy[0, 500:3:-11, 7:300:13].values, eager.values[0, 500:3:-11, 7:300:13])

    def boom(self, key):
        raise AssertionError("data read while opening")

    monkeypatch.setattr(RawFramesArray, "_read", boom)
    ds = wsxm.read(str(real))
    pickle.loads(pickle.dumps(ds["Topography"].variable._data))


def test_unknown_channel(real):
    with pytest.raises(xafm.ChannelError, match=r"no channel 'Phase'; available: \['Topography'\]"):
        xafm.open(real, channel="Phase")


# --------------------------------------------------------------------------------------
# synthetic files
# --------------------------------------------------------------------------------------
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    data_type=st.sampled_from(["double", "float"]),
    z_unit=st.sampled_from([("nm", 1.0), ("Å", 0.1), ("µm", 1e3), ("V", None)]),
    xy_unit=st.sampled_from([("nm", 1.0), ("µm", 1e3), ("Å", 0.1)]),
    seed=st.integers(0, 2**32 - 1),
    suffix=st.sampled_from([".stp", ".top"]),
)
def test_round_trip_float(tmp_path_factory, shape, data_type, z_unit, xy_unit, seed, suffix):
    rng = np.random.default_rng(seed)
    stored = rng.normal(0, 30, size=shape).astype(wsxm.DATA_TYPES[data_type])
    path = tmp_path_factory.mktemp("wsxm") / f"f{suffix}"
    write_wsxm(path, stored, data_type=data_type, z_amp=f"12.5 {z_unit[0]}",
               x_amp=f"{3 * shape[1]} {xy_unit[0]}", y_amp=f"{2 * shape[0]} {xy_unit[0]}")
    da = xafm.open(path)
    want = stored.astype(np.float64)[::-1, ::-1] * (z_unit[1] or 1.0)
    np.testing.assert_allclose(da.values[0], want, rtol=1e-12)
    assert da.attrs["units"] == ("nm" if z_unit[1] else z_unit[0])
    assert da.attrs["pixel_size_nm"] == pytest.approx(3 * xy_unit[1])
    assert xafm.core.model.pixel_size_nm(da)[0] == pytest.approx(2 * xy_unit[1])
    fm = xafm.core.model.frame_metadata(da)[0]
    assert fm["line_rate"] == 2.5 and fm["scan_direction"] == "down"


@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    data_type=st.sampled_from(["short", "integer"]),
    z_amp=st.floats(0.01, 1000),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_short(tmp_path_factory, shape, data_type, z_amp, seed):
    """16-bit counts are scaled so that their range spans Z Amplitude (Gwyddion's rule)."""
    rng = np.random.default_rng(seed)
    stored = rng.integers(-32768, 32767, size=shape, endpoint=True).astype("<i2")
    path = write_wsxm(tmp_path_factory.mktemp("wsxm") / "f.top", stored, data_type=data_type, z_amp=f"{z_amp!r} nm")
    lazy = xafm.open(path, chunks={})
    da = xafm.open(path)
    span = float(stored.max()) - float(stored.min())
    want = stored.astype(np.float64)[::-1, ::-1] * (z_amp / span if span else 1.0)
    np.testing.assert_allclose(da.values[0], want, rtol=1e-12)
    np.testing.assert_allclose(lazy[0, ::2, 1:].values, want[::2, 1:], rtol=1e-12)
    if span:
        assert float(da.max() - da.min()) == pytest.approx(z_amp, rel=1e-9)


def test_non_length_z_and_odd_channel_name(tmp_path):
    stored = np.arange(6, dtype="<f8").reshape(2, 3)
    path = write_wsxm(tmp_path / "x.stp", stored, z_amp="5 V", channel="Normal force/2")
    assert xafm.channels(path) == ["Normal force_2"]
    da = xafm.open(path)
    assert da.attrs["units"] == "V"
    np.testing.assert_array_equal(da.values[0], stored[::-1, ::-1])


def test_miscalculated_header_size_is_ignored(tmp_path):
    """Some programs write a wrong 'Image header size'; the data start after [Header end]."""
    stored = np.arange(6, dtype="<f8").reshape(2, 3)
    path = write_wsxm(tmp_path / "x.stp", stored, stated_size=12)
    np.testing.assert_array_equal(xafm.open(path).values[0], stored[::-1, ::-1])


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
def test_truncated_data(tmp_path):
    path = write_wsxm(tmp_path / "x.stp", np.zeros((4, 4)))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(xafm.CorruptFileError, match="truncated"):
        xafm.open(path)


def test_header_lies_about_size(tmp_path):
    path = write_wsxm(tmp_path / "x.stp", np.zeros((4, 4)), rows=30000, cols=30000)
    with pytest.raises(xafm.CorruptFileError, match="the header lies"):
        xafm.open(path)
    path = write_wsxm(tmp_path / "y.stp", np.zeros((4, 4)), rows=10**9)
    with pytest.raises(xafm.CorruptFileError, match="plausible"):
        xafm.open(path)
    path = write_wsxm(tmp_path / "z.stp", np.zeros((4, 4)), rows=-4)
    with pytest.raises(xafm.CorruptFileError, match="plausible"):
        xafm.open(path)


def test_missing_header_end(tmp_path):
    path = write_wsxm(tmp_path / "x.stp", np.zeros((2, 2)), end_marker=False)
    with pytest.raises(xafm.CorruptFileError, match=r"\[Header end\]"):
        xafm.open(path)
    with pytest.raises(xafm.CorruptFileError, match=r"\[Header end\]"):
        xafm.channels(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a WSxM file"),
        (bytes(range(256)) * 4, "not a WSxM file"),
        (b"WSxM file copyright UAM\r\nIV curve file\r\n[Header end]\r\n", "not an image"),
    ],
)
def test_garbage(tmp_path, content, match):
    path = tmp_path / "bad.stp"
    path.write_bytes(content)
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.open(path)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"data_type": "double", "extra": ""}, None),
        ({"x_amp": "wide"}, "X Amplitude"),
        ({"y_amp": "-3 nm"}, "Y Amplitude"),
        ({"x_amp": "3 parsecs"}, "X Amplitude"),
    ],
)
def test_bad_header_values(tmp_path, kwargs, match):
    path = write_wsxm(tmp_path / "x.stp", np.zeros((2, 2)), **kwargs)
    if match is None:
        assert xafm.open(path).shape == (1, 2, 2)
        return
    with pytest.raises(xafm.CorruptFileError, match=match):
        xafm.open(path)


def test_unknown_data_type(tmp_path):
    path = write_wsxm(tmp_path / "x.stp", np.zeros((2, 2)))
    path.write_bytes(path.read_bytes().replace(b"Image Data Type: double", b"Image Data Type: quaternion"))
    with pytest.raises(xafm.CorruptFileError, match="unknown Image Data Type 'quaternion'"):
        xafm.open(path)
