"""Nanosurf readers (``.nid``, ``.nhf``): the real samples against reference.json and
against values decoded by hand from their headers, synthetic round trips, spectroscopy
files refused, damaged and lying files."""

from __future__ import annotations

import datetime as dt
import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm import cli
from xafm.core import model
from xafm.core.contract import Probe
from xafm.exceptions import ChannelError, CorruptFileError, NotAnImageError, SuffixMismatchError
from xafm.formats import nhf, nid
from xafm.testing.nhf import write_nhf
from xafm.testing.nid import write_nid, write_nid_spectroscopy

NID_FILES = ("nanosurf_driveafm.nid", "nanosurf_flexafm_nonsquare.nid", "nanosurf_stm.nid")
NHF_FILE = "nanosurf_wavemode.nhf"


# --------------------------------------------------------------------------------------
# the real files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NID_FILES + (NHF_FILE,))
def test_real_file_matches_reference(name):
    ref = reference("afm")[name]
    da = xafm.open(shared_file("afm", name))
    assert da.attrs["units"] == "nm"
    if "pixel_y_nm" in ref:  # non-square pixels: the helper checks square ones only
        assert model.pixel_size_nm(da) == pytest.approx((ref["pixel_y_nm"], ref["pixel_to_nm"]), rel=1e-6)
        ref = {**ref, "pixel_to_nm": ref["pixel_y_nm"]}
        da = da.assign_coords(x=np.arange(da.sizes["x"]) * ref["pixel_y_nm"])
    assert_matches_reference(da, ref)


@pytest.mark.parametrize("name", NID_FILES)
def test_nid_channels_and_default(name):
    path = shared_file("afm", name)
    ref = reference("afm")[name]
    names = xafm.channels(path)
    assert set(ref["channels"]) <= set(names)  # SurfaceTopography lists the height-like ones
    assert len(names) == len(set(names))
    assert xafm.open(path).name == ref["channel"] == "Scan forward (Z-Axis)"


def test_nid_lists_every_image_channel_the_header_names():
    """driveafm: Gr0-Ch0/1/3/7 and Gr1-Ch0/1/3/7, read by hand from [DataSet]."""
    names = xafm.channels(shared_file("afm", "nanosurf_driveafm.nid"))
    want = [f"Scan {d} ({s})" for d in ("forward", "backward") for s in ("Deflection", "Z-Axis", "Friction force", "Z-AxisSensor")]
    assert names == want


def test_stm_tip_current():
    """The STM sample's tip current: Dim2Min -1e-7 A, Dim2Range 2e-7 A, 16-bit signed, the
    first block after the header's '#!' at byte 15997."""
    path = shared_file("afm", "nanosurf_stm.nid")
    da = xafm.open(path, channel="Scan forward (Tip Current)")
    assert da.attrs["units"] == "A"
    raw = np.fromfile(path, dtype="<i2", count=256 * 256, offset=15999).reshape(256, 256)
    want = (raw[::-1].astype(np.float64) + 32768) / 65536 * 2e-7 - 1e-7
    np.testing.assert_allclose(da.values[0], want, rtol=1e-12, atol=1e-22)


def test_nid_rows_are_flipped_corner_pixels():
    """The file stores the bottom line first (Gwyddion's reading): row 0 is the last stored
    line. Z-Axis of the STM sample is the second block (Dim2Min -1e-7 m, Dim2Range 2e-7 m)."""
    path = shared_file("afm", "nanosurf_stm.nid")
    da = xafm.open(path)
    raw = np.fromfile(path, dtype="<i2", count=256 * 256, offset=15999 + 256 * 256 * 2).reshape(256, 256)
    z = (raw.astype(np.float64) + 32768) / 65536 * 200.0 - 100.0  # nm
    assert float(da[0, 0, 0]) == pytest.approx(z[-1, 0], rel=1e-12)
    assert float(da[0, -1, -1]) == pytest.approx(z[0, -1], rel=1e-12)


