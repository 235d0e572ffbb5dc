"""Multi-file OME-TIFF sets (``xafm/formats/ometiff/sets.py``): sets Bio-Formats writes from
an xafm stack (one file per timepoint, with the whole OME-XML in every file or in a
``.companion.ome`` beside binary-only TIFFs), sets written with tifffile and OME-XML built
from the schema rules (``xafm.testing.ometiff_sets``), and the sets xafm must refuse."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
import warnings

import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from tests.bioformats import OME, omexml_dump, run_all
from tests.samples import known_stack
from tests.test_fuzz import _mutate, check_reader, mutations
from xafm import registry
from xafm.core import conventions, model
from xafm.exceptions import CorruptFileError
from xafm.testing.ometiff_sets import write_ome_tiff_set

TIMES = [0.0, 0.1, 0.25, 0.7, 1.0]  # uneven
PIXEL = (1.5, 2.0)  # y, x in nm: non-square


def _values() -> np.ndarray:
    return np.random.default_rng(21).normal(4.0, 2.0, size=(5, 6, 7)).astype(np.float32)


# --------------------------------------------------------------------------------------
# sets Bio-Formats writes
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bioformats_sets(tmp_path_factory):
    """An xafm OME-TIFF stack converted by Bio-Formats' ImageConverter into one file per
    timepoint: ``full`` (every file holds the OME-XML), ``companion`` (binary-only files
    and ``bf.companion.ome``)."""
    tmp = tmp_path_factory.mktemp("bf_sets")
    src = xafm.stack(_values(), pixel_size_nm=PIXEL, times=TIMES, channel="height").afm.to_ome_tiff(tmp / "stack.ome.tif")
    layered = known_stack().afm.to_ome_tiff(tmp / "layered.ome.tif")
    full, comp, layers = tmp / "full", tmp / "companion", tmp / "layers"
    for folder in (full, comp, layers):
        folder.mkdir()
    convert = ["loci.formats.tools.ImageConverter", "-no-upgrade"]
    run_all({
        "full": [*convert, str(src), str(full / "bf_T%t.ome.tif")],
        "companion": [*convert, "-option", "ometiff.companion", str(comp / "bf.companion.ome"), str(src), str(comp / "bf_T%t.ome.tif")],
        # the stack, its layer and its mask (three OME images) share each timepoint's file
        "layers": [*convert, str(layered), str(layers / "k_T%t.ome.tif")],
    })  # fmt: skip
    return {"src": src, "full": full, "companion": comp, "layered": layered, "layers": layers}


def test_bioformats_writes_the_layouts_under_test(bioformats_sets):
    full = sorted(bioformats_sets["full"].iterdir())
    comp = sorted(bioformats_sets["companion"].iterdir())
    assert [p.name for p in full] == [f"bf_T{t}.ome.tif" for t in range(5)]
    assert [p.name for p in comp] == ["bf.companion.ome"] + [f"bf_T{t}.ome.tif" for t in range(5)]
    with tifffile.TiffFile(comp[2]) as tf:
        assert '<BinaryOnly MetadataFile="bf.companion.ome"' in tf.pages.first.description
        assert len(tf.pages) == 1
    with tifffile.TiffFile(full[3]) as tf:
        assert tf.pages.first.description.count("<TiffData") == 5 and len(tf.pages) == 1


def test_bioformats_sets_open_from_every_file(bioformats_sets):
    values = _values()
    full = sorted(bioformats_sets["full"].iterdir())
    comp = sorted(bioformats_sets["companion"].iterdir())
    for path in full + comp:
        da = xafm.open(path)
        assert registry.find(path).name == ("ome-companion" if path.suffix == ".ome" else "tif")
        assert da.dims == ("time", "y", "x") and da.shape == values.shape, path.name
        np.testing.assert_array_equal(da.values, values)
        np.testing.assert_allclose(da.time.values, TIMES, rtol=1e-12)
        assert model.pixel_size_nm(da) == pytest.approx(PIXEL, rel=1e-12)
        assert da.name == "height" and xafm.channels(path) == ["height"]


def test_a_bioformats_set_of_an_xafm_stack_is_that_stack(bioformats_sets):
    """Bio-Formats keeps xafm's MapAnnotation: a set made from an xafm file with a layer
    and a mask (three OME images whose pages share each file) reads back as the stack."""
    want = known_stack()
    members = sorted(bioformats_sets["layers"].iterdir())
    assert len(members) == want.sizes["time"]
    with tifffile.TiffFile(members[0]) as tf:
        assert [p.dtype for p in tf.pages] == [np.float32, np.float32, np.uint8]
    got = xafm.open(members[2])
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_allclose(got.time.values, want.time.values, rtol=1e-12)
    assert model.pixel_size_nm(got) == pytest.approx(model.pixel_size_nm(want), rel=1e-9)
    assert got.name == want.name and got.attrs["operator"] == want.attrs["operator"]
    assert sorted(got.afm.layers) == sorted(want.afm.layers) and sorted(got.afm.masks) == sorted(want.afm.masks)
    for name in want.afm.layers:
        np.testing.assert_array_equal(got.afm.layers[name].values, want.afm.layers[name].values)
    for name in want.afm.masks:
        np.testing.assert_array_equal(got.afm.masks[name].values, want.afm.masks[name].values)
    np.testing.assert_array_equal(got.line_rate.values, want.line_rate.values)


def test_bioformats_sets_are_read_lazily_one_file_per_plane(bioformats_sets, tmp_path):
    """Opening reads no pixel data; a plane is read from its own file alone (the other
    members may be gone by then), and a lost member gives an error naming it."""
    copy = tmp_path / "set"
    shutil.copytree(bioformats_sets["companion"], copy)
    lazy = xr.open_dataarray(copy / "bf_T0.ome.tif", engine="xafm")  # lazily indexed: a read reads what it asks
    clone = pickle.loads(pickle.dumps(xafm.open(copy / "bf_T0.ome.tif", chunks={"time": 1})))
    for t in (0, 1, 3, 4):
        (copy / f"bf_T{t}.ome.tif").unlink()
    np.testing.assert_array_equal(clone.isel(time=2).values, _values()[2])
    np.testing.assert_array_equal(lazy.isel(time=2).values, _values()[2])
    with pytest.raises(CorruptFileError, match="member .*bf_T3.ome.tif is missing"):
        _ = lazy.isel(time=3).values


def test_bioformats_image_info_agrees_with_xafm(bioformats_sets):
    """Bio-Formats' own reading of the set (ImageInfo -nopix -omexml, from a member and from
    the companion) reports the sizes, pixel sizes, times and channel xafm reads."""
    paths = {
        "member": bioformats_sets["full"] / "bf_T2.ome.tif",
        "binary_only": bioformats_sets["companion"] / "bf_T4.ome.tif",
        "companion": bioformats_sets["companion"] / "bf.companion.ome",
    }
    cmd = ["loci.formats.tools.ImageInfo", "-no-upgrade", "-nopix", "-omexml"]
    out = run_all({key: [*cmd, str(p)] for key, p in paths.items()})
    for key, path in paths.items():
        text = out[key]
        assert "OMETiffReader" in text, f"{key}: not read as OME-TIFF"
        assert len(re.findall(r"^\t/.*bf_T\d\.ome\.tif$", text, re.M)) == 5, f"{key}: Bio-Formats uses the 5 members"
        pix = omexml_dump(text).find(f"{OME}Image/{OME}Pixels")
        da = xafm.open(path)
        assert int(pix.get("SizeT")) == da.sizes["time"] and int(pix.get("SizeY")) == da.sizes["y"] and int(pix.get("SizeX")) == da.sizes["x"]
        assert (pix.get("SizeZ"), pix.get("SizeC")) == ("1", "1")
        assert float(pix.get("PhysicalSizeX")) * 1e3 == pytest.approx(model.pixel_size_nm(da)[1], rel=1e-9)
        assert float(pix.get("PhysicalSizeY")) * 1e3 == pytest.approx(model.pixel_size_nm(da)[0], rel=1e-9)
        deltas = sorted((int(p.get("TheT")), float(p.get("DeltaT"))) for p in pix.findall(f"{OME}Plane"))
        np.testing.assert_allclose([d for _, d in deltas], da.time.values, rtol=1e-9)
        assert pix.find(f"{OME}Channel").get("Name") == da.name


# --------------------------------------------------------------------------------------
# sets written with tifffile
# --------------------------------------------------------------------------------------
def test_bioformats_reads_tifffile_sets_as_xafm_does(tmp_path):
    """The synthetic sets are sets to Bio-Formats too: its ImageInfo reports their sizes,
    order, channels and files, and its ImageConverter, joining each set into one file,
    gives the planes xafm reads from the set (an independent check of the plane mapping)."""
    arr = np.random.default_rng(8).integers(0, 60000, size=(2, 3, 2, 5, 4)).astype(np.uint16)  # C, T, Z for XYZTC
    sets = {}
    for companion in (True, False):
        folder = tmp_path / ("companion" if companion else "full")
        folder.mkdir()
        sets[companion] = write_ome_tiff_set(folder, arr, dimension_order="XYZTC", planes_per_file=5, companion=companion, pixel_size_nm=(4.0, 2.5), times_s=[0.0, 0.5, 2.0], channel_names=["height", "phase"])
    opened = {"companion": sets[True]["companion"], "binary_only": sets[True]["members"][2], "full": sets[False]["members"][1]}
    info = ["loci.formats.tools.ImageInfo", "-no-upgrade", "-nopix", "-omexml"]
    commands = {key: [*info, str(p)] for key, p in opened.items()}
    joined = {key: tmp_path / f"joined_{key}.ome.tif" for key in ("companion", "full")}
    for key, out in joined.items():
        commands[f"join_{key}"] = ["loci.formats.tools.ImageConverter", "-no-upgrade", str(opened[key]), str(out)]
    out = run_all(commands)
    for key, path in opened.items():
        assert "OMETiffReader" in out[key] and len(re.findall(r"^\t/.*set_\d\.ome\.tif$", out[key], re.M)) == 3, key
        pix = omexml_dump(out[key]).find(f"{OME}Image/{OME}Pixels")
        assert {d: int(pix.get(f"Size{d}")) for d in "XYZCT"} == {"X": 4, "Y": 5, "Z": 2, "C": 2, "T": 3}
        assert [c.get("Name") for c in pix.findall(f"{OME}Channel")] == xafm.channels(path) == ["height", "phase"]
        assert (float(pix.get("PhysicalSizeY")), float(pix.get("PhysicalSizeX"))) == pytest.approx((4.0, 2.5))  # nm, as written
    for key, single in joined.items():
        mine, theirs = xafm.open(opened[key]), xafm.open(single)
        assert mine.dims == theirs.dims == ("time", "z", "channel", "y", "x")
        np.testing.assert_array_equal(mine.values, theirs.values)
        np.testing.assert_array_equal(mine.values, arr.transpose(1, 2, 0, 3, 4))
        np.testing.assert_allclose(mine.time.values, theirs.time.values)


def _expected(arr: np.ndarray, order: str) -> np.ndarray:
    """The (time, z, channel, y, x) view of planes written slowest first for ``order``,
    with length-1 z and channel dropped (as xafm reads other tools' OME-TIFF)."""
    lead = order[2:][::-1]
    out = arr.transpose([lead.index(d) for d in "TZC"] + [3, 4])
    drop = tuple(i for i, d in ((1, "Z"), (2, "C")) if out.shape[i] == 1)
    return out.squeeze(axis=drop) if drop else out


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2)),
    order=st.sampled_from(["XYZCT", "XYZTC", "XYCZT", "XYCTZ", "XYTCZ", "XYTZC"]),
    per_file=st.integers(1, 5),
    companion=st.booleans(),
    dtype=st.sampled_from(["uint8", "int16", "float32"]),
    page_count=st.booleans(),
    data=st.data(),
)
def test_tifffile_sets_read_back(sizes, order, per_file, companion, dtype, page_count, data):
    """Any split of any dim order into member files, with or without a companion, opened
    from any member or the companion: the values, times, pixel size and channels written."""
    n_t, n_c, n_z = sizes
    lead = order[2:][::-1]
    shape = tuple({"T": n_t, "C": n_c, "Z": n_z}[d] for d in lead) + (3, 4)
    arr = (np.arange(int(np.prod(shape))) % 97).reshape(shape).astype(dtype)
    names = [f"ch{c}" for c in range(n_c)]
    times = np.cumsum(np.linspace(0.1, 0.4, n_t)) - 0.1
    with tempfile.TemporaryDirectory() as tmp:
        got = write_ome_tiff_set(tmp, arr, dimension_order=order, planes_per_file=per_file, companion=companion, pixel_size_nm=(2.5, 0.5), times_s=times, channel_names=names, page_count=page_count)
        assert len(got["members"]) == -(-arr[..., 0, 0].size // per_file)
        choices = got["members"] + ([got["companion"]] if companion else [])
        path = data.draw(st.sampled_from(choices))
        da = xafm.open(path)
        want = _expected(arr, order)
        assert da.shape == want.shape
        np.testing.assert_array_equal(da.values, want)
        np.testing.assert_allclose(da.time.values, times, rtol=1e-12)
        assert model.pixel_size_nm(da) == pytest.approx((2.5, 0.5))
        assert xafm.channels(path) == names
        if n_c > 1:
            assert list(da.channel.values) == names
            one = xafm.open(path, channel=names[-1])
            np.testing.assert_array_equal(one.values, np.take(want, -1, axis=da.dims.index("channel")))
        else:
            assert da.name == names[0]
        acq = json.loads(da.attrs[conventions.ACQUISITION_ATTR])
        if companion or len(got["members"]) > 1:
            assert acq["ome_set"] == {"document": str(got["companion"] if companion else path), "member_files": len(got["members"])}
        else:  # one file holding every plane: a plain OME-TIFF
            assert "ome_set" not in acq


@pytest.fixture
def tifffile_set(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 1, 1, 5, 6)
    return write_ome_tiff_set(tmp_path, arr, companion=True, times_s=[0, 1, 2, 3], channel_names=["height"]), arr


def test_the_companion_is_known_by_content_and_by_suffix(tifffile_set, tmp_path):
    got, arr = tifffile_set
    renamed = tmp_path / "metadata.xml"  # a name no format claims: the content decides
    shutil.copyfile(got["companion"], renamed)
    assert registry.find(renamed).name == "ome-companion"
    np.testing.assert_array_equal(xafm.open(renamed).values, arr[:, 0, 0])
    garbage = tmp_path / "junk.companion.ome"  # the suffix decides, the reader refuses
    garbage.write_text("not xml at all")
    with pytest.raises(CorruptFileError, match="junk.companion.ome.*does not parse"):
        xafm.open(garbage)
    bindata = tmp_path / "pixels.companion.ome"
    bindata.write_text(got["companion"].read_text().replace("<TiffData", "<TiffDataGone").replace("</TiffData>", "</TiffDataGone>"))
    with pytest.raises(CorruptFileError, match="without TiffData"):
        xafm.open(bindata)


def test_a_missing_member_names_itself_and_the_set(tifffile_set):
    got, _ = tifffile_set
    got["members"][2].unlink()
    for path in (got["companion"], got["members"][0]):
        with pytest.raises(CorruptFileError) as err:
            xafm.open(path)
        message = str(err.value)
        assert "'set_2.ome.tif'" in message and "missing" in message and str(got["companion"]) in message
        assert message.startswith(str(path))


def test_a_missing_companion_is_named(tifffile_set):
    got, _ = tifffile_set
    got["companion"].unlink()
    with pytest.raises(CorruptFileError, match=r"metadata file of this OME-TIFF set is missing.*set\.companion\.ome"):
        xafm.open(got["members"][1])


def test_a_member_of_another_set_is_refused(tifffile_set, tmp_path):
    """A file under a member's name whose UUID is not the one the document gives (Bio-Formats
    7.3.1 reads such a set regardless; xafm refuses to mix acquisitions)."""
    got, _ = tifffile_set
    (tmp_path / "other").mkdir()
    other = write_ome_tiff_set(tmp_path / "other", np.zeros((4, 1, 1, 5, 6), np.uint16), companion=True)
    shutil.copyfile(other["members"][3], got["members"][3])
    with pytest.raises(CorruptFileError, match=rf"'set_3.ome.tif'.*carries UUID {other['uuids'][3]}.*expects {got['uuids'][3]}"):
        xafm.open(got["companion"])
    # a binary-only file pointing at the companion of another set
    shutil.copyfile(other["members"][0], got["members"][0])
    with pytest.raises(CorruptFileError, match="BinaryOnly names metadata UUID"):
        xafm.open(got["members"][0])


@pytest.mark.parametrize("name", ["../set_1.ome.tif", "/etc/passwd", "sub/../../set_1.ome.tif", "C:\\data\\set_1.ome.tif", ""])
def test_file_names_outside_the_set_folder_are_refused(tifffile_set, name):
    got, _ = tifffile_set
    comp = got["companion"]
    comp.write_text(comp.read_text().replace('FileName="set_1.ome.tif"', f'FileName="{name}"'))
    with pytest.raises(CorruptFileError, match="is not a file name inside the set's folder"):
        xafm.open(comp)
    member = got["members"][0]
    with tifffile.TiffFile(member) as tf:
        text = tf.pages.first.description
    tifffile.tiffcomment(member, text.replace('MetadataFile="set.companion.ome"', f'MetadataFile="{name or "/"}"').encode())
    with pytest.raises(CorruptFileError, match="BinaryOnly MetadataFile"):
        xafm.open(member)


def test_members_in_a_sub_folder_and_a_renamed_holder(tmp_path):
    arr = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 1, 1, 4, 5)
    got = write_ome_tiff_set(tmp_path, arr, companion=True)
    (tmp_path / "planes").mkdir()
    text = got["companion"].read_text()
    for m in got["members"]:
        m.rename(tmp_path / "planes" / m.name)
        text = text.replace(f'FileName="{m.name}"', f'FileName="planes/{m.name}"')
    got["companion"].write_text(text)
    np.testing.assert_array_equal(xafm.open(got["companion"]).values, arr[:, 0, 0])
    # every member holds the document: a member renamed after writing is still itself (its UUID)
    (tmp_path / "full").mkdir()
    full = write_ome_tiff_set(tmp_path / "full", arr)
    renamed = full["members"][1].with_name("renamed.ome.tif")
    full["members"][1].rename(renamed)
    np.testing.assert_array_equal(xafm.open(renamed).values, arr[:, 0, 0])
    with pytest.raises(CorruptFileError, match="'set_1.ome.tif'.*missing"):
        xafm.open(full["members"][0])


