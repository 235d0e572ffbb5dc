"""The z-scale a dask write's tasks bin only the tails for (issue 16) is exactly what
:func:`xafm.core.percentiles.percentiles` gives, or says it cannot tell.

The tasks guess thresholds from a few blocks (first, middle, last) and bin only the values
at or beyond them; the tests feed data whose other blocks make the guess miss, and check
that a miss is caught (never a wrong number), and that the writer then still stores the
exact window.
"""

from __future__ import annotations

import json

import dask.array as dsa
import numpy as np
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xafm
from xafm.core import percentiles as P
from xafm.formats import omezarr


def exact(data: np.ndarray) -> list[float] | None:
    return P.percentiles(xr.DataArray(dsa.from_array(data, chunks=(1, -1, -1))))


def tasks_result(data: np.ndarray, split: int) -> tuple[P.Binning, object]:
    blocks = np.array_split(data, split)
    how = P.binning(blocks[0], blocks[len(blocks) // 2], blocks[-1])
    return how, P.percentiles_of_histogram([P.block_histogram(b, how) for b in blocks], how)


def naive(data: np.ndarray, split: int) -> list[float] | None:
    """What the thresholded histogram gives if read without checking its bins."""
    blocks = np.array_split(data, split)
    how = P.binning(blocks[0], blocks[len(blocks) // 2], blocks[-1])
    hist = P._Histogram(how.ref)
    for keys, counts in (P.block_histogram(b, how) for b in blocks):
        hist.counts[keys] += counts
    found = hist.quantiles([0.01, 0.99])
    return None if found is None else found[0]


@st.composite
def stacks(draw):
    """Float stacks with levels shifting from frame to frame (a drift, a jump in the
    middle of the stack), ties, NaN and inf, and tiny spreads on big offsets."""
    t, h, w = draw(st.integers(1, 12)), draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e3]))
    offset = draw(st.sampled_from([0.0, 1.0, -300.0, 1e4]))
    a = rng.normal(size=(t, h, w)) * scale + offset
    shape = draw(st.sampled_from(["none", "drift", "jump", "ties", "outer"]))
    frames = np.arange(t)[:, None, None]
    if shape == "drift":
        a += frames * scale * draw(st.sampled_from([0.5, 5.0]))
    elif shape == "jump":  # the frames not sampled by the guess lie elsewhere
        a[(frames[:, 0, 0] != 0) & (frames[:, 0, 0] != t // 2) & (frames[:, 0, 0] != t - 1)] += 20 * scale
    elif shape == "ties":
        a = np.round(a / scale) * scale
    elif shape == "outer":  # a few extreme values in unsampled frames
        a[t // 3] *= 50
    a = a.astype(dtype)
    for _ in range(draw(st.integers(0, 3))):
        a.flat[rng.integers(a.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return a, draw(st.integers(1, 6))


@settings(max_examples=200, deadline=None)
@given(case=stacks())
def test_thresholded_histogram_is_exact_or_undecided(case):
    data, split = case
    split = min(split, data.shape[0])
    _, got = tasks_result(data, split)
    if got is not P.ANOTHER_PASS:
        assert got == exact(data)


def test_a_missed_guess_is_caught():
    """The first, middle and last of 30 blocks sit 10 above the rest: the guessed high
    threshold lies above the 99th percentile, the histogram read without the check is
    wrong, and the check says so."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(30, 40, 40)).astype(np.float32)
    data[[0, 15, 29]] += 10
    how, got = tasks_result(data, 30)
    assert how.edges is not None
    assert naive(data, 30) != exact(data)  # the data do mislead the guess
    assert got is P.ANOTHER_PASS


def test_a_good_guess_decides_with_a_few_values_binned():
    rng = np.random.default_rng(4)
    data = (rng.normal(size=(16, 64, 64)).cumsum(axis=2) * 0.1 + 50).astype(np.float32)
    blocks = np.array_split(data, 8)
    how = P.binning(blocks[0], blocks[4], blocks[-1])
    parts = [P.block_histogram(b, how) for b in blocks]
    binned = sum(int(c.sum()) for _, c in parts) - int(((data > how.low) & (data < how.high)).sum())
    assert binned < 0.2 * data.size
    assert P.percentiles_of_histogram(parts, how) == exact(data)


def test_integers_and_empty_guesses_bin_everything():
    ints = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    assert P.binning(ints).edges is None
    assert P.percentiles_of_histogram([P.block_histogram(ints, P.binning(ints))], P.binning(ints)) == exact(ints)
    nan = np.full((2, 3, 3), np.nan, np.float32)
    assert P.binning(nan).edges is None
    assert P.percentiles_of_histogram([P.block_histogram(nan, P.binning(nan))], P.binning(nan)) is None


def test_the_writer_stores_the_exact_window_after_a_miss(tmp_path):
    """A dask stack whose guess misses: the window is the one of the numpy stack (exact)."""
    rng = np.random.default_rng(5)
    data = rng.normal(size=(30, 32, 32)).astype(np.float32)
    data[[0, 15, 29]] += 10  # the blocks the guess is made from (chunks of one frame)
    assert tasks_result(data, 30)[1] is P.ANOTHER_PASS
    windows = []
    for name, values in (("n", data), ("d", dsa.from_array(data, chunks=(1, -1, -1)))):
        p = omezarr.write(xafm.stack(values, pixel_size_nm=1.0), tmp_path / f"{name}.ome.zarr", chunks=(1, 32, 32), levels=2, fsync=False)
        windows.append(json.loads((p / "zarr.json").read_text())["attributes"]["ome"]["omero"]["channels"][0]["window"])
    want = exact(data)
    assert windows[0] == windows[1]
    assert (windows[1]["start"], windows[1]["end"]) == (want[0], want[1])


def test_a_cycling_stack_keeps_the_tail_shortcut():
    """A numpy stack cycling through 4 frames of different levels: the subsample of the
    tail pass picks frames from first to last, not every 4th (which all showed the same
    frame, so the guess missed and the whole stack was binned): the shortcut decides,
    with the numbers of the full histogram."""
    rng = np.random.default_rng(6)
    cycle = rng.normal(size=(4, 64, 64)) + np.array([0.0, 10.0, -20.0, 5.0])[:, None, None]
    data = np.tile(cycle, (16, 1, 1)).astype(np.float32)
    got = P._tail_histogram(data, [0.01, 0.99], P._first_guess(data))
    assert got is not P._UNDECIDED
    assert got[0] == exact(data)
