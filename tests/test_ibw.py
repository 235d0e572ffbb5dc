"""The Asylum Research / Igor ``.ibw`` reader: the real Cypher file against AFMReader's
numbers, synthetic waves of every numeric type and byte order, and damaged files."""

from __future__ import annotations

import json
import struct
import sys

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError
from xafm.formats import ibw
from xafm.testing import IBW_TYPE_CODES, write_ibw

SAMPLE = ("afm", "IgorIBWReader_P0089OP0027.ibw")


def acq(da):
    return json.loads(da.attrs[conventions.ACQUISITION_ATTR])


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*SAMPLE)
    ref = reference("afm")["IgorIBWReader_P0089OP0027.ibw"]
    da = xafm.open(path)
    assert da.shape == (1,) + tuple(ref["shape"])
    assert da.dims == ("time", "y", "x") and da.name == "HeightRetrace"
    assert da.dtype == np.dtype(ref["dtype"]) and da.attrs["units"] == "nm"
    assert model.pixel_size_nm(da) == pytest.approx((ref["pixel_to_nm"],) * 2, rel=1e-6)
    v = da.values
    assert v.min() == pytest.approx(ref["min"], rel=1e-6)
    assert v.max() == pytest.approx(ref["max"], rel=1e-6)
    assert abs(v.mean(dtype=np.float64)) < 1e-6  # reference mean ~4.5e-8 nm (float32 noise)
    assert da.time.values.tolist() == [0.0]
    fm = model.frame_metadata(da)[0]
    assert fm["line_rate"] == pytest.approx(1.0016)
    assert fm["frame_duration_s"] == pytest.approx(256 / 1.0016)
    assert fm["scan_direction"] == "bottomUp"
    a = acq(da)
    assert a["note"]["ImagingMode"] == "PFM Mode" and a["sfA"][0] == pytest.approx(2e-6 / 255)
    assert a["pixel_size_source"] == "note ScanSize / pixels"
    rec = provenance.records(da)[-1]
    assert (rec["type"], rec["format"], rec["channel"]) == ("read", "ibw", "HeightRetrace")


def test_real_file_orientation_matches_afmreader():
    """AFMReader: ``flipud(wData[:, :, i].T * 1e9)``; the same numbers here, for every channel in m."""
    from igor2 import binarywave

    path = shared_file(*SAMPLE)
    w = binarywave.load(str(path))["wave"]["wData"]
    for i, name in enumerate(["HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace"]):
        np.testing.assert_array_equal(xafm.open(path, channel=name).values[0], np.flipud(w[:, :, i].T * 1e9))
    # phase is in degrees (Gwyddion's unit table), so it is not scaled
    phase = xafm.open(path, channel="PhaseRetrace")
    assert phase.attrs["units"] == "deg"
    np.testing.assert_array_equal(phase.values[0], np.flipud(w[:, :, 3].T))
    user = xafm.open(path, channel="UserIn0Retrace")
    assert user.attrs["units"] == "V"  # the note's UserIn0Unit


def test_real_file_channels_engine_and_laziness():
    path = shared_file(*SAMPLE)
    # the labels are 32-byte NUL-terminated fields; igor2 leaves tails such as 'DeflectionRetracee'
    assert xafm.channels(path) == ["HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace", "UserIn0Retrace"]
    eager = xafm.open(path)
    np.testing.assert_array_equal(xr.open_dataarray(path, engine="xafm").values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(y=slice(10, 20), x=[3, 1, 200])
    np.testing.assert_array_equal(part.values, eager.values[:, 10:20][:, :, [3, 1, 200]])
    with pytest.raises(ChannelError, match=r"no channel 'Height'; available: \['HeightRetrace', "):
        xafm.open(path, channel="Height")
    # AFMReader's channel names come from igor2's mangled labels: accepted as aliases
    alias = xafm.open(path, channel="DeflectionRetracee")
    assert alias.name == "DeflectionRetrace"
    np.testing.assert_array_equal(alias.values, xafm.open(path, channel="DeflectionRetrace").values)


# --------------------------------------------------------------------------------------
# synthetic waves
# --------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(
    data=st.data(),
    dtype=st.sampled_from(sorted(IBW_TYPE_CODES)),
    byteorder=st.sampled_from("<>"),
    n_c=st.integers(1, 4),
    n_l=st.integers(1, 9),
    n_p=st.integers(1, 9),
    with_note=st.booleans(),
)
def test_round_trip_property(tmp_path_factory, data, dtype, byteorder, n_c, n_l, n_p, with_note):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        images = data.draw(st.lists(st.floats(-(2.0**-20), 2.0**-20, width=32), min_size=n_c * n_l * n_p, max_size=n_c * n_l * n_p))
    else:
        info = np.iinfo(dt)
        images = data.draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=n_c * n_l * n_p, max_size=n_c * n_l * n_p))
    images = np.array(images, dtype=dt).reshape(n_c, n_l, n_p)
    labels = [f"Height{i}Retrace" if i == 0 else f"Amplitude{i}Trace" for i in range(n_c)]
    note = f"FastScanSize: {n_p * 2e-9}\rSlowScanSize: {n_l * 3e-9}\rScanRate: 2\r" if with_note else ""
    path = write_ibw(tmp_path_factory.mktemp("ibw") / "w.ibw", images, labels=labels if n_c > 1 or with_note else None,
                     note=note, byteorder=byteorder, dtype=dtype, sf=(4e-9, 5e-9))
    names = xafm.channels(path)
    assert len(names) == n_c
    for i, name in enumerate(names):
        da = xafm.open(path, channel=name)
        assert da.shape == (1, n_l, n_p)
        want = images[i].astype(np.float64 if dt.kind != "f" else dt) * (1e9 if dt.kind != "f" else dt.type(1e9))
        np.testing.assert_array_equal(da.values[0], want)
        assert da.attrs["units"] == "nm"
        if with_note:
            assert model.pixel_size_nm(da) == pytest.approx((3.0, 2.0))
        else:
            assert model.pixel_size_nm(da) == pytest.approx((5.0, 4.0))  # sfA in m -> nm


