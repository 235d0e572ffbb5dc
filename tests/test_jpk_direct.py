"""JPK pages read by byte range after the first read through tifffile (``.jpk`` files and
folders of them): the same values as tifffile, each file with its own layout, and a file
replaced since refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

import xafm
from xafm.exceptions import FileChangedError
from xafm.formats._h5direct import Layout
from xafm.formats.framefolder import FolderFramesArray
from xafm.formats.jpk import JPKPageArray
from xafm.testing.jpk import write_jpk


def _page(da):
    arr = getattr(da, "variable", da)._data
    while not isinstance(arr, JPKPageArray):
        arr = arr.array
    return arr


def _file(path, raw, extra=0):
    """A JPK file of one height channel, after ``extra`` other channels (which move the
    height page's IFD and pixels further into the file)."""
    chans = [{"name": f"c{k}", "retrace": False, "raw": raw + k + 1} for k in range(extra)]
    chans.append({"name": "height", "retrace": False, "raw": raw, "multiplier": 2e-12, "offset": 1e-6})
    return write_jpk(path, chans)


def test_pages_after_the_first_read_come_by_byte_range(tmp_path, rng):
    raw = rng.integers(-500, 500, size=(9, 7)).astype(np.int32)
    p = _file(tmp_path / "x.jpk", raw, extra=2)
    eager = xafm.open(p, channel="height_trace")
    lazy = xafm.open(p, channel="height_trace", lazy=True)
    page = _page(lazy)
    assert page._layout is None
    np.testing.assert_array_equal(lazy.values, eager.values)
    assert isinstance(page._layout, Layout)
    np.testing.assert_array_equal(lazy.values, eager.values)
    np.testing.assert_array_equal(lazy.isel(y=slice(2, 6), x=slice(1, 4)).values, eager.isel(y=slice(2, 6), x=slice(1, 4)).values)


def test_a_folder_whose_files_differ_reads_each_as_its_own(tmp_path, rng):
    """File 1 holds its height page elsewhere (more channels before it) and other values:
    every frame equals that file opened alone, on the first read and after."""
    folder = tmp_path / "video"
    folder.mkdir()
    raws = [rng.integers(-500, 500, size=(9, 7)).astype(np.int32) for _ in range(3)]
    for i, raw in enumerate(raws):
        _file(folder / f"f{i}.jpk", raw, extra=3 if i == 1 else 0)
    with pytest.warns(xafm.XafmWarning, match="file name order"):  # one start time in all three
        lazy = xafm.open(folder, channel="height_trace", lazy=True)
    alone = [xafm.open(folder / f"f{i}.jpk", channel="height_trace").values[0] for i in range(3)]
    for _ in range(2):
        for i in (1, 0, 2):
            np.testing.assert_array_equal(lazy.isel(time=i).values, alone[i])
    arr = lazy.variable._data
    while not isinstance(arr, FolderFramesArray):
        arr = arr.array
    layouts = [_page(v)._layout for v in arr.stacks]
    assert all(isinstance(lay, Layout) for lay in layouts)
    assert layouts[1].offset != layouts[0].offset == layouts[2].offset


def test_a_file_replaced_after_its_layout_was_kept_is_refused(tmp_path, rng, monkeypatch):
    import xafm.core.lazy

    raw = rng.integers(-500, 500, size=(9, 7)).astype(np.int32)
    p = _file(tmp_path / "x.jpk", raw)
    lazy = xafm.open(p, channel="height_trace", lazy=True)
    _ = lazy.values
    assert isinstance(_page(lazy)._layout, Layout)
    other = _file(tmp_path / "other.jpk", raw + 7, extra=1)
    os.replace(other, p)
    with pytest.raises(FileChangedError):
        _ = lazy.values
    # the read's own fstat of the file it opened refuses it too
    monkeypatch.setattr(xafm.core.lazy, "check_unchanged", lambda path, recorded: None)
    with pytest.raises(FileChangedError, match="changed since it was opened"):
        _ = lazy.values
