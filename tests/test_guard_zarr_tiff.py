"""OME-Zarr and OME-TIFF: sizes are claims, errors name the store, a set reads only its folder.

- A store whose ``zarr.json``/``.zarray`` declares an axis far longer than its chunks
  reach (xafm's own stores edited, foreign stores made with zarr directly) is refused
  with a :class:`CorruptFileError` naming the store before coordinates are built, lazily
  and eagerly, in little memory.
- Damaged metadata of xafm's stores (every field the reader uses) gives xafm errors that
  name the store, never a bare :class:`StackError` or a library's error.
- A multi-file OME-TIFF reference outside the folder of the file opened (absolute, ``..``,
  hidden from xafm by ``xmlns=""`` where tifffile would still follow it) is an
  :class:`UnsafeFileError` naming the reference; no byte of the other file is read.
- xafm's own OME-TIFFs with patched page tags give clean errors in little memory.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xafm
from xafm.exceptions import CorruptFileError, FileError, UnsafeFileError, XafmError

#: What a refused lie may cost (tracemalloc peak); the lies ask for GiB to TiB.
MEMORY_LIMIT = 64 * 2**20
HUGE = [2**27, 2**40]


def _stack(n=4, ny=8, nx=8):
    values = np.arange(n * ny * nx, dtype=np.float32).reshape(n, ny, nx) + 1
    return xafm.stack(values, pixel_size_nm=1.0, times=np.arange(n, dtype=float))


def _array_meta(store: Path, component: str = "0") -> Path:
    v3 = store / component / "zarr.json"
    return v3 if v3.exists() else store / component / ".zarray"


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _group_attrs(store: Path) -> tuple[Path, dict, dict]:
    """(file, document, xafm attrs) of a store's group attributes, either version."""
    v3 = store / "zarr.json"
    if v3.exists():
        doc = json.loads(v3.read_text())
        return v3, doc, doc["attributes"]
    doc = json.loads((store / ".zattrs").read_text())
    return store / ".zattrs", doc, doc


def _refused_small(path: Path, chunks) -> CorruptFileError:
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(CorruptFileError) as err:
                xafm.open(path, chunks=chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(err.value).startswith(os.fspath(path)), err.value
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB to refuse a lying store"
    return err.value


# ======================================================================================
# declared sizes of OME-Zarr arrays
# ======================================================================================
@pytest.mark.parametrize("chunks", [{}, None], ids=["lazy", "eager"])
@pytest.mark.parametrize("n", HUGE)
@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("version, shards", [("0.5", None), ("0.4", None), ("0.5", (4, 8, 8))])
def test_an_xafm_store_declaring_huge_frames_is_refused(tmp_path, version, shards, axis, n, chunks):
    store = tmp_path / "s.ome.zarr"
    _stack().afm.to_ome_zarr(store, version=version, chunks=(2, 4, 4) if shards else None, shards=shards)
    _edit_json(_array_meta(store), lambda d: d["shape"].__setitem__(axis, n))
    err = _refused_small(store, chunks)
    assert f"declares {n} elements along axis {axis}" in str(err)


@pytest.mark.parametrize("chunks", [{}, None], ids=["lazy", "eager"])
@pytest.mark.parametrize("n", HUGE)
@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_an_xafm_store_without_its_attrs_declaring_huge_time_is_refused(tmp_path, version, n, chunks):
    """Read as another tool's store (no xafm attributes): the time axis is the array's."""
    store = tmp_path / "s.ome.zarr"
    _stack().afm.to_ome_zarr(store, version=version)
    _edit_json(_array_meta(store), lambda d: d["shape"].__setitem__(0, n))
    path, doc, attrs = _group_attrs(store)
    del attrs["xafm"]
    path.write_text(json.dumps(doc))
    _refused_small(store, chunks)


def _foreign_store(path: Path, shape, chunks, zarr_format=3, dims="tyx") -> None:
    """An NGFF image made with zarr directly (no xafm): one array of real chunks."""
    import zarr

    g = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    arr = g.create_array("0", shape=shape, chunks=chunks, dtype="u2", fill_value=0, config={"write_empty_chunks": True})
    arr[(slice(0, 2),) * len(shape)] = 7
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    axes = [{"name": a, "type": kinds[a]} | ({"unit": "nanometer"} if kinds[a] == "space" else {}) for a in dims]
    ms = {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * len(shape)}]}]}
    if zarr_format == 3:
        g.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    else:
        g.attrs["multiscales"] = [{"version": "0.4", **ms}]


@pytest.mark.parametrize("chunks", [{}, None], ids=["lazy", "eager"])
@pytest.mark.parametrize("zarr_format", [3, 2])
@pytest.mark.parametrize("dims, axis", [("tyx", 0), ("tyx", 2), ("tczyx", 2)])
def test_a_foreign_store_with_a_2_40_axis_is_refused(tmp_path, zarr_format, dims, axis, chunks):
    store = tmp_path / "f.ome.zarr"
    shape = [4] * len(dims)
    _foreign_store(store, shape, [2] * len(dims), zarr_format, dims)
    assert xafm.open(store, chunks={}).shape[0] == 4  # the honest store reads
    _edit_json(_array_meta(store), lambda d: d["shape"].__setitem__(axis, 2**40))
    err = _refused_small(store, chunks)
    assert "store holds no chunk" in str(err)


