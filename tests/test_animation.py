"""Animated exports: GIF, video, numbered frames and the notebook preview
(xafm.animation), read back with Pillow, imageio and ffmpeg, and the provenance each
export carries inside its file."""

from __future__ import annotations

import base64
import copy
import dataclasses
import inspect
import json
import struct
import subprocess
import tempfile
import tracemalloc
import zlib

import dask.array as dsa
import imageio.v2 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

import xafm
from xafm import animation, registry, render
from xafm.animation import sequence, video
from xafm.core import provenance
from xafm.exceptions import FormatError, OutputExistsError, StackError, UnknownOptionError, XafmWarning
from xafm.render import N_DATA, NAN_INDEX, RenderError, RenderOptions

from .helpers import shared_file

GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY


def known_stack(n: int = 3, h: int = 96, w: int = 96):
    """Frames with known values: left third 0 (zmin), middle third 0.5, right third 1
    (zmax), a 2.0 band (clipped to zmax) and -1 band (clipped to zmin), a NaN block."""
    data = np.zeros((n, h, w))
    data[:, :, w // 3 : 2 * w // 3] = 0.5
    data[:, :, 2 * w // 3 :] = 1.0
    data[:, h // 2 - 4 : h // 2 + 4, 2 * w // 3 :] = 2.0
    data[:, h // 2 - 4 : h // 2 + 4, : w // 3] = -1.0
    data[:, 20:26, w // 2 - 3 : w // 2 + 3] = np.nan
    return xafm.stack(data, pixel_size_nm=2.0, times=np.arange(n) * 0.5)


OPTS = dict(zmin=0.0, zmax=1.0, upscale=1)


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        out = []
        for i in range(im.n_frames):
            im.seek(i)
            out.append(np.asarray(im.convert("RGB")))
        return out


def ffmpeg_rgb(path, w: int, h: int) -> np.ndarray:
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(out.stdout, np.uint8).reshape(-1, h, w, 3)


def expected_colours(cmap="xafm_afm"):
    pal = render.build_palette(cmap)
    return pal[0], pal[N_DATA // 2], pal[N_DATA - 1], pal[NAN_INDEX]


def gif_comment(path) -> bytes | None:
    """The GIF's comment as Pillow reads it (None if it has none)."""
    with Image.open(path) as im:
        return im.info.get("comment")


def without_gif_comments(data: bytes) -> bytes:
    """A GIF's bytes with its comment extensions cut out, from a walk over its blocks
    written here (not xafm's)."""
    pos = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    out = bytearray(data[:pos])

    def skip_sub_blocks(i: int) -> int:
        while data[i]:
            i += 1 + data[i]
        return i + 1

    while data[pos] != 0x3B:
        if data[pos] == 0x21:
            end = skip_sub_blocks(pos + 2)
            if data[pos + 1] != 0xFE:
                out += data[pos:end]
        elif data[pos] == 0x2C:
            flags = data[pos + 9]
            table = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
            end = skip_sub_blocks(pos + 10 + table + 1)  # + the LZW minimum code size
            out += data[pos:end]
        else:
            raise AssertionError(f"no GIF block starts with {data[pos]:#x} (at {pos})")
        pos = end
    return bytes(out + data[pos:])


def ffmetadata_tags(path) -> dict[str, str]:
    """The global tags of a video as ``ffmpeg -f ffmetadata`` prints them, unescaped
    (a backslash escapes the next character), keys lower-cased (Matroska's are upper)."""
    text = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    lines, line, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            line.append((text[i + 1], True))
            i += 2
            continue
        if text[i] == "\n":
            lines.append(line)
            line = []
        else:
            line.append((text[i], False))
        i += 1
    lines.append(line)
    tags = {}
    for line in lines:
        if not line or line[0] in ((";", False), ("#", False)):
            continue
        if line[0] == ("[", False):  # [STREAM], [CHAPTER]: the global tags are done
            break
        eq = next(k for k, (c, escaped) in enumerate(line) if c == "=" and not escaped)
        tags["".join(c for c, _ in line[:eq]).lower()] = "".join(c for c, _ in line[eq + 1 :])
    return tags


# --------------------------------------------------------------------------------------
# GIF
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["auto", "fast", "lzw"])
def test_gif_frames_size_duration_loop_and_colours(tmp_path, compression):
    da = known_stack()
    path = animation.to_gif(da, tmp_path / "a.gif", fps=4, compression=compression, **OPTS)
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (96, 96)
        assert im.info["loop"] == 0
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert durations == [250, 250, 250]
    lo, mid, hi, nan = expected_colours()
    for frame in gif_frames(path):  # regions away from the timestamp (top left) and bar (bottom left)
        assert np.all(frame[56:70, 4:28] == lo) and np.all(frame[56:70, 36:60] == mid) and np.all(frame[56:70, 68:92] == hi)
        assert np.all(frame[45:51, 68:92] == hi)  # 2.0 clipped to zmax
        assert np.all(frame[45:51, 4:28] == lo)  # -1 clipped to zmin
        assert np.all(frame[20:26, 45:51] == nan)


def mixed_stack(rng, h: int = 37, w: int = 251):
    """Noisy frames (0, 2) between smooth ones (1, 3): a GIF of both kinds of coding."""
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.sin(xx / 40.0) + np.cos(yy / 9.0)
    data = np.stack([rng.normal(0, 1, (h, w)), smooth, rng.normal(0, 1, (h, w)), smooth + 0.1])
    return xafm.stack(data, pixel_size_nm=1.0, times=[0, 1, 2, 3])


@pytest.mark.parametrize("upscale", [1, 2])
def test_gif_decodes_identically_in_pillow_and_ffmpeg(tmp_path, rng, upscale):
    da = mixed_stack(rng)
    r = render.FrameRenderer(da, RenderOptions(upscale=upscale))
    expected = [r.rgb(r.indices(f, i)) for i, f in r.frames()]
    h, w = r.shape
    for compression in ("auto", "fast", "lzw"):
        path = animation.to_gif(da, tmp_path / f"{compression}.gif", upscale=upscale, compression=compression)
        for got, exp in zip(gif_frames(path), expected):
            np.testing.assert_array_equal(got, exp)
        np.testing.assert_array_equal(ffmpeg_rgb(path, w, h), np.stack(expected))


def gif_frame_sizes(path) -> list[int]:
    """Bytes of each frame's image data, from a walk over the GIF's blocks written here."""
    data = path.read_bytes()
    pos, sizes = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0), []
    while data[pos] != 0x3B:
        start = pos + 10 + 1 if data[pos] == 0x2C else pos + 2
        end = start
        while data[end]:
            end += 1 + data[end]
        if data[pos] == 0x2C:
            sizes.append(end + 1 - start)
        pos = end + 1
    return sizes


def test_gif_auto_codes_smooth_frames_with_lzw_and_noisy_ones_literally(tmp_path, rng):
    da = mixed_stack(rng, 64, 256)
    sizes = {c: gif_frame_sizes(animation.to_gif(da, tmp_path / f"{c}.gif", compression=c, upscale=1)) for c in ("auto", "fast", "lzw")}
    auto, fast, lzw = sizes["auto"], sizes["fast"], sizes["lzw"]
    assert auto[0] == fast[0] and auto[2] == fast[2]  # noise: LZW would save too little
    assert auto[1] == lzw[1] < 0.7 * fast[1] and auto[3] == lzw[3] < 0.7 * fast[3]  # smooth: LZW
    assert lzw[0] > 0.7 * fast[0]  # (the noise really is hard for LZW)
    # the real HS-AFM sample, levelled: every frame LZW-coded, as small as with "lzw"
    real = xafm.open(shared_file("afm", "asd_sample_0.asd")).isel(time=slice(0, 4)).afm.remove_plane().afm.align_rows()
    a = gif_frame_sizes(animation.to_gif(real, tmp_path / "ra.gif", scale_bar_nm=20))
    b = gif_frame_sizes(animation.to_gif(real, tmp_path / "rl.gif", scale_bar_nm=20, compression="lzw"))
    f = gif_frame_sizes(animation.to_gif(real, tmp_path / "rf.gif", scale_bar_nm=20, compression="fast"))
    assert a == b and sum(a) < 0.6 * sum(f)


def test_gif_delays_follow_fps():
    assert animation.gif_delays_cs(3, 5.0) == [20, 20, 20]
    d = animation.gif_delays_cs(30, 3.0)
    assert set(d) == {33, 34} and sum(d) == 1000  # 30 frames at 3 fps: 10 s
    assert animation.gif_delays_cs(4, 100.0) == [2, 2, 2, 2]


def test_gif_fast_fps_warns_and_bad_fps_raises(tmp_path):
    da = known_stack(2)
    with pytest.warns(XafmWarning, match="50 fps"):
        animation.to_gif(da, tmp_path / "f.gif", fps=100, **OPTS)
    for bad in (0, -1, "x", float("nan")):
        with pytest.raises(RenderError, match="fps"):
            animation.to_gif(da, tmp_path / "b.gif", fps=bad, **OPTS)
    with pytest.raises(FormatError, match="compression"):
        animation.to_gif(da, tmp_path / "c.gif", compression="zip", **OPTS)
    assert not (tmp_path / "b.gif").exists()


def test_gif_overwrite_and_provenance(tmp_path):
    da = known_stack(2)
    attrs = copy.deepcopy(da.attrs)
    path = animation.to_gif(da, tmp_path / "a µm.gif", **OPTS)
    with pytest.raises(OutputExistsError):
        animation.to_gif(da, path, **OPTS)
    animation.to_gif(da, path, overwrite=True, **OPTS)
    assert da.attrs == attrs  # the record goes into the file; what the user holds is untouched
    comment = gif_comment(path)
    assert comment.isascii()  # GIF comments are 7-bit text: JSON's escapes carry the rest
    recs = json.loads(comment)
    assert recs[:-1] == provenance.records(da) and recs[0]["type"] == "create"
    rec = recs[-1]
    assert rec["type"] == "export" and rec["format"] == "gif" and rec["path"] == str(path)
    assert rec["zmin"] == 0.0 and rec["zmax"] == 1.0 and rec["frames"] == 2 and rec["fps"] == 5.0
    assert rec["writer"] == "xafm.animation.gif" and rec["compression"] == "auto" and rec["size"] == [96, 96]


def test_gif_lzw_direct_encoder_matches_pillows_writer_and_falls_back_to_it(tmp_path, rng, monkeypatch):
    """The LZW coding calls Pillow's encoder directly (a private entry point): its bytes
    must be those of Pillow's own GIF writer, and a Pillow without that entry point must
    still give a correct GIF through the writer."""
    from xafm.animation import gif as gif_module

    fallback = gif_module._gif_lzw_pillow

    smooth = (np.add.outer(np.arange(40), np.arange(300)) // 3 % 252).astype(np.uint8)
    for indices in (rng.integers(0, 252, (37, 251)).astype(np.uint8), smooth):
        direct = b"".join(bytes(p) for p in gif_module._gif_lzw(indices))
        assert direct == b"".join(bytes(p) for p in gif_module._gif_lzw_pillow(indices))
    da = mixed_stack(rng)
    r = render.FrameRenderer(da, RenderOptions(upscale=1))
    expected = [r.rgb(r.indices(f, i)) for i, f in r.frames()]

    def missing(im):
        raise AttributeError("module 'PIL.Image' has no attribute '_getencoder'")

    monkeypatch.setattr(gif_module, "_pillow_gif_encoder", missing)
    called = []
    monkeypatch.setattr(gif_module, "_gif_lzw_pillow", lambda idx: called.append(1) or fallback(idx))
    path = animation.to_gif(da, tmp_path / "fallback.gif", upscale=1, compression="lzw")
    assert len(called) == len(expected)  # every frame went through the writer
    for got, exp in zip(gif_frames(path), expected, strict=True):
        np.testing.assert_array_equal(got, exp)


# --------------------------------------------------------------------------------------
# true to scale: non-square pixels
# --------------------------------------------------------------------------------------
def disc_stack(dy: float, dx: float, radius_nm: float = 30.0):
    """A disc of ``radius_nm`` (value 1 on 0) in the middle of a field about 98 x 100 nm,
    sampled with pixels of ``dy`` x ``dx`` nm."""
    h, w = round(98 / dy), round(100 / dx)
    yc, xc = h * dy / 2, w * dx / 2
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy + 0.5) * dy - yc) ** 2 + ((xx + 0.5) * dx - xc) ** 2 <= radius_nm**2
    return xafm.stack(np.stack([disc, disc]).astype(float), pixel_size_nm=(dy, dx), times=[0.0, 1.0])


def measure_disc_and_bar(rgb: np.ndarray, disc_colour: np.ndarray) -> tuple[int, int, int]:
    """The disc's width and height (columns and rows holding a pixel of its colour, within
    40/255) and the scale bar's length (the longest run of near-white pixels) in display pixels."""
    near = np.abs(rgb.astype(int) - disc_colour.astype(int)).max(axis=-1) < 40
    rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
    white = (rgb.min(axis=-1) > 215).astype(np.int8)
    runs = 0
    for row in white[rgb.shape[0] // 2 :]:  # the bar is at the bottom
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row, [0]])))
        runs = max(runs, int((edges[1::2] - edges[::2]).max(initial=0)))
    return int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1), runs


