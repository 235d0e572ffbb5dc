"""The colour bar of the animated exports and the notebook preview's caps."""

from __future__ import annotations

import json

import dask.array as dsa
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

import xafm
from xafm import animation, cli
from xafm.render import N_DATA, build_palette

FG, BG = 253, 254


def stack(n: int = 3, h: int = 64, w: int = 96, dy: float = 2.0):
    rng = np.random.default_rng(1)
    data = 3310 + 50 * rng.random((n, h, w))
    return xafm.stack(data, pixel_size_nm=(dy, 2.0), times=np.arange(n) * 0.5)


def gif_indices(path) -> list[np.ndarray]:
    """Every frame's palette indices (Pillow would give frames after the first as RGB)."""
    strategy = GifImagePlugin.LOADING_STRATEGY
    GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    try:
        with Image.open(path) as im:
            out = []
            for i in range(im.n_frames):
                im.seek(i)
                assert im.mode == "P"
                out.append(np.asarray(im).copy())
            return out
    finally:
        GifImagePlugin.LOADING_STRATEGY = strategy


def strip_columns(margin: np.ndarray) -> np.ndarray:
    """Columns of the margin holding data colours (0-251) on most rows: the strip."""
    data = margin < N_DATA
    return np.nonzero(data.sum(axis=0) > margin.shape[0] // 2)[0]


def check_margin(margin: np.ndarray) -> None:
    cols = strip_columns(margin)
    assert cols.size >= 4
    column = margin[:, cols[cols.size // 2]]
    rows = np.nonzero(column < N_DATA)[0]
    levels = column[rows].astype(int)
    assert levels[0] >= N_DATA - 2 and levels[-1] <= 1  # high at the top, low at the bottom
    assert np.all(np.diff(levels) <= 0)
    right = margin[:, cols.max() + 2 :]
    top, bottom = right[: margin.shape[0] // 4], right[-margin.shape[0] // 4 :]
    assert (top == FG).sum() > 20 and (bottom == FG).sum() > 20  # both limits are written


@pytest.mark.parametrize("dy", [2.0, 3.0])  # square and non-square pixels
def test_gif_colorbar_margin_and_unchanged_frames(tmp_path, dy):
    da = stack(dy=dy)
    plain = animation.to_gif(da, tmp_path / "a.gif", zmin=3320, zmax=3350)
    bar = animation.to_gif(da, tmp_path / "b.gif", zmin=3320, zmax=3350, colorbar=True)
    a, b = gif_indices(plain), gif_indices(bar)
    h, w = a[0].shape
    assert b[0].shape[0] == h and b[0].shape[1] > w
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa, fb[:, :w])  # data, scale bar and time unchanged
        check_margin(fb[:, w:])
    record = json.loads(Image.open(bar).info["comment"])[-1]
    assert record["colorbar"] is True and (record["zmin"], record["zmax"]) == (3320.0, 3350.0)


def test_labels_follow_the_recorded_zscale(tmp_path):
    """Automatic z-scales: the legend changes with the limits, and only with them."""
    da = stack()
    one = gif_indices(animation.to_gif(da, tmp_path / "a.gif", colorbar=True))[0]
    same = gif_indices(animation.to_gif(da + 0.0001, tmp_path / "b.gif", colorbar=True))[0]
    other = gif_indices(animation.to_gif(da + 100, tmp_path / "c.gif", colorbar=True))[0]
    w = gif_indices(animation.to_gif(da, tmp_path / "d.gif"))[0].shape[1]
    rec = json.loads(Image.open(tmp_path / "c.gif").info["comment"])[-1]
    assert rec["zmin"] > 3400  # auto limits of the shifted stack
    np.testing.assert_array_equal(one[:, w:], same[:, w:])
    assert (one[:, w:] != other[:, w:]).any()


def test_png_frames_colorbar(tmp_path):
    da = stack()
    a = animation.to_frames(da, tmp_path / "a", zmin=3320, zmax=3350)
    b = animation.to_frames(da, tmp_path / "b", zmin=3320, zmax=3350, colorbar=True)
    fa = np.asarray(Image.open(sorted(a.iterdir())[1]))
    im = Image.open(sorted(b.iterdir())[1])
    fb = np.asarray(im)
    np.testing.assert_array_equal(fa, fb[:, : fa.shape[1]])
    check_margin(fb[:, fa.shape[1] :])
    assert json.loads(im.info["xafm_provenance"])[-1]["colorbar"] is True


def test_mp4_colorbar_even_size_and_colours(tmp_path):
    da = stack(w=95)
    plain = iio.imread(animation.to_video(da, tmp_path / "a.mp4", zmin=3320, zmax=3350), index=0).astype(int)
    bar = iio.imread(animation.to_video(da, tmp_path / "b.mp4", zmin=3320, zmax=3350, colorbar=True), index=0).astype(int)
    assert bar.shape[0] % 2 == 0 and bar.shape[1] % 2 == 0 and bar.shape[1] > plain.shape[1]
    w = plain.shape[1] - 2  # the plain video's padding column aside
    assert np.abs(plain[:, :w] - bar[:, :w]).mean() < 6
    pal = build_palette().astype(int)[:N_DATA]
    margin = bar[:, w + 2 :]
    # the strip's middle column, mapped to the nearest palette colour, runs high to low
    greenish = np.abs(margin - margin.mean(axis=2, keepdims=True)).sum(axis=2) > 30  # coloured, not black/white/grey
    col = int(np.argmax(greenish.sum(axis=0)))
    rows = np.nonzero(greenish[:, col])[0]
    nearest = np.argmin(((margin[rows, col][:, None, :] - pal[None]) ** 2).sum(axis=2), axis=1)
    assert nearest[: len(rows) // 5].mean() > nearest[-len(rows) // 5 :].mean() + 100


def test_cli_colorbar_flag(tmp_path):
    src = xafm.stack(np.random.default_rng(0).random((3, 40, 40)), pixel_size_nm=1.0)
    src.afm.to_h5(tmp_path / "s.h5")
    widths = {}
    for flag in ("--colorbar", "--no-colorbar"):
        out = tmp_path / flag.strip("-")
        assert cli.main(["convert", str(tmp_path / "s.h5"), "--make-gif", "--output-folder", str(out), "--output-name", "s"]
                        + [flag]) == 0  # fmt: skip
        gif = out / "s.gif"
        widths[flag] = Image.open(gif).size[0]
        assert json.loads(Image.open(gif).info["comment"])[-1]["colorbar"] is (flag == "--colorbar")
    assert widths["--colorbar"] > widths["--no-colorbar"]


# ------------------------------------------------------------------------------------
# preview caps
# ------------------------------------------------------------------------------------
def test_preview_of_1000_frames_is_capped(tmp_path):
    da = xafm.stack(np.random.default_rng(2).random((1000, 96, 96)).astype(np.float32), pixel_size_nm=1.0)
    p = animation.preview(da, format="gif", max_pixels=64 * 64, upscale=1)
    html = p._repr_html_()
    assert p.n_frames == 100 and "showing 100 of 1000 frames, every 10th" in html
    assert "downscaled to 48 x 48 (means of 2 x 2 pixels)" in html and "downscaled" in repr(p)
    assert Image.open(p.save(tmp_path / "p.gif")).size == (48, 48)
    full = animation.preview(da.isel(time=slice(0, 100)), format="gif", max_frames=None, max_pixels=None, upscale=1)
    assert len(html) < len(full._repr_html_()) / 3


def test_preview_computes_only_shown_frames():
    n = 60
    calls = []
    frames = dsa.stack([dsa.from_delayed(_frame(i, calls), (32, 32), np.float64) for i in range(n)])
    da = xafm.stack(frames, pixel_size_nm=1.0)

    p = animation.preview(da, format="gif", max_frames=6, upscale=1)
    assert p.n_frames == 6
    assert sorted(set(calls)) == list(range(0, n, 10))


def _frame(i: int, calls: list[int]):
    import dask

    @dask.delayed
    def make() -> np.ndarray:
        calls.append(i)
        return np.full((32, 32), float(i))

    return make()