def test_nid_nonsquare_pixels_from_dim_ranges():
    """512 points x 256 lines over Dim0Range = Dim1Range = 3.97339e-6 m."""
    da = xafm.open(shared_file("afm", "nanosurf_flexafm_nonsquare.nid"))
    assert da.shape == (1, 256, 512)
    assert model.pixel_size_nm(da) == pytest.approx((3973.39 / 256, 3973.39 / 512), rel=1e-12)
    fm = model.frame_metadata(da)[0]
    assert fm["scan_direction"] == "down"


def test_nid_metadata():
    da = xafm.open(shared_file("afm", "nanosurf_driveafm.nid"))
    fm = model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(2.0)  # Time/Line=500ms
    assert fm["frame_duration_s"] == pytest.approx(128.0)
    assert fm["scan_direction"] == "up"
    # Date=03-11-2022 (dd-mm-yyyy: the STM sample's 14-06-2023 has no month 14), Time=11:46:25, as UTC
    assert fm["start_epoch_ms"] == dt.datetime(2022, 11, 3, 11, 46, 25, tzinfo=dt.UTC).timestamp() * 1000
    acq = json.loads(da.attrs["acquisition_json"])
    assert acq["group"] == "Scan forward" and acq["signal"] == "Z-Axis"


def test_nhf_channels_skip_per_pixel_curves():
    path = shared_file("afm", NHF_FILE)
    ref = reference("afm")[NHF_FILE]
    names = xafm.channels(path)
    curves = {"NMA Deflection", "NMA Interaction"}  # 1.5e6 values: 150 per pixel
    for seg in ("Forward", "Backward"):
        assert [n.split(" - ")[-1] for n in names if f" - {seg} - " in n] == [c for c in ref["channels"] if c not in curves]
    assert xafm.open(path).name == "Image 1 - Forward - Topography"


def test_nhf_rows_and_scaling_by_hand():
    """Topography: int32 (dataset_element_type 0) over +-1.1111e-5 m, flipped rows."""
    import h5py

    path = shared_file("afm", NHF_FILE)
    with h5py.File(path, "r") as f:
        raw = f["measurement_0/segment_0/dataset_0"][()].reshape(100, 100).astype(np.float64)
    lo, hi = -1.1111111111111112e-05, 1.1111111111111112e-05
    z = ((raw + 2**31) * (hi - lo) / (2**32 - 1) + lo) * 1e9
    da = xafm.open(path)
    np.testing.assert_allclose(da.values[0], z[::-1], rtol=1e-12)
    fm = model.frame_metadata(da)[0]
    assert fm["line_rate"] == 2.0 and fm["frame_duration_s"] == 50.0 and fm["scan_direction"] == "up"


def test_nhf_short_channel_names():
    path = shared_file("afm", NHF_FILE)
    assert xafm.open(path, channel="Topography").name == "Image 1 - Forward - Topography"
    assert xafm.open(path, channel="Backward - Position Z").name == "Image 1 - Backward - Position Z"
    assert xafm.open(path, channel="Backward - Z-Controller In").attrs["units"] == "V"
    with pytest.raises(ChannelError, match="NMA Interaction"):
        xafm.open(path, channel="NMA Interaction")


@pytest.mark.parametrize("name", NID_FILES + (NHF_FILE,))
def test_info_and_identification(name, capsys):
    path = shared_file("afm", name)
    assert cli.main(["info", str(path)]) == 0
    assert "channels:" in capsys.readouterr().out
    probe = Probe(path)
    assert nid.identify(probe) is name.endswith(".nid")
    assert nhf.identify(probe) is name.endswith(".nhf")


def test_no_other_sample_is_claimed():
    folder = shared_file("afm", NHF_FILE).parent
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("nanosurf_"):
            probe = Probe(p)
            assert not nid.identify(probe) and not nhf.identify(probe), p.name


def test_h5_bundle_stays_the_bundles(tmp_path):
    path = xafm.stack(np.zeros((2, 3, 4)), pixel_size_nm=1.0).afm.to_h5(tmp_path / "b.h5")
    assert not nhf.identify(Probe(path))
    assert xafm.registry.identify(path).name == "h5"
    nhf_copy = write_nhf(tmp_path / "s.h5", {"Forward": {"Topography": np.zeros((3, 4), np.int32)}})
    with pytest.raises(SuffixMismatchError, match="the content is Nanosurf NHF"):
        xafm.registry.find(nhf_copy)