def decoded_gif_png_mp4(da, tmp_path, **opts) -> dict[str, np.ndarray]:
    """The first frame of the stack exported as GIF, PNG and MP4, decoded to RGB."""
    gif = gif_frames(animation.to_gif(da, tmp_path / "d.gif", **opts))[0]
    with Image.open(animation.to_frames(da, tmp_path / "seq", **opts) / "frame_0000.png") as im:
        png = np.asarray(im.convert("RGB"))
    h, w = gif.shape[:2]
    mp4 = ffmpeg_rgb(animation.to_video(da, tmp_path / "d.mp4", quality=10, **opts), w + w % 2, h + h % 2)[0, :h, :w]
    return {"gif": gif, "png": png, "mp4": mp4}


DISC_OPTS = dict(cmap="viridis", zmin=0.0, zmax=1.0, scale_bar_nm=20, timestamps=False)


@pytest.mark.parametrize(("dy", "dx"), [(0.245, 0.3125), (0.3125, 0.245)])
def test_non_square_pixels_are_shown_true_to_scale(tmp_path, dy, dx):
    """A 60 nm disc sampled with pixels 28 % longer along one axis is round in the decoded
    GIF, PNG and video: its width and height in display pixels agree within 2, and agree
    with the scale bar's pixels per nm."""
    da = disc_stack(dy, dx)
    yellow = render.build_palette("viridis")[N_DATA - 1]
    decoded = decoded_gif_png_mp4(da, tmp_path, **DISC_OPTS)
    h, w = decoded["gif"].shape[:2]
    assert abs(w / h - (da.sizes["x"] * dx) / (da.sizes["y"] * dy)) < 2 / min(h, w)  # the field's aspect
    for name, rgb in decoded.items():
        width, height, bar = measure_disc_and_bar(rgb, yellow)
        assert abs(width - height) <= 2, (name, width, height)
        px_per_nm = bar / 20.0
        assert abs(width - 60 * px_per_nm) <= 2 and abs(height - 60 * px_per_nm) <= 2, (name, width, height, bar)
    rec = json.loads(gif_comment(tmp_path / "d.gif"))[-1]
    assert rec["display_pixel_nm"][0] == pytest.approx(rec["display_pixel_nm"][1], rel=0.01)
    assert rec["size"] == [w, h]