def test_a_master_tiff_holds_the_document_for_binary_only_members(tmp_path):
    """One member holds the document (its root UUID its own), the others are BinaryOnly
    and point at it: the set opens from any of them."""
    arr = np.arange(3 * 2 * 4 * 5, dtype=np.float32).reshape(3, 2, 1, 4, 5)
    got = write_ome_tiff_set(tmp_path, arr, companion=True, channel_names=["a", "b"])
    master, others = got["members"][0], got["members"][1:]
    document = got["companion"].read_text().replace(got["companion_uuid"], got["uuids"][0])
    got["companion"].unlink()
    tifffile.tiffcomment(master, document.encode())
    for member in others:
        with tifffile.TiffFile(member) as tf:
            text = tf.pages.first.description
        tifffile.tiffcomment(member, text.replace("set.companion.ome", master.name).replace(got["companion_uuid"], got["uuids"][0]).encode())
    for path in got["members"]:
        da = xafm.open(path)
        assert da.dims == ("time", "channel", "y", "x")
        np.testing.assert_array_equal(da.values, arr[:, :, 0])
        assert json.loads(da.attrs[conventions.ACQUISITION_ATTR])["ome_set"]["document"] == str(master)


def test_lying_tiffdata_is_refused(tifffile_set):
    got, _ = tifffile_set
    comp = got["companion"]
    original = comp.read_text()
    lies = {
        'PlaneCount="1">': ('IFD="0" PlaneCount="1">', 'IFD="0" PlaneCount="9">', "asks for pages 0..8"),
        "FirstT": ('FirstT="1"', 'FirstT="7"', "outside the image"),
        "SizeT": ('SizeT="4"', 'SizeT="900000"', "cover only 4"),
        "SizeX": ('SizeX="6"', 'SizeX="7"', "page 0 of member 'set_0.ome.tif' has shape"),
        "Type": ('Type="uint16"', 'Type="float"', "holds uint16 pixels, the set's OME-XML says Type 'float'"),
    }
    for old, new, says in lies.values():
        comp.write_text(original.replace(old, new, 1))
        with pytest.raises(CorruptFileError, match=says), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xafm.open(comp)


