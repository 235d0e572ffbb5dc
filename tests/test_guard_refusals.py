"""What a writer refuses: stacks that no file could give back as they are (issue 13).

Every writer (the format table's, called directly and through the table, the notebook
preview, an OME-Zarr append) meets every bad stack (zero frames, zero width or height,
times repeated, unordered, NaN or infinite, times that are not numbers) and must raise
a ``StackError`` naming the destination before it creates anything there: no file, no
hidden temporary, no parent folder. A stack with irregular but increasing times must
come back from every reader with exactly those times, never renumbered.
"""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import xafm
from tests.helpers import raise_if_dask_computes
from xafm import animation, registry
from xafm.core.contract import Format
from xafm.core.writable import check_writable
from xafm.formats import omezarr

pytestmark = pytest.mark.filterwarnings("ignore:a 100 nm scale bar")

WRITABLE = registry.writable()
READABLE_WRITERS = [n for n in WRITABLE if registry.get(n).can_read]
TIMES = np.array([0.0, 0.5, 2.0])


def good_stack() -> xr.DataArray:
    values = np.random.default_rng(3).normal(size=(3, 6, 8)).astype(np.float32)
    return xafm.stack(values, pixel_size_nm=2.0, times=TIMES)


def by_hand(times) -> xr.DataArray:
    """A DataArray built without ``xafm.stack`` (so without its checks)."""
    values = np.zeros((len(times), 4, 5), np.float32)
    return xr.DataArray(values, dims=("time", "y", "x"), coords={"time": times, "y": np.arange(4.0), "x": np.arange(5.0)}, name="height")


#: name -> a stack no file can give back (built from a valid one the way users do)
BAD = {
    "zero frames": lambda: good_stack().isel(time=slice(0, 0)),
    "zero width": lambda: good_stack().isel(x=slice(0, 0)),
    "zero height": lambda: good_stack().isel(y=slice(0, 0)),
    "unordered times": lambda: good_stack().isel(time=[2, 0, 1]),
    "repeated times": lambda: good_stack().isel(time=[0, 1, 1]),
    "NaN time": lambda: good_stack().assign_coords(time=[0.0, np.nan, 2.0]),
    "infinite time": lambda: good_stack().assign_coords(time=[0.0, 1.0, np.inf]),
    "by hand, repeated times": lambda: by_hand([0.0, 0.0, 1.0]),
    "datetime times": lambda: good_stack().assign_coords(time=np.array(["2024-01-01", "2024-01-02", "2024-01-03"], "datetime64[ns]")),
}


def dest(tmp_path, fmt):
    """A destination in a folder that does not exist yet (a write would create it)."""
    return tmp_path / "out" / f"s{registry.get(fmt).suffixes[0]}"


def snapshot(path):
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes()


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("fmt", WRITABLE)
def test_every_writer_refuses_a_stack_it_could_not_give_back(fmt, bad, tmp_path):
    path = dest(tmp_path, fmt)
    with pytest.raises(xafm.StackError) as err:
        registry.get(fmt).write(BAD[bad](), path)  # the module's own writer, not the table's front door
    assert str(path) in str(err.value)
    assert list(tmp_path.iterdir()) == [], "a refused write must create nothing (no file, temp or folder)"


@pytest.mark.parametrize("bad", ["zero frames", "unordered times", "NaN time"])
@pytest.mark.parametrize("fmt", READABLE_WRITERS)
def test_a_refused_overwrite_keeps_the_existing_output(fmt, bad, tmp_path):
    path = dest(tmp_path, fmt)
    registry.write(fmt, good_stack(), path)
    before = snapshot(path)
    with pytest.raises(xafm.StackError):
        registry.write(fmt, BAD[bad](), path, overwrite=True)
    assert snapshot(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize("bad", list(BAD))
def test_the_table_refuses_for_a_plugin_writer_too(bad, tmp_path):
    calls = []

    def write(da, path, *, overwrite=False):
        calls.append(path)
        path.write_bytes(b"x")
        return path

    plugin = Format(name="probe", description="a plugin's format", suffixes=(".probe",), write=write)
    with pytest.raises(xafm.StackError, match="refuses to write"):
        registry.write(plugin, BAD[bad](), tmp_path / "s.probe")
    assert calls == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["gif", "mp4"])
