"""Round trips and guarantees shared by every writer/reader pair xafm owns (h5, npz, tif).

One set of tests, parametrised over the formats, as xarray does for its backends.
"""

from __future__ import annotations

import json
import math
import zipfile

import dask
import dask.array as dsa
import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xafm
from tests.helpers import CountingScheduler, raise_if_dask_computes
from xafm.core import blocks as _output
from xafm.core import conventions, model
from xafm.testing import write_playnano_h5, write_playnano_npz, write_playnano_ome_tiff

FORMATS = ["h5", "npz", "tif"]
SUFFIX = {"h5": ".h5", "npz": ".npz", "tif": ".ome.tif"}
WRITER = {"h5": "to_h5", "npz": "to_npz", "tif": "to_ome_tiff"}


def write(da, fmt, path, **kw):
    return getattr(da.afm, WRITER[fmt])(path, **kw)


def stored_dtype(fmt, dtype):
    """Bundles store float32 (playNano's layout); OME-TIFF keeps the dtype."""
    return np.dtype(np.float32) if fmt in ("h5", "npz") else np.dtype(dtype)


# --------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------
awkward_names = st.one_of(
    st.sampled_from(["raw", "a/b", "..", ".", "x y", "100%", "__", "ü/ñ", "step_1_remove_plane", "../etc/passwd"]),
    st.text(min_size=1, max_size=10),
)
channel_names = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lo", "Nd")), min_size=1, max_size=12
)


@st.composite
def stacks(draw):
    dtype = np.dtype(draw(st.sampled_from(["float32", "float64", "int16", "uint16"])))
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    if dtype.kind == "f":
        elements = st.floats(-1e6, 1e6, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
    else:
        elements = None
    data = draw(hnp.arrays(dtype, shape, elements=elements))
    px = draw(st.floats(1e-3, 1e4))
    steps = draw(st.lists(st.floats(1e-3, 100.0), min_size=shape[0], max_size=shape[0]))
    times = np.cumsum(steps) - steps[0]
    channel = draw(channel_names)
    assume(channel not in ("time", "y", "x"))
    fm = [
        {
            "line_rate": draw(st.floats(0.1, 1e4)),
            "scan_direction": draw(st.sampled_from(["up", "down", "Höhe ↑"])),
            "nested": {"a": [1, 2, {"b": draw(st.text(max_size=5))}]},
        }
        for _ in range(shape[0])
    ]
    mask_names = draw(st.lists(awkward_names, max_size=2, unique=True))
    layer_names = draw(st.lists(awkward_names, max_size=2, unique=True))
    masks = {n: draw(hnp.arrays(bool, shape)) for n in mask_names}
    layers = {n: draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e3, 1e3, width=32))) for n in layer_names}
    da = xafm.stack(data, pixel_size_nm=px, times=times, channel=channel, frame_metadata=fm, masks=masks, layers=layers,
                    attrs={"operator": draw(st.text(max_size=8)), "setpoint_v": 0.25})
    nested = {"deep": {"list": [1, "two", {"three": [3.0]}]}, "text": draw(st.text(max_size=8))}
    return xafm.core.provenance.append(da, xafm.core.provenance.make_record("note", content=nested))


