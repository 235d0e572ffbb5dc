"""OME-TIFF opens that do not grow with the frames (issue 16): plain ``Plane`` elements
cut from the OME-XML text and read as columns (``omexml.cut_planes``), other tools'
uniform files found without tifffile's OME series (``foreign._uniform_layout``). Each fast
path must give what the careful one gives, and every unusual file the careful one."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile
import xarray as xr

import xafm
from xafm.core import model
from xafm.formats.ometiff import foreign, omexml
from xafm.testing.ometiff import write_foreign_ome_tiff

N = 40  # planes: above omexml.MIN_CUT


def _doc(planes: str, extra: str = "") -> str:
    ns = omexml.OME_NS
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="{ns}"><Image ID="Image:0"><Pixels ID="Pixels:0" '
        f'DimensionOrder="XYCZT" Type="uint8" SizeX="2" SizeY="2" SizeZ="1" SizeC="1" SizeT="{N}">'
        f'<TiffData IFD="0" PlaneCount="{N}"/>{planes}\n</Pixels></Image>{extra}</OME>'
    )


def _plain(i: int) -> str:
    return f'<Plane TheZ="0" TheC="0" TheT="{i}" DeltaT="{0.25 * i!r}" DeltaTUnit="s" PositionX="5.0" PositionXUnit="nm"/>'


def _by_elements(xml: str) -> dict[str, list[str | None]]:
    """Each Plane attribute's values as ElementTree reads the whole document."""
    els = ET.fromstring(xml.encode()).iter(omexml.q("Plane"))
    rows = [el.attrib for el in els]
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in names}


def _table_of(xml: str) -> omexml.Planes:
    root = omexml.parse("x.ome.tif", xml)
    return omexml.planes(root.find(omexml.q("Image")).find(omexml.q("Pixels")))


def test_cut_planes_read_as_elementtree_reads_them():
    xml = _doc("".join(_plain(i) for i in range(N)))
    cut = omexml.cut_planes(xml)
    assert cut is not None and "<Plane" not in cut[0]
    table = _table_of(xml)
    assert table._columns is None  # the cut, not the elements
    want = _by_elements(xml)
    assert table.names == list(want)
    for name, values in want.items():
        assert table.strings(name) == values
    tt, ok = table.ints("x", "TheT")
    assert ok.all() and tt.tolist() == list(range(N))
    np.testing.assert_array_equal(omexml.plane_times("x", table, N, channel=0), [0.25 * i for i in range(N)])
    assert omexml.origin_of_rows("x", table, np.arange(N)) is None  # no PositionY
    # what is left parses to the same document without its planes
    full = ET.fromstring(xml.encode())
    pix = full.find(f"{omexml.q('Image')}/{omexml.q('Pixels')}")
    for el in pix.findall(omexml.q("Plane")):
        pix.remove(el)
    assert ET.tostring(omexml.parse("x", xml)) == ET.tostring(full)


@pytest.mark.parametrize(
    "planes",
    [
        # two attributes swapped in one plane (same lengths: only the bytes tell)
        [_plain(i) if i != 17 else _plain(i).replace('TheZ="0" TheC="0"', 'TheC="0" TheZ="0"') for i in range(N)],
        [_plain(i) if i != 30 else _plain(i).replace(' PositionX="5.0"', "") for i in range(N)],  # one attribute fewer
        [_plain(i) if i != 5 else _plain(i).replace("/>", "><HashSHA1>00</HashSHA1></Plane>") for i in range(N)],  # children
        [_plain(i) if i != 9 else _plain(i).replace('DeltaTUnit="s"', "DeltaTUnit='s'") for i in range(N)],  # single quotes
        [_plain(i) if i != 3 else _plain(i).replace('DeltaTUnit="s"', 'DeltaTUnit="&#181;s"') for i in range(N)],  # a reference
        [_plain(i) if i != 3 else _plain(i).replace('DeltaT="', 'DeltaT="\n') for i in range(N)],  # a line break in a value
        [_plain(i) if i != 11 else _plain(i) + "<!-- a comment -->" for i in range(N)],
        [_plain(i) if i != 20 else _plain(i).replace("<Plane ", "<Plane  ") for i in range(N)],  # other spacing
    ],
    ids=["swapped", "fewer", "children", "quotes", "reference", "linebreak", "comment", "spacing"],
)
def test_planes_that_differ_are_parsed_whole(planes):
    xml = _doc("".join(planes))
    assert omexml.cut_planes(xml) is None
    table = _table_of(xml)
    assert table._columns is not None  # the elements themselves
    want = _by_elements(xml)
    for name, values in want.items():
        assert table.strings(name) == values


