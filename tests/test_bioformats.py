"""What xafm's OME-TIFF looks like where people open it: Bio-Formats (the reader inside
Fiji, OMERO and QuPath, run as a separate program), tifffile, ome-types, xafm itself, and
plain TIFF readers (Pillow; the resolution tags).

Bio-Formats falls back to its plain TIFF reader when it cannot take the OME-XML (then Fiji
shows every page as a series at 1 µm per pixel), so every check starts with "read as
OME-TIFF".
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import dask.array as dsa
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import xafm
from tests.bioformats import OME, image_info, omexml_dump
from xafm.core import conventions, model
from xafm.exceptions import StackError
from xafm.formats import tiff as plain_tiff

#: Names with non-ASCII characters and every XML special.
CHANNEL = 'Höhe µΩ ö &<>"\''
LAYER = "flat & <levelled> µ"
MASK = 'grains "Ω" ö/ä'
TIMES = [0.0, 0.1, 0.25, 0.7, 1.0]  # uneven


def _stack(values, *, pixel, times, masks=None, layers=None, channel=CHANNEL, frame_metadata=None):
    return xafm.stack(values, pixel_size_nm=pixel, times=times, channel=channel, masks=masks, layers=layers, frame_metadata=frame_metadata)


def _variants(tmp):
    """Every kind of OME-TIFF xafm writes, under every suffix it writes them to; with what
    each one holds (checked against what Bio-Formats reports)."""
    rng = np.random.default_rng(4)
    v = rng.normal(size=(5, 6, 7)).astype(np.float32)
    full = _stack(v, pixel=(1.5, 2.0), times=TIMES, masks={MASK: v > 0}, layers={LAYER: v - v.mean()}, frame_metadata=[{"bias_v": 0.5 * i} for i in range(len(TIMES))])
    streamed = _stack(dsa.from_array(rng.integers(-900, 900, size=(3, 4, 5)).astype(np.int16), chunks=(1, 4, 5)), pixel=0.75, times=[0.0, 0.5, 1.0], channel="height")
    single = _stack(rng.normal(size=(1, 5, 4)).astype(np.float32), pixel=(12.0, 3.0), times=[0.0], masks={"µ": np.ones((1, 5, 4), bool)}, channel="Phase ö")
    out = {
        "full.ome.tif": (full.afm.to_ome_tiff(tmp / "full.ome.tif"), full),
        "streamed_bigtiff.tif": (streamed.afm.to_ome_tiff(tmp / "streamed_bigtiff.tif", bigtiff=True), streamed),
        "single.tiff": (single.afm.to_ome_tiff(tmp / "single.tiff"), single),
        "raw_layer.ome.tiff": (full.afm.remove_plane(keep_layer=True).afm.to_ome_tiff(tmp / "raw_layer.ome.tiff"), None),
    }
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return _variants(tmp_path_factory.mktemp("ome_consumers"))


@pytest.fixture(scope="module")
def bioformats(written):
    """Bio-Formats' ImageInfo of every variant, in one batch of side-by-side JVMs."""
    return image_info({key: path for key, (path, _) in written.items()})


def _ome_type(dtype):
    return {"float32": "float", "float64": "double"}.get(str(dtype), str(dtype))


def _images(da):
    """(image name, channel name, OME pixel type) of each OME Image, as docs/formats.md says."""
    out = [(da.name, da.name, _ome_type(da.dtype))]
    out += [(f"layer:{name}", da.name, _ome_type(layer.dtype)) for name, layer in da.afm.layers.items()]
    out += [(f"mask:{name}", "mask", "uint8") for name in da.afm.masks]
    return out