def test_a_chunk_larger_than_any_codec_stores_is_refused(tmp_path):
    store = tmp_path / "f.ome.zarr"
    _foreign_store(store, [4, 4, 4], [2, 2, 2])

    def lie(d):
        d["shape"][0] = 2**40
        if "chunk_grid" in d:
            d["chunk_grid"]["configuration"]["chunk_shape"][0] = 2**40
        else:
            d["chunks"][0] = 2**40

    _edit_json(_array_meta(store), lie)
    assert "no Zarr codec stores more" in str(_refused_small(store, {}))


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_long_axes_that_the_chunks_reach_still_read(tmp_path, version):
    """A real axis beyond the unchecked length, whose last chunk is all fill value (NaN):
    xafm writes it anyway, so the store reads back."""
    nx = 70_000
    values = np.full((2, 2, nx), np.nan, dtype=np.float32)
    values[:, :, :10] = 1.0
    da = xafm.stack(values, pixel_size_nm=1.0, times=[0.0, 1.0])
    store = tmp_path / "long.ome.zarr"
    da.afm.to_ome_zarr(store, version=version, chunks=(1, 2, 4096))
    back = xafm.open(store, chunks={})
    assert back.shape == (2, 2, nx)
    np.testing.assert_array_equal(back.values, values)


# ======================================================================================
# damaged metadata of xafm's stores: every error names the store
# ======================================================================================
JUNK = [None, -1, 0, 2**40, 1.5, "x", "", [], [1], [None, None], {}, {"a": 1}, True, float("nan")]