def test_lazy_and_picklable():
    for name in ("nanosurf_stm.nid", NHF_FILE):
        path = shared_file("afm", name)
        with raise_if_dask_computes():
            da = xafm.open(path, chunks={})
        assert da.chunks is not None
        back = pickle.loads(pickle.dumps(da))
        np.testing.assert_array_equal(back.values, xafm.open(path).values)


# --------------------------------------------------------------------------------------
# synthetic .nid
# --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    lines=st.integers(2, 9), points=st.integers(1, 9), bits=st.sampled_from([8, 16, 32]), signed=st.booleans(),
    z=st.tuples(st.floats(-1e-6, 1e-6), st.floats(1e-9, 1e-6)), extent=st.tuples(st.floats(1e-9, 1e-4), st.floats(1e-9, 1e-4)),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_nid_round_trip(tmp_path_factory, lines, points, bits, signed, z, extent, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits)
    fwd, bwd = rng.integers(lo, hi, size=(2, lines, points))
    cur = rng.integers(lo, hi, size=(lines, points))
    path = write_nid(
        tmp_path_factory.mktemp("nid") / "s.nid", {"Scan forward": {"Tip Current": cur, "Z-Axis": fwd}, "Scan backward": {"Z-Axis": bwd}},
        x_range_m=extent[0], y_range_m=extent[1], scales={"Z-Axis": (z[0], z[1], "m")}, bits=bits, signed=signed,
    )  # fmt: skip
    assert xafm.channels(path) == ["Scan forward (Tip Current)", "Scan forward (Z-Axis)", "Scan backward (Z-Axis)"]
    offset = 2 ** (bits - 1) if signed else 0
    for name, raw in (("Scan forward (Z-Axis)", fwd), ("Scan backward (Z-Axis)", bwd)):
        da = xafm.open(path, channel=name)
        want = ((raw[::-1] + offset) / 2.0**bits * z[1] + z[0]) * 1e9
        np.testing.assert_allclose(da.values[0], want, rtol=1e-9, atol=1e-9 * z[1] * 1e9)
        assert model.pixel_size_nm(da) == pytest.approx((extent[1] * 1e9 / lines, extent[0] * 1e9 / points), rel=1e-12)
    assert xafm.open(path).name == "Scan forward (Z-Axis)"
    current = xafm.open(path, channel="Scan forward (Tip Current)")
    assert current.attrs["units"] == "A"
    np.testing.assert_allclose(current.values[0], (cur[::-1] + offset) / 2.0**bits * 2e-7 - 1e-7, rtol=1e-9, atol=1e-20)


def test_nid_spectroscopy_is_not_an_image(tmp_path):
    path = write_nid_spectroscopy(tmp_path / "spec.nid", [np.arange(100), np.arange(80)])
    with pytest.raises(NotAnImageError, match=r"this is a spectroscopy file \(Nanosurf N[IH][DF] .*\); xafm reads images$") as err:
        xafm.open(path)
    assert str(path) in str(err.value) and not isinstance(err.value, CorruptFileError)
    with pytest.raises(NotAnImageError):
        xafm.channels(path)


def test_nid_truncated_file_says_sizes(tmp_path):
    src = shared_file("afm", "nanosurf_driveafm.nid")
    dst = tmp_path / "cut.nid"
    dst.write_bytes(src.read_bytes()[:1_000_000])
    # 30748 header bytes + 8 blocks of 256 x 256 x 4 bytes end at byte 2127900
    with pytest.raises(CorruptFileError, match=r"file is 1000000 bytes .* ending at byte 2127900 \(truncated\)"):
        xafm.open(dst)


def test_nid_lying_header_allocates_nothing(tmp_path):
    path = write_nid(tmp_path / "lie.nid", {"Scan forward": {"Z-Axis": np.zeros((4, 4), np.int16)}}, claim={"Points": 1 << 20, "Lines": 1 << 20})
    with pytest.raises(CorruptFileError, match="truncated"):
        xafm.open(path)
    bad = write_nid(tmp_path / "bits.nid", {"Scan forward": {"Z-Axis": np.zeros((4, 4), np.int16)}}, claim={"SaveBits": 12})
    with pytest.raises(CorruptFileError, match="SaveBits=12"):
        xafm.open(bad)


