"""NT-MDT ``.mdt`` reader: the shared MDA sample against SciFiReaders' numbers and bytes
decoded by hand, synthetic files of scanned and MDA frames (property-based), files that
hold no image, and lying or truncated headers."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes, shared_file
from tests.samples import MDT_SAMPLE, mdt_sample_by_hand
from tests.test_fuzz import check_mutated_copy
from xafm.core import model
from xafm.testing.mdt import mda_frame, raw_frame, scanned_frame, text_frame, write_mdt

REAL = ("afm", "ntmdt_current_map.mdt")
#: nm per unit of the length unit codes (docs/formats.md's table), and the other units.
LENGTH_NM = {-5: 1e9, -4: 1e7, -3: 1e6, -2: 1e3, -1: 1.0, 0: 0.1}
OTHER_UNITS = {1: "nA", 2: "V", 5: "deg", 24: "pA", 26: "mV", 33: "nN"}


# --------------------------------------------------------------------------------------
# the shared sample: MDA frames only
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real():
    return shared_file(*REAL)


def test_real_file_header_chain_by_hand(real):
    """The documented layout, walked with struct: 33-byte file header, frame sizes, types,
    and the MDA calibrations where samples.MDT_SAMPLE says they are."""
    raw = real.read_bytes()
    assert raw[:4] == b"\x01\xb0\x93\xff"
    stated, last = struct.unpack_from("<I4xH", raw, 4)
    assert 33 + stated == len(raw) and last == 2
    pos, types = 33, []
    for _ in range(last + 1):
        size, ftype = struct.unpack_from("<IH", raw, pos)
        types.append((pos, ftype))
        pos += size
    assert pos == len(raw)
    assert [t for _, t in types] == [3, 106, 190]  # text, MDA, new-style curves
    mda = types[1][0]
    head_size, _, name_n = struct.unpack_from("<II36xI", raw, mda + 22)
    assert head_size == 76 and raw[mda + 22 + 76 : mda + 22 + 76 + name_n] == b"1F:Iprobe"
    # the measurand's data type (i32 at +76 of its calibration) is float64, -(8 + 52 * 256)
    assert struct.unpack_from("<i", raw, MDT_SAMPLE["bias"] - 44 + 76)[0] == -13320


def test_real_file_against_scifireaders(real):
    """SciFiReaders (reference.json notes): 1F:Iprobe, 256 x 256, nA, 0.011768 um/px."""
    assert xafm.channels(real) == ["1F:Iprobe"]
    da = xafm.open(real)
    assert da.name == "1F:Iprobe" and da.attrs["units"] == "nA"
    assert da.shape == (1, 256, 256)
    assert model.pixel_size_nm(da) == pytest.approx((11.768, 11.768), rel=5e-5)  # the note's 5 digits
    values, pixel = mdt_sample_by_hand(real)
    assert model.pixel_size_nm(da) == pytest.approx(pixel, rel=1e-12)
    # rows flipped: the first stored row is the bottom of the image
    np.testing.assert_array_equal(da.values[0], values[::-1])


def test_real_file_metadata_and_laziness(real):
    da = xafm.open(real)
    raw = real.read_bytes()
    size0 = struct.unpack_from("<I", raw, 33)[0]
    date = struct.unpack_from("<6H", raw, 33 + size0 + 8)
    want = dt.datetime(*date, tzinfo=dt.UTC).timestamp() * 1000
    assert model.frame_metadata(da)[0]["start_epoch_ms"] == want
    acq = json.loads(da.attrs["acquisition_json"])
    assert acq["frame_kind"] == "MDA" and acq["frame_index"] == 1 and acq["measurands"][0]["unit"] == "nA"
    with raise_if_dask_computes():
        lazy = xafm.open(real, chunks={})
    np.testing.assert_array_equal(lazy[0, 5:60:7, 200:3:-11].values, da.values[0, 5:60:7, 200:3:-11])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy)).values, da.values)


def test_real_file_unknown_channel(real):
    with pytest.raises(xafm.ChannelError, match=r"no channel 'Height'; available: \['1F:Iprobe'\]"):
        xafm.open(real, channel="Height")


# --------------------------------------------------------------------------------------
# synthetic files from the documented layout
# --------------------------------------------------------------------------------------
def scanned_spec():
    return st.fixed_dictionaries(
        {
            "kind": st.just("scanned"),
            "shape": st.tuples(st.integers(1, 9), st.integers(1, 9)),
            "x_step": st.floats(0.01, 50.0),
            "y_step": st.floats(0.01, 50.0),
            "xy_unit": st.sampled_from(sorted(LENGTH_NM)),
            "z_unit": st.sampled_from(sorted(LENGTH_NM) + sorted(OTHER_UNITS)),
            "z_step": st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 1e-3),
            "z_offset": st.floats(-100.0, 100.0),
            "adc_channel": st.sampled_from([0, 1, 4, 11]),
            "title": st.sampled_from(["Height", "Current", "Phase", ""]),
            "dots": st.integers(0, 2),
            "seed": st.integers(0, 1000),
        }
    )


def mda_spec():
    return st.fixed_dictionaries(
        {
            "kind": st.just("MDA"),
            "shape": st.tuples(st.integers(1, 9), st.integers(1, 9)),
            "dtype": st.sampled_from(["<f8", "<f4", "<i2", "<i4", "<u2"]),
            "x_scale": st.floats(1e-4, 2.0),
            "y_scale": st.floats(1e-4, 2.0),
            "xy_unit": st.sampled_from(["um", "nm", "m"]),
            "z_unit": st.sampled_from(["nA", "nm", "V", "um"]),
            "z_scale": st.floats(-2.0, 2.0).filter(lambda v: abs(v) > 1e-3),
            "z_bias": st.floats(-5.0, 5.0),
            "title": st.sampled_from(["1F:Iprobe", "Height", "map"]),
            "seed": st.integers(0, 1000),
        }
    )


def build(spec):
    """The frame's bytes, its values in file order after scale and offset, its unit and
    (y, x) pixel size in nm as the layout in docs/formats.md gives them."""
    rng = np.random.default_rng(spec["seed"])
    ny, nx = spec["shape"]
    if spec["kind"] == "scanned":
        raw = rng.integers(-32768, 32767, size=(ny, nx), dtype=np.int16)
        frame = scanned_frame(
            raw, x_step=spec["x_step"], y_step=spec["y_step"], xy_unit=spec["xy_unit"], z_step=spec["z_step"],
            z_offset=spec["z_offset"], z_unit=spec["z_unit"], adc_channel=spec["adc_channel"], title=spec["title"], dots=spec["dots"],
        )  # fmt: skip
        f4 = lambda v: float(np.float32(v))  # noqa: E731 - the file stores f32
        values = f4(spec["z_offset"]) + f4(spec["z_step"]) * raw.astype(np.float64)
        nm = LENGTH_NM.get(spec["z_unit"])
        unit = "nm" if nm is not None else OTHER_UNITS[spec["z_unit"]]
        values = values * nm if nm is not None else values
        pixel = (f4(spec["y_step"]) * LENGTH_NM[spec["xy_unit"]], f4(spec["x_step"]) * LENGTH_NM[spec["xy_unit"]])
        signal = {0: "Height", 1: "DFL", 4: "Current", 11: "Phase1"}[spec["adc_channel"]]
        is_height = spec["adc_channel"] == 0 or nm is not None
        return frame, values, unit, pixel, spec["title"] or signal, is_height
    dtype = np.dtype(spec["dtype"])
    if dtype.kind == "f":
        raw = rng.normal(0, 100, size=(ny, nx)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, info.max, size=(ny, nx), dtype=dtype)
    frame = mda_frame(
        raw, x_scale=spec["x_scale"], y_scale=spec["y_scale"], xy_unit=spec["xy_unit"], z_scale=spec["z_scale"],
        z_bias=spec["z_bias"], z_unit=spec["z_unit"], title=spec["title"],
    )  # fmt: skip
    to_nm = {"um": 1e3, "nm": 1.0, "m": 1e9}
    values = spec["z_bias"] + spec["z_scale"] * raw.astype(np.float64)
    nm = to_nm.get(spec["z_unit"])
    unit = "nm" if nm is not None else spec["z_unit"]
    values = values * nm if nm is not None else values
    pixel = (spec["y_scale"] * to_nm[spec["xy_unit"]], spec["x_scale"] * to_nm[spec["xy_unit"]])
    return frame, values, unit, pixel, spec["title"], nm is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(st.one_of(scanned_spec(), mda_spec()), min_size=1, max_size=4),
    fillers=st.lists(st.sampled_from(["text", "curves", "spectroscopy"]), max_size=3),
)
def test_synthetic_frames_round_trip(tmp_path_factory, specs, fillers):
    """Several image frames among non-image ones: every image is a channel with its shape,
    pixel size, unit and values (flipped in y); names are unique; the default is the first
    scanned height, else the first image in a length unit, else the first image."""
    built = [build(s) for s in specs]
    frames, index_of = [], []
    extra = {"text": text_frame(), "curves": raw_frame(190), "spectroscopy": raw_frame(201)}
    for i, b in enumerate(built):
        if i < len(fillers):
            frames.append(extra[fillers[i]])
        index_of.append(len(frames))
        frames.append(b[0])
    path = write_mdt(tmp_path_factory.mktemp("mdt") / "s.mdt", frames)
    bases = [b[4] or f"frame {index_of[i] + 1}" for i, b in enumerate(built)]
    names = [base if bases.count(base) == 1 else f"{base} ({index_of[i] + 1})" for i, base in enumerate(bases)]
    assert xafm.channels(path) == names
    for name, (_, values, unit, pixel, _, _) in zip(names, built):
        da = xafm.open(path, channel=name)
        assert da.attrs["channel"] == name and da.attrs["units"] == unit
        assert da.shape == (1, *values.shape)
        assert model.pixel_size_nm(da) == pytest.approx(pixel, rel=1e-12)
        np.testing.assert_allclose(da.values[0], values[::-1], rtol=1e-12, atol=1e-9)
    scanned_heights = [n for n, s, b in zip(names, specs, built) if s["kind"] == "scanned" and b[5]]
    lengths = [n for n, b in zip(names, built) if b[5]]
    assert xafm.open(path).attrs["channel"] == (scanned_heights + lengths + names)[0]


def test_scanned_frame_with_dots_and_short_variables(tmp_path):
    """The dots block (14 + 16 per dot) sits before the raster; 36 bytes of variables
    (scales and scan size only) are enough."""
    raw = np.arange(20, dtype=np.int16).reshape(4, 5)
    path = write_mdt(tmp_path / "d.mdt", [scanned_frame(raw, dots=3, var_size=36, z_step=1.0, title="Topography")])
    np.testing.assert_array_equal(xafm.open(path).values[0], raw[::-1].astype(float))


def test_channel_names_fall_back_and_stay_unique(tmp_path):
    raw = np.zeros((2, 2), np.int16)
    path = write_mdt(tmp_path / "n.mdt", [
        scanned_frame(raw, title=None, adc_channel=4, z_unit=1), scanned_frame(raw, title="Height"), scanned_frame(raw, title="Height"),
        mda_frame(np.zeros((2, 2)), title=""),
    ])  # fmt: skip
    assert xafm.channels(path) == ["Current", "Height (2)", "Height (3)", "frame 4"]
    assert xafm.open(path).attrs["channel"] == "Height (2)"  # Current in nA is not a height


# --------------------------------------------------------------------------------------
# not images, and damaged files
# --------------------------------------------------------------------------------------
def test_a_file_of_curves_only_is_not_an_image(tmp_path):
    path = write_mdt(tmp_path / "c.mdt", [
        text_frame(), raw_frame(190), mda_frame(np.ones(7), dims=1), mda_frame(np.ones((2, 3)), measurands=2, dims=0),
        scanned_frame(np.zeros((0, 0), np.int16), dots=2, frame_type=1), scanned_frame(np.zeros((0, 0), np.int16), dots=2),
    ])  # fmt: skip
    for call in (xafm.open, xafm.channels):
        with pytest.raises(xafm.NotAnImageError, match=r"^.*: this is a spectroscopy file \(.*no image frame.*MDA curve.*\); xafm reads images$") as err:
            call(path)
        assert not isinstance(err.value, xafm.CorruptFileError) and str(path) in str(err.value)


def test_truncated_file_names_both_sizes(tmp_path):
    path = write_mdt(tmp_path / "t.mdt", [scanned_frame(np.ones((8, 8), np.int16))])
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[: full - 10])
    with pytest.raises(xafm.CorruptFileError, match=rf"file is {full - 10} bytes but its header says 33 \+ {full - 33} = {full} \(truncated\)"):
        xafm.open(path)


def _patched(path, offset, fmt, value):
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize(
    "frame, offset, fmt, value, message",
    [
        ("scanned", 33, "<I", 2**31, "claims 2147483648 bytes"),  # frame size
        ("scanned", 33 + 20, "<H", 12, "fewer than the 36"),  # variables size
        ("scanned", 33 + 22 + 107 + 2, "<H", 60000, "run past its end"),  # frame-mode nx
        ("scanned", 12, "<H", 60000, "claims 60001 frames"),  # last frame index
        ("mda", 33 + 22 + 76 + 7 + 38 + 4 + 4 + 12, "<I", 2**31, "axes and"),  # number of dimensions
        ("mda", 33 + 22 + 76 + 7 + 38 + 8 + 20 + 4, "<I", 2**30, "sizes"),  # first calibration struct size
        ("mda", 33 + 22 + 76 + 7 + 38 + 8 + 20 + 8 + 60, "<Q", 2**40, "not plausible"),  # x max index
        ("mda", 33 + 22, "<I", 8, "header size 8"),
    ],
)
def test_lying_headers_give_corrupt_file_errors(tmp_path, frame, offset, fmt, value, message):
    """Every size and count is checked against the frame and the file before use."""
    body = scanned_frame(np.ones((3, 4), np.int16)) if frame == "scanned" else mda_frame(np.ones((3, 4)), title="abcdefg", xml="x" * 19)
    path = _patched(write_mdt(tmp_path / "l.mdt", [body]), offset, fmt, value)
    with pytest.raises(xafm.CorruptFileError, match=message) as err:
        xafm.open(path)
    assert str(path) in str(err.value)


def test_foreign_content_under_the_name_is_refused(tmp_path):
    path = tmp_path / "x.mdt"
    path.write_bytes(b"\\*File list\r\n" + b"\x00" * 100)
    with pytest.raises(xafm.SuffixMismatchError):
        xafm.open(path)
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(xafm.CorruptFileError, match="not an NT-MDT file"):
        xafm.open(path)


@pytest.fixture(scope="module")
def synthetic_seed(tmp_path_factory):
    """Every code path of the layout in one file: text, scanned with dots, MDA, curves."""
    return write_mdt(tmp_path_factory.mktemp("mdt-fuzz") / "seed.mdt", [
        text_frame(), scanned_frame(np.arange(30, dtype=np.int16).reshape(5, 6), dots=2), mda_frame(np.ones((4, 3))),
        raw_frame(190), scanned_frame(np.ones((3, 3), np.int16), var_size=36, title="Height"),
    ])  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_synthetic_scanned_and_mda_frames(synthetic_seed, data):
    """The shared fuzz check (only xafm errors naming the file, no hang, bounded memory)
    on the frame types the real sample lacks."""
    check_mutated_copy(synthetic_seed, data)