def _paths(obj, prefix=()):
    """Every (path, value) inside the JSON ``obj``."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@pytest.fixture(scope="module")
def xafm_stores(tmp_path_factory):
    """A v3 and a v2 store xafm wrote, with a mask and a layer and two levels."""
    root = tmp_path_factory.mktemp("stores")
    da = _stack(3, 8, 8).afm.with_mask("edge", np.zeros((3, 8, 8), bool))
    da = da.afm.replace_nan(keep_layer=True)  # a kept layer
    out = {}
    for version in ("0.5", "0.4"):
        store = root / f"s{version}.ome.zarr"
        da.afm.to_ome_zarr(store, version=version, levels=2)
        out[version] = store
    return out


def _mutated(tmp: Path, original: Path, where: str, path: tuple, value) -> Path:
    store = tmp / "m.ome.zarr"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(original, store)
    meta = store / where
    doc = json.loads(meta.read_text())
    node = doc
    for k in path[:-1]:
        node = node[k]
    if path:
        if value == "<delete>":
            del node[path[-1]]
        else:
            node[path[-1]] = copy.deepcopy(value)
    else:
        doc = value
    meta.write_text(json.dumps(doc))
    return store


def _members(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.name in ("zarr.json", ".zattrs", ".zarray", ".zgroup"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_xafm_metadata_gives_errors_naming_the_store(xafm_stores, tmp_path, data):
    version = data.draw(st.sampled_from(sorted(xafm_stores)))
    original = xafm_stores[version]
    where = data.draw(st.sampled_from(_members(original)))
    doc = json.loads((original / where).read_text())
    fields = [p for p, _ in _paths(doc)]
    # mostly the fields the reader uses: NGFF multiscales/omero and xafm's own
    used = [p for p in fields if any(k in p for k in ("multiscales", "omero", "xafm", "shape", "chunks", "chunk_grid", "data_type", "dtype"))]
    path = data.draw(st.sampled_from(used) if used and data.draw(st.integers(0, 3)) else st.sampled_from(fields))
    value = data.draw(st.sampled_from(JUNK + ["<delete>"]) if path else st.sampled_from([[], None, 1, "x"]))
    store = _mutated(tmp_path, original, where, path, value)
    for call in (lambda: xafm.open(store), lambda: xafm.channels(store)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call()
        except XafmError as exc:
            if isinstance(exc, FileError):
                assert exc.path == os.fspath(store) or exc.path.startswith(os.fspath(store)), exc
            else:
                assert os.fspath(store) in str(exc), f"{type(exc).__name__} does not name the store: {exc}"
        # anything else (a StackError without the path, a KeyError, a zarr error) fails the test


@pytest.mark.parametrize("field, value", [
    (("n_frames",), 2), (("times_s",), [0.0, 0.0, 0.0]), (("times_s",), [2.0, 1.0, 0.0]), (("pixel_size_nm",), [0, -1]),
    (("origin_nm",), ["a", None]), (("frame_metadata",), [{"a": 1}]), (("channel",), ""), (("attrs",), [1]),
    (("masks",), {"edge": "labels/nowhere"}), (("display",), {"": {"zscale": "x"}}),
])
def test_known_damage_names_the_store(xafm_stores, tmp_path, field, value):
    """Metadata that makes the data model refuse the stack: a CorruptFileError naming the store."""
    original = xafm_stores["0.5"]
    store = _mutated(tmp_path, original, "zarr.json", ("attributes", "xafm", *field), value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xafm.open(store)
    except FileError as exc:
        assert exc.path == os.fspath(store), exc


# ======================================================================================
# multi-file OME-TIFF: references only inside the folder of the file opened
# ======================================================================================
@pytest.fixture
def victim(tmp_path):
    """A TIFF elsewhere whose values must never come back."""
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "elsewhere" / "secret.ome.tif"
    tifffile.imwrite(path, np.full((2, 4, 5), 77, np.uint16), ome=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as tf:
        uuid = re.search(r'UUID="([^"]+)"', tf.pages.first.description).group(1)
    return path, uuid


@pytest.mark.parametrize("how", ["no-namespace", "absolute", "climbing"])
def test_a_reference_outside_the_folder_is_unsafe(tmp_path, victim, how):
    secret, uuid = victim
    (tmp_path / "set").mkdir()
    opened = tmp_path / "set" / "a.ome.tif"
    tifffile.imwrite(opened, np.zeros((2, 4, 5), np.uint16), ome=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(opened) as tf:
        text = tf.pages.first.description
    name = {"no-namespace": os.fspath(secret), "absolute": os.fspath(secret), "climbing": "../elsewhere/secret.ome.tif"}[how]
    ns = ' xmlns=""' if how == "no-namespace" else ""
    new = re.sub(r'<TiffData IFD="0" PlaneCount="2"\s*/>', f'<TiffData IFD="0" PlaneCount="2"><UUID{ns} FileName="{name}">{uuid}</UUID></TiffData>', text)
    assert new != text
    tifffile.tiffcomment(opened, new.encode())
    for chunks in (None, {}):
        with pytest.raises(UnsafeFileError) as err:
            xafm.open(opened, chunks=chunks)
        assert str(err.value).startswith(os.fspath(opened)) and repr(name) in str(err.value)
    with pytest.raises(UnsafeFileError):
        xafm.channels(opened)


def test_tifffile_never_resolves_a_set_for_xafm(tmp_path, victim, monkeypatch):
    """Every TiffFile xafm opens says _multifile=False: tifffile opens no file an OME-XML names."""
    calls = []
    original = tifffile.TiffFile.__init__

    def spy(self, arg, *args, **kwargs):
        calls.append((os.fspath(arg) if isinstance(arg, (str, os.PathLike)) else arg, kwargs.get("_multifile", True), kwargs.get("_root")))
        original(self, arg, *args, **kwargs)

    arr = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 1, 1, 4, 5)
    from xafm.testing.ometiff_sets import write_ome_tiff_set

    got = write_ome_tiff_set(tmp_path, arr, companion=True)
    monkeypatch.setattr(tifffile.TiffFile, "__init__", spy)
    np.testing.assert_array_equal(xafm.open(got["companion"]).values, arr[:, 0, 0])
    np.testing.assert_array_equal(xafm.open(got["members"][1]).values, arr[:, 0, 0])
    assert calls and all(multi is False and root is None for _, multi, root in calls), calls


# ======================================================================================
# xafm's own OME-TIFF: patched page tags
# ======================================================================================
def _patch_tag(path: Path, page: int, tag: str, value: int) -> None:
    with tifffile.TiffFile(path) as tf:
        t = tf.pages[page].tags[tag]
        offset, code = t.valueoffset, int(t.dtype)
    fmt = {16: "<Q", 4: "<I", 3: "<H"}[code]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack(fmt, min(value, 2 ** (8 * struct.calcsize(fmt)) - 1)))


@pytest.mark.parametrize("chunks", [{}, None], ids=["lazy", "eager"])
@pytest.mark.parametrize("tag, page", [
    ("StripByteCounts", 1), ("StripOffsets", 1), ("StripOffsets", 0), ("ImageLength", 0), ("ImageWidth", 0),
    ("ImageLength", 2), ("ImageWidth", 2), ("RowsPerStrip", 1), ("BitsPerSample", 1),
])
def test_own_ome_tiff_with_patched_tags_reads_or_refuses_in_little_memory(tmp_path, tag, page, chunks):
    da = _stack(3, 16, 16)
    path = tmp_path / "o.ome.tif"
    da.afm.to_ome_tiff(path)
    _patch_tag(path, page, tag, 2**31 - 1)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                back = xafm.open(path, chunks=chunks).load()
            except CorruptFileError as exc:
                assert str(exc).startswith(os.fspath(path))
            else:  # a tag the contiguous read does not use: the values are the stack's
                np.testing.assert_array_equal(back.values, da.values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB"
