"""The Asylum Research / Igor ``.ibw`` reader: the real Cypher file against AFMReader's
numbers, synthetic waves of every numeric type and byte order, and damaged files."""

from __future__ import annotations

import json
import re
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
from xafm.exceptions import ChannelError, CorruptFileError, NotAnImageError
from xafm.formats import ibw
from xafm.testing import IBW_TYPE_CODES, write_ibw
from xafm.testing.ibw import FORCE_CURVE_NOTE, write_force_curve, write_force_map, write_ibw_v2, write_wave

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
        ({"version": 2}, r"checksum does not match.*version 2"),  # a v5 layout under a v2 number
        ({"version": 7}, "unknown version 7"),
        ({"npnts": 39}, "disagree with npnts"),
        ({"wfm_extra": 4}, "disagree with npnts"),
        ({"type_code": 0x03}, "complex"),
        ({"type_code": 0x00}, "text or unknown"),
        ({"nd3": 2}, "disagree with npnts"),  # a 4-D claim the data size does not bear out
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


# --------------------------------------------------------------------------------------
# what is not an image: force curves, force maps, spectra (docs/formats.md, "Image or not")
# --------------------------------------------------------------------------------------
def test_real_image_footer_says_is_image():
    """The Asylum footer, decoded by hand: the last 10 bytes are 'NNNN MFP3D', the footer's
    length from the end; its Key:value; pairs include IsImage:1 on the real image."""
    path = shared_file(*SAMPLE)
    raw = path.read_bytes()
    assert raw[-10:] == b"0360 MFP3D"
    footer = raw[-360:-10].decode("latin-1")
    assert footer.startswith("Version:2;") and "IsImage:1;" in footer
    hdr = ibw._headers(str(path))
    assert hdr["footer"]["IsImage"] == "1" and hdr["dim_units"] == ["m", "m", "", ""]
    assert ibw.not_an_image(hdr["dims"], hdr["dim_units"], hdr["dim_labels"], {}, hdr["footer"]) is None


