"""``xafm.open(path, lazy=True)``: xarray's lazy indexing without dask (docs/data-model.md,
"Eager, lazy and dask"): the same values and coordinates as the eager open for every
sample, no frame data read at open, only the selected frames read on access, masks, layers and
per-frame coordinates sliced along lazily, and the file-identity guarantee kept."""

from __future__ import annotations

import os
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xafm
from tests.samples import SAMPLES, known_stack
from xafm import registry
from xafm.core import lazy
from xafm.core.blocks import is_dask


@pytest.fixture
def reads(monkeypatch):
    """Every read of every lazy array: (array type, key, values read)."""
    log: list[tuple[str, tuple, int]] = []
    real = lazy.LazyArray._read_checked

    def counting(self, key):
        out = real(self, key)
        log.append((type(self).__name__, key, int(np.size(out))))
        return out

    monkeypatch.setattr(lazy.LazyArray, "_read_checked", counting)
    return log


def _open(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the samples' own warnings are tested elsewhere
        return xafm.open(path, **kw)


def _assert_same(a: xr.DataArray, b: xr.DataArray) -> None:
    """Same values, dims, attrs and every coordinate (masks, layers, per-frame metadata)."""
    assert a.dims == b.dims and a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    prov = "xafm_provenance"  # each open adds its own read record, stamped with its time
    assert {k: v for k, v in a.attrs.items() if k != prov} == {k: v for k, v in b.attrs.items() if k != prov}
    assert _untimed(a.attrs.get(prov)) == _untimed(b.attrs.get(prov))
    assert set(a.coords) == set(b.coords)
    for name in a.coords:
        np.testing.assert_array_equal(np.asarray(a.coords[name].values), np.asarray(b.coords[name].values), err_msg=name)


def _reads_on_access(var: xr.Variable) -> bool:
    """Whether a variable's values come from one of xafm's lazy arrays when asked for."""
    data = var._data
    while not isinstance(data, lazy.LazyArray) and hasattr(data, "array"):
        data = data.array
    return isinstance(data, lazy.LazyArray)


def _untimed(text):
    import json

    return [{k: v for k, v in r.items() if k != "timestamp"} for r in json.loads(text)] if text else text


# --------------------------------------------------------------------------------------
# the same stack as the eager open, for every sample
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_lazy_open_gives_what_the_eager_open_gives(sample, tmp_path):
    path = sample.make(tmp_path)
    eager, lz = _open(path), _open(path, lazy=True)
    assert not is_dask(lz) and not lz.variable._in_memory, "lazy=True must index lazily, without dask"
    _assert_same(lz, eager)
    n = lz.sizes["time"]
    for i in sorted({0, n // 2, n - 1}):  # single frames, the way a viewer fetches them
        _assert_same(lz.isel(time=i), eager.isel(time=i))
    if n > 2:
        _assert_same(lz.isel(time=slice(1, None, 2)), eager.isel(time=slice(1, None, 2)))
        _assert_same(lz.isel(time=[n - 1, 0]), eager.isel(time=[n - 1, 0]))


def test_chunks_win_over_lazy_and_the_default_stays_eager(tmp_path):
    path = registry.write("h5", known_stack(), tmp_path / "k.h5")
    assert isinstance(xafm.open(path).variable._data, np.ndarray)
    assert is_dask(xafm.open(path, lazy=True, chunks={}))


# --------------------------------------------------------------------------------------
# what is read, and when
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["h5", "npz", "tif", "zarr"])
def test_nothing_is_read_at_open_and_a_fetch_reads_its_frame_only(fmt, tmp_path, reads):
    src = known_stack()
    path = registry.write(fmt, src, tmp_path / f"k{registry.get(fmt).suffixes[0]}")
    reads.clear()
    da = xafm.open(path, lazy=True)
    opened = list(reads)
    assert not [r for r in opened if r[2] > src.sizes["time"]], f"the open read frame data: {opened}"
    frame = src.sizes["y"] * src.sizes["x"]
    reads.clear()
    got = da.isel(time=4).values
    np.testing.assert_array_equal(got, src.values[4])
    assert sum(r[2] for r in reads) == frame, reads  # the frame, and nothing else


@pytest.mark.parametrize("fmt", ["h5", "npz", "zarr"])
def test_masks_layers_and_frame_metadata_slice_along_lazily(fmt, tmp_path, reads):
    src = known_stack()
    path = registry.write(fmt, src, tmp_path / f"k{registry.get(fmt).suffixes[0]}")
    da = xafm.open(path, lazy=True)
    side = [c for c in da.coords if c.startswith(("mask__", "layer__"))]
    assert side, "known_stack has a mask and a layer"
    for name in side:
        assert _reads_on_access(da.coords[name].variable), f"{name} was read at open"
    reads.clear()
    one = da.isel(time=2)
    assert not reads, "slicing must read nothing"
    frame = src.sizes["y"] * src.sizes["x"]
    for name in side:
        reads.clear()
        np.testing.assert_array_equal(one.coords[name].values, src.coords[name].values[2])
        assert sum(r[2] for r in reads) == frame, (name, reads)
    for name in ("line_rate", "scan_direction"):
        assert one.coords[name].values == src.coords[name].values[2]


def test_a_real_video_fetch_reads_one_frame(tmp_path, reads):
    """The open reads the frame-header fields (one value per frame each, no frame data:
    docs/data-model.md, "Eager, lazy and dask"); a fetch then reads its frame only."""
    from tests.helpers import shared_file

    path = shared_file("afm", "asd_sample_0.asd")
    eager = xafm.open(path)
    n = eager.sizes["time"]
    reads.clear()
    da = xafm.open(path, lazy=True)
    assert reads and all(r[2] == n for r in reads), f"the open read more than the per-frame fields: {reads}"
    headers = [c for c, v in da.coords.items() if c.startswith("asd_") and v.dims == ("time",)]
    assert headers and not [c for c in headers if _reads_on_access(da.coords[c].variable)], "header fields left lazy"
    frame = eager.sizes["y"] * eager.sizes["x"]
    reads.clear()
    one = da.isel(time=7)
    got = one.values
    for name in headers:
        assert one.coords[name].values == eager.coords[name].values[7]
    assert sum(r[2] for r in reads) == frame, reads  # the frame, and nothing else
    np.testing.assert_array_equal(got, eager.values[7])
    assert _reads_on_access(da.variable), "the stack itself stays lazy"


# --------------------------------------------------------------------------------------
# a file replaced or rewritten under a lazy stack
# --------------------------------------------------------------------------------------
# not ("zarr", "rewritten"): a store's chunks rewritten with the same metadata are not
# checked, and a folder deleted and made again may get the freed inode number back; that
# is not promised (docs/guarantees.md), so it is not a case here
@pytest.mark.parametrize(("fmt", "how"), [(f, h) for f in ("h5", "npz", "tif", "zarr") for h in ("replaced", "rewritten") if (f, h) != ("zarr", "rewritten")])
def test_a_changed_file_raises_on_the_next_fetch(fmt, how, tmp_path):
    src = known_stack()
    suffix = registry.get(fmt).suffixes[0]
    path = registry.write(fmt, src, tmp_path / f"k{suffix}")
    da = xafm.open(path, lazy=True)
    np.testing.assert_array_equal(da.isel(time=1).values, src.values[1])
    other = src.copy(data=src.values + 100)
    if how == "replaced":
        new = registry.write(fmt, other, tmp_path / f"new{suffix}")
        if os.path.isdir(new):  # a store: the old one moved aside, the new one in its place
            os.rename(path, f"{path}.old")
            os.rename(new, path)
        else:
            os.replace(new, path)
    else:  # rewritten in place: same inode, other bytes and time
        data = bytearray(path.read_bytes())
        with open(path, "r+b") as fh:
            fh.write(bytes(data) + b"\0" * 16)
    with pytest.raises(xafm.FileChangedError, match=os.path.basename(path)):
        _ = da.isel(time=2).values
    mask = next(c for c in da.coords if c.startswith("mask__"))
    with pytest.raises(xafm.FileChangedError):
        _ = da.isel(time=2).coords[mask].values


# --------------------------------------------------------------------------------------
# any stack a writer takes reads back the same, lazily or not
# --------------------------------------------------------------------------------------
@st.composite
def stacks(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]))
    shape = draw(hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6))
    values = draw(hnp.arrays(dtype, shape, elements=st.integers(0, 200) if dtype is np.uint8 or dtype is np.int16 else st.floats(-1e6, 1e6, width=32)))
    mask = draw(hnp.arrays(bool, shape))
    da = xafm.stack(values, pixel_size_nm=1.0, masks={"m": mask}, frame_metadata={"k": list(range(shape[0]))})
    picks = draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=4))
    return da, picks