@pytest.mark.parametrize("bad", ["zero frames", "unordered times", "NaN time"])
def test_the_preview_refuses_them(kind, bad):
    with pytest.raises(xafm.StackError):
        animation.preview(BAD[bad](), format=kind)


@pytest.mark.parametrize("bad", ["zero frames", "zero width", "unordered times", "NaN time", "repeated times"])
def test_xafm_stack_refuses_them(bad):
    da = BAD[bad]()
    with pytest.raises(xafm.StackError):
        xafm.stack(da.values, pixel_size_nm=1.0, times=da.time.values if da.time.dtype.kind == "f" else None)


@pytest.mark.parametrize(
    "new_times",
    [[1.5, 3.0], [2.0, 3.0], [3.0, np.nan], [4.0, 3.0], [3.0, np.inf]],
    ids=["before-the-last", "equal-to-the-last", "NaN", "unordered", "infinite"],
)
def test_an_append_refuses_times_that_do_not_continue_the_stored_ones(new_times, tmp_path):
    path = tmp_path / "s.ome.zarr"
    omezarr.write(good_stack(), path)
    before = snapshot(path)
    more = good_stack().isel(time=[0, 1]).assign_coords(time=new_times)
    with pytest.raises(xafm.StackError):
        omezarr.write(more, path, mode="a", append_dim="time")
    assert snapshot(path) == before
    np.testing.assert_array_equal(xafm.open(path).time.values, TIMES)


def test_refusing_never_computes_a_dask_stack(tmp_path):
    lazy = good_stack().chunk({"time": 1})
    with raise_if_dask_computes():
        check_writable(lazy, "to_h5")  # a good one passes without computing
        for fmt in ("h5", "zarr", "gif"):
            with pytest.raises(xafm.StackError):
                registry.write(fmt, lazy.isel(time=[1, 0, 2]), dest(tmp_path, fmt))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# irregular but increasing times come back exactly
# --------------------------------------------------------------------------------------
@st.composite
def irregular_times(draw):
    n = draw(st.integers(2, 6))
    start = draw(st.floats(-1e6, 1e6, allow_nan=False))
    steps = draw(st.lists(st.floats(1e-6, 1e5, allow_nan=False), min_size=n - 1, max_size=n - 1))
    times = np.concatenate([[start], start + np.cumsum(steps)])
    assume(np.all(np.diff(times) > 0))  # a tiny step can round away against a large start
    return times


@settings(max_examples=10, deadline=None)
@given(times=irregular_times(), fmt=st.sampled_from(READABLE_WRITERS))
def test_irregular_increasing_times_come_back_exactly(times, fmt, tmp_path_factory):
    values = np.arange(len(times) * 12, dtype=np.float32).reshape(len(times), 3, 4)
    da = xafm.stack(values, pixel_size_nm=1.0, times=times)
    path = tmp_path_factory.mktemp("times") / f"s{registry.get(fmt).suffixes[0]}"
    registry.write(fmt, da, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xafm.exceptions.XafmWarning)  # no "using the frame index"
        back = xafm.open(path)
    np.testing.assert_array_equal(back.time.values, times)


def test_dask_backed_irregular_times_come_back_exactly(tmp_path):
    times = np.array([-3.0, -2.999999, 0.0, 1e-3, 7e4])
    da = xafm.stack(dsa.ones((5, 3, 4), chunks=(2, 3, 4), dtype=np.float32), pixel_size_nm=1.0, times=times)
    for fmt in READABLE_WRITERS:
        path = registry.write(fmt, da, dest(tmp_path, fmt))
        np.testing.assert_array_equal(xafm.open(path).time.values, times, err_msg=fmt)