def test_non_square_pixels_upscaled_keep_the_sampled_shape(tmp_path):
    """Coarse pixels (0.98 x 1.25 nm, upscaled 4x): every sampled pixel of the disc becomes
    a display block of the same physical size, so the disc's extent in display pixels is
    its extent in sampled pixels times each axis's display pixels per sampled pixel."""
    da = disc_stack(0.98, 1.25)
    disc = da.values[0] > 0.5
    n_rows, n_cols = int(disc.any(axis=1).sum()), int(disc.any(axis=0).sum())
    decoded = decoded_gif_png_mp4(da, tmp_path, **DISC_OPTS)
    assert decoded["gif"].shape[0] == 4 * da.sizes["y"]  # the finer axis is upscaled by an integer factor
    for name, rgb in decoded.items():
        width, height, bar = measure_disc_and_bar(rgb, render.build_palette("viridis")[N_DATA - 1])
        px_per_nm = bar / 20.0
        assert abs(height - n_rows * 0.98 * px_per_nm) <= 2 and abs(width - n_cols * 1.25 * px_per_nm) <= 2, (name, width, height, bar)


# --------------------------------------------------------------------------------------
# video
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".avi", "mpeg4"), (".mkv", "h264"), (".webm", "vp9"), (".mov", "h264")])
def test_video_frames_size_fps_codec(tmp_path, suffix, codec):
    da = known_stack(4, 48, 64)
    path = animation.to_video(da, tmp_path / f"v{suffix}", fps=8, **OPTS)
    reader = iio.get_reader(path, "ffmpeg")
    try:
        meta = reader.get_meta_data()
        assert meta["fps"] == 8.0 and meta["size"] == (64, 48) and meta["codec"] == codec
        assert reader.count_frames() == 4
    finally:
        reader.close()
    stream = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    if codec == "h264":  # xafm's own yuv420p frames, tagged with what they are
        assert "yuv420p(tv, smpte170m/bt709/iec61966-2-1" in stream


