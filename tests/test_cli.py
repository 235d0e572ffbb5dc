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


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("convert", ["--export", "tif", "npz"]),
        ("convert", ["--make-gif"]),
        ("process", ["--processing", "remove_plane; align_rows:method=mean", "--export", "tif,h5"]),
        ("process", ["--processing", "remove_plane; mask_threshold:threshold=5; clear", "--make-gif"]),
    ],
)
def test_convert_streams_whole_frames_a_few_at_a_time(tmp_path, monkeypatch, command, flags):
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
    assert cli.main([command, str(src), *flags, "--output-folder", str(tmp_path / "o")]) == 0
    assert frames_per_read and max(frames_per_read) <= 2, frames_per_read
    assert sum(frames_per_read) >= n  # every frame was read, in pieces
    if command == "convert" and "tif" in flags:
        np.testing.assert_array_equal(xafm.open(tmp_path / "o" / "in.ome.tif").values, values)
    if command == "process" and "tif,h5" in flags:
        expected = xafm.stack(values, pixel_size_nm=1.0).afm.remove_plane().afm.align_rows(method="mean").values
        np.testing.assert_allclose(xafm.open(tmp_path / "o" / "in_filtered.ome.tif").values, expected, atol=1e-3)


# --------------------------------------------------------------------------------------
# xafm process: playNano's pipelines, flags and output names
# --------------------------------------------------------------------------------------
def gif_frames_l(path):
    """A GIF's frames as greyscale arrays."""
    from PIL import Image

    out = []
    with Image.open(path) as im:
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("L"), dtype=float))
    return out


def test_process_levels_the_real_asd_into_a_gif_with_contrast(tmp_path, capsys):
    """The issue's new user: ``convert`` of an HS-AFM .asd gives an almost flat GIF (the
    tilt spans the colour scale); ``process`` with playNano's pipeline levels it first."""
    from tests.helpers import reference, shared_file

    path = shared_file("afm", "asd_sample_0.asd")
    ref = reference()["asd_sample_0.asd"]
    out = tmp_path / "o"
    args = ["process", str(path), "--processing", "remove_plane; align_rows", "--export", "h5", "--make-gif", "--output-folder", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr()
    assert "warning" not in printed.err  # the automatic bar fits the 100 nm frames
    assert (out / "asd_sample_0_filtered.gif").exists() and (out / "asd_sample_0_filtered.h5").exists()
    assert cli.main(["convert", str(path), "--make-gif", "--output-folder", str(out), "--output-name", "plain"]) == 0
    levelled, plain = gif_frames_l(out / "asd_sample_0_filtered.gif"), gif_frames_l(out / "plain.gif")
    assert len(levelled) == ref["shape"][0] == 32
    for i in (0, 15):
        lo, hi = np.percentile(levelled[i], [5, 95])
        assert hi - lo > 60, (i, lo, hi)  # a levelled frame uses the colour scale
        plo, phi = np.percentile(plain[i], [5, 95])
        assert phi - plo < 10, (i, plo, phi)  # the unlevelled one is nearly one colour
    back = xafm.open(out / "asd_sample_0_filtered.h5")
    raw = back.afm.layers["raw"].values
    assert raw.shape == tuple(ref["shape"]) and abs(float(raw.mean()) - ref["mean"]) < 1e-6 * abs(ref["mean"])
    # levelled: every frame's fitted plane and row medians gone
    medians = np.median(back.values, axis=2)
    assert np.abs(medians).max() < 1e-9
    assert [r["name"] for r in back.afm.provenance if r["type"] == "step"] == ["remove_plane", "align_rows"]


def test_process_output_names_follow_playnano(tmp_path, capsys):
    src = xafm.stack(np.random.default_rng(1).normal(size=(3, 12, 12)), pixel_size_nm=1.0).afm.to_npz(tmp_path / "scan.npz")
    out = tmp_path / "o"
    args = ["process", str(src), "--processing", "remove_plane", "--export", "tif,npz,h5", "--make-gif", "--make-sequence", "--make-video", "mp4,avi", "--output-folder", str(out)]
    assert cli.main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["scan_filtered.ome.tif", "scan_filtered.npz", "scan_filtered.h5", "scan_filtered.gif", "scan_filtered.mp4", "scan_filtered.avi", "scan_filtered"])
    assert sorted(p.name for p in (out / "scan_filtered").iterdir()) == [f"scan_filtered_{i:04d}.png" for i in range(3)]
    # --output-name x.h5 means x; without processing there is nothing "filtered"
    assert cli.main(["process", str(src), "--export", "h5", "--output-folder", str(tmp_path / "p"), "--output-name", "x.h5"]) == 0
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["x.h5"]
    # only a mask: the values are not filtered (playNano appends _filtered for processed data)
    assert cli.main(["process", str(src), "--processing", "mask_threshold:threshold=0", "--export", "h5", "--output-folder", str(tmp_path / "m")]) == 0
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["scan.h5"]
    assert "m" not in xafm.open(tmp_path / "m" / "scan.h5").afm.masks and len(xafm.open(tmp_path / "m" / "scan.h5").afm.masks) == 1
    capsys.readouterr()


