"""The fast paths of the OME-Zarr writer give what the straightforward ones gave (issue 16).

- the 2x2 reductions by strided adds: the bytes of ``reshape(...).mean()`` / ``max`` /
  ``min`` (the implementation they replace, kept here as the reference);
- the finite range by ``fmin``/``fmax``: what ``block[isfinite(block)]`` gives, NaN, inf
  and signed zeros included;
- levels built from the blocks of level 0 as they are written (numpy and dask input)
  against levels read back from the store, and the z-scale from the write tasks'
  histograms against the pass over the store: the same arrays and the same metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xafm
from xafm.core import percentiles
from xafm.formats import omezarr
from xafm.formats.omezarr import pyramid, reduce, store, writer


def old_downsample(block: np.ndarray, method: str, dtype: np.dtype) -> np.ndarray:
    """The reductions as they were before strided adds (the reference)."""
    if method == "nearest":
        return np.ascontiguousarray(block[:, ::2, ::2])
    t, h, w = block.shape
    r = block.reshape(t, h // 2, 2, w // 2, 2)
    if method == "mean":
        out = r.mean(axis=(2, 4), dtype=np.float64 if dtype.itemsize > 4 or dtype.kind != "f" else np.float32)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(dtype)
    return (r.max(axis=(2, 4)) if method == "max" else r.min(axis=(2, 4))).astype(dtype, copy=False)


def old_finite_range(block: np.ndarray) -> tuple[float, float] | None:
    """The finite range as it was before fmin/fmax (the reference)."""
    if block.dtype.kind == "f":
        fin = block[np.isfinite(block)]
        if fin.size == 0:
            return None
        return float(fin.min()), float(fin.max())
    if block.size == 0:
        return None
    return float(block.min()), float(block.max())


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3.5e38])
FLOATS = st.sampled_from([np.float32, np.float64])
INTS = st.sampled_from([np.int8, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64])
EVEN_SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 6).map(lambda v: 2 * v), st.integers(1, 6).map(lambda v: 2 * v))


@st.composite
def float_blocks(draw, shape=EVEN_SHAPES):
    dtype = np.dtype(draw(FLOATS))
    a = draw(hnp.arrays(dtype, draw(shape), elements=st.floats(-1e6, 1e6, width=dtype.itemsize * 8)))
    for _ in range(draw(st.integers(0, 4)) if a.size else 0):  # NaN, inf, signed zeros, tiny and huge values
        with np.errstate(over="ignore"):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(SPECIAL)
    return a


@st.composite
def int_blocks(draw, shape=EVEN_SHAPES):
    dtype = np.dtype(draw(INTS))
    return draw(hnp.arrays(dtype, draw(shape), elements=st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))))


@settings(max_examples=300, deadline=None)
@given(block=st.one_of(float_blocks(), int_blocks()), method=st.sampled_from(reduce.METHODS))
def test_reductions_are_the_bytes_of_numpys(block, method):
    with np.errstate(invalid="ignore", over="ignore"):
        want = old_downsample(block, method, block.dtype)
        got = reduce.downsample_block(block, method, block.dtype)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # NaN payloads and signed zeros included


@settings(max_examples=50, deadline=None)
@given(block=hnp.arrays(np.float16, EVEN_SHAPES, elements=st.floats(-100, 100, width=16)), method=st.sampled_from(reduce.METHODS))
def test_float16_reductions_equal_numpys(block, method):
    """float16 sums in float32 as before; only the sign of a NaN made of inf - inf could
    differ (numpy's buffered cast), so NaN counts as equal here."""
    np.testing.assert_array_equal(reduce.downsample_block(block, method, block.dtype), old_downsample(block, method, block.dtype))


def test_one_pixel_wide_levels_sum_as_numpy():
    """Where a level is one pixel wide numpy sums the four in memory order: so does the
    mean here (a case the pairwise order would round differently)."""
    block = np.array([[[1.0, 1e-8], [-1.0, 3e-8]]], dtype=np.float32)
    assert reduce.downsample_block(block, "mean", block.dtype).tobytes() == old_downsample(block, "mean", block.dtype).tobytes()
    wide = np.tile(block, (1, 1, 2))
    assert reduce.downsample_block(wide, "mean", wide.dtype).tobytes() == old_downsample(wide, "mean", wide.dtype).tobytes()


@settings(max_examples=300, deadline=None)
@given(block=st.one_of(float_blocks(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 5))), int_blocks()))
def test_finite_range_is_the_masked_one(block):
    got, want = reduce.finite_range(block), old_finite_range(block)
    assert repr(got) == repr(want)  # -0.0 and 0.0 told apart


def test_finite_range_of_only_nan_and_inf():
    assert reduce.finite_range(np.array([np.nan, np.inf, -np.inf])) is None
    assert reduce.finite_range(np.array([np.nan, np.inf, 2.0, -np.inf, -1.0], np.float32)) == (-1.0, 2.0)
    assert reduce.finite_range(np.zeros((0, 3))) is None


@settings(max_examples=100, deadline=None)
@given(block=float_blocks(st.tuples(st.integers(1, 4), st.integers(1, 20), st.integers(1, 20))), split=st.integers(1, 3))
def test_histogram_parts_give_the_percentiles(block, split):
    """The z-scale from the tasks' histograms (any split in frames) is the one percentiles() computes."""
    frames = np.array_split(block, min(split, block.shape[0]))
    want = percentiles.percentiles(xafm.stack(dsa.from_array(block, chunks=(1, -1, -1)), pixel_size_nm=1.0))
    for how in (percentiles.centre(frames[0]), percentiles.binning(frames[0], frames[-1])):  # every value binned / the tails only
        got = percentiles.percentiles_of_histogram([percentiles.block_histogram(f, how) for f in frames], how)
        if got is not percentiles.ANOTHER_PASS:  # else the writer asks percentiles() itself
            assert got == want