@pytest.mark.parametrize("suffix", [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"])
def test_video_carries_provenance_in_its_comment_tag(tmp_path, suffix):
    da = known_stack(3, 48, 64)
    attrs = copy.deepcopy(da.attrs)
    path = animation.to_video(da, tmp_path / f"run=1;#2 µm\\x{suffix}", fps=8, **OPTS)  # ffmetadata's special characters
    assert da.attrs == attrs
    recs = json.loads(ffmetadata_tags(path)["comment"])
    assert recs[:-1] == provenance.records(da)
    rec = recs[-1]
    assert rec["type"] == "export" and rec["format"] == suffix[1:] and rec["path"] == str(path) and rec["writer"] == "xafm.animation.video"
    assert rec["zmin"] == 0.0 and rec["zmax"] == 1.0 and rec["frames"] == 3 and rec["fps"] == 8.0 and rec["size"] == [64, 48]
    assert rec["codec"] == video.CONTAINERS[suffix][1] and rec["quality"] == video.DEFAULT_QUALITY


def test_video_provenance_through_a_file_where_pipes_are_not_inherited(tmp_path, monkeypatch):
    """The Windows path: the comment is made before ffmpeg starts and read from a
    temporary file, which is removed."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(video._FfmpegInput, "METADATA_PIPE", False)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    da = known_stack(2)
    path = animation.to_video(da, tmp_path / "v.mp4", **OPTS)
    rec = json.loads(ffmetadata_tags(path)["comment"])[-1]
    assert rec["format"] == "mp4" and rec["zmin"] == 0.0 and rec["frames"] == 2
    assert list(temp.iterdir()) == []


def test_video_long_provenance_whole_in_mp4_cut_to_the_export_record_in_mov(tmp_path):
    da = provenance.append(known_stack(2), provenance.make_record("step", name="notes", params={"text": "é" * 100_000}))
    recs = json.loads(ffmetadata_tags(animation.to_video(da, tmp_path / "v.mp4", **OPTS))["comment"])
    assert recs[:-1] == provenance.records(da) and recs[-2]["params"]["text"] == "é" * 100_000
    with pytest.warns(XafmWarning, match="does not fit the 65535 bytes"):
        path = animation.to_video(da, tmp_path / "v.mov", **OPTS)  # QuickTime text: 16-bit length
    (rec,) = json.loads(ffmetadata_tags(path)["comment"])
    assert rec["type"] == "export" and rec["format"] == "mov" and rec["earlier_records_omitted"] == 2


def test_video_colours_away_from_annotations(tmp_path):
    da = known_stack(2)
    path = animation.to_video(da, tmp_path / "v.mp4", quality=10, **OPTS)
    frames = ffmpeg_rgb(path, 96, 96).astype(int)
    lo, mid, hi, _ = (c.astype(int) for c in expected_colours())
    for f in frames:
        for region, colour in (((slice(58, 68), slice(6, 26)), lo), ((slice(58, 68), slice(38, 58)), mid), ((slice(58, 68), slice(70, 90)), hi)):
            assert np.abs(f[region].reshape(-1, 3).mean(0) - colour).max() < 6


def test_video_odd_sizes_are_padded_not_rescaled(tmp_path):
    ramp = np.add.outer(np.arange(17.0), np.arange(33.0))
    da = xafm.stack(np.stack([ramp, ramp + 1, ramp + 2]), pixel_size_nm=1.0)
    path = animation.to_video(da, tmp_path / "odd.mp4", upscale=1, scale_bar=False, timestamps=False, quality=10)
    frames = ffmpeg_rgb(path, 34, 18)
    assert frames.shape == (3, 18, 34, 3)
    assert frames[:, 17, :, :].max() < 40 and frames[:, :, 33, :].max() < 40  # black padding
    # the image itself is not rescaled: its pixels keep their colours (within codec loss)
    r = render.FrameRenderer(da, RenderOptions(upscale=1, scale_bar=False, timestamps=False))
    first = r.rgb(r.indices(next(r.frames())[1], 0)).astype(int)
    assert np.abs(frames[0, :17, :33].astype(int) - first).mean() < 4


def test_video_errors(tmp_path):
    da = known_stack(2)
    with pytest.raises(FormatError, match="unknown video container '.flv'"):
        animation.to_video(da, tmp_path / "v.flv", **OPTS)
    with pytest.raises(RenderError, match="quality"):
        animation.to_video(da, tmp_path / "v.mp4", quality=11, **OPTS)
    assert not (tmp_path / "v.mp4").exists()


def test_video_default_quality_is_the_documented_crf():
    """CRF 25 (quality 5), chosen in docs/animation.md ("Default quality") from
    bench/video_quality.py; the docs, the signature, the encoder options and the command
    line agree."""
    from pathlib import Path

    from xafm.cli import build_parser

    assert video.DEFAULT_QUALITY == 5
    assert inspect.signature(animation.to_video).parameters["quality"].default == 5
    command, _ = video.video_command(Path("v.mp4"), (64, 48), fps=5.0, codec=None, quality=video.DEFAULT_QUALITY, preset=None)
    assert command[command.index("-crf") + 1] == "25" and command[command.index("-preset") + 1] == "ultrafast"
    assert command[command.index("-pix_fmt", command.index("-c:v")) + 1] == "yuv420p"
    docs = (Path(__file__).resolve().parents[1] / "docs" / "animation.md").read_text()
    assert "`quality` 0\u201310 (default 5)" in docs and "5 \u2192 CRF 25" in docs  # en dash, arrow
    args = build_parser().parse_args(["convert", "in.h5", "--make-video"])
    assert args.video_quality == 5


def test_video_default_quality_on_a_real_clip(tmp_path):
    """On 6 frames of the real .asd sample, levelled and rendered as exported (2x), the
    default file lies between quality 3's and 7's in size and decodes within the
    documented 27.5 dB PSNR of the rendered RGB frames (28.3 dB measured; quality 4 gives
    27.1 dB, quality 3 25.8 dB)."""
    real = xafm.open(shared_file("afm", "asd_sample_0.asd")).isel(time=slice(0, 6)).afm.remove_plane().afm.align_rows().load()
    r = render.FrameRenderer(real, RenderOptions(), pad_to=2, action="to_video")
    rendered = np.stack([r.rgb(r.indices(f, i)) for i, f in r.frames()]).astype(np.float64)
    w, h = r.size
    default = animation.to_video(real, tmp_path / "d.mp4", fsync=False)
    sizes = {q: animation.to_video(real, tmp_path / f"q{q}.mp4", quality=q, fsync=False).stat().st_size for q in (3, 7)}
    assert sizes[3] < default.stat().st_size < sizes[7]
    decoded = ffmpeg_rgb(default, w, h)
    assert decoded.shape == rendered.shape
    psnr = 10 * np.log10(255.0**2 / np.mean((decoded - rendered) ** 2))
    assert psnr > 27.5, psnr


def test_video_ffmpeg_failure_names_file_and_reason(tmp_path):
    target = tmp_path / "v.mp4"
    target.write_bytes(b"keep me")
    with pytest.raises(xafm.WriteError, match=r"v\.mp4.*ffmpeg (stopped|failed).*(Unknown encoder|no_such_encoder)"):
        animation.to_video(known_stack(4), target, codec="no_such_encoder", overwrite=True, **OPTS)
    assert target.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_video_error_while_rendering_stops_ffmpeg_and_leaves_nothing(tmp_path, monkeypatch):
    started = []
    real_init = video._FfmpegInput.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        started.append(self)

    calls = {"n": 0}
    real_yuv = render.FrameRenderer.yuv420

    def failing(self, idx, out=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory")
        return real_yuv(self, idx, out)

    monkeypatch.setattr(video._FfmpegInput, "__init__", spy)
    monkeypatch.setattr(render.FrameRenderer, "yuv420", failing)
    with pytest.raises(xafm.WriteError, match="out of memory"):
        animation.to_video(known_stack(6), tmp_path / "v.mp4", **OPTS)
    assert list(tmp_path.iterdir()) == []
    assert len(started) == 1 and started[0]._proc.returncode is not None  # killed and reaped


def test_video_fractional_fps_is_exact(tmp_path):
    path = animation.to_video(known_stack(3), tmp_path / "v.mp4", fps=1 / 3, **OPTS)
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert n == 3 and secs == pytest.approx(9.0, abs=0.02)  # "0.33" fps would give 9.09 s


# --------------------------------------------------------------------------------------
# numbered frames
# --------------------------------------------------------------------------------------
def test_frames_png_names_palette_and_indices(tmp_path):
    da = known_stack(12)
    folder = animation.to_frames(da, tmp_path / "seq", **OPTS)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"frame_{i:04d}.png" for i in range(12)]
    r = render.FrameRenderer(da, RenderOptions(**OPTS))
    frames = dict(r.frames())
    with Image.open(folder / "frame_0007.png") as im:
        assert im.mode == "P" and im.size == (96, 96)
        np.testing.assert_array_equal(np.asarray(im), r.indices(frames[7], 7))
        np.testing.assert_array_equal(np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)[:256], r.palette)


def test_frames_jpeg_and_errors(tmp_path):
    da = known_stack(2)
    folder = animation.to_frames(da, tmp_path / "jpg", fmt="jpeg", prefix="img", **OPTS)
    assert sorted(p.name for p in folder.iterdir()) == ["img_0000.jpg", "img_0001.jpg"]
    with Image.open(folder / "img_0000.jpg") as im:
        assert im.format == "JPEG" and im.size == (96, 96)
        lo = expected_colours()[0].astype(int)
        assert np.abs(np.asarray(im)[58:68, 6:26].astype(int) - lo).mean() < 8
    with pytest.raises(OutputExistsError):
        animation.to_frames(da, folder, **OPTS)
    with pytest.raises(FormatError, match="fmt must be one of"):
        animation.to_frames(da, tmp_path / "x", fmt="bmp", **OPTS)
    with pytest.raises(FormatError, match="prefix"):
        animation.to_frames(da, tmp_path / "x", prefix="a/b", **OPTS)


@pytest.mark.parametrize(("fmt", "key"), [("png", "xafm_provenance"), ("jpeg", "comment")])
def test_frames_carry_provenance_in_every_file(tmp_path, fmt, key):
    da = known_stack(3)
    attrs = copy.deepcopy(da.attrs)
    folder = animation.to_frames(da, tmp_path / "seq", fmt=fmt, **OPTS)
    assert da.attrs == attrs
    texts = []
    for f in sorted(folder.iterdir()):
        with Image.open(f) as im:
            texts.append(im.info[key])  # PNG: the iTXt text (str); JPEG: the COM segment (bytes)
    assert len(texts) == 3 and len(set(texts)) == 1
    recs = json.loads(texts[0])
    assert recs[:-1] == provenance.records(da)
    rec = recs[-1]
    assert rec["type"] == "export" and rec["format"] == fmt and rec["path"] == str(folder) and rec["writer"] == "xafm.animation.sequence"
    assert rec["files"] == 3 and rec["zmin"] == 0.0 and rec["zmax"] == 1.0 and rec["frames"] == 3


def test_png_provenance_is_a_valid_itxt_chunk_before_the_image_data(tmp_path):
    folder = animation.to_frames(known_stack(1), tmp_path / "seq", **OPTS)
    data = (folder / "frame_0000.png").read_bytes()
    chunks, pos = [], 8
    while pos < len(data):  # walk the chunks, checking each CRC
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        pos += 12 + length
    kinds = [k for k, _ in chunks]
    assert kinds == [b"IHDR", b"PLTE", b"iTXt", b"IDAT", b"IEND"]
    keyword, rest = chunks[2][1].split(b"\x00", 1)
    assert keyword == b"xafm_provenance" and rest[:4] == b"\x01\x00\x00\x00"  # compressed, no language
    assert json.loads(zlib.decompress(rest[4:]).decode("utf-8"))[-1]["format"] == "png"


def test_frames_failure_leaves_nothing(tmp_path, monkeypatch):
    da = known_stack(3)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sequence, "png_bytes", boom)
    with pytest.raises(xafm.WriteError, match="disk full"):
        animation.to_frames(da, tmp_path / "seq", **OPTS)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# edge cases
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "case",
    ["one_frame", "constant", "all_nan", "tiny", "odd"],
)
def test_edge_case_stacks_export_everywhere(tmp_path, case, rng):
    data = {
        "one_frame": lambda: rng.normal(0, 1, (1, 40, 40)),
        "constant": lambda: np.full((3, 32, 32), 4.2),
        "all_nan": lambda: np.full((2, 16, 16), np.nan),
        "tiny": lambda: rng.normal(0, 1, (2, 8, 8)),
        "odd": lambda: rng.normal(0, 1, (2, 13, 27)),
    }[case]()
    da = xafm.stack(data, pixel_size_nm=1.0)
    n, h, w = data.shape
    k = render.upscale_factor(h, w)
    opts = dict(scale_bar_nm=None)
    gif = animation.to_gif(da, tmp_path / "a.gif", **opts)
    frames = gif_frames(gif)
    assert len(frames) == n and frames[0].shape == (h * k, w * k, 3)
    video = animation.to_video(da, tmp_path / "a.mp4", **opts)
    reader = iio.get_reader(video, "ffmpeg")
    try:
        assert reader.count_frames() == n
        assert reader.get_meta_data()["size"] == (w * k + (w * k) % 2, h * k + (h * k) % 2)
    finally:
        reader.close()
    folder = animation.to_frames(da, tmp_path / "seq", **opts)
    assert len(list(folder.iterdir())) == n
    centre = frames[0][h * k // 2 - 2 : h * k // 2 + 2, w * k // 2 - 2 : w * k // 2 + 2].reshape(-1, 3)
    _, mid, _, nan = expected_colours()
    if case == "all_nan":
        assert np.all(centre == nan)
    if case == "constant":
        assert np.all(centre == mid)
    if case == "tiny":
        assert k == 40  # 8 px frames grow to 320 px so the annotations are legible


def test_extra_dims_error_names_them(tmp_path):
    da = xafm.stack(np.zeros((2, 4, 4)), pixel_size_nm=1.0).expand_dims(tip=3).transpose("time", "tip", "y", "x")
    for fn, target in ((animation.to_gif, "a.gif"), (animation.to_video, "a.mp4"), (animation.to_frames, "f")):
        with pytest.raises(StackError, match="extra dims \\('tip',\\)"):
            fn(da, tmp_path / target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------
def test_dask_stack_streams_chunk_by_chunk(tmp_path):
    n, size, chunk = 640, 128, 8
    calls: list[int] = []

    def make(block_id=None):
        calls.append(block_id[0])
        rng = np.random.default_rng(block_id[0])
        return rng.normal(0, 1, (chunk, size, size))

    arr = dsa.map_blocks(make, chunks=((chunk,) * (n // chunk), (size,), (size,)), dtype=np.float64, meta=np.empty((0, 0, 0)))
    da = xafm.stack(arr, pixel_size_nm=1.0)
    stack_mb = n * size * size * 8 / 2**20  # 80 MiB
    old = render.RENDER_BLOCK_BYTES
    render.RENDER_BLOCK_BYTES = chunk * size * size * 8  # one chunk per block
    tracemalloc.start()
    try:
        animation.to_frames(da, tmp_path / "seq", upscale=1, timestamps=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        render.RENDER_BLOCK_BYTES = old
    assert len(list((tmp_path / "seq").iterdir())) == n
    # every chunk computed once for the z-scale pass and once for rendering, never all at once
    assert sorted(calls) == sorted(list(range(n // chunk)) * 2)
    assert peak / 2**20 < stack_mb / 3, f"peak {peak / 2**20:.1f} MiB for a {stack_mb:.0f} MiB stack"


def test_dask_and_numpy_render_the_same(tmp_path, rng):
    data = rng.normal(0, 1, (6, 32, 32))
    eager = xafm.stack(data, pixel_size_nm=1.0)
    lazy = xafm.stack(dsa.from_array(data, chunks=(2, 32, 32)), pixel_size_nm=1.0)
    a = animation.to_gif(eager, tmp_path / "a.gif", scale_bar_nm=10)
    b = animation.to_gif(lazy, tmp_path / "b.gif", scale_bar_nm=10)
    # the same file but for the provenance comment (paths, timestamps)
    assert without_gif_comments(a.read_bytes()) == without_gif_comments(b.read_bytes())
    assert len(without_gif_comments(a.read_bytes())) < len(a.read_bytes())
    assert json.loads(gif_comment(a))[-1]["zmin"] == json.loads(gif_comment(b))[-1]["zmin"]


def test_progress_callable(tmp_path):
    seen = []
    animation.to_gif(known_stack(5), tmp_path / "a.gif", progress=lambda d, t: seen.append((d, t)), **OPTS)
    assert seen == [(i, 5) for i in range(1, 6)]


# --------------------------------------------------------------------------------------
# preview
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "mime", "tag"), [("mp4", "video/mp4", "<video"), ("gif", "image/gif", "<img")])
def test_preview_inline_html(tmp_path, fmt, mime, tag):
    da = known_stack(8)
    p = animation.preview(da, format=fmt, max_frames=4, **OPTS)  # every 2nd frame
    html = p._repr_html_()
    assert html.startswith("<div>" + tag) and f"data:{mime};base64," in html and "showing 4 of 8 frames, every 2nd" in html
    payload = base64.b64decode(html.split("base64,", 1)[1].split('"', 1)[0])
    assert payload == p.data and p.n_frames == 4
    saved = p.save(tmp_path / f"p.{fmt}")
    if fmt == "gif":
        assert len(gif_frames(saved)) == 4
    else:
        reader = iio.get_reader(saved, "ffmpeg")
        try:
            assert reader.count_frames() == 4
        finally:
            reader.close()
    assert "xafm Preview: 4 frames" in repr(p)
    # a preview is not an export: no record in its bytes, none on the stack
    assert (gif_comment(saved) if fmt == "gif" else ffmetadata_tags(saved).get("comment")) is None
    assert all(r.get("type") != "export" for r in provenance.records(da))
    with pytest.raises(FormatError):
        animation.preview(da, format="avi")


# --------------------------------------------------------------------------------------
# command-line helpers
# --------------------------------------------------------------------------------------
def test_parse_zlimit():
    assert animation.parse_zlimit("auto") == "auto"
    assert animation.parse_zlimit("None") is None
    assert animation.parse_zlimit("-2.5") == -2.5
    with pytest.raises(RenderError, match="z limit"):
        animation.parse_zlimit("high")


def test_export_animations_writes_what_is_asked(tmp_path):
    da = known_stack(3)
    out = animation.export_animations(da, tmp_path, "run1", gif=True, video="avi", sequence="png", fps=4, **OPTS)
    assert out == {"gif": tmp_path / "run1.gif", "avi": tmp_path / "run1.avi", "frames": tmp_path / "run1_frames"}
    assert len(list(out["frames"].iterdir())) == 3 and out["gif"].exists() and out["avi"].exists()
    assert animation.export_animations(da, tmp_path, "none") == {}
    with pytest.raises(FormatError, match="video format"):
        animation.export_animations(da, tmp_path, "x", video="flv")
    with pytest.raises(OutputExistsError):
        animation.export_animations(da, tmp_path, "run1", gif=True, **OPTS)


def test_export_animations_renders_every_output_with_one_options_object(tmp_path):
    da = known_stack(2)
    out = animation.export_animations(da, tmp_path, "r", gif=True, video="mp4", sequence="png", fps=4, render=RenderOptions(cmap="gray", **OPTS))
    gif_rec = json.loads(gif_comment(out["gif"]))[-1]
    mp4_rec = json.loads(ffmetadata_tags(out["mp4"])["comment"])[-1]
    with Image.open(out["frames"] / "frame_0000.png") as im:
        png_rec = json.loads(im.info["xafm_provenance"])[-1]
    assert gif_rec["cmap"] == mp4_rec["cmap"] == png_rec["cmap"] == "gray"
    assert gif_rec["fps"] == mp4_rec["fps"] == 4.0 and "fps" not in png_rec


# --------------------------------------------------------------------------------------
# the render options: keywords, one object, signatures
# --------------------------------------------------------------------------------------
WRITERS = {"to_gif": animation.to_gif, "to_video": animation.to_video, "to_frames": animation.to_frames, "preview": animation.preview}


def test_render_options_as_keywords_or_one_object(tmp_path):
    da = known_stack(2)
    by_keywords = animation.to_gif(da, tmp_path / "k.gif", cmap="viridis", **OPTS)
    by_object = animation.to_gif(da, tmp_path / "o.gif", render=RenderOptions(cmap="viridis", **OPTS))
    overridden = animation.to_gif(da, tmp_path / "x.gif", render=RenderOptions(cmap="gray", zmin=-5.0, zmax=1.0, upscale=2), cmap="viridis", zmin=0.0, upscale=1)
    for path in (by_object, overridden):
        for got, want in zip(gif_frames(path), gif_frames(by_keywords)):
            np.testing.assert_array_equal(got, want)
    rec = json.loads(gif_comment(overridden))[-1]
    assert rec["cmap"] == "viridis" and rec["zmin"] == 0.0 and rec["upscale"] == 1
    xafm_default = np.asarray(render.build_palette()[0])
    assert not np.array_equal(gif_frames(by_keywords)[0][60, 10], xafm_default)  # viridis, not xafm_afm, at zmin


def test_unknown_or_bad_render_options_are_refused_before_writing(tmp_path):
    da = known_stack(2)
    with pytest.raises(UnknownOptionError, match="did you mean 'scale_bar_nm'"):
        animation.to_gif(da, tmp_path / "a.gif", scale_bar_mn=20)
    with pytest.raises(UnknownOptionError, match="no option 'colour'"):
        da.afm.to_video(tmp_path / "a.mp4", colour="red")
    with pytest.raises(UnknownOptionError, match="did you mean 'upscale'"):
        registry.write("png", da, tmp_path / "f", upscal=2)
    with pytest.raises(RenderError, match="render must be a RenderOptions"):
        animation.to_frames(da, tmp_path / "f", render={"cmap": "gray"})
    with pytest.raises(RenderError, match="zmin .* above zmax"):
        animation.to_video(da, tmp_path / "a.mp4", zmin=2, zmax=1)
    assert list(tmp_path.iterdir()) == []
    da.afm.to_gif(tmp_path / "readme.gif", fps=10, scale_bar_nm=20)  # the README's call
    assert json.loads(gif_comment(tmp_path / "readme.gif"))[-1]["scale_bar_nm"] == 20.0


@pytest.mark.parametrize("name", list(WRITERS))
def test_writer_signatures_show_every_option(name):
    params = inspect.signature(WRITERS[name]).parameters
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values())
    for field in dataclasses.fields(RenderOptions):
        assert params[field.name].kind is inspect.Parameter.KEYWORD_ONLY and params[field.name].default == field.default
    own = {"to_gif": "compression", "to_video": "codec", "to_frames": "jpeg_quality", "preview": "max_frames"}[name]
    assert params["render"].default is None and params[own].kind is inspect.Parameter.KEYWORD_ONLY  # the writer's own options stay
    accessor = inspect.signature(getattr(known_stack(1).afm, name)).parameters
    # the accessor shows the writer's own, without da, and where a URL's file system is reached
    if name != "preview":  # preview writes no file
        assert accessor["storage_options"].kind is inspect.Parameter.KEYWORD_ONLY and accessor["storage_options"].default is None
    assert [p for p in accessor if p != "storage_options"] == list(params)[1:]
    doc = WRITERS[name].__doc__
    assert "Other Parameters" in doc and "nan_color" in doc and "render" in doc


def test_animated_formats_meet_the_contract():
    table = registry.table()  # every declaration is checked while the table is built
    animated = {name: fmt for name, fmt in table.items() if fmt.module.startswith("xafm.animation")}
    assert {n: f.module for n, f in animated.items()} == {
        "gif": "xafm.animation.gif", "mp4": "xafm.animation.video", "m4v": "xafm.animation.video",
        "mov": "xafm.animation.video", "avi": "xafm.animation.video", "mkv": "xafm.animation.video",
        "webm": "xafm.animation.video", "png": "xafm.animation.sequence",
    }  # fmt: skip
    for fmt in animated.values():
        assert fmt.problems() == [] and fmt.suffixes
        assert set(RenderOptions.__dataclass_fields__) <= set(fmt.write_options())
    assert table["png"].folder and not table["gif"].folder