def test_process_raw_exports_the_data_as_read(tmp_path):
    values = np.random.default_rng(2).normal(size=(2, 10, 10)) + np.arange(10)[None, None, :]
    src = xafm.stack(values, pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")
    out = tmp_path / "o"
    assert cli.main(["process", str(src), "--processing", "remove_plane", "--export", "h5", "--make-gif", "--raw", "--output-folder", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in.h5", "in_filtered.gif"]  # bundles raw, animations processed
    np.testing.assert_allclose(xafm.open(out / "in.h5").values, values.astype(np.float32), rtol=1e-6)


def test_process_reads_a_yaml_pipeline_file(tmp_path, capsys):
    values = np.random.default_rng(3).normal(size=(2, 10, 10)) + 3.0
    src = xafm.stack(values, pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")
    steps = tmp_path / "steps.yaml"
    steps.write_text("filters:\n  - name: align_rows\n    method: mean\n  - name: mask_threshold\n    threshold: 0.5\n    params: {name: bumps}\n  - name: clear\n")
    assert cli.main(["process", str(src), "--processing-file", str(steps), "--export", "h5", "--output-folder", str(tmp_path / "o")]) == 0
    back = xafm.open(tmp_path / "o" / "in_filtered.h5")
    expected = values - values.mean(axis=2, keepdims=True)
    np.testing.assert_allclose(back.values, expected, atol=1e-5)
    np.testing.assert_array_equal(back.afm.masks["bumps"].values, expected > 0.5)
    assert "step: align_rows {'method': 'mean'}" in capsys.readouterr().out
    # a string and a file together are refused by argparse, as by playNano
    assert_cli_error(["process", str(src), "--processing", "remove_plane", "--processing-file", str(steps), "--make-gif"], "not allowed with argument")


def assert_cli_error(argv, needle, capsys=None):
    """The command fails with exit 2 and one ``xafm: error:`` line holding ``needle``, no traceback."""
    res = subprocess.run([sys.executable, "-m", "xafm", *argv], capture_output=True, text=True)
    assert res.returncode == 2, (res.returncode, res.stderr)
    errors = [line for line in res.stderr.splitlines() if line.startswith("xafm: error: ")]
    assert len(errors) == 1 and needle in errors[0], res.stderr
    assert "Traceback" not in res.stderr
    return errors[0]


def test_cli_errors_speak_cli(tmp_path):
    src = xafm.stack(np.ones((2, 8, 8)), pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")
    out = tmp_path / "o"
    line = assert_cli_error(["convert", str(src), "--make-gif", "--zmin", "low"], "--zmin")
    assert "auto" in line and "none" in line and "number" in line and "'low'" in line
    assert_cli_error(["process", str(src), "--processing", "remove_plan", "--make-gif", "--output-folder", str(out)], "did you mean 'remove_plane'?")
    assert_cli_error(["process", str(src), "--processing", "align_rows:methd=mean", "--make-gif", "--output-folder", str(out)], "has no parameter 'methd'")
    assert not out.exists(), "a bad pipeline fails before anything is written"
    assert cli.main(["convert", str(src), "--make-gif", "--output-folder", str(out)]) == 0
    line = assert_cli_error(["convert", str(src), "--make-gif", "--output-folder", str(out)], "already exists")
    assert "use --overwrite" in line and "overwrite=True" not in line
    assert_cli_error(["process", str(src), "--export", "bmp"], "unknown format 'bmp'")
    assert_cli_error(["process", str(src), "--make-gif", "--scale-bar-nm", "long"], "use auto, none or a length in nm")
    assert_cli_error(["process", "--make-gif"], "give an INPUT file")


def test_video_quality_flag(tmp_path, capsys):
    """--video-quality is to_video's quality: a higher one gives a bigger file, the export
    record says which; a value outside 0-10 fails before anything is written."""
    import imageio_ffmpeg

    src = xafm.stack(np.random.default_rng(0).normal(size=(4, 48, 48)), pixel_size_nm=2.0).afm.to_h5(tmp_path / "in.h5")
    sizes = {}
    for q in ("1", "9"):
        assert cli.main(["convert", str(src), "--make-video", "--video-quality", q, "--output-folder", str(tmp_path / q)]) == 0
        sizes[q] = (tmp_path / q / "in.mp4").stat().st_size
    assert sizes["1"] < sizes["9"]
    tags = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "9" / "in.mp4"), "-f", "ffmetadata", "-"], capture_output=True, text=True, check=True).stdout
    assert '"quality": 9.0' in tags and '"quality": 1.0' not in tags
    out = tmp_path / "bad"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # argparse's own error, as for every flag's value
        cli.main(["convert", str(src), "--make-video", "--video-quality", "11", "--output-folder", str(out)])
    assert exc.value.code == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert "--video-quality" in line and "0 (smallest) to 10 (best)" in line and "'11'" in line
    assert not out.exists()


def test_warnings_are_one_line(tmp_path):
    src = xafm.stack(np.zeros((2, 100, 100)), pixel_size_nm=1.0).afm.to_h5(tmp_path / "in.h5")  # a 100 nm frame
    res = subprocess.run([sys.executable, "-m", "xafm", "convert", str(src), "--make-gif", "--scale-bar-nm", "100", "--output-folder", str(tmp_path / "o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: a 100 nm scale bar") and "--scale-bar-nm auto" in lines[0], lines
    res = subprocess.run([sys.executable, "-m", "xafm", "convert", str(src), "--make-gif", "--output-folder", str(tmp_path / "p")], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == ""  # the default bar (auto) fits silently


def test_playnano_spellings(tmp_path, capsys):
    values = np.random.default_rng(4).normal(size=(2, 20, 20))
    src = xafm.stack(values, pixel_size_nm=2.0).afm.to_h5(tmp_path / "in.h5")
    base = ["convert", str(src), "--output-folder"]
    assert cli.main([*base, str(tmp_path / "a"), "--export", "hdf5", "tiff", "npz"]) == 0
    assert cli.main([*base, str(tmp_path / "b"), "--export", "'h5,tif,npz'"]) == 0  # playNano strips quotes
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir()) == ["in.h5", "in.npz", "in.ome.tif"]
    # playNano's colormaps drawn with xafm's maps (afm_brown -> xafm_afm, playnano_gold -> xafm_afm_uniform)
    for theirs, ours in (("afm_brown", "xafm_afm"), ("playnano_gold", "xafm_afm_uniform"), ("classic_afm_r", "xafm_afm_r")):
        assert cli.main([*base, str(tmp_path / theirs), "--make-gif", "--cmap", theirs, "--no-draw-ts"]) == 0
        assert cli.main([*base, str(tmp_path / ours), "--make-gif", "--cmap", ours, "--no-draw-ts"]) == 0
        for x, y in zip(gif_frames_l(tmp_path / theirs / "in.gif"), gif_frames_l(tmp_path / ours / "in.gif"), strict=True):
            np.testing.assert_array_equal(x, y)
    # --scale-bar-nm none and 0 (playNano's "no bar") draw what --no-draw-scale draws
    for bar in ("none", "0"):
        assert cli.main([*base, str(tmp_path / f"bar{bar}"), "--make-gif", "--scale-bar-nm", bar]) == 0
    assert cli.main([*base, str(tmp_path / "nobar"), "--make-gif", "--no-draw-scale"]) == 0
    assert cli.main([*base, str(tmp_path / "bar"), "--make-gif"]) == 0
    nobar = gif_frames_l(tmp_path / "nobar" / "in.gif")
    for bar in ("none", "0"):
        for x, y in zip(gif_frames_l(tmp_path / f"bar{bar}" / "in.gif"), nobar, strict=True):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(gif_frames_l(tmp_path / "bar" / "in.gif")[0], nobar[0])
    # --gif-compression: lossless either way; --progress reports on stderr
    capsys.readouterr()
    assert cli.main([*base, str(tmp_path / "fast"), "--make-gif", "--gif-compression", "fast", "--progress"]) == 0
    assert "GIF" in capsys.readouterr().err
    for x, y in zip(gif_frames_l(tmp_path / "fast" / "in.gif"), gif_frames_l(tmp_path / "bar" / "in.gif"), strict=True):
        np.testing.assert_array_equal(x, y)


def test_process_list_prints_the_catalogue(capsys):
    from xafm import processing

    assert cli.main(["process", "--list"]) == 0
    out = capsys.readouterr().out
    for name, entry in processing.catalogue().items():
        assert f"{name}  [{entry.kind}]  {entry.description}" in out
        for p in entry.parameters().values():
            assert p.name in out
    assert "align_rows  [filter]" in out and "parameters: method=median, mask=none, keep_layer=false" in out
    assert "clear  [mask]" in out


@pytest.mark.parametrize(
    ("given", "expected"),
    [("x.h5", "x"), ("x.ome.tif", "x"), ("x.npz", "x"), ("run.2", "run.2"), (" x ", "x"), ("video.gif", "video"), ("x.H5", "x")],
)
def test_output_name_drops_the_suffix_it_may_carry(given, expected):
    from xafm.cli import spellings

    assert spellings.output_name(given, "in.asd") == expected


def test_output_name_defaults_and_refusals():
    from xafm.cli import spellings
    from xafm.exceptions import FormatError

    assert spellings.output_name(None, "/data/scan_01.asd") == "scan_01"
    assert spellings.output_name("", "/data/scan.ome.tif") == "scan"
    assert spellings.output_name(None, "/data/frames/") == "frames"
    for bad in ("a/b", "a:b", "..", "x?"):
        with pytest.raises(FormatError, match="--output-name"):
            spellings.output_name(bad, "in.asd")


def test_export_and_colormap_spellings():
    from xafm.cli import spellings

    assert spellings.export_formats(["tif,npz,h5"]) == ["tif", "npz", "h5"]
    assert spellings.export_formats(["HDF5", "tiff,", ".npz", "h5"]) == ["h5", "tif", "npz"]
    assert spellings.export_formats(['"tif, h5"']) == ["tif", "h5"]
    assert spellings.colormap_name("afm_brown") == "xafm_afm" and spellings.colormap_name("playnano_gold_r") == "xafm_afm_uniform_r"
    assert spellings.colormap_name("viridis") == "viridis"
    assert [spellings.scale_bar(v) for v in ("auto", "AUTO", "none", "0", "25", "2.5")] == ["auto", "auto", None, None, 25.0, 2.5]