def test_single_channel_wave_uses_wave_name(tmp_path, rng):
    img = rng.normal(size=(1, 4, 5)).astype(np.float32) * 1e-9
    p = write_ibw(tmp_path / "one.ibw", img, bname="Topo", dim_units=("nm", "nm"), sf=(2.0, 2.5))
    assert xafm.channels(p) == ["Topo"]
    da = xafm.open(p)
    assert da.name == "Topo" and model.pixel_size_nm(da) == pytest.approx((2.5, 2.0))
    np.testing.assert_array_equal(da.values[0], img[0] * np.float32(1e9))


def test_default_channel_prefers_height(tmp_path, rng):
    img = rng.normal(size=(3, 2, 2)).astype(np.float32)
    p = write_ibw(tmp_path / "c.ibw", img, labels=["Phase", "ZSensorTrace", "HeightTrace"])
    assert xafm.open(p).name == "HeightTrace"
    p = write_ibw(tmp_path / "d.ibw", img, labels=["Phase", "ZSensorTrace", "Amplitude"])
    assert xafm.open(p).name == "Phase"  # no height at all: the first channel
    assert ibw.default_channel(["a", "myheight"]) == "myheight"


def test_unit_table(tmp_path):
    note = "CurrentUnit: pA\r"
    for title, unit in [("Height", "m"), ("NapPhaseRetrace", "deg"), ("Current", "pA"), ("Frequency", "Hz"),
                        ("CountTrace", "m"), ("Potential", "V"), ("Whatever", "V"), ("DACHeight", "m")]:
        assert ibw._channel_unit(title, ibw._parse_note(note), "m") == unit, title


def test_missing_igor2_gives_helpful_import_error(tmp_path, monkeypatch, rng):
    p = write_ibw(tmp_path / "x.ibw", rng.normal(size=(1, 2, 2)).astype(np.float32), labels=["Height"])
    monkeypatch.setitem(sys.modules, "igor2", None)
    monkeypatch.setitem(sys.modules, "igor2.binarywave", None)
    with pytest.raises(ImportError, match=r"pip install igor2.*xafm\[ibw\]"):
        xafm.open(p)


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
def _img(rng):
    return rng.normal(size=(2, 4, 5)).astype(np.float32)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"checksum_fix": False}, "checksum"),
        ({"version": 2}, "version 2 holds only 1-D"),
        ({"version": 7}, "unknown version 7"),
        ({"npnts": 39}, "disagree with npnts"),
        ({"wfm_extra": 4}, "disagree with npnts"),
        ({"type_code": 0x03}, "complex"),
        ({"type_code": 0x00}, "text or unknown"),
        ({"nd3": 2}, "not an image"),
    ],
)
def test_bad_headers(tmp_path, rng, kwargs, match):
    p = write_ibw(tmp_path / "bad.ibw", _img(rng), labels=["Height", "Phase"], **kwargs)
    with pytest.raises(CorruptFileError, match=match):
        xafm.open(p)


def test_truncated_and_empty(tmp_path, rng):
    good = write_ibw(tmp_path / "good.ibw", _img(rng), labels=["Height", "Phase"], note="ScanSize: 1e-6\r").read_bytes()
    for n in (0, 1, 10, 100, 383, 384, 400, len(good) - 80):
        p = tmp_path / f"cut{n}.ibw"
        p.write_bytes(good[:n])
        with pytest.raises(CorruptFileError):
            xafm.open(p)


def test_lying_sizes_do_not_allocate(tmp_path, rng):
    img = _img(rng)
    p = write_ibw(tmp_path / "lie.ibw", img, labels=["Height", "Phase"])
    raw = bytearray(p.read_bytes())
    struct.pack_into("<i", raw, 64 + 68, 2**30)  # nDim[0] huge, npnts unchanged
    head = raw[:384]
    struct.pack_into("<H", head, 2, 0)
    struct.pack_into("<H", head, 2, (-int(np.frombuffer(bytes(head), "<u2").sum())) & 0xFFFF)
    raw[:384] = head
    p.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="disagree"):
        xafm.open(p)
    p2 = write_ibw(tmp_path / "note.ibw", img, labels=["Height", "Phase"], note="x" * 10)
    raw = bytearray(p2.read_bytes())
    struct.pack_into("<i", raw, 16, 2**30)  # noteSize
    head = raw[:384]
    struct.pack_into("<H", head, 2, 0)
    struct.pack_into("<H", head, 2, (-int(np.frombuffer(bytes(head), "<u2").sum())) & 0xFFFF)
    raw[:384] = head
    p2.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="header describes"):
        xafm.open(p2)