def assert_round_trip(da, back, fmt):
    assert back.dims == conventions.DIMS
    assert back.shape == da.shape
    assert back.dtype == stored_dtype(fmt, da.dtype)
    expected = da.values.astype(stored_dtype(fmt, da.dtype))
    np.testing.assert_array_equal(back.values, expected)
    np.testing.assert_array_equal(back["time"].values, da["time"].values)
    for dim in ("y", "x"):
        np.testing.assert_allclose(back[dim].values, da[dim].values, rtol=1e-12)
    for dim, unit in (("time", "s"), ("y", "nm"), ("x", "nm")):
        assert back[dim].attrs["units"] == unit
    assert back.name == da.name
    assert back.attrs["channel"] == da.attrs["channel"]
    assert back.attrs["units"] == da.attrs["units"]
    assert back.attrs["operator"] == da.attrs["operator"]
    assert back.attrs["setpoint_v"] == da.attrs["setpoint_v"]
    assert back.afm.frame_metadata == da.afm.frame_metadata
    assert set(back.afm.masks) == set(da.afm.masks)
    for k, m in da.afm.masks.items():
        np.testing.assert_array_equal(back.afm.masks[k].values, m.values)
        assert back.afm.masks[k].dtype == bool
    assert set(back.afm.layers) == set(da.afm.layers)
    for k, layer in da.afm.layers.items():
        np.testing.assert_array_equal(back.afm.layers[k].values, layer.values.astype(back.afm.layers[k].dtype))
    # the writer recorded its export in the file, not on the stack; the reader added a read
    assert back.afm.provenance[-2]["type"] == "export" and back.afm.provenance[-2]["format"] == fmt
    assert back.afm.provenance[:-2] == da.afm.provenance
    assert back.afm.provenance[-1]["type"] == "read"


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
@given(da=stacks())
def test_property_round_trip(fmt, da, tmp_path_factory):
    path = tmp_path_factory.mktemp(fmt) / f"stack{SUFFIX[fmt]}"
    out = write(da, fmt, path)
    assert out == path and path.is_file()
    assert_round_trip(da, xafm.open(path), fmt)
    lazy = xafm.open(path, chunks={"time": 2})
    assert isinstance(lazy.data, dsa.Array)
    np.testing.assert_array_equal(lazy.values, xafm.open(path).values)


@pytest.mark.parametrize("fmt", FORMATS)
def test_engine_and_open_dataset(fmt, tmp_path, rng):
    da = xafm.stack(rng.normal(size=(3, 5, 4)), pixel_size_nm=2.0, channel="height")
    path = write(da, fmt, tmp_path / f"s{SUFFIX[fmt]}")
    via_engine = xr.open_dataarray(path, engine="xafm")
    np.testing.assert_array_equal(via_engine.values, da.values.astype(stored_dtype(fmt, da.dtype)))
    ds = xr.open_dataset(path, engine="xafm", chunks={})
    assert list(ds.data_vars) == ["height"] and isinstance(ds["height"].data, dsa.Array)
    assert xafm.registry.find(path).name == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_layer_export(fmt, tmp_path, rng):
    raw = xafm.stack(rng.normal(size=(2, 6, 5)) + np.arange(5), pixel_size_nm=1.0)
    processed = raw.afm.remove_plane(keep_layer=True).afm.align_rows(keep_layer=True).afm.mask_threshold(0.0)
    assert set(processed.afm.layers) == {"raw", "step_1_remove_plane"}
    back = xafm.open(write(processed, fmt, tmp_path / f"r{SUFFIX[fmt]}", raw=True))
    np.testing.assert_array_equal(back.values, raw.values.astype(stored_dtype(fmt, raw.dtype)))
    assert back.afm.masks == {} and back.afm.layers == {}
    assert back.afm.provenance[-2]["raw"] is True
    with pytest.raises(xafm.StackError, match="no.*raw|has none"):
        write(raw, fmt, tmp_path / f"n{SUFFIX[fmt]}", raw=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_square_pixels_and_one_pixel_axes(fmt, tmp_path, rng):
    da = xafm.stack(rng.normal(size=(2, 1, 7)).astype(np.float32), pixel_size_nm=(3.0, 0.5))
    back = xafm.open(write(da, fmt, tmp_path / f"p{SUFFIX[fmt]}"))
    assert model.pixel_size_nm(back) == pytest.approx((3.0, 0.5))


# --------------------------------------------------------------------------------------
# no data lost
# --------------------------------------------------------------------------------------
# overwriting and failures midway: tests/test_writer_contract.py, for every writer


# --------------------------------------------------------------------------------------
# laziness and streaming
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_open_with_chunks_reads_nothing(fmt, tmp_path, rng, monkeypatch):
    da = xafm.stack(rng.normal(size=(6, 5, 4)), pixel_size_nm=1.0).afm.mask_threshold(0.0)
    path = write(da, fmt, tmp_path / f"s{SUFFIX[fmt]}")
    from xafm.core import lazy as _lazy
    from xafm.formats import _hdf5

    reads = []
    for cls in (_lazy.RawFramesArray, _hdf5.H5DatasetArray):
        original = cls._read
        monkeypatch.setattr(cls, "_read", lambda self, key, _o=original: reads.append(key) or _o(self, key))
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={"time": 2})
        lazy2 = lazy.isel(time=slice(1, 3)).afm.remove_plane()
    assert reads == []
    np.testing.assert_allclose(lazy2.values, da.isel(time=slice(1, 3)).afm.remove_plane().values, rtol=1e-5, atol=1e-5)
    assert reads, "computing must read"


