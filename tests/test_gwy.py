"""The Gwyddion ``.gwy`` reader: the real files (one from an Asylum scan, gwyfile's own
unit-less test file), files written with gwyfile, and damaged serializations."""

from __future__ import annotations

import json
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
from xafm.exceptions import ChannelError, CorruptFileError, XafmWarning
from xafm.formats import gwy
from xafm.testing import gwy_component, gwy_container, write_gwy

PTO = ("afm", "PTO_110_Virgin0001.gwy")
TEST = ("afm", "gwyfile_test.gwy")


def acq(da):
    return json.loads(da.attrs[conventions.ACQUISITION_ATTR])


# --------------------------------------------------------------------------------------
# real files
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*PTO)
    ref = reference("afm")["PTO_110_Virgin0001.gwy"]
    da = xafm.open(path)
    assert da.name == "HeightRetrace" and da.attrs["units"] == "nm" and da.dtype == np.float64
    assert_matches_reference(da, ref)
    a = acq(da)
    assert a["si_unit_xy"] == a["si_unit_z"] == "m" and a["meta"]["ScanRate"] == "1.0016"
    assert provenance.records(da)[-1]["channel"] == "HeightRetrace"


def test_real_file_channels_units_engine_laziness():
    path = shared_file(*PTO)
    assert xafm.channels(path) == ["HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace"]
    phase = xafm.open(path, channel="PhaseRetrace")
    assert phase.attrs["units"] == "deg"
    eager = xafm.open(path)
    np.testing.assert_array_equal(xr.open_dataarray(path, engine="xafm").values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.values, eager.values)
    with pytest.raises(ChannelError, match=r"no channel 'Height'; available: \['HeightRetrace', 'AmplitudeRetrace'"):
        xafm.open(path, channel="Height")


def test_unitless_test_file():
    """AFMReader refuses this file (empty unit strings); xafm reads the numbers as they are."""
    path = shared_file(*TEST)
    with pytest.warns(XafmWarning, match="lateral unit '', not a length"):
        da = xafm.open(path)
    assert da.name == "Test" and da.shape == (1, 128, 128)
    assert da.attrs["units"] == ""  # empty value unit stays empty
    assert model.pixel_size_nm(da) == (1.0, 1.0)  # xreal 128 / 128 px, unit-less
    assert acq(da)["si_unit_xy"] == "" and acq(da)["xreal"] == 128.0
    import gwyfile

    raw = gwyfile.load(str(path))["/0/data"].data
    np.testing.assert_array_equal(da.values[0], raw)


# --------------------------------------------------------------------------------------
# files written with gwyfile
# --------------------------------------------------------------------------------------
UNITS = {"m": 1e9, "nm": 1.0, "µm": 1e3, "um": 1e3, "mm": 1e6, "Å": 0.1}


@settings(max_examples=25)
@given(
    data=st.data(),
    yres=st.integers(1, 8),
    xres=st.integers(1, 8),
    uxy=st.sampled_from(sorted(UNITS)),
    uz=st.sampled_from(sorted(UNITS) + ["V", "deg", ""]),
    xreal=st.floats(1e-3, 1e3),
    yreal=st.floats(1e-3, 1e3),
)
def test_round_trip_property(tmp_path_factory, data, yres, xres, uxy, uz, xreal, yreal):
    values = np.array(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=yres * xres, max_size=yres * xres))).reshape(yres, xres)
    p = write_gwy(tmp_path_factory.mktemp("gwy") / "f.gwy", [("Height", values, xreal, yreal, uxy, uz), ("Other", values * 0, 1.0, 1.0, "m", "V")])
    da = xafm.open(p)
    assert da.name == "Height" and da.shape == (1, yres, xres)
    factor = UNITS.get(uz)
    np.testing.assert_array_equal(da.values[0], values * (factor if factor is not None else 1.0))
    assert da.attrs["units"] == ("nm" if factor is not None else uz)
    dy, dx = da.attrs.get(conventions.PIXEL_SIZE_Y_ATTR, da.attrs[conventions.PIXEL_SIZE_ATTR]), da.attrs[conventions.PIXEL_SIZE_ATTR]
    assert dx == pytest.approx(xreal / xres * UNITS[uxy], rel=1e-12)
    assert dy == pytest.approx(yreal / yres * UNITS[uxy], rel=1e-12)


