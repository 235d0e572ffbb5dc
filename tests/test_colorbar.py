"""The colour bar of the animated exports and the notebook preview's caps."""

from __future__ import annotations

import json
import warnings

import dask.array as dsa
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import GifImagePlugin, Image

import xafm
from tests.helpers import shared_file
from xafm import animation, cli
from xafm.render import N_DATA, build_palette, colormap, zscale

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


# ------------------------------------------------------------------------------------
# real samples: the exported frames decoded, checked against the colormap's LUT, the
# z-scale of xafm.render.zscale and the labels drawn here with Pillow's own font
# ------------------------------------------------------------------------------------
def _asd(frames: slice):
    return lambda: xafm.open(shared_file("afm", "asd_sample_0.asd")).isel(time=frames)


#: sample -> (its stack, the decimals its labels need: about two digits of the z-limits'
#: difference, worked out by hand from the spans xafm.render.zscale gives)
REAL = {
    "sample_0.jpk": (lambda: xafm.open(shared_file("afm", "sample_0.jpk")), 0),  # one 256 x 256 frame, 3312 .. 3358 nm
    "asd[0:4]": (_asd(slice(0, 4)), 1),  # HS-AFM video before the approach, nearly flat: -219.4 .. -218.2 nm
    "asd[24:28]": (_asd(slice(24, 28)), 0),  # -249 .. a limit just below 0, written "0 nm"
}


def _decoded(da, folder, fmt: str, colorbar: bool) -> np.ndarray:
    """The export's frames as (n, h, w, 3) RGB, decoded by Pillow (GIF, PNG) or imageio's ffmpeg (MP4)."""
    name = "bar" if colorbar else "plain"
    if fmt == "gif":
        with Image.open(animation.to_gif(da, folder / f"{name}.gif", colorbar=colorbar)) as im:
            frames = []
            for i in range(im.n_frames):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
        return np.stack(frames)
    if fmt == "png":
        out = animation.to_frames(da, folder / name, colorbar=colorbar)
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(out.glob("*.png"))])
    return np.asarray(iio.imread(animation.to_video(da, folder / f"{name}.mp4", colorbar=colorbar)))