def test_a_plane_outside_its_pixels_and_few_planes_are_parsed_whole():
    stray = '<StructuredAnnotations><XMLAnnotation ID="A:0"><Value><Plane TheT="0"/></Value></XMLAnnotation></StructuredAnnotations>'
    assert omexml.cut_planes(_doc("".join(_plain(i) for i in range(N)), stray)) is None
    few = _doc("".join(_plain(i) for i in range(omexml.MIN_CUT - 1)))
    assert omexml.cut_planes(few) is None


def test_a_bad_number_is_a_corrupt_file_either_way():
    planes = [_plain(i) if i != 7 else _plain(i).replace('DeltaT="1.75"', 'DeltaT="soon"') for i in range(N)]
    table = _table_of(_doc("".join(planes)))
    assert table._columns is None
    with pytest.raises(xafm.exceptions.CorruptFileError, match="'soon' is not a number"):
        omexml.plane_times("x.ome.tif", table, N, channel=0)


# --------------------------------------------------------------------------------------
# whole opens: the fast paths against the careful ones
# --------------------------------------------------------------------------------------
def _careful(monkeypatch, path, **kw):
    """The stack as the careful paths read it: the XML parsed whole, tifffile's series."""
    with monkeypatch.context() as m:
        m.setattr(omexml, "cut_planes", lambda xml: None)
        m.setattr(foreign, "_uniform_layout", lambda *a: None)
        return xafm.open(path, **kw)


def _same(a: xr.DataArray, b: xr.DataArray) -> None:
    """Same values, coordinates and attrs (but the read record's time)."""
    a, b = a.copy(), b.copy()
    for da in (a, b):
        da.attrs.pop("xafm_provenance")
    xr.testing.assert_identical(a.load(), b.load())


def _spy(monkeypatch):
    used = []
    real = foreign._uniform_layout
    monkeypatch.setattr(foreign, "_uniform_layout", lambda *a: used.append(real(*a)) or used[-1])
    return used


@pytest.mark.parametrize(("axes", "order"), [("TYX", "XYCZT"), ("TZCYX", "XYCZT"), ("TCZYX", "XYZCT")])
@pytest.mark.parametrize("bigtiff", [False, True])
def test_tifffile_files_with_uniform_pages_skip_its_series(tmp_path, monkeypatch, rng, axes, order, bigtiff):
    shape = {"T": N, "Z": 2, "C": 3, "Y": 4, "X": 5}
    arr = rng.integers(0, 1000, size=[shape[a] for a in axes]).astype(np.uint16)
    n_planes = arr.size // 20
    path = tmp_path / "u.ome.tif"
    tifffile.imwrite(
        path, arr, ome=True, bigtiff=bigtiff, photometric="minisblack",
        metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                  "Plane": {"DeltaT": [0.5 * i for i in range(n_planes)], "PositionX": [3.0] * n_planes, "PositionY": [4.0] * n_planes,
                            "PositionXUnit": ["µm"] * n_planes, "PositionYUnit": ["µm"] * n_planes}},
    )  # fmt: skip
    with tifffile.TiffFile(path) as tf:
        assert order in tf.ome_metadata
    used = _spy(monkeypatch)
    fast = xafm.open(path)
    assert used and used[-1] is not None  # the fast path was taken
    monkeypatch.undo()
    _same(fast, _careful(monkeypatch, path))
    with tifffile.TiffFile(path) as tf:  # and both are tifffile's reading
        want = tf.series[0].asarray()
    order_out = [a for a in "TZCYX" if a in axes]
    np.testing.assert_array_equal(fast.values, want.transpose([axes.index(a) for a in order_out]))
    assert model.origin_nm(fast) == (4000.0, 3000.0)


@pytest.mark.parametrize("case", ["zlib", "strips", "subifds", "modulo"])
def test_unusual_files_go_to_tifffiles_series(tmp_path, monkeypatch, rng, case):
    arr = rng.integers(0, 1000, size=(N, 16, 8)).astype(np.uint16)
    path = tmp_path / "x.ome.tif"
    if case == "zlib":
        tifffile.imwrite(path, arr, ome=True, compression="zlib", metadata={"axes": "TYX"})
    elif case == "strips":  # several strips per page
        tifffile.imwrite(path, arr, ome=True, rowsperstrip=4, metadata={"axes": "TYX"})
    elif case == "subifds":  # a pyramid: each page has a reduced level in a SubIFD
        with tifffile.TiffWriter(path, ome=True) as tw:
            tw.write(arr, subifds=1, metadata={"axes": "TYX"})
            tw.write(arr[:, ::2, ::2], subfiletype=1)
    else:  # a modulo annotation (an XMLAnnotation): tifffile's axes
        write_foreign_ome_tiff(path, arr, "TYX")
        with tifffile.TiffFile(path) as tf:
            xml = tf.ome_metadata
        ann = ('<StructuredAnnotations><XMLAnnotation ID="Annotation:0" Namespace="openmicroscopy.org/omero/dimension/modulo">'
               '<Value><Modulo namespace="http://www.openmicroscopy.org/Schemas/Additions/2011-09">'
               '<ModuloAlongT Type="other" Start="0" Step="1" End="3"/></Modulo></Value></XMLAnnotation></StructuredAnnotations>')
        tifffile.tiffcomment(path, xml.replace("</OME>", ann + "</OME>").encode())
    used = _spy(monkeypatch)
    da = xafm.open(path)
    assert used and used[-1] is None
    with tifffile.TiffFile(path) as tf:
        want = tf.series[0].asarray()
    np.testing.assert_array_equal(da.values.reshape(want.shape), want)