@pytest.mark.parametrize("fmt", ["h5", "npz"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=stacks())
def test_any_stack_reads_back_the_same_lazily(fmt, case, tmp_path):
    da, picks = case
    path = tmp_path / f"h{registry.get(fmt).suffixes[0]}"
    registry.write(fmt, da, path, overwrite=True)
    lz, eager = xafm.open(path, lazy=True), xafm.open(path)
    for i in picks:
        _assert_same(lz.isel(time=i), eager.isel(time=i))
        np.testing.assert_array_equal(lz.isel(time=i).values, da.values[i])
        np.testing.assert_array_equal(lz.isel(time=i).coords["mask__m"].values, da.coords["mask__m"].values[i])
    _assert_same(lz.isel(time=picks), eager.isel(time=picks))


@st.composite
def selections(draw):
    """A chain of two or three ``isel``s of ints and slices (any step, negative ends)."""
    def one(dim):
        ints = st.integers(-12, 11)
        ends = st.none() | st.integers(-14, 14)
        return st.one_of(ints, st.builds(slice, ends, ends, st.none() | st.integers(-3, 3).filter(bool)))

    chain = []
    for _ in range(draw(st.integers(2, 3))):
        dims = draw(st.lists(st.sampled_from(["time", "y", "x"]), min_size=1, max_size=3, unique=True))
        chain.append({d: draw(one(d)) for d in dims})
    return chain


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chain=selections())
def test_chained_selections_read_what_numpy_selects(chain, tmp_path_factory):
    """Each ``isel`` of a lazy stack composes its key with the ones before
    (``core.lazy.FetchIndexed``): any chain reads what the same chain on numpy selects,
    and raises where numpy raises."""
    path = tmp_path_factory.getbasetemp() / "chained.npz"
    if not path.exists():
        registry.write("npz", known_stack(), path)
    lz, eager = xafm.open(path, lazy=True), xafm.open(path)
    for sel in chain:
        sel = {d: k for d, k in sel.items() if d in eager.dims}
        try:
            eager = eager.isel(sel)
        except IndexError:
            with pytest.raises(IndexError):
                _ = lz.isel(sel).values
            return
        lz = lz.isel(sel)
        assert lz.shape == eager.shape
    np.testing.assert_array_equal(lz.values, eager.values)
    mask = next(c for c in eager.coords if c.startswith("mask__"))
    np.testing.assert_array_equal(lz.coords[mask].values, eager.coords[mask].values)