def test_titles_masks_and_default(tmp_path, rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mask = (a > 0).astype(float)
    p = write_gwy(tmp_path / "m.gwy", [("Phase", a, 1e-6, 1e-6, "m", "deg"), ("Phase", b, 1e-6, 1e-6, "m", "deg"),
                                       (None, b, 1e-6, 1e-6, "m", "m")], masks={2: mask, 0: mask[:2]}, meta={"Date": "today"})
    assert xafm.channels(p) == ["Phase", "Phase (1)", "Channel 2"]
    da = xafm.open(p)  # no 'height' title: the first field with a length unit
    assert da.name == "Channel 2"
    np.testing.assert_array_equal(model.masks(da)["mask"].values[0], a > 0)
    np.testing.assert_array_equal(da.values[0], b * 1e9)
    with pytest.warns(XafmWarning, match="mask ignored"):  # mask of another shape cannot attach
        first = xafm.open(p, channel="Phase")
    assert first.attrs["units"] == "deg" and not model.masks(first)
    assert acq(first)["meta"] == {"Date": "today"}
    np.testing.assert_array_equal(xafm.open(p, channel="Phase (1)").values[0], b)


@pytest.mark.parametrize(
    "unit,nm", [("m", 1e9), ("km", 1e12), ("pm", 1e-3), ("\u00b5m", 1e3), ("\u03bcm", 1e3), ("\u212b", 0.1), ("", None), ("V", None), ("m^2", None), ("ppm", None)]
)
def test_length_units(unit, nm):
    got = gwy.length_unit_nm(unit)
    assert got == (pytest.approx(nm) if nm is not None else None)


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
def _good(tmp_path, rng):
    return write_gwy(tmp_path / "g.gwy", [("Height", rng.normal(size=(3, 5)), 1e-6, 1e-6, "m", "m")], meta={"k": "v"}).read_bytes()


def test_every_truncation_is_a_clean_error(tmp_path, rng):
    good = _good(tmp_path, rng)
    p = tmp_path / "cut.gwy"
    for n in range(0, len(good), 7):
        p.write_bytes(good[:n])
        with pytest.raises(CorruptFileError):
            xafm.open(p)


@pytest.mark.parametrize(
    "blob,match",
    [
        (b"", "no GWYP magic"),
        (b"GWYO....", "GWYO"),
        (gwy_container([gwy_component("/0/data/title", "s", b"no terminator")]), "not NUL-terminated"),
        (gwy_container([gwy_component("x", "S", struct.pack("<I", 2**31) + b"a\0")]), "claims 2147483648 items"),
        (gwy_container([gwy_component("x", "D", struct.pack("<I", 2**30))]), "runs past the end"),
        (gwy_container([gwy_component("x", "O", struct.pack("<I", 3))]), "claims 3 items"),
        (gwy_container([gwy_component("x", "O", struct.pack("<I", 1) + b"abc")]), "object name"),
        (gwy_container([gwy_component("x", "Z", b"")]), "unknown type 'Z'"),
        (b"GWYP" + b"GwyContainer\0" + struct.pack("<I", 10**9), "claims 1000000000 bytes"),
        (gwy_container([gwy_component("/0/data", "o", b"GwyDataField\0" + struct.pack("<I", 0))]), "xres"),
    ],
)
def test_bad_serializations(tmp_path, blob, match):
    p = tmp_path / "bad.gwy"
    p.write_bytes(blob)
    with pytest.raises(CorruptFileError, match=match):
        xafm.open(p)


def test_deep_nesting_is_refused(tmp_path):
    inner = b""
    for _ in range(gwy.MAX_DEPTH + 5):
        body = b"k\0o" + inner
        inner = b"GwyContainer\0" + struct.pack("<I", len(body)) + body
    p = tmp_path / "deep.gwy"
    p.write_bytes(b"GWYP" + inner)
    with pytest.raises(CorruptFileError, match="nested more than"):
        xafm.open(p)


def test_inconsistent_fields(tmp_path, rng):
    from gwyfile.objects import GwyContainer, GwyDataField

    f = GwyDataField(rng.normal(size=(3, 4)), xreal=1e-6, yreal=1e-6, si_unit_xy="m", si_unit_z="m")
    f["xres"] = 5  # 3 x 5 != 12 values
    c = GwyContainer({"/0/data": f})
    c.tofile(str(tmp_path / "a.gwy"))
    with pytest.raises(CorruptFileError, match="data holds 12 values, xres\\*yres = 15"):
        xafm.open(tmp_path / "a.gwy")
    f = GwyDataField(rng.normal(size=(3, 4)), xreal=-1.0, yreal=1e-6, si_unit_xy="m", si_unit_z="m")
    GwyContainer({"/0/data": f}).tofile(str(tmp_path / "b.gwy"))
    with pytest.raises(CorruptFileError, match="xreal must be positive"):
        xafm.open(tmp_path / "b.gwy")
    GwyContainer({"/0/other": "x"}).tofile(str(tmp_path / "c.gwy"))
    with pytest.raises(CorruptFileError, match="holds no image"):
        xafm.open(tmp_path / "c.gwy")


def test_trailing_bytes_warn(tmp_path, rng):
    p = tmp_path / "t.gwy"
    p.write_bytes(_good(tmp_path, rng) + b"junk")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        da = xafm.open(p)
    assert da.shape == (1, 3, 5)
    assert any("4 bytes after the top-level object" in str(x.message) for x in w)