def test_force_curve_is_refused_before_igor2_reads_it(tmp_path, monkeypatch):
    path, _ = write_force_curve(tmp_path / "fc.ibw")
    from igor2 import binarywave

    assert binarywave.load(str(path))["wave"]["wData"].shape == (1261, 3)  # igor2 agrees on the layout written
    monkeypatch.setattr(ibw, "_igor2", lambda: pytest.fail("igor2 was asked to load a force curve"))
    with pytest.raises(NotAnImageError) as err:
        xafm.open(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: this is a force-curve file (1261 x 3 wave:") and msg.endswith("; xafm reads images")
    for fact in ("dimension 0 (1261 samples) is in 's', time", "the signals Raw, Defl, ZSnsr", "segment table (Indexes/Direction)"):
        assert fact in msg
    assert not isinstance(err.value, CorruptFileError) and isinstance(err.value, xafm.XafmError)


def _image_wave(rng, n_p=6, n_l=5, n_c=2):
    return (rng.normal(size=(n_p, n_l, n_c)) * 1e-9).astype(np.float32)


@pytest.mark.parametrize(
    "kwargs, kind, fact",
    [  # each fact alone is enough
        ({"units": ("s", "")}, "spectroscopy", "dimension 0 (6 samples) is in 's', time"),
        ({"units": ("m", "Hz")}, "spectroscopy", "dimension 1 (5 samples) is in 'Hz', not a length"),
        ({"units": ("msec", "m")}, "spectroscopy", "is in 'msec'"),  # an extended (long) unit
        ({"labels": {1: ["Raw", "Defl", "ZSnsr", "LVDT", "Amp"]}}, "force-curve", "the signals Raw, Defl, ZSnsr, LVDT, Amp"),
        ({"labels": {1: ["Sig1", "Sig2", "Sig3", "Sig4", "Sig5"]}}, "spectroscopy", "the signals Sig1"),
        ({"note": "Indexes: 0,3,5\rDirection: NaN,1,-1\r"}, "force-curve", "segment table"),
        ({"footer": {"Version": "2", "IsImage": "0"}}, "spectroscopy", "IsImage:0"),
    ],
)
def test_each_fact_tells_a_2d_wave_from_an_image(tmp_path, rng, kwargs, kind, fact):
    wave = _image_wave(rng)[:, :, 0]
    p = write_wave(tmp_path / "w.ibw", wave, **{"units": ("m", "m"), **kwargs})
    with pytest.raises(NotAnImageError, match=rf"this is a {kind} file \(6 x 5 wave: .*{re.escape(fact)}"):
        xafm.open(p)
    with pytest.raises(NotAnImageError):
        xafm.channels(p)


def test_images_stay_images(tmp_path, rng):
    """What the rule must not refuse: unscaled or nm-scaled 2-D waves, labelled channels on
    dim 2, IsImage:1, a note with only one of the segment keys, a labelled 3-D wave whose note
    has the segment table."""
    wave = _image_wave(rng)
    cases = [
        write_wave(tmp_path / "a.ibw", wave[:, :, 0], units=("", "")),
        write_wave(tmp_path / "b.ibw", wave[:, :, 0], units=("nm", "nm"), note="Direction: 1\r"),
        write_wave(tmp_path / "c.ibw", wave, units=("m", "m", ""), labels={2: ["HeightTrace", "Defl"]}, footer={"IsImage": "1"}),
        # an analysed force map: image channels on dim 2, whatever its note copied from the curves
        write_wave(tmp_path / "d.ibw", wave, units=("m", "m"), labels={2: ["Height", "Adhesion"]}, note=FORCE_CURVE_NOTE.format(half=1, end=2)),
    ]
    for p in cases:
        da = xafm.open(p)
        assert da.attrs["units"] == "nm"  # the wave's unit (m) or the label's (Height: m)
        np.testing.assert_array_equal(da.values[0], wave[:, ::-1, 0].T * np.float32(1e9))
    assert xafm.channels(cases[2]) == ["HeightTrace", "Defl"]  # Defl is a channel here: labels on dim 2 are channels


@pytest.mark.parametrize("byteorder", "<>")
def test_force_maps_and_other_shapes(tmp_path, rng, byteorder):
    p, _ = write_force_map(tmp_path / "fm.ibw", byteorder=byteorder)
    with pytest.raises(NotAnImageError, match=r"this is a force-map file \(a 4-D wave of 4 x 3 x 50 x 3; dimension 2 \(50 samples\) is in 's'"):
        xafm.open(p)
    # a 3-D wave whose third axis is the curve's time: a force map (with the segment table) or spectroscopy
    cube = rng.normal(size=(4, 3, 20)).astype(np.float32)
    p3 = write_wave(tmp_path / "m3.ibw", cube, units=("m", "m", "s"), note=FORCE_CURVE_NOTE.format(half=10, end=19), byteorder=byteorder)
    with pytest.raises(NotAnImageError, match=r"force-map file \(4 x 3 x 20 wave: dimension 2 \(20 samples\) is in 's', not a channel index"):
        xafm.open(p3)
    p3b = write_wave(tmp_path / "s3.ibw", cube, units=("m", "m", "V"), byteorder=byteorder)
    with pytest.raises(NotAnImageError, match=r"spectroscopy file .* is in 'V', not a channel index"):
        xafm.open(p3b)
    p1 = write_wave(tmp_path / "one.ibw", cube[0, 0], units=("s",), byteorder=byteorder)
    with pytest.raises(NotAnImageError, match=r"spectroscopy file \(a 1-D wave of 20 points; dimension 0 \(20 samples\) is in 's', time\)"):
        xafm.open(p1)


def test_version_2_waves_are_1d(tmp_path):
    p = write_ibw_v2(tmp_path / "v2.ibw", np.linspace(0, 1, 40), note="Indexes: 0,20,39\r")
    from igor2 import binarywave

    assert binarywave.load(str(p))["version"] == 2  # a real v2 wave, as igor2 reads it
    with pytest.raises(NotAnImageError, match="version-2 binary wave, which holds only 1-D waves"):
        xafm.open(p)
    bad = write_ibw_v2(tmp_path / "bad.ibw", np.linspace(0, 1, 40), checksum_fix=False)
    with pytest.raises(CorruptFileError, match="checksum"):
        xafm.open(bad)


def test_damage_is_still_damage(tmp_path):
    """A force curve whose header lies is damaged first, not 'not an image'."""
    p, _ = write_force_curve(tmp_path / "fc.ibw")
    raw = p.read_bytes()
    (tmp_path / "cut.ibw").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="header describes"):
        xafm.open(tmp_path / "cut.ibw")
    broken = bytearray(raw)
    broken[64 + 12] ^= 0x01  # npnts, checksum not fixed
    (tmp_path / "sum.ibw").write_bytes(bytes(broken))
    with pytest.raises(CorruptFileError, match="checksum"):
        xafm.open(tmp_path / "sum.ibw")


@settings(max_examples=20)
@given(
    n_points=st.integers(2, 300),
    signals=st.lists(st.sampled_from(sorted(ibw.FORCE_SIGNALS)), min_size=1, max_size=5, unique=True),
    byteorder=st.sampled_from("<>"),
    time_axis=st.booleans(),
    with_note=st.booleans(),
)
def test_force_curve_property(tmp_path_factory, n_points, signals, byteorder, time_axis, with_note):
    """Any force curve written as Asylum does is refused as one, whichever facts it carries."""
    folder = tmp_path_factory.mktemp("fc")
    note = None if with_note else "ScanSize: 1e-06\r"
    p, _ = write_force_curve(folder / "c.ibw", n_points, signals=signals, byteorder=byteorder, time_axis=time_axis, note=note)
    with pytest.raises(NotAnImageError, match=rf"this is a force-curve file \({n_points} x {len(signals)} wave: "):
        xafm.open(p)


@settings(max_examples=20)
@given(
    data=st.data(),
    n_p=st.integers(1, 8), n_l=st.integers(1, 8), n_c=st.integers(0, 3),
    unit=st.sampled_from(["", "m", "nm", "um"]),
    byteorder=st.sampled_from("<>"),
)
def test_image_waves_property(tmp_path_factory, data, n_p, n_l, n_c, unit, byteorder):
    """Any 2-D or 3-D wave laid out as an image (lengths or no unit on dims 0 and 1, channels on
    dim 2) reads back as written: the rule never refuses an image."""
    shape = (n_p, n_l) if n_c == 0 else (n_p, n_l, n_c)
    values = data.draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    wave = np.array(values, dtype=np.float32).reshape(shape)
    labels = {2: [f"Chan{i}" for i in range(n_c)]} if n_c else None
    p = write_wave(tmp_path_factory.mktemp("img") / "i.ibw", wave, units=(unit, unit, ""), labels=labels, data_units="", byteorder=byteorder)
    names = xafm.channels(p)
    assert len(names) == max(n_c, 1)
    for i, name in enumerate(names):
        plane = wave if n_c == 0 else wave[:, :, i]
        np.testing.assert_array_equal(xafm.open(p, channel=name).values[0], plane[:, ::-1].T)
