"""Crops keep their place: a stack cut out of a larger one (``isel``/``sel``) keeps the
offset of its x/y coordinates through the data model, every writer and every reader; and
what other tools (netCDF readers, ome-zarr-py, tifffile, ome-types, Bio-Formats, playNano)
see of the offset in xafm's files.

Expected coordinates are always the cropped stack's own (made by xarray's slicing of
``i * pixel`` coordinates), never values computed by the code under test.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import xarray as xr

import xafm
from tests import bioformats, playnano_ref
from tests.test_omezarr import validate_store
from xafm import registry
from xafm.core import model
from xafm.exceptions import CorruptFileError, StackError

#: tiny test stacks make the default 100 nm scale bar too long for the frame
pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")

READABLE_WRITERS = [n for n in registry.writable() if registry.get(n).can_read]
WRITE_ONLY = [n for n in registry.writable() if not registry.get(n).can_read]
ATOL_NM = 1e-9


def big_stack(shape=(3, 80, 120), pixel=(0.7, 1.3)) -> xr.DataArray:
    rng = np.random.default_rng(12)
    values = rng.normal(5.0, 2.0, size=shape).astype(np.float32)
    da = xafm.stack(values, pixel_size_nm=pixel, times=np.arange(shape[0]) * 0.25)
    return da.afm.with_mask("high", values > 6)


def isel_crop() -> xr.DataArray:
    return big_stack().isel(x=slice(40, 90), y=slice(10, 60))


def sel_crop() -> xr.DataArray:
    """A crop in nm: x from 20 to 60 nm, y from 5 to 30 nm (label-based, ends included)."""
    return big_stack().sel(x=slice(20.0, 60.0), y=slice(5.0, 30.0))


def _dest(tmp_path, fmt, stem="c"):
    return tmp_path / f"{stem}{registry.get(fmt).suffixes[0]}"


def assert_same_place(back: xr.DataArray, crop: xr.DataArray) -> None:
    for dim in ("y", "x"):
        np.testing.assert_allclose(back[dim].values, crop[dim].values, rtol=0, atol=ATOL_NM, err_msg=dim)


# --------------------------------------------------------------------------------------
# the data model
# --------------------------------------------------------------------------------------
def test_slicing_keeps_the_offset_and_the_model_accepts_it():
    da = big_stack()
    crop = da.isel(x=slice(40, 90), y=slice(10, 60))
    assert crop.x.values[0] == 40 * 1.3 and crop.y.values[0] == 10 * 0.7  # xarray keeps labels
    model.check_stack(crop)
    assert model.origin_nm(crop) == (crop.y.values[0], crop.x.values[0])
    assert model.origin_nm(da) == (0.0, 0.0)
    # the pixel size of a crop is the scan's, to float rounding of the offset
    np.testing.assert_allclose(model.pixel_size_nm(crop), (0.7, 1.3), rtol=1e-13)
    nm = da.sel(x=slice(20.0, 60.0))
    assert nm.x.values[0] == pytest.approx(20.8) and nm.x.values[-1] <= 60.0  # 16 * 1.3
    np.testing.assert_allclose(model.pixel_size_nm(nm), (0.7, 1.3), rtol=1e-13)


def test_a_far_crop_keeps_its_pixel_size_exactly_enough():
    """A crop far from 0: its first step carries the rounding of a large offset; the mean
    step does not (what made re-read coordinates drift by more than 1e-9 nm)."""
    x = np.arange(4096, dtype=np.float64) * 37.3  # a 150 um scan
    crop = x[3000:3512]
    first_step = crop[1] - crop[0]
    assert np.abs(crop[0] + np.arange(512) * first_step - crop).max() > ATOL_NM  # why the first step will not do
    da = xafm.stack(np.zeros((1, 2, 512)), pixel_size_nm=37.3).assign_coords(x=("x", crop, {"units": "nm"}))
    dx = model.pixel_size_nm(da)[1]
    rebuilt = crop[0] + np.arange(512) * dx
    np.testing.assert_allclose(rebuilt, crop, rtol=0, atol=ATOL_NM)


def test_stack_and_assemble_take_an_origin():
    da = xafm.stack(np.zeros((1, 3, 4)), pixel_size_nm=(2.0, 0.5), origin_nm=(-10.0, 7.25))
    np.testing.assert_array_equal(da.y.values, [-10.0, -8.0, -6.0])
    np.testing.assert_array_equal(da.x.values, [7.25, 7.75, 8.25, 8.75])
    for bad in ((1.0,), (np.nan, 0.0), ("a", 1), (1, 2, 3)):
        with pytest.raises(StackError, match="origin_nm"):
            xafm.stack(np.zeros((1, 3, 4)), pixel_size_nm=1.0, origin_nm=bad)


# --------------------------------------------------------------------------------------
# every reader/writer pair of the table
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("backing", ["numpy", "dask"])
@pytest.mark.parametrize("crop", [isel_crop, sel_crop], ids=["isel", "sel_nm"])
@pytest.mark.parametrize("fmt", READABLE_WRITERS)
def test_round_trip_keeps_the_crop_in_place(fmt, crop, backing, tmp_path):
    want = crop()
    da = want.chunk({"time": 1}) if backing == "dask" else want
    assert model.origin_nm(want) != (0.0, 0.0)
    path = registry.write(fmt, da, _dest(tmp_path, fmt))
    back = xafm.open(path)
    assert back.shape == want.shape
    assert_same_place(back, want)
    np.testing.assert_array_equal(back.values, want.values)  # float32 in, float32 out
    np.testing.assert_array_equal(back.afm.masks["high"].values, want.afm.masks["high"].values)
    np.testing.assert_allclose(model.pixel_size_nm(back), model.pixel_size_nm(want), rtol=1e-12)
    # written again from what was read: still in place
    again = xafm.open(registry.write(fmt, back, _dest(tmp_path, fmt, "again")))
    assert_same_place(again, want)


@pytest.mark.parametrize("fmt", READABLE_WRITERS)
def test_a_whole_scan_still_reads_from_zero(fmt, tmp_path):
    da = big_stack((2, 6, 5))
    back = xafm.open(registry.write(fmt, da, _dest(tmp_path, fmt)))
    np.testing.assert_array_equal(back.x.values, da.x.values)
    np.testing.assert_array_equal(back.y.values, da.y.values)


@pytest.mark.parametrize("fmt", WRITE_ONLY)
def test_time_lapse_writers_take_offset_coordinates(fmt, tmp_path):
    """GIF, videos and frame sequences hold no coordinates: a crop writes as any stack
    (the scale bar comes from the pixel size, not from where the axis starts)."""
    from tests.test_writer_contract import DECODERS

    crop = isel_crop()
    path = registry.write(fmt, crop, _dest(tmp_path, fmt))
    n, size = DECODERS[fmt](path)
    assert n == crop.sizes["time"] and min(size) > 0


# --------------------------------------------------------------------------------------
# bundles: where the offset is, what other tools see
# --------------------------------------------------------------------------------------
def test_hdf5_bundle_dimension_scales_start_at_the_offset(tmp_path):
    crop = isel_crop()
    path = crop.afm.to_h5(tmp_path / "c.h5")
    with xr.open_dataset(path, engine="h5netcdf") as ds:  # a netCDF reader, not xafm's
        np.testing.assert_allclose(ds["x"].values, crop.x.values, rtol=0, atol=ATOL_NM)
        np.testing.assert_allclose(ds["y"].values, crop.y.values, rtol=0, atol=ATOL_NM)
    import h5py

    with h5py.File(path, "r") as f:
        stored = json.loads(f.attrs["xafm_attrs_json"])
        assert stored["origin_nm"] == [crop.y.values[0], crop.x.values[0]]
        assert sorted(f) == ["data", "frame_metadata_json", "masks", "processed", "provenance_json", "time", "timestamps", "x", "y"]


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_a_bundle_without_an_origin_reads_from_zero_and_a_bad_one_is_refused(fmt, tmp_path):
    """playNano's bundles (and xafm's before this) say nothing of an origin; a damaged
    ``xafm_attrs_json`` origin is a corrupt file, named."""
    crop = isel_crop()
    path = registry.write(fmt, crop, _dest(tmp_path, fmt))
    for origin, ok in ((None, True), ([1.0], False), (["a", 2], False)):
        target = _dest(tmp_path, fmt, f"edited{ok}{len(origin or [])}")
        _rewrite_attrs_json(fmt, path, target, origin)
        if ok:
            back = xafm.open(target)
            np.testing.assert_array_equal(back.x.values, np.arange(crop.sizes["x"]) * model.pixel_size_nm(crop)[1])
        else:
            with pytest.raises(CorruptFileError, match="origin_nm") as err:
                xafm.open(target)
            assert str(target) in str(err.value)


def _rewrite_attrs_json(fmt, src, dst, origin):
    if fmt == "h5":
        import shutil

        import h5py

        shutil.copy(src, dst)
        with h5py.File(dst, "r+") as f:
            f.attrs["xafm_attrs_json"] = _edited(f.attrs["xafm_attrs_json"], origin)
        return
    with np.load(src) as f:
        members = {k: f[k] for k in f.files}
    members["xafm_attrs_json"] = np.array(_edited(str(members["xafm_attrs_json"]), origin))
    np.savez(dst, **members)


def _edited(text, origin):
    obj = json.loads(text)
    obj.pop("origin_nm")
    if origin is not None:
        obj["origin_nm"] = origin
    return json.dumps(obj)


@pytest.mark.parametrize("fmt", ["h5", "npz", "tif"])
def test_playnano_loads_a_cropped_file_unchanged(fmt, tmp_path):
    """playNano 0.5's own loaders read xafm's bundles and OME-TIFF of a crop: same frames,
    same pixel size and frame count (it ignores xafm's origin and the plane positions,
    which it has no place for); the bundles' masks too (its OME-TIFF loader reads none)."""
    exe = playnano_ref.require()
    crop = isel_crop()
    path = registry.write(fmt, crop, _dest(tmp_path, fmt))
    loader = {"h5": "load_h5_bundle", "npz": "load_npz_bundle", "tif": "load_ome_tiff_stack"}[fmt]
    script = (
        "import sys, numpy as np\n"
        "from playnano.io import data_loaders\n"
        f"st = data_loaders.{loader}(sys.argv[1])\n"
        "np.save(sys.argv[2], np.asarray(st.data))\n"
        "print(repr(float(st.pixel_size_nm)), len(st.frame_metadata), sorted(st.masks))\n"
    )
    out = tmp_path / "pn.npy"
    done = subprocess.run([exe, "-c", script, str(path), str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    pixel, n_frames, masks = done.stdout.strip().split(" ", 2)
    np.testing.assert_array_equal(np.load(out), crop.values)
    assert float(pixel) == pytest.approx(1.3, rel=1e-12) and int(n_frames) == crop.sizes["time"]
    assert masks == ("[]" if fmt == "tif" else "['high']")


# --------------------------------------------------------------------------------------
# OME-Zarr: the NGFF translation, every level, appends
# --------------------------------------------------------------------------------------
def _multiscale(path):
    attrs = json.loads((path / "zarr.json").read_text())["attributes"] if (path / "zarr.json").exists() else json.loads((path / ".zattrs").read_text())
    return (attrs.get("ome") or attrs)["multiscales"][0]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("method", ["mean", "nearest"])
def test_omezarr_levels_share_the_crop_origin(version, method, tmp_path):
    crop = big_stack((2, 80, 120)).isel(x=slice(40, 104), y=slice(10, 42))  # 32 x 64: 3 levels
    path = crop.afm.to_ome_zarr(tmp_path / "c.ome.zarr", levels=3, method=method, version=version)
    validate_store(path)  # yaozarrs and ome-zarr-models: NGFF's rules for the transformations
    ms = _multiscale(path)
    dy, dx = 0.7, 1.3
    y0, x0 = crop.y.values[0], crop.x.values[0]
    for k, entry in enumerate(ms["datasets"]):
        kinds = [t["type"] for t in entry["coordinateTransformations"]]
        assert kinds == ["scale", "translation"]  # NGFF: at most one of each, scale first
        scale = entry["coordinateTransformations"][0]["scale"]
        shift = entry["coordinateTransformations"][1]["translation"]
        f = 2**k
        centre = 0.0 if method == "nearest" else (f - 1) / 2  # first pixel: the centre of the f x f it reduces
        assert scale[1:] == pytest.approx([dy * f, dx * f], rel=1e-12)
        assert shift[1:] == pytest.approx([y0 + dy * centre, x0 + dx * centre], rel=1e-12)
        lvl = xafm.open(path, level=k)
        # the level's pixels lie over the full-resolution pixels they were made from
        src_x = crop.x.values[: lvl.sizes["x"] * f].reshape(-1, f)
        src_y = crop.y.values[: lvl.sizes["y"] * f].reshape(-1, f)
        want_x = src_x[:, 0] if method == "nearest" else src_x.mean(axis=1)
        want_y = src_y[:, 0] if method == "nearest" else src_y.mean(axis=1)
        np.testing.assert_allclose(lvl.x.values, want_x, rtol=0, atol=ATOL_NM)
        np.testing.assert_allclose(lvl.y.values, want_y, rtol=0, atol=ATOL_NM)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_py_reads_the_translation(version, tmp_path):
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    crop = big_stack((2, 80, 120)).isel(x=slice(40, 104), y=slice(10, 42))
    path = crop.afm.to_ome_zarr(tmp_path / "c.ome.zarr", levels=2, version=version)
    node = next(iter(Reader(parse_url(str(path)))()))
    transforms = node.metadata["coordinateTransformations"]
    assert len(transforms) == 2 and len(node.data) == 2
    t0 = {t["type"]: t for t in transforms[0]}
    assert t0["translation"]["translation"][1:] == pytest.approx([crop.y.values[0], crop.x.values[0]], rel=1e-12)
    np.testing.assert_array_equal(np.asarray(node.data[0]), crop.values)


def test_appending_frames_of_another_origin_is_refused(tmp_path):
    big = big_stack((4, 80, 120))
    first = big.isel(time=slice(0, 2), x=slice(40, 90), y=slice(10, 60))
    path = first.afm.to_ome_zarr(tmp_path / "c.ome.zarr")
    elsewhere = big.isel(time=slice(2, 4), x=slice(41, 91), y=slice(10, 60))
    with pytest.raises(StackError, match="origin") as err:
        elsewhere.afm.to_ome_zarr(path, mode="a", append_dim="time")
    assert str(path) in str(err.value)
    assert xafm.open(path).sizes["time"] == 2
    same = big.isel(time=slice(2, 4), x=slice(40, 90), y=slice(10, 60))
    same.afm.to_ome_zarr(path, mode="a", append_dim="time")
    back = xafm.open(path)
    assert back.sizes["time"] == 4
    assert_same_place(back, same)
    np.testing.assert_array_equal(back.values[2:], same.values)


# --------------------------------------------------------------------------------------
# OME-TIFF: Plane positions, and what tifffile, ome-types and Bio-Formats see
# --------------------------------------------------------------------------------------
OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def test_ome_tiff_planes_state_the_offset_in_nm(tmp_path):
    import tifffile

    crop = isel_crop()
    path = crop.afm.to_ome_tiff(tmp_path / "c.ome.tif")
    with tifffile.TiffFile(path) as tf:
        root = ET.fromstring(tf.ome_metadata.encode("utf-8"))
    images = root.findall(f"{OME}Image")
    planes = images[0].findall(f"{OME}Pixels/{OME}Plane")
    assert len(planes) == crop.sizes["time"]
    for p in planes:
        assert (p.get("PositionXUnit"), p.get("PositionYUnit")) == ("nm", "nm")
        assert float(p.get("PositionX")) == crop.x.values[0] and float(p.get("PositionY")) == crop.y.values[0]
    ome_types = pytest.importorskip("ome_types")
    ome_types.validate_xml(tf_xml(path))  # the 2016-06 schema: positions and units are valid
    doc = ome_types.from_xml(tf_xml(path))
    plane = doc.images[0].pixels.planes[0]
    assert plane.position_x == crop.x.values[0] and plane.position_x_unit.value == "nm"
    assert plane.position_y == crop.y.values[0] and plane.position_y_unit.value == "nm"


def tf_xml(path):
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return tf.ome_metadata


def test_a_whole_scan_states_no_plane_position(tmp_path):
    path = big_stack((2, 6, 5)).afm.to_ome_tiff(tmp_path / "w.ome.tif")
    assert "PositionX" not in tf_xml(path)


def test_foreign_ome_tiff_plane_positions_place_the_image(tmp_path):
    """Another tool's OME-TIFF (tifffile's writer): planes that all state one position in
    µm place the image there; planes that differ (a moving stage) or state positions in
    a reference frame (OME's default unit) leave it at 0."""
    import tifffile

    values = np.arange(2 * 8 * 10, dtype=np.uint16).reshape(2, 8, 10)
    common = {"axes": "TYX", "PhysicalSizeX": 0.002, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.003, "PhysicalSizeYUnit": "µm"}
    cases = {
        "same": ({"PositionX": [0.05, 0.05], "PositionXUnit": ["µm", "µm"], "PositionY": [-0.01, -0.01], "PositionYUnit": ["µm", "µm"]}, (-10.0, 50.0)),
        "moving": ({"PositionX": [0.05, 0.06], "PositionXUnit": ["µm", "µm"], "PositionY": [0.01, 0.01], "PositionYUnit": ["µm", "µm"]}, (0.0, 0.0)),
        "frame": ({"PositionX": [5.0, 5.0], "PositionY": [1.0, 1.0]}, (0.0, 0.0)),
    }
    for name, (plane, (y0, x0)) in cases.items():
        path = tmp_path / f"{name}.ome.tif"
        tifffile.imwrite(path, values, metadata={**common, "Plane": plane})
        back = xafm.open(path)
        np.testing.assert_allclose(back.x.values, x0 + np.arange(10) * 2.0, rtol=0, atol=ATOL_NM, err_msg=name)
        np.testing.assert_allclose(back.y.values, y0 + np.arange(8) * 3.0, rtol=0, atol=ATOL_NM, err_msg=name)
        np.testing.assert_array_equal(back.values, values)
        # a reader's origin travels on through xafm's writers
        again = xafm.open(back.afm.to_npz(tmp_path / f"{name}.npz"))
        assert_same_place(again, back)


def test_bioformats_reports_the_plane_positions(tmp_path):
    crop = isel_crop()
    path = crop.afm.to_ome_tiff(tmp_path / "c.ome.tif")
    out = bioformats.image_info({"crop": path})["crop"]
    doc = bioformats.omexml_dump(out)
    planes = doc.findall(f"{OME}Image/{OME}Pixels/{OME}Plane")
    assert planes, out[-2000:]
    for p in planes[: crop.sizes["time"]]:
        assert float(p.get("PositionX")) == pytest.approx(crop.x.values[0], rel=1e-12)
        assert float(p.get("PositionY")) == pytest.approx(crop.y.values[0], rel=1e-12)
        assert (p.get("PositionXUnit"), p.get("PositionYUnit")) == ("nm", "nm")