@pytest.mark.parametrize("fmt", FORMATS)
def test_dask_stack_is_streamed_block_by_block(fmt, tmp_path, monkeypatch):
    monkeypatch.setattr(_output, "BLOCK_BYTES", 2 * 8 * 8 * 4)  # two frames per block
    arr = dsa.random.default_rng(0).random((8, 8, 8), chunks=(1, 8, 8)).astype(np.float32)
    da = xafm.stack(arr, pixel_size_nm=1.0)
    da = da.afm.with_mask("m", lambda s: s > 0.5)  # masks stream too
    with dask.config.set(scheduler=CountingScheduler(max_computes=10**6)) as _:
        scheduler = dask.config.get("scheduler")
        write(da, fmt, tmp_path / f"s{SUFFIX[fmt]}")
    # float32 data: 2 frames per block -> 4 computes; the bool mask is 4x smaller: 8 frames
    # fit one block -> 1 compute. Never one compute of the whole data.
    assert scheduler.total_computes == 4 + 1
    np.testing.assert_array_equal(xafm.open(tmp_path / f"s{SUFFIX[fmt]}").values, arr.compute())


def test_open_cost_does_not_grow_with_frames(tmp_path, monkeypatch):
    """Opening touches metadata only: the number of lazy reads is zero for 5 or 500 frames."""
    from xafm.core import lazy as _lazy
    from xafm.formats import _hdf5

    calls = []
    monkeypatch.setattr(_lazy.RawFramesArray, "_read", lambda self, key: calls.append(1))
    monkeypatch.setattr(_hdf5.H5DatasetArray, "_read", lambda self, key: calls.append(1))
    for n in (5, 500):
        da = xafm.stack(np.zeros((n, 4, 4), np.float32), pixel_size_nm=1.0)
        for fmt in FORMATS:
            xafm.open(write(da, fmt, tmp_path / f"{n}{SUFFIX[fmt]}"), chunks={})
    assert calls == []


# --------------------------------------------------------------------------------------
# interop
# --------------------------------------------------------------------------------------
def test_h5_opens_as_netcdf(tmp_path, rng):
    da = xafm.stack(rng.normal(size=(3, 4, 5)), pixel_size_nm=2.5, times=[0, 0.5, 1.5]).afm.mask_threshold(0.0, name="m")
    path = da.afm.to_h5(tmp_path / "s.h5")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["data"].dims == ("time", "y", "x")
        assert ds["time"].attrs["units"] == "s" and ds["x"].attrs["units"] == "nm"
        np.testing.assert_allclose(ds["x"].values, np.arange(5) * 2.5)
        np.testing.assert_allclose(ds["time"].values, [0, 0.5, 1.5])
        np.testing.assert_allclose(ds["data"].values, da.values.astype(np.float32))
        assert ds.attrs["channel"] == "height" and ds.attrs["pixel_size_nm"] == 2.5
    with h5py.File(path) as f:  # playNano's layout
        assert f["data"].dtype == np.float32 and f["masks/m"].dtype == np.int8  # 0/1; tests/test_h5_netcdf.py
        np.testing.assert_array_equal(f["masks/m"][()].astype(bool), da.afm.masks["m"].values)
        assert json.loads(f["frame_metadata_json"][()].decode("utf-8"))[0]["frame_pixel_size_nm"] == 2.5
        prov = json.loads(f["provenance_json"][()].decode("utf-8"))
        assert set(prov) >= {"acquisition", "environment", "processing", "analysis", "xafm"}
        assert prov["processing"]["keys_by_name"] == {"mask_threshold": ["m"]}


