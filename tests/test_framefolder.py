"""Folders of single-frame files read as one video."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xafm
from tests.helpers import raise_if_dask_computes
from xafm.formats import framefolder
from xafm.testing import write_nanoscope

DATES = ["12:34:38 PM Tue Jul 30 2019", "12:34:41 PM Tue Jul 30 2019", "12:34:47 PM Tue Jul 30 2019", "12:34:50 PM Tue Jul 30 2019"]


def _video(folder, rng, shape=(8, 6), names=("a.003", "a.001", "a.004", "a.002"), dates=DATES):
    folder.mkdir()
    frames = []
    for name, date in zip(names, dates):
        raw = rng.integers(-3000, 3000, size=shape)
        write_nanoscope(folder / name, [{"name": "Height", "raw": raw}], date=date)
        frames.append((date, raw))
    return frames


def test_folder_is_stacked_in_acquisition_order(tmp_path, rng):
    folder = tmp_path / "video"
    _video(folder, rng)
    da = xafm.open(folder)
    assert da.dims == ("time", "y", "x") and da.shape == (4, 8, 6)
    np.testing.assert_allclose(da["time"].values, [0, 3, 9, 12])  # from the recorded start times
    # file a.003 was recorded first (DATES[0]) and so is frame 0
    assert list(da["source_file"].values) == ["a.003", "a.001", "a.004", "a.002"]
    single = xafm.open(folder / "a.003")
    np.testing.assert_array_equal(da.values[0], single.values[0])
    assert da.afm.provenance[-1]["format"] == "folder" and da.afm.provenance[-1]["files"] == 4
    assert xafm.channels(folder) == ["Height"]


def test_folder_is_lazy_and_engine_works(tmp_path, rng):
    folder = tmp_path / "video"
    _video(folder, rng)
    with raise_if_dask_computes():
        lazy = xafm.open(folder, chunks={"time": 1})
    np.testing.assert_array_equal(lazy.values, xafm.open(folder).values)
    via_engine = xr.open_dataarray(folder, engine="xafm")
    assert via_engine.shape == (4, 8, 6)


def test_mixed_frame_sizes_are_refused(tmp_path, rng):
    folder = tmp_path / "video"
    _video(folder, rng)
    write_nanoscope(folder / "a.005", [{"name": "Height", "raw": rng.integers(0, 9, size=(8, 7))}], date="12:35:00 PM Tue Jul 30 2019")
    with pytest.raises(xafm.CorruptFileError, match="a.005.*frame size"):
        xafm.open(folder)


def test_equal_start_times_fall_back_to_file_order(tmp_path, rng):
    folder = tmp_path / "video"
    _video(folder, rng, dates=[DATES[0]] * 4)
    with pytest.warns(xafm.XafmWarning, match="file name order"):
        da = xafm.open(folder)
    assert list(da["source_file"].values) == ["a.001", "a.002", "a.003", "a.004"]
    np.testing.assert_array_equal(da["time"].values, [0, 1, 2, 3])


def test_folders_without_frames_or_with_mixed_formats(tmp_path, rng):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(xafm.UnknownFormatError, match="not a file xafm recognises"):
        xafm.open(empty)
    mixed = tmp_path / "mixed"
    _video(mixed, rng)
    (mixed / "b.jpk").write_bytes(b"II*\x00")
    with pytest.raises(xafm.CorruptFileError, match="mixes frame formats"):
        framefolder.read(mixed)


def test_folder_of_real_jpk_frames(tmp_path):
    import shutil

    from tests.helpers import shared_file

    src = shared_file("afm", "sample_0.jpk")
    folder = tmp_path / "jpk_video"
    folder.mkdir()
    for i in (2, 1, 10):
        shutil.copy(src, folder / f"frame_{i}.jpk")
    with pytest.warns(xafm.XafmWarning, match="distinct start times"):
        da = xafm.open(folder, channel="height_trace")
    assert da.shape == (3, 256, 256)
    assert list(da["source_file"].values) == ["frame_1.jpk", "frame_2.jpk", "frame_10.jpk"]  # natural order
    single = xafm.open(src)
    np.testing.assert_array_equal(da.values[2], single.values[0])
    assert da.afm.pixel_size_nm == pytest.approx(single.afm.pixel_size_nm)