def test_xafm_files_read_the_same_with_the_cut(tmp_path, monkeypatch, rng):
    data = rng.normal(size=(N, 6, 5)).astype(np.float32)
    times = np.cumsum(rng.uniform(0.1, 1.0, N))
    da = xafm.stack(data, pixel_size_nm=2.0, times=times, origin_nm=(10.0, 20.0),
                    frame_metadata=[{"line_rate": 1.5 * i, "mode": "ac" if i % 2 else "dc", "ok": bool(i % 3)} for i in range(N)])
    path = tmp_path / "own.ome.tif"
    da.afm.to_ome_tiff(path)
    fast = xafm.open(path)
    _same(fast, _careful(monkeypatch, path))
    np.testing.assert_array_equal(fast.time.values, times)
    assert fast.coords["line_rate"].values.tolist() == [1.5 * i for i in range(N)]
    assert fast.coords["mode"].values.tolist() == ["ac" if i % 2 else "dc" for i in range(N)]
    assert fast.coords["ok"].dtype == bool and fast.coords["ok"].values.tolist() == [bool(i % 3) for i in range(N)]
    assert model.origin_nm(fast) == (10.0, 20.0)


def test_the_annotation_keeps_only_frame_metadata_the_planes_do_not_hold(tmp_path, rng):
    data = rng.normal(size=(N, 4, 4)).astype(np.float32)
    plain, labelled = tmp_path / "plain.ome.tif", tmp_path / "labelled.ome.tif"
    xafm.stack(data, pixel_size_nm=1.0, times=np.arange(N) * 0.5).afm.to_ome_tiff(plain)
    xafm.stack(data, pixel_size_nm=1.0, frame_metadata=[{"bias_v": 0.1 * i} for i in range(N)]).afm.to_ome_tiff(labelled)
    for path, want in ((plain, []), (labelled, [{"bias_v": 0.1 * i} for i in range(N)])):
        with tifffile.TiffFile(path) as tf:
            ann = omexml.annotation(omexml.parse(str(path), tf.ome_metadata))
        assert json.loads(ann["frame_metadata_json"]) == want
    back = xafm.open(plain)
    np.testing.assert_array_equal(back.time.values, np.arange(N) * 0.5)
    assert model.frame_metadata_names(back) == []


def test_frame_columns_give_what_per_frame_dicts_give():
    frames = [{"a": i, "b": 0.5 * i, "c": i % 2 == 0, "d": f"s{i}", "e": None, "f": [i, i]} for i in range(5)]
    coords = model.frame_metadata_to_coords(frames, 5)
    assert coords["a"].dtype == np.int64 and coords["a"].values.tolist() == [0, 1, 2, 3, 4]
    assert coords["b"].dtype == np.float64 and coords["b"].values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert coords["c"].dtype == bool and coords["c"].values.tolist() == [True, False, True, False, True]
    assert coords["d"].values.tolist() == ["s0", "s1", "s2", "s3", "s4"]
    assert np.isnan(coords["e"].values).all()
    assert [json.loads(v) for v in coords["f"].values] == [[i, i] for i in range(5)]
    # frames with different keys: the missing values are None, as the columns say
    ragged = [{"a": 1}, {"b": 2.5}, {"a": 3, "b": 1.0}]
    got = model.frame_metadata_to_coords(ragged, 3)
    assert np.isnan(got["a"].values[1]) and got["a"].values[[0, 2]].tolist() == [1.0, 3.0]
    assert np.isnan(got["b"].values[0]) and got["b"].values[1:].tolist() == [2.5, 1.0]
    # a dict of columns (lists of lists too) gives the same as the dicts
    columns = {k: [f[k] for f in frames] for k in frames[0]}
    for key, var in model.frame_metadata_to_coords(columns, 5).items():
        xr.testing.assert_identical(var, coords[key])
    numpy_columns = {"a": np.arange(5), "b": np.arange(5) * 0.5, "c": np.arange(5) % 2 == 0}
    for key, var in model.frame_metadata_to_coords(numpy_columns, 5).items():
        xr.testing.assert_identical(var, coords[key])