def test_nid_unknown_channel(tmp_path):
    path = write_nid(tmp_path / "s.nid", {"Scan forward": {"Z-Axis": np.zeros((3, 3), np.int16)}})
    with pytest.raises(ChannelError, match="Scan forward"):
        xafm.open(path, channel="Phase")
    assert xafm.open(path, channel="Z-Axis").name == "Scan forward (Z-Axis)"


# --------------------------------------------------------------------------------------
# synthetic .nhf
# --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    lines=st.integers(1, 9), points=st.integers(1, 9), dtype=st.sampled_from(["int32", "int16", "uint16", "float64"]),
    cal=st.tuples(st.floats(-1e-5, 0.0), st.floats(1e-9, 1e-5)), extent=st.tuples(st.floats(1e-9, 1e-4), st.floats(1e-9, 1e-4)),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_nhf_round_trip(tmp_path_factory, lines, points, dtype, cal, extent, seed):
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        raw = rng.random((2, lines, points))
        tmin, tmax = 0.0, 1.0
    else:
        info = np.iinfo(kind)
        raw = rng.integers(info.min, info.max, size=(2, lines, points), endpoint=True).astype(kind)
        tmin, tmax = float(info.min), float(info.max)
    lo, hi = cal[0], cal[0] + cal[1]
    path = write_nhf(
        tmp_path_factory.mktemp("nhf") / "s.nhf",
        {"Forward": {"Topography": raw[0], "Count": raw[1]}, "Backward": {"Topography": raw[1]}},
        size_m=extent, calibration={"Topography": (lo, hi, "m")}, curve_samples=3,
    )  # fmt: skip
    assert xafm.channels(path) == ["Image 1 - Forward - Topography", "Image 1 - Forward - Count", "Image 1 - Backward - Topography"]
    for name, r in (("Image 1 - Forward - Topography", raw[0]), ("Image 1 - Backward - Topography", raw[1])):
        da = xafm.open(path, channel=name)
        want = ((r[::-1].astype(np.float64) - tmin) * (hi - lo) / (tmax - tmin) + lo) * 1e9
        np.testing.assert_allclose(da.values[0], want, rtol=1e-9, atol=1e-9 * (hi - lo) * 1e9)
        assert model.pixel_size_nm(da) == pytest.approx((extent[1] * 1e9 / lines, extent[0] * 1e9 / points), rel=1e-12)
        # a lazy read of a block of rows and columns gives the same values
        if lines > 2 and points > 2:
            np.testing.assert_allclose(da[0, 1:-1, ::2].values, want[1:-1, ::2], rtol=1e-9, atol=1e-9 * (hi - lo) * 1e9)
    count = xafm.open(path, channel="Count")
    assert count.attrs["units"] == ""
    np.testing.assert_array_equal(count.values[0], raw[1][::-1].astype(np.float64))
    assert xafm.open(path).name == "Image 1 - Forward - Topography"


def test_nhf_spectroscopy_only_is_not_an_image(tmp_path):
    path = write_nhf(tmp_path / "spec.nhf", {}, spectroscopy=4)
    with pytest.raises(NotAnImageError, match=r"this is a spectroscopy file \(Nanosurf N[IH][DF] .*\); xafm reads images$"):
        xafm.open(path)


def test_nhf_version_2_and_lying_sizes(tmp_path):
    img = {"Forward": {"Topography": np.zeros((3, 4), np.int32)}}
    with pytest.raises(CorruptFileError, match=r"file format 2\.0 is not supported"):
        xafm.open(write_nhf(tmp_path / "v2.nhf", img, version=(2, 0)))
    # a header claiming more lines than the datasets hold
    with pytest.raises(CorruptFileError, match=r"4 x 524288 values .* \[12\]"):
        xafm.open(write_nhf(tmp_path / "lie.nhf", img, lines=1 << 19))