# --------------------------------------------------------------------------------------
# Bio-Formats
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["full.ome.tif", "streamed_bigtiff.tif", "single.tiff", "raw_layer.ome.tiff"])
def test_bioformats_reads_it_as_ome_tiff(bioformats, written, key):
    out = bioformats[key]
    assert "OMETiffReader initializing" in out, out[:2000]
    root = omexml_dump(out)
    images = root.findall(f"{OME}Image")
    path, da = written[key]
    with tifffile.TiffFile(path) as tf:
        n_images = len(tf.series)
    assert f"Series count = {n_images}" in out and len(images) == n_images
    if da is None:
        return
    times = np.asarray(da["time"].values)
    dy, dx = model.pixel_size_nm(da)
    assert [(im.get("Name"), im.find(f"{OME}Pixels/{OME}Channel").get("Name"), im.find(f"{OME}Pixels").get("Type")) for im in images] == _images(da)
    for i, image in enumerate(images):
        pix = image.find(f"{OME}Pixels")
        assert (int(pix.get("SizeT")), int(pix.get("SizeY")), int(pix.get("SizeX"))) == da.shape
        assert (int(pix.get("SizeZ")), int(pix.get("SizeC"))) == (1, 1)
        assert float(pix.get("PhysicalSizeX")) == pytest.approx(dx / 1e3, rel=1e-12)
        assert float(pix.get("PhysicalSizeY")) == pytest.approx(dy / 1e3, rel=1e-12)
        assert pix.get("PhysicalSizeXUnit") == pix.get("PhysicalSizeYUnit") == "\u00b5m"
        if len(times) > 1:
            assert float(pix.get("TimeIncrement")) == pytest.approx(float(np.median(np.diff(times))))
            assert pix.get("TimeIncrementUnit") == "s"
        else:
            assert pix.get("TimeIncrement") is None
        planes = pix.findall(f"{OME}Plane")
        if i == 0:  # every frame's time; only the stack's image has planes (playNano counts them all)
            assert [int(p.get("TheT")) for p in planes] == list(range(len(times)))
            assert [float(p.get("DeltaT")) for p in planes] == pytest.approx(list(times))
            assert {p.get("DeltaTUnit") for p in planes} == {"s"}
        else:
            assert planes == []


def test_bioformats_keeps_the_annotation_exact(bioformats):
    """The MapAnnotation (provenance, frame metadata, attrs, exact names) comes through
    Bio-Formats unchanged, so a file Fiji re-saves can still be read back by xafm."""
    ann = {m.get("K"): m.text for m in omexml_dump(bioformats["full.ome.tif"]).iter(f"{OME}M")}
    assert json.loads(ann["channel_json"]) == CHANNEL
    assert json.loads(ann["images_json"]) == [["data", CHANNEL], ["layer", LAYER], ["mask", MASK]]
    # the frame times are the planes' DeltaT (above); the annotation keeps the other labels
    assert json.loads(ann["frame_metadata_json"])[3] == {"bias_v": 1.5}


# --------------------------------------------------------------------------------------
# tifffile, ome-types, xafm
# --------------------------------------------------------------------------------------
def test_the_description_is_utf8_without_character_references(written):
    """The OME-TIFF specification's UTF-8, as tifffile writes it: Bio-Formats mangles
    numeric character references (``&#181;m``) and then refuses the whole document."""
    path, _ = written["full.ome.tif"]
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags["ImageDescription"]
        offset, count = tag.valueoffset, tag.count
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(count).rstrip(b"\0")
    text = raw.decode("utf-8")  # strict: fails on anything but UTF-8
    assert b"&#" not in raw and 'PhysicalSizeXUnit="\u00b5m"'.encode() in raw
    root = ET.fromstring(raw)
    assert [im.get("Name") for im in root.findall(f"{OME}Image")] == [CHANNEL, f"layer:{LAYER}", f"mask:{MASK}"]
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')


def test_tifffile_sees_the_images_names_and_sizes(written):
    path, da = written["full.ome.tif"]
    with tifffile.TiffFile(path) as tf:
        assert tf.is_ome
        assert [s.name for s in tf.series] == [n for n, _, _ in _images(da)]
        assert [s.axes for s in tf.series] == ["TYX"] * 3 and tf.series[0].shape == da.shape
        np.testing.assert_array_equal(tf.series[0].asarray(), da.values)
        np.testing.assert_array_equal(tf.series[2].asarray(), da.afm.masks[MASK].values.astype(np.uint8))
        root = ET.fromstring(tf.ome_metadata.encode("utf-8"))
    pix = root.find(f"{OME}Image/{OME}Pixels")
    assert (pix.get("PhysicalSizeY"), pix.get("PhysicalSizeX"), pix.get("PhysicalSizeXUnit")) == ("0.0015", "0.002", "µm")


def test_ome_types_validates_and_reads_the_names(written):
    ome_types = pytest.importorskip("ome_types")
    path, da = written["full.ome.tif"]
    ome = ome_types.from_tiff(path, validate=True)
    assert [im.name for im in ome.images] == [n for n, _, _ in _images(da)]
    pix = ome.images[0].pixels
    assert pix.channels[0].name == CHANNEL and ome.images[1].pixels.channels[0].name == CHANNEL
    assert (pix.physical_size_x, pix.physical_size_y) == pytest.approx((0.002, 0.0015))
    assert pix.physical_size_x_unit.value == pix.physical_size_y_unit.value == "µm"
    assert [p.delta_t for p in pix.planes] == pytest.approx(TIMES) and pix.planes[-1].delta_t_unit.value == "s"


