"""The command line: demo, info, convert."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xafm
from xafm import cli


def test_demo_exports_and_round_trips_every_format(tmp_path, capsys):
    assert cli.main(["demo", str(tmp_path / "out"), "--frames", "6", "--size", "24"]) == 0
    out = capsys.readouterr().out
    for fmt in ("h5", "npz", "tif"):
        line = next(line for line in out.splitlines() if line.startswith(fmt + " "))
        assert line.rstrip().endswith("yes"), line
    back = xafm.open(tmp_path / "out" / "demo.h5")
    assert back.shape == (6, 24, 24) and set(back.afm.layers) == {"raw"} and set(back.afm.masks) == {"particles"}
    # levelled: the substrate tilt is gone from the data but kept in the raw layer
    assert abs(float(back.isel(time=0).median())) < 1.0 < abs(float(back.afm.layers["raw"].isel(time=0).median()))


def test_info_prints_the_essentials(tmp_path, capsys):
    da = xafm.stack(np.zeros((3, 4, 5)), pixel_size_nm=0.5, times=[0, 1, 2]).afm.mask_threshold(0.0, name="m")
    path = da.afm.to_h5(tmp_path / "s.h5")
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    for needle in ("{'time': 3, 'y': 4, 'x': 5}", "float32", "pixel size:  0.5 nm", "3 frames, 0 .. 2 s", "masks:       m", "channel:     height", "export", "read"):
        assert needle in out, needle


def test_convert_and_errors(tmp_path, capsys):
    src = xafm.stack(np.ones((2, 3, 3)), pixel_size_nm=1.0).afm.remove_plane(keep_layer=True).afm.to_npz(tmp_path / "in.npz")
    assert cli.main(["convert", str(src), "--export", "h5", "tif", "--output-folder", str(tmp_path / "o"), "--output-name", "c", "--raw"]) == 0
    assert (tmp_path / "o" / "c.h5").exists() and (tmp_path / "o" / "c.ome.tif").exists()
    np.testing.assert_array_equal(xafm.open(tmp_path / "o" / "c.h5").values, np.ones((2, 3, 3)))
    capsys.readouterr()
    assert cli.main(["convert", str(src), "--export", "bmp", "--output-folder", str(tmp_path / "o")]) == 2
    assert "unknown format 'bmp'" in capsys.readouterr().err
    assert cli.main(["info", str(tmp_path / "missing.h5")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "xafm.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"xafm {xafm.__version__}"


@pytest.mark.parametrize("group,name", __import__("tests.test_fuzz", fromlist=["REAL_FILES"]).REAL_FILES + [("other", "blobs_image_v04.ome.zarr")])
def test_info_works_on_every_real_file(group, name, capsys):
    from tests.helpers import shared_file

    path = shared_file(group, name)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    da = xafm.open(path, chunks={})
    assert f"dims:        {dict(da.sizes)}" in out
    assert f"channels:    {', '.join(xafm.channels(path))}" in out
    assert "provenance:" in out and "- read" in out


def test_convert_makes_animations_with_playnano_flags(tmp_path, capsys):
    from PIL import Image

    src = xafm.stack(np.random.default_rng(0).normal(size=(4, 16, 16)), pixel_size_nm=2.0).afm.to_h5(tmp_path / "in.h5")
    args = ["convert", str(src), "--make-gif", "--make-video", "avi", "--make-sequence", "--fps", "8", "--cmap", "gray",
            "--zmin", "-1", "--zmax", "1", "--scale-bar-nm", "10", "--no-draw-ts", "--output-folder", str(tmp_path / "o"), "--output-name", "v"]
    assert cli.main(args) == 0
    with Image.open(tmp_path / "o" / "v.gif") as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert len(durations) == 4 and sum(durations) == 500  # 8 fps: 12.5 cs per frame, in whole cs
    assert (tmp_path / "o" / "v.avi").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "o" / "v_frames").iterdir()) == [f"frame_{i:04d}.png" for i in range(4)]
    recs = xafm.open(src).afm.provenance
    assert recs[-1]["type"] == "read"
    assert cli.main(["convert", str(src), "--output-folder", str(tmp_path / "p")]) == 2
    assert "nothing to do" in capsys.readouterr().err


def test_python_dash_m_xafm():
    res = subprocess.run([sys.executable, "-m", "xafm", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"xafm {xafm.__version__}"


def test_convert_checks_every_option_before_writing(tmp_path, capsys):
    src = xafm.stack(np.ones((2, 3, 3)), pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")
    out = tmp_path / "o"
    assert cli.main(["convert", str(src), "--export", "tif", "--make-gif", "--cmap", "no-such-map", "--output-folder", str(out)]) == 2
    assert "unknown colormap 'no-such-map'" in capsys.readouterr().err
    assert not out.exists(), "nothing is written when an option is bad"


@pytest.mark.parametrize("flags", [["--export", "tif", "npz"], ["--make-gif"]])
def test_convert_streams_whole_frames_a_few_at_a_time(tmp_path, monkeypatch, flags):
    """The CLI opens its input with the preferred chunks and never reads it whole: every
    read of the file's pixels covers at most one chunk (here two frames)."""
    from xafm.core import blocks, chunks, lazy

    n, h, w = 10, 16, 16
    values = np.arange(n * h * w, dtype=np.float32).reshape(n, h, w)
    src = xafm.stack(values, pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 2 * h * w * 4)  # two frames per preferred chunk
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 2 * h * w * 4)
    monkeypatch.setattr(xafm.render, "RENDER_BLOCK_BYTES", 2 * h * w * 4)
    frames_per_read = []
    original = lazy.LazyArray._read_checked

    def counted(self, key):
        out = original(self, key)
        if self.path == str(src) and out.ndim == 3:
            frames_per_read.append(out.shape[0])
        return out

    monkeypatch.setattr(lazy.LazyArray, "_read_checked", counted)
    assert cli.main(["convert", str(src), *flags, "--output-folder", str(tmp_path / "o")]) == 0
    assert frames_per_read and max(frames_per_read) <= 2, frames_per_read
    assert sum(frames_per_read) >= n  # every frame was read, in pieces
    if "tif" in flags:
        np.testing.assert_array_equal(xafm.open(tmp_path / "o" / "in.ome.tif").values, values)