def test_truncated_companions_give_only_xafm_errors(tifffile_set):
    got, arr = tifffile_set
    comp = got["companion"]
    original = comp.read_bytes()
    for cut in range(0, len(original), max(1, len(original) // 40)):
        comp.write_bytes(original[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                da = xafm.open(comp)
            except CorruptFileError as exc:
                assert str(comp) in str(exc)
                continue
        assert da.shape[1:] == arr.shape[3:]  # a cut that leaves a readable document


def test_xafm_still_writes_single_files(tmp_path):
    """The writer is untouched: one self-contained file, no UUID/FileName references."""
    out = xafm.stack(_values(), pixel_size_nm=PIXEL, times=TIMES, channel="height").afm.to_ome_tiff(tmp_path / "one.ome.tif")
    assert sorted(os.listdir(tmp_path)) == ["one.ome.tif"]
    with tifffile.TiffFile(out) as tf:
        xml = tf.pages.first.description
    assert "<UUID" not in xml and "BinaryOnly" not in xml
    np.testing.assert_array_equal(xafm.open(out).values, _values())


@settings(max_examples=30, deadline=None)
@given(companion=st.booleans(), target=st.integers(0, 3), opened=st.integers(0, 3), data=st.data())
def test_fuzz_sets(companion, target, opened, data):
    """A mutated member or companion of a set (tests/test_fuzz.py's mutations), the set
    opened from any file: only xafm errors naming the opened file, no hang, no huge allocation."""
    arr = np.random.default_rng(3).normal(size=(3, 1, 1, 8, 6)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        got = write_ome_tiff_set(tmp, arr, companion=companion, times_s=[0.0, 1.0, 2.0])
        files = got["members"] + ([got["companion"]] if companion else [])
        victim = files[target % len(files)]
        raw = victim.read_bytes()
        victim.write_bytes(_mutate(raw, data.draw(mutations(len(raw)))))
        check_reader(files[opened % len(files)])