# --------------------------------------------------------------------------------------
# whole stores: the fast paths against the old ones
# --------------------------------------------------------------------------------------
def digest(path: Path) -> dict:
    """Every file of a store: the bytes of chunks, the parsed metadata (provenance dropped:
    it names the path and the time)."""
    out = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        key = str(f.relative_to(path))
        if f.name == "zarr.json":
            doc = json.loads(f.read_text())
            doc.get("attributes", {}).get("xafm", {}).pop("provenance", None)
            out[key] = doc
        else:
            out[key] = f.read_bytes()
    return out


def write_both_ways(tmp: Path, da, monkeypatch, **kw) -> tuple[dict, dict]:
    fast = omezarr.write(da, tmp / "fast.ome.zarr", fsync=False, **kw)
    with monkeypatch.context() as m:  # every level read back from the store, the z-scale from the store
        m.setattr(writer, "fused", lambda *a: False)
        m.setattr(writer, "store", lambda *a, **k: store.store(*a, **{**k, "histogram": False}))
        slow = omezarr.write(da, tmp / "slow.ome.zarr", fsync=False, **kw)
    return digest(fast), digest(slow)


@st.composite
def stacks(draw):
    t, h, w = draw(st.integers(1, 6)), draw(st.integers(4, 37)), draw(st.integers(4, 37))
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8])))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        a = (rng.normal(size=(t, h, w)) * 30 + rng.uniform(-500, 500)).astype(dtype)
        for _ in range(draw(st.integers(0, 3))):
            a.flat[rng.integers(a.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=(t, h, w), dtype=dtype, endpoint=True)
    levels = draw(st.integers(1, min(3, min(h, w).bit_length())))
    chunks = draw(st.sampled_from([None, (2, 8, 8), (3, 64, 64)]))
    return a, levels, draw(st.sampled_from(reduce.METHODS)), chunks


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=stacks(), as_dask=st.booleans())
def test_stores_are_the_old_paths_bytes(tmp_path_factory, monkeypatch, case, as_dask):
    """Random stacks (odd sizes at each level, NaN/inf, a mask): the store written by the
    fast paths is file for file the one the old paths write, for numpy and dask input."""
    data, levels, method, chunks = case
    tmp = tmp_path_factory.mktemp("s")
    values = dsa.from_array(data, chunks=(2, 9, -1)) if as_dask else data
    da = xafm.stack(values, pixel_size_nm=1.0, times=np.arange(data.shape[0]) * 0.5)
    da = da.afm.with_mask("m", da > float(np.nanmedian(data.astype(np.float64))))
    fast, slow = write_both_ways(tmp, da, monkeypatch, levels=levels, method=method, chunks=chunks)
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == slow[key], key
    ref = data
    for k in range(levels):  # and each level is the reference reduction of the one below
        np.testing.assert_array_equal(zarr.open_array(str(tmp / "fast.ome.zarr" / str(k)))[:], ref)
        ref = old_downsample(ref[:, : ref.shape[1] // 2 * 2, : ref.shape[2] // 2 * 2], method, data.dtype)


def test_numpy_and_dask_stores_are_the_same(tmp_path):
    rng = np.random.default_rng(5)
    data = (rng.normal(size=(9, 45, 33)) * 3 + 100).astype(np.float32)
    data[2, 3, 4] = np.nan
    data[5, 0, 0] = np.inf
    a = digest(omezarr.write(xafm.stack(data, pixel_size_nm=1.0), tmp_path / "n.ome.zarr", levels=3, fsync=False))
    b = digest(omezarr.write(xafm.stack(dsa.from_array(data, chunks=(4, 20, 33)), pixel_size_nm=1.0), tmp_path / "d.ome.zarr", levels=3, fsync=False))
    assert a == b


def test_big_dask_tasks_read_levels_back(tmp_path, monkeypatch):
    """A dask stack whose write units of whole frames would not fit a task builds each
    level from the store, in tasks of write units (same bytes)."""
    calls = []
    monkeypatch.setattr(pyramid, "FUSED_TASK_BYTES", 1000)
    original = pyramid.build_level
    monkeypatch.setattr(writer, "build_level", lambda *a: calls.append(a[3]) or original(*a))
    data = np.random.default_rng(1).normal(size=(4, 20, 20)).astype(np.float32)
    p = omezarr.write(xafm.stack(dsa.from_array(data, chunks=(2, 20, 20)), pixel_size_nm=1.0), tmp_path / "s.ome.zarr", levels=3, fsync=False)
    assert calls == [1, 2]
    np.testing.assert_array_equal(xafm.open(p, level=2).values, old_downsample(old_downsample(data, "mean", data.dtype), "mean", data.dtype))


@pytest.mark.parametrize("as_dask", [False, True])
def test_append_builds_the_same_levels(tmp_path, as_dask):
    rng = np.random.default_rng(2)
    data = rng.normal(size=(7, 21, 19)).astype(np.float32)

    def stack(a, t0):
        return xafm.stack(dsa.from_array(a, chunks=(2, -1, -1)) if as_dask else a, pixel_size_nm=1.0, times=t0 + np.arange(a.shape[0]))

    p = tmp_path / "a.ome.zarr"
    omezarr.write(stack(data[:3], 0), p, levels=3, chunks=(2, 21, 19), fsync=False)
    omezarr.write(stack(data[3:], 3), p, mode="a", append_dim="time", fsync=False)
    ref = data
    for k in range(3):
        np.testing.assert_array_equal(xafm.open(p, level=k).values, ref)
        ref = old_downsample(ref[:, : ref.shape[1] // 2 * 2, : ref.shape[2] // 2 * 2], "mean", data.dtype)
