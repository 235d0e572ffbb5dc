"""OME-Zarr: round trips, pyramids, appends, laziness, foreign stores, damaged stores.

Every store a test writes is checked with two independent NGFF validators from PyPI
(yaozarrs and ome-zarr-models) through :func:`validate_store`.
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import warnings
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xafm
import xafm.registry
from tests.helpers import raise_if_dask_computes, reference, shared_file
from xafm.core import conventions, model
from xafm.core.contract import Probe
from xafm.exceptions import ChannelError, CorruptFileError, FormatError, OutputExistsError, StackError, WriteError, XafmError, XafmWarning
from xafm.formats import omezarr
from xafm.formats.omezarr import pyramid, store
from xafm.render.colorscale import zscale
from xafm.testing.omezarr import write_foreign_ome_zarr

VERSIONS = ["0.5", "0.4"]


# --------------------------------------------------------------------------------------
# validation with independent validators
# --------------------------------------------------------------------------------------
def validate_store(path: Path) -> None:
    """Raise unless both yaozarrs and ome-zarr-models accept the image and its labels."""
    import yaozarrs
    from ome_zarr_models import v04, v05

    path = Path(path)
    yaozarrs.validate_zarr_store(str(path))
    g = zarr.open_group(str(path), mode="r")
    version = "0.5" if "ome" in g.attrs else "0.4"
    mod = v05 if version == "0.5" else v04
    mod.Image.from_zarr(g)
    if "labels" in g:
        for name in (g["labels"].attrs.get("ome", g["labels"].attrs))["labels"]:
            mod.ImageLabel.from_zarr(g["labels"][name])
    if "layers" in g:
        for name in g["layers"].group_keys():
            mod.Image.from_zarr(g["layers"][name])
            yaozarrs.validate_zarr_store(str(path / "layers" / name))


def test_validators_reject_a_broken_store(tmp_path, rng):
    """The validation is not a rubber stamp: a store missing a level fails both validators."""
    import yaozarrs
    from ome_zarr_models import v04

    for version in VERSIONS:
        p = tmp_path / f"b{version}.ome.zarr"
        omezarr.write(xafm.stack(rng.normal(size=(2, 8, 8)), pixel_size_nm=1.0), p, levels=2, version=version)
        validate_store(p)
        shutil.rmtree(p / "1")
        with pytest.raises(Exception, match="1"):
            yaozarrs.validate_zarr_store(str(p))
    with pytest.raises(ValueError):
        v04.Image.from_zarr(zarr.open_group(str(tmp_path / "b0.4.ome.zarr"), mode="r"))


# --------------------------------------------------------------------------------------
# stacks
# --------------------------------------------------------------------------------------
def rich_stack(rng, shape=(5, 37, 20), dtype=np.float32):
    data = (rng.normal(size=shape) * 100).astype(dtype)
    n = shape[0]
    fm = [
        {"line_rate": 100.0 + i, "scan_direction": "up" if i % 2 else None, "nested": {"a": [i, "b"]}, "count": i}
        for i in range(n)
    ]
    return xafm.stack(
        data,
        pixel_size_nm=(2.0, 1.5),
        times=np.cumsum(np.linspace(0.1, 0.3, n)) - 0.1,
        frame_metadata=fm,
        masks={"hi/1": data > 50, "..": data < -50},
        layers={"raw": data.astype(np.float64) * 2, "ü x": data + 1},
        attrs={conventions.ACQUISITION_ATTR: json.dumps({"instrument": "X"}), "setpoint_v": 0.25, "arr": np.arange(3.0)},
    )


def assert_same_stack(back: xr.DataArray, da: xr.DataArray) -> None:
    assert back.dims == conventions.DIMS and back.shape == da.shape and back.dtype == da.dtype
    np.testing.assert_array_equal(back.values, da.values)
    assert back.name == da.name
    for name, c in da.coords.items():
        np.testing.assert_array_equal(np.asarray(back.coords[name].values), np.asarray(c.values), err_msg=name)
    for dim, unit in (("time", "s"), ("y", "nm"), ("x", "nm")):
        assert back[dim].attrs["units"] == unit
    own = {conventions.PROVENANCE_ATTR}
    assert {k: v for k, v in back.attrs.items() if k not in own}.keys() == {k for k in da.attrs if k not in own}
    for k, v in da.attrs.items():
        if k not in own:
            np.testing.assert_array_equal(back.attrs[k], v)
    assert back.afm.frame_metadata == da.afm.frame_metadata
    for kind in ("masks", "layers"):
        mine, theirs = getattr(back.afm, kind), getattr(da.afm, kind)
        assert set(mine) == set(theirs)
        for k in theirs:
            np.testing.assert_array_equal(mine[k].values, theirs[k].values)
            assert mine[k].dtype == theirs[k].dtype
    assert back.afm.provenance[:-2] == da.afm.provenance
    assert back.afm.provenance[-2]["type"] == "export" and back.afm.provenance[-2]["format"] == "zarr"
    assert back.afm.provenance[-1]["type"] == "read"


# --------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_round_trip_full_fidelity(version, dtype, tmp_path, rng):
    da = rich_stack(rng, dtype=dtype)
    path = tmp_path / "s.ome.zarr"
    before = dict(da.attrs)
    assert omezarr.write(da, path, version=version, chunks=(2, 16, 16)) == path
    validate_store(path)
    assert da.attrs == before  # the export record is in the store, not on the stack
    back = xafm.open(path)
    assert_same_stack(back, da)
    assert xafm.channels(path) == ["height"]
    g = zarr.open_group(str(path), mode="r")
    assert g.metadata.zarr_format == (3 if version == "0.5" else 2)
    ome = g.attrs["ome"] if version == "0.5" else dict(g.attrs)
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    assert [a.get("unit") for a in ms["axes"]] == ["second", "nanometer", "nanometer"]
    assert ms["datasets"][0]["coordinateTransformations"] == [{"type": "scale", "scale": [pytest.approx(np.median(np.diff(da.time.values))), 2.0, 1.5]}]
    ch = ome["omero"]["channels"][0]
    assert ch["label"] == "height"
    assert (ch["window"]["start"], ch["window"]["end"]) == pytest.approx(zscale(da), rel=1e-12)  # the animations' z-scale
    assert (ch["window"]["min"], ch["window"]["max"]) == (float(da.min()), float(da.max()))
    if version == "0.5":
        assert g["0"].metadata.dimension_names == ("t", "y", "x")


def test_engine_raw_and_nonfinite_window(tmp_path, rng):
    data = rng.normal(size=(3, 8, 8)).astype(np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, np.inf, -np.inf
    da = xafm.stack(data, pixel_size_nm=1.0, layers={"raw": data * 3})
    p = omezarr.write(da, tmp_path / "a.ome.zarr")
    back = xr.open_dataarray(p, engine="xafm")
    np.testing.assert_array_equal(back.values, data)
    win = zarr.open_group(str(p), mode="r").attrs["ome"]["omero"]["channels"][0]["window"]
    fin = data[np.isfinite(data)]
    assert (win["min"], win["max"]) == (fin.min(), fin.max())
    want = np.percentile(fin, [1, 99])  # numpy's, to the histogram's 1/1000 of the spread
    assert (win["start"], win["end"]) == pytest.approx(want, abs=(want[1] - want[0]) / 1000)
    raw = xafm.open(omezarr.write(da, tmp_path / "raw.zarr", raw=True))
    np.testing.assert_array_equal(raw.values, data * 3)
    assert raw.afm.layers == {}
    with pytest.raises(StackError, match="raw"):
        omezarr.write(xafm.stack(data, pixel_size_nm=1.0), tmp_path / "r2.zarr", raw=True)


@settings(max_examples=15)
@given(
    data=hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int32, np.uint16]),
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
    ),
    ct=st.integers(1, 4),
    cy=st.integers(1, 6),
    version=st.sampled_from(VERSIONS),
    levels=st.integers(1, 3),
    method=st.sampled_from(omezarr.METHODS),
    use_dask=st.booleans(),
)
def test_property_round_trip(data, ct, cy, version, levels, method, use_dask, tmp_path_factory):
    levels = min(levels, min(data.shape[1:]).bit_length())
    arr = dsa.from_array(data, chunks=(2, 3, 5)) if use_dask else data
    da = xafm.stack(arr, pixel_size_nm=0.7, masks={"m": data > 0})
    path = tmp_path_factory.mktemp("p") / "s.ome.zarr"
    omezarr.write(da, path, chunks=(ct, cy, cy + 1), levels=levels, method=method, version=version)
    back = xafm.open(path)
    np.testing.assert_array_equal(back.values, data)
    assert back.dtype == data.dtype
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    win = attrs.get("ome", attrs)["omero"]["channels"][0]["window"]
    assert (win["start"], win["end"]) == pytest.approx(zscale(xafm.stack(data, pixel_size_nm=0.7)), rel=1e-12)
    fin = data[np.isfinite(data)]
    if fin.size:  # the finite range, widened to hold the z-scale (a constant stack's is widened)
        assert (win["min"], win["max"]) == (min(fin.min(), win["start"]), max(fin.max(), win["end"]))
    for k in range(levels):
        lvl = xafm.open(path, level=k)
        np.testing.assert_array_equal(lvl.values, reference_level(data, k, method))
        np.testing.assert_array_equal(lvl.afm.masks["m"].values, reference_level((data > 0).astype(np.uint8), k, "nearest" if method == "nearest" else "max").astype(bool))


def reference_level(data: np.ndarray, k: int, method: str) -> np.ndarray:
    """Level k computed the slow way: k successive 2x2 reductions."""
    out = data
    for _ in range(k):
        out = pyramid.downsample_block(out[:, : out.shape[1] // 2 * 2, : out.shape[2] // 2 * 2], method, data.dtype)
    return out


def test_downsample_methods():
    block = np.array([[[1, 2, 5, 7], [3, 4, 6, 9]]], dtype=np.int16)
    assert pyramid.downsample_block(block, "mean", block.dtype).tolist() == [[[2, 7]]]  # 2.5 -> 2 (round half even), 6.75 -> 7
    assert pyramid.downsample_block(block, "max", block.dtype).tolist() == [[[4, 9]]]
    assert pyramid.downsample_block(block, "min", block.dtype).tolist() == [[[1, 5]]]
    assert pyramid.downsample_block(block, "nearest", block.dtype).tolist() == [[[1, 5]]]
    f = block.astype(np.float32)
    assert pyramid.downsample_block(f, "mean", f.dtype).tolist() == [[[2.5, 6.75]]]


# --------------------------------------------------------------------------------------
# pyramids
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("method", ["mean", "nearest"])
def test_pyramid_levels_values_and_transforms(version, method, tmp_path, rng):
    da = rich_stack(rng, shape=(4, 37, 22))
    path = omezarr.write(da, tmp_path / "p.ome.zarr", levels=3, method=method, version=version, chunks=(3, 8, 8))
    validate_store(path)
    g = zarr.open_group(str(path), mode="r")
    ome = g.attrs["ome"] if version == "0.5" else dict(g.attrs)
    datasets = ome["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    assert ome["multiscales"][0]["type"] == method
    for k in range(3):
        shape = (4, 37 >> k, 22 >> k)
        assert g[str(k)].shape == shape
        assert g[g.attrs["xafm"]["layers"]["raw"]][str(k)].shape == shape and g[g.attrs["xafm"]["masks"]["hi/1"]][str(k)].shape == shape
        tf = datasets[k]["coordinateTransformations"]
        assert tf[0]["scale"][1:] == [2.0 * 2**k, 1.5 * 2**k]
        if method == "mean" and k:
            assert tf[1] == {"type": "translation", "translation": [0.0, 2.0 * (2**k - 1) / 2, 1.5 * (2**k - 1) / 2]}
        else:
            assert len(tf) == 1
        lvl = xafm.open(path, level=k)
        np.testing.assert_allclose(lvl.values, reference_level(da.values, k, method), rtol=1e-6)
        np.testing.assert_allclose(lvl.afm.layers["raw"].values, reference_level(da.afm.layers["raw"].values, k, method))
        assert lvl.afm.pixel_size_nm == 1.5 * 2**k and model.pixel_size_nm(lvl)[0] == 2.0 * 2**k
        assert lvl.y.values[0] == pytest.approx(2.0 * (2**k - 1) / 2 if method == "mean" else 0.0)
        assert lvl.attrs.get("ome_zarr_level", 0) == k
    with pytest.raises(FormatError, match="no level 3"):
        xafm.open(path, level=3)


def test_pyramid_is_streamed_never_materialising_a_level(tmp_path):
    """Every task result stays within four chunks; the whole stack is 64x larger."""
    arr = dsa.random.default_rng(0).random((64, 64, 64), chunks=(4, 32, 32)).astype(np.float32)
    da = xafm.stack(arr, pixel_size_nm=1.0)
    sizes = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, id):
            sizes.append(getattr(result, "nbytes", 0))

    with Sizes():
        omezarr.write(da, tmp_path / "s.ome.zarr", levels=3, chunks=(4, 32, 32))
    chunk = 4 * 32 * 32 * 4
    assert max(sizes) <= 4 * chunk < arr.nbytes / 8
    np.testing.assert_allclose(xafm.open(tmp_path / "s.ome.zarr", level=2).values, reference_level(arr.compute(), 2, "mean"), rtol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_parallel_writes_are_chunk_aligned(tmp_path, monkeypatch, rng, fused):
    """Dask chunks that straddle Zarr chunks are rechunked: no two tasks write one chunk of
    any level, whether each task builds every level of its frames or levels are read back."""
    regions = []
    original = store.write_into

    def spy(arrays, region, block, method):
        for k, arr in enumerate(arrays):
            whole = tuple(slice(0, s) for s in arr.shape)
            regions.append((arr.path.rsplit("/", 1)[-1], tuple(region) + whole[len(region) :] if k == 0 else (region[0],) + whole[1:]))
        original(arrays, region, block, method)

    monkeypatch.setattr(store, "write_into", spy)
    if not fused:
        monkeypatch.setattr(pyramid, "FUSED_TASK_BYTES", 0)
    data = rng.normal(size=(11, 50, 45)).astype(np.float32)
    da = xafm.stack(dsa.from_array(data, chunks=(3, 17, 50)), pixel_size_nm=1.0)
    omezarr.write(da, tmp_path / "s.ome.zarr", chunks=(4, 16, 16), shards=(4, 32, 32), levels=2)
    np.testing.assert_array_equal(xafm.open(tmp_path / "s.ome.zarr").values, data)
    np.testing.assert_array_equal(xafm.open(tmp_path / "s.ome.zarr", level=1).values, reference_level(data, 1, "mean"))
    for comp in ("0", "1"):
        unit = (4, 32, 32)  # the shard: the smallest piece two writers must not share
        touched = []
        for c, region in regions:
            if c == comp:
                assert all((s.stop - 1) // u == s.start // u for s, u in zip(region, unit)) or fused, region
                assert region[0].start % 4 == 0 and (region[0].stop % 4 == 0 or region[0].stop == 11), region
                touched.extend(itertools.product(*(range(s.start // u, (s.stop - 1) // u + 1) for s, u in zip(region, unit))))
        assert len(touched) == len(set(touched)) > 1


def test_level_and_argument_errors(tmp_path, rng):
    da = xafm.stack(rng.normal(size=(2, 5, 9)), pixel_size_nm=1.0)
    p = tmp_path / "s.zarr"
    with pytest.raises(StackError, match="levels"):
        omezarr.write(da, p, levels=4)
    omezarr.write(da, p, levels=3)  # 5 -> 2 -> 1
    assert xafm.open(p, level=2).shape == (2, 1, 2)
    for kw, match in (
        ({"version": "0.3"}, "version"),
        ({"mode": "r+"}, "mode"),
        ({"method": "gaussian"}, "method"),
        ({"levels": 0}, "levels"),
        ({"append_dim": "time"}, "mode='a'"),
        ({"mode": "a", "append_dim": "y"}, "append_dim"),
        ({"version": "0.4", "shards": (2, 4, 4)}, "shards"),
        ({"chunks": (2, 4, 4), "shards": (3, 4, 4)}, "multiples"),
        ({"chunks": (0, 4, 4)}, "chunks"),
        ({"chunks": {"z": 3}}, "chunks"),
    ):
        with pytest.raises(FormatError, match=match):
            omezarr.write(da, tmp_path / "other.zarr", **kw)
    assert not (tmp_path / "other.zarr").exists()
    omezarr.write(da, tmp_path / "c.zarr", chunks={"time": 1, "x": 4})
    assert zarr.open_array(str(tmp_path / "c.zarr" / "0"), mode="r").chunks == (1, 5, 4)
    omezarr.write(da, tmp_path / "d.zarr", chunks=1)
    assert zarr.open_array(str(tmp_path / "d.zarr" / "0"), mode="r").chunks == (1, 5, 9)


# --------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------
def test_modes_w_minus_w_and_overwrite(tmp_path, rng):
    a = xafm.stack(rng.normal(size=(2, 6, 6)), pixel_size_nm=1.0)
    b = xafm.stack(rng.normal(size=(3, 4, 4)), pixel_size_nm=2.0)
    p = tmp_path / "s.ome.zarr"
    omezarr.write(a, p)
    with pytest.raises(OutputExistsError):
        omezarr.write(b, p)
    np.testing.assert_array_equal(xafm.open(p).values, a.values)
    omezarr.write(b, p, mode="w", levels=2)
    assert xafm.open(p).shape == (3, 4, 4) and not (p / "1" / "c" / "0" / "0" / "1").exists()
    omezarr.write(a, p, overwrite=True)
    np.testing.assert_array_equal(xafm.open(p).values, a.values)
    assert not (p / "1").exists()  # the old store was replaced, not merged
    # never replace something that is not a Zarr store
    folder = tmp_path / "precious.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not a Zarr store"):
        omezarr.write(a, folder, mode="w")
    assert (folder / "notes.txt").read_text() == "keep"
    # mode="a" creates a missing store
    omezarr.write(a, tmp_path / "new.zarr", mode="a", append_dim="time")
    np.testing.assert_array_equal(xafm.open(tmp_path / "new.zarr").values, a.values)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["new.zarr", "precious.zarr", "s.ome.zarr"]


def test_failed_write_leaves_nothing_and_keeps_existing(tmp_path, rng):
    def boom(x, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("chunk exploded")
        return x

    bad = xafm.stack(dsa.zeros((4, 8, 8), chunks=(1, 8, 8)).map_blocks(boom, dtype=float), pixel_size_nm=1.0)
    p = tmp_path / "s.ome.zarr"
    with pytest.raises(WriteError, match="chunk exploded"):
        omezarr.write(bad, p)
    assert list(tmp_path.iterdir()) == []
    good = xafm.stack(rng.normal(size=(2, 3, 3)), pixel_size_nm=1.0)
    omezarr.write(good, p)
    with pytest.raises(WriteError):
        omezarr.write(bad, p, mode="w")
    np.testing.assert_array_equal(xafm.open(p).values, good.values)
    assert [x.name for x in tmp_path.iterdir()] == [p.name]


# --------------------------------------------------------------------------------------
# appends
# --------------------------------------------------------------------------------------
def piece(rng, n, t0, shape=(30, 24), dtype=np.float32):
    d = rng.normal(size=(n,) + shape).astype(dtype)
    fm = [{"k": int(t0 * 10) + i, "scan_direction": "up"} for i in range(n)]
    return d, xafm.stack(d, pixel_size_nm=1.0, times=t0 + np.arange(n) * 0.1, frame_metadata=fm, masks={"m": d > 0}, layers={"raw": d * 2})


@pytest.mark.parametrize("version", VERSIONS)
def test_append_frames_extends_everything(version, tmp_path, rng):
    d1, a1 = piece(rng, 5, 0.0)
    d2, a2 = piece(rng, 4, 0.5)
    d3, a3 = piece(rng, 3, 1.0)
    p = tmp_path / "grow.ome.zarr"
    omezarr.write(a1, p, levels=2, version=version, chunks=(3, 16, 16))
    omezarr.write(a2.chunk({"time": 1}), p, mode="a", append_dim="time")  # dask, unaligned start (5 % 3)
    omezarr.write(a3, p, mode="a", append_dim="time", levels=7, version="0.5", chunks=1)  # taken from the store
    validate_store(p)
    allv = np.concatenate([d1, d2, d3])
    back = xafm.open(p)
    np.testing.assert_array_equal(back.values, allv)
    np.testing.assert_allclose(back.time.values, np.r_[np.arange(5) * 0.1, 0.5 + np.arange(4) * 0.1, 1.0 + np.arange(3) * 0.1])
    assert [f["k"] for f in back.afm.frame_metadata] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12]
    np.testing.assert_array_equal(back.afm.masks["m"].values, allv > 0)
    np.testing.assert_array_equal(back.afm.layers["raw"].values, allv * 2)
    np.testing.assert_allclose(xafm.open(p, level=1).values, reference_level(allv, 1, "mean"), rtol=1e-6)
    np.testing.assert_array_equal(xafm.open(p, level=1).afm.masks["m"].values, reference_level((allv > 0).astype(np.uint8), 1, "max").astype(bool))
    modes = [r.get("mode") for r in back.afm.provenance if r["type"] == "export"]
    assert modes[-2:] == ["a", "a"] and back.afm.provenance[-2]["frames"] == [9, 12]
    assert [r["type"] for r in a3.afm.provenance] == ["create"]  # appending does not change the stack
    g = zarr.open_group(str(p), mode="r")
    assert g["0"].chunks == (3, 16, 16)
    ome = g.attrs["ome"] if version == "0.5" else dict(g.attrs)
    win = ome["omero"]["channels"][0]["window"]
    assert (win["min"], win["max"]) == (allv.min(), allv.max())
    exact = zscale(xafm.stack(allv, pixel_size_nm=1.0))
    assert win["start"] <= exact[0] < exact[1] <= win["end"]  # the union of the parts' z-scales


def test_append_checks_compatibility(tmp_path, rng):
    _, a1 = piece(rng, 3, 0.0)
    p = omezarr.write(a1, tmp_path / "s.ome.zarr")
    before = xafm.open(p)
    cases = [
        (piece(rng, 2, 1.0, dtype=np.float64)[1], "dtype"),
        (piece(rng, 2, 1.0, shape=(30, 23))[1], "frame shape"),
        (piece(rng, 2, 0.1)[1], "start at t=0.1"),
        (xafm.stack(np.zeros((2, 30, 24), np.float32), pixel_size_nm=2.0, times=[5, 6], masks={"m": np.zeros((2, 30, 24), bool)}, layers={"raw": np.zeros((2, 30, 24))}), "pixel size"),
        (xafm.stack(np.zeros((2, 30, 24), np.float32), pixel_size_nm=1.0, times=[5, 6]), "masks/layers"),
        (xafm.stack(np.zeros((2, 30, 24), np.float32), pixel_size_nm=1.0, times=[5, 6], channel="phase", masks={"m": np.zeros((2, 30, 24), bool)}, layers={"raw": np.zeros((2, 30, 24))}), "channel"),
    ]
    for da, match in cases:
        with pytest.raises(StackError, match=match):
            omezarr.write(da, p, mode="a", append_dim="time")
    after = xafm.open(p)
    np.testing.assert_array_equal(after.values, before.values)
    with pytest.raises(FormatError, match="append_dim"):
        omezarr.write(a1, p, mode="a")


def test_append_failure_keeps_the_store(tmp_path, rng):
    d1, a1 = piece(rng, 5, 0.0)
    p = omezarr.write(a1, tmp_path / "s.ome.zarr", levels=2, chunks=(3, 16, 16))
    d2, _ = piece(rng, 4, 1.0)

    def maybe_fail(x, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise RuntimeError("disk on fire")
        return x

    bad = dsa.from_array(d2, chunks=(1, 30, 24)).map_blocks(maybe_fail, dtype=np.float32)
    da = xafm.stack(bad, pixel_size_nm=1.0, times=1 + np.arange(4) * 0.1, frame_metadata=[{"k": 0, "scan_direction": "up"}] * 4, masks={"m": d2 > 0}, layers={"raw": d2 * 2})
    with pytest.raises(WriteError, match="still holds its 5 frames.*disk on fire"):
        omezarr.write(da, p, mode="a", append_dim="time")
    back = xafm.open(p)
    np.testing.assert_array_equal(back.values, d1)
    assert zarr.open_group(str(p), mode="r")["1"].shape[0] == 5
    validate_store(p)
    # the next append works and overwrites whatever the failed one left in chunk 1
    omezarr.write(piece(rng, 2, 1.0)[1], p, mode="a", append_dim="time")
    assert xafm.open(p).shape[0] == 7


def test_interrupted_append_extra_frames_are_ignored(tmp_path, rng):
    """A crash between growing the arrays and the metadata: readers see the old frames."""
    d1, a1 = piece(rng, 3, 0.0)
    p = omezarr.write(a1, tmp_path / "s.ome.zarr")
    zarr.open_array(str(p / "0"), mode="r+").resize((6, 30, 24))
    with pytest.warns(XafmWarning, match="interrupted append"):
        back = xafm.open(p)
    np.testing.assert_array_equal(back.values, d1)
    omezarr.write(piece(rng, 2, 1.0)[1], p, mode="a", append_dim="time")
    assert xafm.open(p).shape[0] == 5


def test_append_refuses_foreign_stores(tmp_path):
    src = shared_file("other", "blobs_image_v04.ome.zarr")
    p = tmp_path / "blobs.ome.zarr"
    shutil.copytree(src, p)
    with pytest.raises(FormatError, match="xafm wrote"):
        omezarr.write(xafm.stack(np.zeros((1, 12, 12)), pixel_size_nm=1.0), p, mode="a", append_dim="time")


# --------------------------------------------------------------------------------------
# laziness
# --------------------------------------------------------------------------------------
def test_lazy_open_reads_nothing_and_matches_eager(tmp_path, rng, monkeypatch):
    da = rich_stack(rng, shape=(6, 20, 20))
    p = omezarr.write(da, tmp_path / "s.ome.zarr", chunks=(2, 10, 20), levels=2)
    reads = []
    original = omezarr.ZarrArraySource._read
    monkeypatch.setattr(omezarr.ZarrArraySource, "_read", lambda self, key: reads.append(key) or original(self, key))
    with raise_if_dask_computes():
        lazy = xafm.open(p, chunks={})
        sub = lazy.isel(time=slice(1, 4), x=slice(None, None, -1))
    assert reads == []
    # preferred chunks: whole stored chunks in y and x, along time as many as make ~32 MiB
    assert isinstance(lazy.data, dsa.Array) and lazy.chunks == ((6,), (10, 10), (20,))
    assert lazy.encoding["chunks"] == (2, 10, 20)
    assert isinstance(lazy.afm.masks["hi/1"].data, dsa.Array)
    np.testing.assert_array_equal(sub.values, da.values[1:4, :, ::-1])
    assert reads
    np.testing.assert_array_equal(xafm.open(p, chunks={"time": 4}).values, xafm.open(p).values)
    # the dask graph pickles (no open handles) and computes from the copy
    pickle.loads(pickle.dumps(lazy.data)).compute()
    arr = omezarr.ZarrArraySource(str(p), "0", (6, 20, 20), np.float32)
    clone = pickle.loads(pickle.dumps(arr))
    np.testing.assert_array_equal(clone[np.array([4, 1]), 2, ::3], da.values[[4, 1], 2, ::3])
    assert clone[0:0].shape == (0, 20, 20)


def test_can_open_and_format_lookup(tmp_path, rng):
    da = xafm.stack(rng.normal(size=(1, 4, 4)), pixel_size_nm=1.0)
    for version in VERSIONS:
        p = omezarr.write(da, tmp_path / f"plain_folder_{version}", version=version)
        assert omezarr.identify(Probe(p))
        assert xafm.registry.find(p).name == "zarr"  # by content, whatever the folder's name
    assert not omezarr.identify(Probe(tmp_path))
    (tmp_path / "x.zarr").mkdir()
    assert not omezarr.identify(Probe(tmp_path / "x.zarr"))
    assert not omezarr.identify(Probe(tmp_path / "missing"))


# --------------------------------------------------------------------------------------
# foreign stores
# --------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*no physical pixel size:xafm.exceptions.XafmWarning")  # (tests/test_omezarr_display.py)
def test_reads_spatialdata_blobs_v04():
    path = shared_file("other", "blobs_image_v04.ome.zarr")
    ref = reference("other")["blobs_image_v04.ome.zarr"]
    da = xafm.open(path)
    assert da.dims == ("time", "channel", "y", "x")
    assert da.shape[1:] == tuple(ref["shape"]) and da.sizes["time"] == 1
    assert da.dtype == np.dtype(ref["dtype"])
    for stat in ("min", "max", "mean"):
        assert float(getattr(da, stat)()) == pytest.approx(ref[stat], rel=1e-6)
    assert list(da.channel.values) == ["0", "1", "2"] == xafm.channels(path)
    assert da.attrs["ngff_version"] == "0.4-dev-spatialdata"
    one = xafm.open(path, channel="1")
    assert one.dims == conventions.DIMS and one.afm.pixel_size_nm == 1.0
    np.testing.assert_array_equal(one.values[0], da.values[0, 1])
    with pytest.raises(ChannelError, match=r"no channel 'C9'; available: \['0', '1', '2'\]"):
        xafm.open(path, channel="C9")
    with raise_if_dask_computes():
        lazy = xafm.open(path, chunks={})
    np.testing.assert_array_equal(lazy.values, da.values)
    assert xr.open_dataarray(path, engine="xafm").shape == (1, 3, 12, 12)


def test_reads_foreign_tczyx_with_units(tmp_path, rng):
    axes = [
        {"name": "t", "type": "time", "unit": "millisecond"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "angstrom"},
    ]
    data = rng.integers(0, 1000, size=(3, 2, 4, 5, 6)).astype(np.uint16)
    tf = [{"type": "scale", "scale": [50.0, 1.0, 0.5, 0.25, 2.0]}, {"type": "translation", "translation": [0, 0, 0, 1.0, 0]}]
    write_foreign_ome_zarr(tmp_path / "f.ome.zarr", "0.4", axes, data, tf, omero={"channels": [{"label": "GFP"}, {"label": "RFP"}]})
    da = xafm.open(tmp_path / "f.ome.zarr")
    assert da.dims == ("time", "z", "channel", "y", "x")
    np.testing.assert_array_equal(da.values, data.transpose(0, 2, 1, 3, 4))
    np.testing.assert_allclose(da.time.values, [0, 0.05, 0.1])
    np.testing.assert_allclose(da.z.values, np.arange(4) * 500.0)
    np.testing.assert_allclose(da.y.values, 1000.0 + np.arange(5) * 250.0)
    np.testing.assert_allclose(da.x.values, np.arange(6) * 0.2)
    assert list(da.channel.values) == ["GFP", "RFP"] == xafm.channels(tmp_path / "f.ome.zarr")
    rfp = xafm.open(tmp_path / "f.ome.zarr", channel="RFP", chunks={})
    assert rfp.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(rfp.values, data[:, 1])
    sub = rfp.isel(time=[2, 0], z=1, x=slice(None, None, 2)).values
    np.testing.assert_array_equal(sub, data[[2, 0], 1, 1, :, ::2])


def test_reads_foreign_v05_yx_and_bioformats2raw(tmp_path, rng):
    data = rng.normal(size=(5, 6)).astype(np.float32)
    axes = [{"name": "y", "type": "space", "unit": "nanometer"}, {"name": "x", "type": "space", "unit": "nanometer"}]
    write_foreign_ome_zarr(tmp_path / "yx.ome.zarr", "0.5", axes, data, [{"type": "scale", "scale": [3.0, 4.0]}])
    da = xafm.open(tmp_path / "yx.ome.zarr")
    assert da.dims == conventions.DIMS and da.shape == (1, 5, 6) and da.attrs["channel"] == "C0"
    np.testing.assert_array_equal(da.values[0], data)
    assert model.pixel_size_nm(da) == (3.0, 4.0)
    lazy = xafm.open(tmp_path / "yx.ome.zarr", chunks={})
    np.testing.assert_array_equal(lazy.isel(time=[0, 0]).values, np.stack([data, data]))
    # bioformats2raw: the image is the group "0" below the root
    root = zarr.open_group(str(tmp_path / "b2r.ome.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_foreign_ome_zarr(tmp_path / "b2r.ome.zarr" / "0", "0.4", axes, data, [{"type": "scale", "scale": [1.0, 1.0]}])
    assert omezarr.identify(Probe(tmp_path / "b2r.ome.zarr"))
    np.testing.assert_array_equal(xafm.open(tmp_path / "b2r.ome.zarr", chunks={}).values[0], data)


# --------------------------------------------------------------------------------------
# damaged stores
# --------------------------------------------------------------------------------------
def _edit_attrs(p: Path, fn) -> None:
    meta = json.loads((p / "zarr.json").read_text())
    fn(meta["attributes"])
    (p / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda a: a["ome"].pop("multiscales"), "multiscales"),
        (lambda a: a["ome"]["multiscales"][0].update(datasets=[]), "no datasets"),
        (lambda a: a["ome"]["multiscales"][0]["datasets"][0].update(path="nope"), "missing"),
        (lambda a: a["xafm"].update(n_frames=99), "times_s"),
        (lambda a: a["xafm"].update(times_s=[0.0] * 99, n_frames=99), "holds 2 frames"),
        (lambda a: a["xafm"].update(pixel_size_nm="big"), "pixel_size_nm"),
    ],
)
def test_damaged_metadata_raises_corrupt_file_error(damage, match, tmp_path, rng):
    p = omezarr.write(xafm.stack(rng.normal(size=(2, 4, 4)), pixel_size_nm=1.0), tmp_path / "s.ome.zarr")
    _edit_attrs(p, damage)
    with pytest.raises(CorruptFileError, match=match) as info:
        xafm.open(p)
    assert str(p) in str(info.value)


def test_garbage_and_plates(tmp_path):
    p = tmp_path / "g.ome.zarr"
    p.mkdir()
    (p / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptFileError):
        xafm.open(p)
    plate = tmp_path / "plate.ome.zarr"
    zarr.open_group(str(plate), mode="w").attrs.update({"ome": {"version": "0.5", "plate": {"wells": []}}})
    with pytest.raises(CorruptFileError, match="plate"):
        xafm.open(plate)


@settings(max_examples=25)
@given(
    target=st.sampled_from(["zarr.json", "0/zarr.json", "0/c/0/0/0", "labels/m/0/zarr.json"]),
    mutation=st.one_of(
        st.tuples(st.just("truncate"), st.floats(0, 1)),
        st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)),
    ),
)
def test_fuzzed_stores_raise_only_xafm_errors(target, mutation, tmp_path_factory):
    base = tmp_path_factory.mktemp("fz") / "s.ome.zarr"
    data = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    omezarr.write(xafm.stack(data, pixel_size_nm=1.0, masks={"m": data > 10}), base)
    f = base / target
    raw = bytearray(f.read_bytes())
    if mutation[0] == "truncate":
        raw = raw[: int(mutation[1] * len(raw))]
    else:
        for pos, val in mutation[1]:
            if raw:
                raw[min(len(raw) - 1, int(pos * len(raw)))] = val
    f.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            da = xafm.open(base)
            assert da.dims[-2:] == ("y", "x") and da.values.shape == da.shape
            assert all(m.dtype == bool for m in da.afm.masks.values())
        except XafmError as exc:  # anything else fails the test
            assert str(base) in str(exc), "errors name the store"


def test_lazily_indexed_stack_is_written_block_by_block(tmp_path, rng, monkeypatch):
    """A stack backed by a lazy reader (not dask) is read a few whole chunks at a time."""
    from xafm.core import blocks as _output
    from xafm.formats import _hdf5

    data = rng.normal(size=(12, 16, 16)).astype(np.float32)
    src = xafm.stack(data, pixel_size_nm=1.0).afm.to_h5(tmp_path / "s.h5")
    lazy = xr.open_dataarray(src, engine="xafm")
    assert not isinstance(lazy.variable._data, np.ndarray)
    reads = []
    original = _hdf5.H5DatasetArray._read
    monkeypatch.setattr(_hdf5.H5DatasetArray, "_read", lambda self, key: reads.append(key[0]) or original(self, key))
    monkeypatch.setattr(_output, "BLOCK_BYTES", 5 * 16 * 16 * 4)  # 5 frames -> blocks of 4 (whole 2-frame chunks)
    p = omezarr.write(lazy, tmp_path / "s.ome.zarr", chunks=(2, 16, 16))
    np.testing.assert_array_equal(xafm.open(p).values, data)
    assert [(k.start, k.stop) for k in reads] == [(0, 4), (4, 8), (8, 12)]
    omezarr.write(xafm.stack(data[:3], pixel_size_nm=1.0, times=[20, 21, 22]), p, mode="a", append_dim="time")
    np.testing.assert_array_equal(xafm.open(p).values, np.concatenate([data, data[:3]]))