@pytest.mark.parametrize("key", ["full.ome.tif", "streamed_bigtiff.tif", "single.tiff"])
def test_xafm_reads_every_variant_back(written, key):
    path, da = written[key]
    back = xafm.open(path)
    assert xafm.registry.find(path).name == "tif"
    assert back.name == da.name and back.shape == da.shape
    np.testing.assert_array_equal(back.values, da.values)
    np.testing.assert_allclose(back["time"].values, da["time"].values)
    np.testing.assert_allclose(back["x"].values, da["x"].values)
    np.testing.assert_allclose(back["y"].values, da["y"].values)
    assert set(back.afm.masks) == set(da.afm.masks) and set(back.afm.layers) == set(da.afm.layers)
    for name, mask in da.afm.masks.items():
        np.testing.assert_array_equal(back.afm.masks[name].values, mask.values)


# --------------------------------------------------------------------------------------
# plain TIFF readers: the resolution tags
# --------------------------------------------------------------------------------------
def test_plain_tiff_readers_see_the_pixel_size(written):
    from PIL import Image

    path, _ = written["single.tiff"]  # 12 nm x 3 nm pixels, float32 (Pillow has no float64 mode)
    with tifffile.TiffFile(path) as tf:
        for page in tf.pages:
            assert page.resolutionunit == 3  # centimetre
            xres, yres = page.get_resolution()
            assert (1e7 / yres, 1e7 / xres) == pytest.approx((12.0, 3.0), rel=1e-9)
    with Image.open(path) as im:
        dpi_x, dpi_y = im.info["dpi"]
        assert (2.54e7 / dpi_y, 2.54e7 / dpi_x) == pytest.approx((12.0, 3.0), rel=1e-6)
        assert im.n_frames == 2 and im.size == (4, 5)  # the frame and the mask's page
    with tifffile.TiffFile(path) as tf:  # xafm's plain TIFF reader, which ignores the OME-XML
        assert plain_tiff.pixel_size(tf.pages[0], {})[0] == pytest.approx((12.0, 3.0), rel=1e-9)


names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=12)


def _channel_name(text):
    """A name a stack's channel can have (netCDF-safe, NFC, no coordinate's name)."""
    if text in conventions.DIMS or text.startswith(("mask__", "layer__", "meta__")):
        return False
    try:
        return conventions.check_netcdf_name(text, "channel") == text
    except StackError:
        return False


@given(
    channel=names.filter(_channel_name),
    mask=names,
    dy=st.floats(0.01, 1e5),
    dx=st.floats(0.01, 1e5),
)
def test_names_and_pixel_sizes_survive_every_python_consumer(tmp_path, channel, mask, dy, dx):
    """Any printable name comes through tifffile and xafm exactly, and any pixel size
    through the OME-XML and the resolution tags (tifffile, Pillow)."""
    from PIL import Image

    da = xafm.stack(np.zeros((2, 3, 4), np.float32), pixel_size_nm=(dy, dx), channel=channel, masks={mask: np.zeros((2, 3, 4), bool)})
    path = da.afm.to_ome_tiff(tmp_path / "h.tif", overwrite=True)
    with tifffile.TiffFile(path) as tf:
        assert [s.name for s in tf.series] == [channel, f"mask:{mask}"]
        xres, yres = tf.pages[0].get_resolution()
        assert (1e7 / yres, 1e7 / xres) == pytest.approx((dy, dx), rel=1e-6)
    with Image.open(path) as im:
        assert (2.54e7 / im.info["dpi"][1], 2.54e7 / im.info["dpi"][0]) == pytest.approx((dy, dx), rel=1e-6)
    back = xafm.open(path)
    assert back.name == channel and list(back.afm.masks) == [mask]
    assert (float(back["y"][1]), float(back["x"][1])) == pytest.approx((dy, dx), rel=1e-12)


def test_pixels_no_resolution_tag_can_hold_are_left_uncalibrated_there(tmp_path):
    """A 1 pm pixel is 1e10 pixels per cm, past a 32-bit rational: the tags say 1/1 with
    no unit (plain TIFF readers see no calibration), the OME-XML keeps the size."""
    path = xafm.stack(np.zeros((1, 2, 2), np.float32), pixel_size_nm=1e-3).afm.to_ome_tiff(tmp_path / "pm.ome.tif")
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].resolutionunit == 1 and tf.pages[0].get_resolution() == (1, 1)
        assert plain_tiff.pixel_size(tf.pages[0], {})[0] is None
    assert model.pixel_size_nm(xafm.open(path)) == pytest.approx((1e-3, 1e-3))