def _rendered(text: str, size: int) -> np.ndarray:
    """``text`` as Pillow draws it without antialiasing in its default font at ``size``
    px, cropped to its ink (what a label in the export must look like)."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    im = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(im)
    draw.fontmode = "1"
    draw.text((-left, -top), text, font=font, fill=255)
    return _cropped(np.asarray(im) > 127)


def _cropped(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    assert rows.size and cols.size, "no label here"
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _ink(region: np.ndarray) -> np.ndarray:
    """The white text of an RGB region, cropped to its bounding box."""
    return _cropped(region.min(axis=2) > 160)  # white; the strip's colours (even its white top) lie left of the labels


def _reads(ink: np.ndarray, text: str, exact: bool) -> bool:
    """Whether ``ink`` is ``text`` at some font size (exactly, or for a lossy video mostly)."""
    for size in range(8, 72):
        want = _rendered(text, size)
        if exact and want.shape == ink.shape and np.array_equal(want, ink):
            return True
        if not exact and abs(want.shape[0] - ink.shape[0]) <= 2 and abs(want.shape[1] - ink.shape[1]) <= 2:
            h, w = min(want.shape[0], ink.shape[0]), min(want.shape[1], ink.shape[1])
            a, b = want[:h, :w], ink[:h, :w]
            if (a & b).sum() / (a | b).sum() > 0.6:
                return True
    return False


@pytest.mark.parametrize("fmt", ["gif", "png", "mp4"])
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_sample_colorbar_in_decoded_frames(name, fmt, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the samples' own warnings are tested elsewhere
        make, decimals = REAL[name]
        da = make()
    lo, hi = zscale(da)  # the automatic z-scale, from xafm's public function
    plain, bar = _decoded(da, tmp_path, fmt, False), _decoded(da, tmp_path, fmt, True)
    lossy = fmt == "mp4"
    n, _, w = plain.shape[:3]
    if lossy:
        w -= w % 2 + 2  # the plain video's padding column, and the codec's blur across the edge
    # the margin is right of the frame; the frame's pixels are those of an export without it
    assert bar.shape[0] == n and bar.shape[1] == plain.shape[1] and bar.shape[2] > plain.shape[2]
    diff = np.abs(bar[:, :, :w].astype(int) - plain[:, :, :w].astype(int))
    assert diff.mean() < 6 if lossy else not diff.any()  # H.264 codes frames of other widths a little differently
    margin = bar[0, :, plain.shape[2] :].astype(int)
    # the strip: the margin's columns in the colormap's colours on most rows, its colours
    # running from the colormap's low end at the bottom to its high end at the top
    lut = np.round(np.asarray(colormap(None)(np.linspace(0.0, 1.0, N_DATA)))[:, :3] * 255).astype(int)
    coloured = margin.max(axis=2) - margin.min(axis=2) > 40  # not black, white or grey
    cols = np.nonzero(coloured.sum(axis=0) > margin.shape[0] // 2)[0]
    assert cols.size >= 4 and np.all(np.diff(cols) == 1), "no colour strip in the margin"
    col = cols[cols.size // 2]
    dist = np.abs(margin[:, col, None, :] - lut[None]).max(axis=2)  # (rows, LUT entries)
    nearest, far = dist.argmin(axis=1), dist.min(axis=1)
    coloured = coloured[:, col] & (far <= 12)
    if lossy:  # the strip's near-black low end and white high end blur into the black margin and the labels
        rows = np.nonzero(coloured)[0]
        levels = nearest[rows]
        assert rows.size > 0.6 * margin.shape[0]
        assert levels.max() >= N_DATA - 40 and levels.min() <= 40
        assert np.corrcoef(rows, levels)[0, 1] < -0.99  # high at the top, low at the bottom
    else:  # exactly the LUT's colours (black is not one), every row from the top end to the bottom end
        rows = np.nonzero(far == 0)[0]
        levels = nearest[rows]
        assert rows.size > 0.7 * margin.shape[0] and np.all(np.diff(rows) == 1)
        assert levels[0] == N_DATA - 1 and levels[-1] == 0  # high at the top, low at the bottom
        assert np.all(np.diff(levels) <= 0)
    # the labels right of the strip: the high limit at the top, the low one at the bottom,
    # each with the unit, in the decimals that show two digits of their difference
    assert da.attrs["units"] == "nm" and 10 ** (1 - decimals) <= hi - lo and (decimals == 0 or hi - lo < 10 ** (2 - decimals))
    text = [f"{v:.{decimals}f}".removeprefix("-" if abs(v) < 0.5 * 10**-decimals else "") + " nm" for v in (lo, hi)]
    right = bar[0, :, plain.shape[2] + cols.max() + 2 :]
    top, bottom = right[: right.shape[0] // 4], right[-right.shape[0] // 4 :]
    assert _reads(_ink(top), text[1], exact=not lossy), f"the top label is not {text[1]!r}"
    assert _reads(_ink(bottom), text[0], exact=not lossy), f"the bottom label is not {text[0]!r}"
    # nothing clipped: the labels end before the margin's right edge
    assert not (right[:, -2:].min(axis=2) > 160).any()


@pytest.mark.parametrize(
    ("zmin", "zmax", "unit", "low", "high"),
    [
        # worked out by hand from the rule (two digits of the span, at most 7 characters, else
        # scientific notation): the widest labels, 8 characters and the unit, which the
        # margin sized for "-8888.8" cut off
        (-1.23e-4, 1.5e-4, "V", "-1.2e-04 V", "0.00015 V"),
        (-12345678.0, -1234567.0, "nm", "-1.2e+07 nm", "-1.2e+06 nm"),
        (3312.4, 3357.5, "nm", "3312 nm", "3358 nm"),
    ],
)
@pytest.mark.parametrize("side", [32, 128, 512])
def test_the_margin_fits_its_labels(tmp_path, zmin, zmax, unit, low, high, side):
    values = np.linspace(zmin, zmax, side * side).reshape(1, side, side)
    da = xafm.stack(values, pixel_size_nm=1.0, units=unit)
    plain = gif_indices(animation.to_gif(da, tmp_path / "a.gif", zmin=zmin, zmax=zmax))[0]
    frame = np.asarray(Image.open(animation.to_gif(da, tmp_path / "b.gif", zmin=zmin, zmax=zmax, colorbar=True)).convert("RGB"))
    margin = frame[:, plain.shape[1] :]
    cols = strip_columns(gif_indices(tmp_path / "b.gif")[0][:, plain.shape[1] :])
    right = margin[:, cols.max() + 2 :]
    quarter = right.shape[0] // 4
    assert _reads(_ink(right[:quarter]), high, exact=True) and _reads(_ink(right[-quarter:]), low, exact=True)
    ink_cols = np.nonzero((right.min(axis=2) > 160).any(axis=0))[0]
    # whole, and no wider than it needs: the annotations' margin (3 % of the side) to the edge
    assert 1 <= right.shape[1] - 1 - ink_cols.max() <= max(2, round(0.03 * plain.shape[0])) + 1
