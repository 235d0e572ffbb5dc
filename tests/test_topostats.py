"""The TopoStats ``.topostats`` (HDF5) reader: the real 0.1 file, newer layouts with the
original image, grain masks and mask tensors, and damaged files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import assert_matches_reference, raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model, provenance
from xafm.exceptions import ChannelError, CorruptFileError
from xafm.testing import write_topostats

SAMPLE = ("afm", "sample_0_1.topostats")


# --------------------------------------------------------------------------------------
# the real file
# --------------------------------------------------------------------------------------
def test_real_file_matches_reference():
    path = shared_file(*SAMPLE)
    ref = reference("afm")["sample_0_1.topostats"]
    da = xafm.open(path)
    assert da.name == "image" and da.attrs["units"] == "nm"
    assert_matches_reference(da, ref)
    with h5py.File(path, "r") as f:  # same orientation as stored (and as AFMReader returns it)
        np.testing.assert_array_equal(da.values[0], f["image"][()])
    acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
    assert acq["topostats_version"] == 0.1 and acq["members"] == ["image", "pixel_to_nm_scaling", "topostats_file_version"]
    assert provenance.records(da)[-1]["format"] == "topostats"


def test_real_file_channels_engine_laziness():
    path = shared_file(*SAMPLE)
    assert xafm.channels(path) == ["image"]
    eager = xafm.open(path)
    np.testing.assert_array_equal(xr.open_dataarray(path, engine="xafm").values, eager.values)
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
        assert lazy.chunks is not None
        part = lazy.isel(y=[5, 2], x=slice(10, 20, 3))
    np.testing.assert_array_equal(part.values, eager.values[:, [5, 2]][:, :, 10:20:3])
    with pytest.raises(ChannelError, match=r"no channel 'height'; available: \['image'\]"):
        xafm.open(path, channel="height")


# --------------------------------------------------------------------------------------
# newer layouts
# --------------------------------------------------------------------------------------
def test_original_masks_and_tensor(tmp_path, rng):
    img = rng.normal(size=(6, 7))
    orig = img + 3.0
    above = (img > 0.5).astype(np.int64) * np.arange(42).reshape(6, 7)  # labelled grains
    below = img < -0.5
    tensor = np.zeros((6, 7, 3), dtype=bool)
    tensor[..., 1] = img > 0
    tensor[..., 2] = img > 1
    tensor[..., 0] = ~(tensor[..., 1] | tensor[..., 2])
    p = write_topostats(tmp_path / "new.topostats", img, px=0.75, original=orig,
                        grain_masks={"above": above, "below": below}, tensor=tensor)
    assert xafm.channels(p) == ["image", "image_original"]
    da = xafm.open(p)
    np.testing.assert_array_equal(da.values[0], img)
    assert model.pixel_size_nm(da) == (0.75, 0.75)
    layers = model.layers(da)
    np.testing.assert_array_equal(layers["raw"].values[0], orig)
    masks = model.masks(da)
    assert sorted(masks) == ["grain_masks/above", "grain_masks/below", "image_grain_crops/above/full_mask_tensor/class_1",
                             "image_grain_crops/above/full_mask_tensor/class_2"]
    np.testing.assert_array_equal(masks["grain_masks/above"].values[0], above != 0)
    np.testing.assert_array_equal(masks["grain_masks/below"].values[0], below)
    np.testing.assert_array_equal(masks["image_grain_crops/above/full_mask_tensor/class_2"].values[0], img > 1)
    acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
    assert acq["topostats_version"] == "2.3.1" and acq["filename"] == "minicircle"
    # the original image as its own channel: no 'raw' layer then
    raw = xafm.open(p, channel="image_original")
    np.testing.assert_array_equal(raw.values[0], orig)
    assert not model.layers(raw) and raw.name == "image_original"
    # the whole bundle round-trips through xafm's own format
    back = xafm.open(da.afm.to_h5(tmp_path / "b.h5"))
    np.testing.assert_array_equal(model.masks(back)["grain_masks/below"].values, masks["grain_masks/below"].values)


@settings(max_examples=15)
@given(data=st.data(), ny=st.integers(1, 9), nx=st.integers(1, 9), px=st.floats(1e-3, 1e3), new=st.booleans())
def test_round_trip_property(tmp_path_factory, data, ny, nx, px, new):
    img = np.array(data.draw(st.lists(st.floats(-1e9, 1e9), min_size=ny * nx, max_size=ny * nx))).reshape(ny, nx)
    p = write_topostats(tmp_path_factory.mktemp("ts") / "p.topostats", img, px=px, version="2.4.0" if new else 0.3)
    da = xafm.open(p)
    np.testing.assert_array_equal(da.values[0], img)
    assert da.attrs[conventions.PIXEL_SIZE_ATTR] == px


# --------------------------------------------------------------------------------------
# damaged files
# --------------------------------------------------------------------------------------
def test_not_topostats(tmp_path, rng):
    p = tmp_path / "x.topostats"
    p.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="not a readable HDF5"):
        xafm.open(p)
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(CorruptFileError):
        xafm.open(p)
    with h5py.File(p, "w") as f:
        f["other"] = 1
    with pytest.raises(CorruptFileError, match="no 'image' dataset"):
        xafm.open(p)
    write_topostats(p, rng.normal(size=(2, 3, 4)))
    with pytest.raises(CorruptFileError, match="2-D numeric"):
        xafm.open(p)
    for bad in (0.0, -1.0, np.nan, "abc"):
        write_topostats(p, rng.normal(size=(3, 4)), px=bad)
        with pytest.raises(CorruptFileError, match="pixel_to_nm_scaling"):
            xafm.open(p)


def test_truncated(tmp_path, rng):
    good = write_topostats(tmp_path / "g.topostats", rng.normal(size=(20, 20))).read_bytes()
    p = tmp_path / "cut.topostats"
    for n in (0, 8, 100, 1000, len(good) // 2, len(good) - 10):
        p.write_bytes(good[:n])
        with pytest.raises(CorruptFileError):
            xafm.open(p)


def test_dataset_larger_than_the_file_is_refused(tmp_path):
    p = tmp_path / "lie.topostats"
    with h5py.File(p, "w") as f:
        f.create_dataset("image", shape=(10**6, 10**6), dtype="f8", chunks=(16, 16), compression="gzip")
        f["pixel_to_nm_scaling"] = 1.0
    with pytest.raises(CorruptFileError, match=r"declares shape \(1000000, 1000000\) \(8000000000000 bytes\) but stores only 0 bytes"):
        xafm.open(p)