def test_assigning_into_a_lazy_stack_changes_that_stack_only(tmp_path):
    """An assignment copies the selection's values first (xarray's copy-on-write, kept by
    ``core.lazy.FetchCopyOnWrite``): the stack shows the new value, the file and every
    other stack opened from it keep theirs, and numpy gets the values as they are."""
    da = known_stack()
    path = tmp_path / "s.npz"
    registry.write("npz", da, path)
    before = path.read_bytes()
    lz = xafm.open(path, lazy=True)
    part = lz.isel(time=slice(1, 3))
    part[0, 0, 0] = -12345.0
    assert float(part[0, 0, 0]) == -12345.0
    np.testing.assert_array_equal(np.asarray(part)[1], da.values[2])
    np.testing.assert_array_equal(lz.isel(time=1).values, da.values[1])
    np.testing.assert_array_equal(np.asarray(lz.isel(time=1), dtype=np.float64), da.values[1].astype(np.float64))
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------
# the notebook preview of a lazy stack
# --------------------------------------------------------------------------------------
def test_preview_of_a_lazy_stack_reads_only_the_frames_it_shows(tmp_path, reads, monkeypatch):
    import dask.array

    rng = np.random.default_rng(3)
    src = xafm.stack(rng.normal(size=(60, 16, 16)).astype(np.float32), pixel_size_nm=1.0)
    path = registry.write("h5", src, tmp_path / "long.h5")
    da = xafm.open(path, lazy=True)

    def no_dask(*args, **kwargs):
        raise AssertionError("the preview of a lazy stack built a dask array")

    monkeypatch.setattr(dask.array, "from_array", no_dask)
    reads.clear()
    preview = da.afm.preview(max_frames=6, format="gif")
    assert preview.n_frames == 6
    frame = 16 * 16
    shown = {int(f) for f in range(0, 60, 10)}
    read_frames = set()
    for _kind, key, size in reads:
        assert size % frame == 0
        read_frames |= {int(f) for f in np.atleast_1d(np.arange(60)[key[0]])}
    assert read_frames == shown, sorted(read_frames)