def test_ome_tiff_validates_and_carries_playnano_tags(tmp_path, rng):
    ome_types = pytest.importorskip("ome_types")
    import tifffile

    da = xafm.stack(rng.normal(size=(3, 6, 7)).astype(np.float32), pixel_size_nm=0.8, times=[0, 1.25, 2.5], channel="Höhe")
    da = da.afm.remove_plane(keep_layer=True).afm.mask_threshold(0.1, name="a/b")
    path = da.afm.to_ome_tiff(tmp_path / "s.ome.tif")
    ome = ome_types.from_tiff(path, validate=True)
    pix = ome.images[0].pixels
    assert (pix.size_t, pix.size_y, pix.size_x) == (3, 6, 7)
    assert pix.physical_size_x == pytest.approx(0.0008) and pix.physical_size_x_unit.value == "µm"
    assert [p.delta_t for p in pix.planes] == [0, 1.25, 2.5] and pix.planes[0].delta_t_unit.value == "s"
    assert pix.time_increment == pytest.approx(1.25) and pix.channels[0].name == "Höhe"
    assert [im.name for im in ome.images] == ["Höhe", "layer:raw", "mask:a/b"]
    with tifffile.TiffFile(path) as tf:
        assert json.loads(tf.pages[0].tags[65001].value) == ["raw"]
        prov = json.loads(tf.pages[0].tags[65000].value)
        assert prov["xafm"]["records"][-1]["type"] == "export"
        assert not tf.is_bigtiff


def test_ome_tiff_bigtiff_for_streams_over_4gib(tmp_path, monkeypatch):
    import tifffile

    from xafm.formats.ometiff import writer as ometiff_writer

    monkeypatch.setattr(ometiff_writer, "BIGTIFF_THRESHOLD", 1000)  # pretend 4 GiB is 1000 bytes
    arr = dsa.zeros((4, 16, 16), chunks=(1, 16, 16), dtype=np.float32)
    path = xafm.stack(arr, pixel_size_nm=1.0).afm.to_ome_tiff(tmp_path / "big.ome.tif")
    with tifffile.TiffFile(path) as tf:
        assert tf.is_bigtiff
    np.testing.assert_array_equal(xafm.open(path).values, np.zeros((4, 16, 16)))


def test_ome_tiff_refuses_mixed_pixel_sizes(tmp_path):
    da = xafm.stack(np.zeros((2, 3, 3)), pixel_size_nm=1.0, frame_metadata=[{"frame_pixel_size_nm": 1.0}, {"frame_pixel_size_nm": 2.0}])
    with pytest.raises(xafm.StackError, match="different pixel sizes"):
        da.afm.to_ome_tiff(tmp_path / "x.ome.tif")
    assert not (tmp_path / "x.ome.tif").exists()


# --------------------------------------------------------------------------------------
# playNano's own files (layouts as its writers produce them)
# --------------------------------------------------------------------------------------
def test_reads_playnano_npz_with_object_arrays_without_pickle(tmp_path, rng, monkeypatch):
    data = rng.normal(size=(3, 4, 5)).astype(np.float32)
    path = write_playnano_npz(tmp_path / "pn.npz", data, pixel_size_nm=1.5, channel="height_trace", timestamps=np.arange(3) * 0.5,
                              processed={"raw": data + 1, "step_1_remove_plane": data}, masks={"step_2_mask_threshold": data > 0})
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("np.load must not be used")) if k.get("allow_pickle") else real_load(*a, **k))
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, data)
    assert back.name == "height_trace" and back.afm.pixel_size_nm == pytest.approx(1.5)
    np.testing.assert_allclose(back["time"].values, [0, 0.5, 1.0])
    assert set(back.afm.layers) == {"raw", "step_1_remove_plane"}
    np.testing.assert_array_equal(back.afm.masks["step_2_mask_threshold"].values, data > 0)
    steps = [r for r in back.afm.provenance if r["type"] in ("step", "mask")]
    assert [(r["name"], r["origin"]) for r in steps] == [("remove_plane", "playNano"), ("mask_threshold", "playNano")]
    assert "frame_pixel_size_nm" not in back.coords  # equal to the pixel size: implied by x
    np.testing.assert_allclose(back["line_rate"].values, 100.0)
    lazy = xafm.open(path, chunks={"time": 1})  # deflated members are read lazily too
    np.testing.assert_array_equal(lazy.values, data)


def test_reads_playnano_h5_bundle(tmp_path, rng):
    data = rng.normal(size=(2, 3, 4)).astype(np.float32)
    path = write_playnano_h5(tmp_path / "pn.h5", data, pixel_size_nm=1.5, channel="height_trace", timestamps=np.array([0.0, 0.5]),
                             processed={"raw": data * 2}, masks={"step_2_mask_threshold": data > 0})
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, data)
    np.testing.assert_array_equal(back.afm.layers["raw"].values, data * 2)
    assert back.name == "height_trace" and back.afm.pixel_size_nm == 1.5
    assert back.afm.provenance[1]["name"] == "remove_plane"


def test_xafm_bundles_have_playnano_shape(tmp_path, rng):
    """What playNano's loaders need: dict provenance with processing/analysis keys, bytes JSON in h5,
    0-d string arrays in npz, frame dicts with timestamp and frame_pixel_size_nm."""
    da = xafm.stack(rng.normal(size=(2, 3, 3)), pixel_size_nm=2.0).afm.remove_plane(keep_layer=True)
    npz = da.afm.to_npz(tmp_path / "s.npz")
    with np.load(npz, allow_pickle=False) as z:
        assert z["data"].dtype == np.float32 and z["channel"].item() == "height"
        prov = json.loads(z["provenance_json"].item())
        assert prov["processing"]["steps"][0]["processed_key"] == "step_1_remove_plane"
        assert prov["analysis"] == {"frame_times": None, "steps": [], "results_by_name": {}}
        frames = json.loads(z["frame_metadata_json"].item())
        assert frames[1] == {"timestamp": 1.0, "frame_pixel_size_nm": 2.0}
        assert set(z.files) >= {"data", "processed__raw", "timestamps", "pixel_size_nm", "channel"}


# --------------------------------------------------------------------------------------
# safety
# --------------------------------------------------------------------------------------
def test_crafted_pickle_payload_is_refused_without_executing(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for key, arr in (("data", np.zeros((1, 2, 2), np.float32)), ("pixel_size_nm", np.array(1.0)), ("channel", np.array("h"))):
            with zf.open(key + ".npy", "w") as fp:
                np.lib.format.write_array(fp, arr)
        payload = pickle.dumps(np.array([Evil()], dtype=object), protocol=3)
        for key in ("frame_metadata_json", "provenance_json"):
            with zf.open(key + ".npy", "w") as fp:
                np.lib.format.write_array_header_1_0(fp, {"descr": "|O", "fortran_order": False, "shape": (1,)})
                fp.write(payload)
    with pytest.raises(xafm.UnsafeFileError, match="refus"):
        xafm.open(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not a readable|unrecognised|cannot read"),
        (b"garbage" * 100, "not a readable|cannot read"),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_corrupt_input_names_file_and_problem(fmt, content, match, tmp_path):
    path = tmp_path / f"bad{SUFFIX[fmt]}"
    path.write_bytes(content)
    with pytest.raises(xafm.CorruptFileError, match=match) as err:
        xafm.open(path)
    assert str(path) in str(err.value)


def test_unknown_and_missing_files(tmp_path):
    p = tmp_path / "x.unknown"
    p.write_bytes(b"1234")
    with pytest.raises(xafm.UnknownFormatError, match="not a file xafm recognises by its name or content.*\\.h5"):
        xafm.open(p)
    with pytest.raises(xafm.UnknownFormatError, match="no such file"):
        xafm.open(tmp_path / "missing.h5")


def test_npz_header_lying_about_size(tmp_path, rng):
    da = xafm.stack(rng.normal(size=(2, 3, 3)), pixel_size_nm=1.0)
    good = da.afm.to_npz(tmp_path / "g.npz")
    bad = tmp_path / "b.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            body = zin.read(info)
            if info.filename == "data.npy":
                body = body.replace(b"(2, 3, 3)", b"(900000, 3, 3)")
            zout.writestr(info.filename, body)
    with pytest.raises(xafm.CorruptFileError, match="header promises"):
        xafm.open(bad)


def test_export_several_and_unknown_format(tmp_path, rng):
    da = xafm.stack(rng.normal(size=(2, 3, 3)), pixel_size_nm=1.0)
    with pytest.raises(xafm.FormatError, match="unknown format 'jpg'; valid formats are: h5, npz, tif"):
        da.afm.export(tmp_path, "s", ["h5", "jpg"])
    assert list(tmp_path.iterdir()) == []  # nothing written when any name is wrong
    out = da.afm.export(tmp_path, "s")
    assert {k: v.name for k, v in out.items()} == {"h5": "s.h5", "npz": "s.npz", "tif": "s.ome.tif"}
    assert [r["type"] for r in da.afm.provenance] == ["create"]  # the stack is not changed by writing
    for fmt, path in out.items():
        exports = [r for r in xafm.open(path).afm.provenance if r["type"] == "export"]
        assert [(r["format"], r["path"]) for r in exports] == [(fmt, str(path))]


def test_writers_keep_nonfinite_and_big_values(tmp_path):
    data = np.array([[[np.nan, np.inf], [-np.inf, 3.4e38]]], dtype=np.float32)
    da = xafm.stack(data, pixel_size_nm=1.0)
    for fmt in FORMATS:
        back = xafm.open(write(da, fmt, tmp_path / f"s{SUFFIX[fmt]}"))
        np.testing.assert_array_equal(back.values, data)
        assert math.isnan(float(back.values[0, 0, 0]))


def test_ome_tiff_has_one_plane_per_frame_in_the_whole_document(tmp_path, rng):
    """playNano takes every Plane in the OME-XML as a frame time: layer/mask images add none."""
    import re

    import tifffile

    da = xafm.stack(rng.normal(size=(4, 5, 6)), pixel_size_nm=1.0).afm.remove_plane(keep_layer=True).afm.mask_threshold(0.0)
    path = da.afm.to_ome_tiff(tmp_path / "s.ome.tif")
    with tifffile.TiffFile(path) as tf:
        xml = tf.ome_metadata
    assert len(re.findall(r"<Plane ", xml)) == 4 and xml.count("<Image ") == 3


def test_reads_playnano_ome_tiff_provenance_tag(tmp_path, rng):
    """playNano's OME-TIFF (tifffile ome=True, TCZYX, provenance JSON in tag 65000)."""
    data = rng.normal(size=(3, 1, 1, 6, 7)).astype(np.float32)
    write_playnano_ome_tiff(tmp_path / "pn.ome.tif", data, pixel_size_nm=1.5, times=[0.0, 0.5, 1.0], channel="height_trace")
    back = xafm.open(tmp_path / "pn.ome.tif")
    np.testing.assert_array_equal(back.values, data[:, 0, 0])
    assert back.afm.pixel_size_nm == pytest.approx(1.5)
    np.testing.assert_allclose(back["time"].values, [0, 0.5, 1.0])
    assert [r.get("name") for r in back.afm.provenance if r["type"] in ("step", "mask")] == ["remove_plane", "mask_threshold"]
    assert back.afm.provenance[-1]["type"] == "read"
