"""``da.afm.plot``: the instrument's orientation (row 0 at the top, as Fiji and xafm's own
exports show the real samples), equal aspect in nm, the AFM colormap, the exports' z-scale
and scale bar, colour bar and title, grids of frames; only the frames drawn are computed.

Everything is checked on matplotlib's own objects (``AxesImage`` extent, origin, array,
clim, colormap; axes limits and aspect; the colour bar's label), and where it matters on the
rendered pixels too. Profiles and kymographs are in ``tests/test_profile.py``.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import dask.array as dka
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tifffile
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from PIL import Image

import xafm
from tests.helpers import shared_file
from xafm.exceptions import RenderError, StackError, XafmWarning
from xafm.render.plot import FrameGrid

JPK = ("afm", "sample_0.jpk")
OME_TIF = ("other", "multi-channel.ome.tif")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def jpk():
    return xafm.open(shared_file(*JPK))


@pytest.fixture(scope="module")
def ome_channel():
    """Channel C1 of the Bio-Formats test file (its pixel size is unknown: 1 nm)."""
    with pytest.warns(XafmWarning, match="no physical pixel size"):
        return xafm.open(shared_file(*OME_TIF)).isel(channel=1)


def _export(da, tmp_path):
    """xafm's PNG export of the stack, no annotations: the RGB frames and the export record."""
    folder = da.afm.to_frames(tmp_path / "frames", scale_bar=False, timestamps=False)
    frames, record = [], None
    for png in sorted(folder.iterdir()):
        with Image.open(png) as im:
            record = json.loads(im.info["xafm_provenance"])[-1]
            frames.append(np.asarray(im.convert("RGB")))
    return frames, record


def _drawn_top_to_bottom(im) -> np.ndarray:
    """The image's data rows in the order they appear on screen, top to bottom, from
    matplotlib's own rules (not xafm's code): ``origin="upper"`` puts array row 0 at the
    extent's ``top`` value (``extent[3]``), ``"lower"`` at ``bottom``; the axes show their
    second y limit at the top."""
    arr = np.asarray(im.get_array())
    _, _, bottom, top = im.get_extent()
    row0_at = top if im.origin == "upper" else bottom
    last_at = bottom if im.origin == "upper" else top
    shown_at_top = im.axes.get_ylim()[1]
    assert shown_at_top in (pytest.approx(row0_at), pytest.approx(last_at))
    return arr if shown_at_top == pytest.approx(row0_at) else arr[::-1]


def _axes_pixels(im) -> np.ndarray:
    """The rendered RGB pixels inside the image's axes, screen row 0 at the top."""
    fig = im.figure
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    box = im.axes.get_window_extent()
    h = rgba.shape[0]
    return rgba[h - int(box.y1) + 2 : h - int(box.y0) - 2, int(box.x0) + 2 : int(box.x1) - 2, :3].astype(np.float64)


def _as_export_colours(im) -> np.ndarray:
    """The plotted frame coloured by the image's own colormap and limits, as 0-255 RGB."""
    return np.asarray(im.to_rgba(np.asarray(im.get_array()), bytes=True))[..., :3].astype(np.float64)


# --------------------------------------------------------------------------------------
# orientation on the real samples
# --------------------------------------------------------------------------------------
def test_jpk_shows_the_top_of_the_scan_at_the_top_like_the_export(jpk, tmp_path):
    im = jpk.afm.plot()
    shown = _drawn_top_to_bottom(im)
    # docs/formats.md: the .jpk page stores row 0 at the smallest y; xafm's row 0 is the top of the
    # scan area, so the top row on screen is the page's last stored row
    path = shared_file(*JPK)
    with tifffile.TiffFile(path) as tif:
        # JPK's channel tags: 32848 the channel name, 32849 1 for retrace, 0 for trace
        (trace,) = [p for p in tif.pages[1:] if p.tags[32848].value == "height" and p.tags[32849].value == 0]
        page = trace.asarray().astype(np.float64)
    flipped = abs(np.corrcoef(shown.ravel(), np.flipud(page).ravel())[0, 1])
    stored = abs(np.corrcoef(shown.ravel(), page.ravel())[0, 1])
    assert flipped > 1 - 1e-9 and stored < 0.5
    np.testing.assert_array_equal(shown, jpk.values[0])
    # xafm's own PNG export of the same frame: the same pixels, in the same place
    frames, record = _export(jpk, tmp_path)
    k = frames[0].shape[0] // shown.shape[0]
    exported = frames[0][::k, ::k].astype(np.float64)
    ours = _as_export_colours(im)
    assert np.abs(exported - ours).mean() < 3  # 252 palette colours vs matplotlib's 256
    assert np.abs(exported - ours[::-1]).mean() > 10 * np.abs(exported - ours).mean()
    assert im.get_clim() == pytest.approx((record["zmin"], record["zmax"]), rel=1e-12)


def test_ome_tif_is_drawn_as_fiji_and_tifffile_show_it(ome_channel, tmp_path):
    path = shared_file(*OME_TIF)
    fiji = tifffile.imread(path)[1]  # row 0 is the top row in Fiji (the title text, dark end of the ramp)
    im = ome_channel.afm.plot()
    shown = _drawn_top_to_bottom(im)
    np.testing.assert_array_equal(shown, fiji)
    # the rendered picture: dark at the top, light at the bottom, as the file's ramp
    pixels = _axes_pixels(im).mean(axis=(1, 2))
    file_rows = fiji.astype(np.float64).mean(axis=1)
    resampled = np.interp(np.linspace(0, 1, pixels.size), np.linspace(0, 1, file_rows.size), file_rows)
    assert np.corrcoef(pixels, resampled)[0, 1] > 0.97
    assert pixels[: pixels.size // 5].mean() < pixels[-pixels.size // 5 :].mean() - 100
    frames, _ = _export(ome_channel, tmp_path)
    k = frames[0].shape[0] // fiji.shape[0]
    exported = frames[0][::k, ::k].astype(np.float64)
    assert np.abs(exported - _as_export_colours(im)).mean() < 3


def test_what_docs_say_of_xarrays_own_imshow(ome_channel):
    """docs/data-model.md: xarray's default puts row 0 at the bottom with aspect "auto";
    ``yincrease=False`` and ``set_aspect("equal")`` give xafm's picture."""
    fiji = tifffile.imread(shared_file(*OME_TIF))[1]
    frame = ome_channel.isel(time=0)
    default = frame.plot.imshow()
    np.testing.assert_array_equal(_drawn_top_to_bottom(default), fiji[::-1])  # upside down
    assert default.axes.get_aspect() == "auto"
    assert "time = 0.0" in default.axes.get_title() and "channel = C1" in default.axes.get_title()
    with pytest.raises(ValueError, match="aspect"):
        frame.plot.imshow(aspect="equal")
    plt.figure()
    fixed = frame.plot.imshow(yincrease=False)
    fixed.axes.set_aspect("equal")
    ours = ome_channel.afm.plot(ax=plt.figure().gca())
    np.testing.assert_array_equal(_drawn_top_to_bottom(fixed), fiji)
    assert fixed.axes.get_aspect() == ours.axes.get_aspect() == 1.0
    assert fixed.axes.get_ylim() == pytest.approx(ours.axes.get_ylim())


# --------------------------------------------------------------------------------------
# what the picture says
# --------------------------------------------------------------------------------------
def test_extent_aspect_labels_title_and_colormap(jpk):
    im = jpk.afm.plot(frame=0)
    ax = im.axes
    dy, dx = xafm.core.model.pixel_size_nm(jpk)
    y, x = jpk.y.values, jpk.x.values
    assert im.origin == "upper"
    assert im.get_extent() == pytest.approx([x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2])
    assert ax.get_ylim() == pytest.approx((y[-1] + dy / 2, y[0] - dy / 2))  # y runs downward: y = 0 at the top
    assert ax.get_aspect() == 1.0
    assert im.get_cmap().name == "xafm_afm"
    assert im.colorbar.ax.get_ylabel() == "height_trace (nm)"
    assert ax.get_title() == "height_trace, t = 0.00 s"  # no per-frame coordinates (line_rate, start_epoch_ms, ...)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (nm)", "y (nm)")


def test_non_square_pixels_are_shown_true_to_scale():
    da = xafm.stack(np.random.default_rng(0).random((1, 30, 50)), pixel_size_nm=(2.0, 1.0), channel="phase", units="deg")
    fig, ax = plt.subplots(figsize=(8, 8))
    im = da.afm.plot(ax=ax, colorbar=False)
    assert im.get_extent() == pytest.approx([-0.5, 49.5, 59.0, -1.0])
    fig.canvas.draw()
    box = ax.get_window_extent()
    assert box.height / box.width == pytest.approx(60 / 50, rel=0.01)  # 60 nm tall, 50 nm wide
    assert im.axes is ax and ax.get_title() == "phase, t = 0.00 s"


@pytest.mark.parametrize(("channel", "units", "label"), [("amplitude", "V", "amplitude (V)"), ("count", "", "count")])
def test_colour_bar_label_is_the_channel_and_its_unit(channel, units, label):
    da = xafm.stack(np.ones((1, 4, 4)), pixel_size_nm=1.0, channel=channel, units=units)
    assert da.afm.plot().colorbar.ax.get_ylabel() == label


def test_zscale_is_the_exports_over_the_frames_drawn(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(10.0, 2.0, (6, 40, 40))
    data[3, 0, 0] = 1e6  # an outlier the percentiles ignore
    data[5] += 100  # a frame not drawn: it must not move the scale
    da = xafm.stack(data, pixel_size_nm=1.0, times=np.arange(6) * 0.5)
    grid = da.afm.plot(frame=[1, 3])
    clims = {im.get_clim() for im in grid.images}
    assert len(clims) == 1
    lo, hi = clims.pop()
    want = np.percentile(data[[1, 3]], [1, 99])  # docs/animation.md: 1st / 99th percentile within 1/1000 of the spread
    assert (lo, hi) == pytest.approx(tuple(want), abs=(want[1] - want[0]) / 1000)
    _, record = _export(da.isel(time=[1, 3]), tmp_path)
    assert (lo, hi) == (record["zmin"], record["zmax"])  # what the export of the same frames uses
    assert da.afm.plot(frame=1, zmin=None, zmax=None).get_clim() == pytest.approx((data[1].min(), data[1].max()), rel=1e-3)
    assert da.afm.plot(frame=1, vmin=0, vmax=5).get_clim() == (0, 5)
    assert da.afm.plot(frame=1, zmin=2.0, vmax=50).get_clim() == (2.0, 50)


def test_keywords_go_to_imshow_and_ax_is_used():
    da = xafm.stack(np.arange(2 * 8 * 8, dtype=float).reshape(2, 8, 8), pixel_size_nm=1.0)
    fig, ax = plt.subplots()
    im = da.afm.plot(ax=ax, cmap="viridis", interpolation="bilinear", alpha=0.5)
    assert im.axes is ax and im.get_cmap().name == "viridis" and im.get_interpolation() == "bilinear" and im.get_alpha() == 0.5
    assert len(fig.axes) == 2  # the axes and its colour bar
    assert da.afm.plot(colorbar=False, title=False).colorbar is None


def test_nan_pixels_have_the_exports_nan_colour(tmp_path):
    data = np.random.default_rng(4).random((1, 12, 12))
    data[0, 3:6, 4:8] = np.nan
    da = xafm.stack(data, pixel_size_nm=1.0)
    im = da.afm.plot()
    frames, record = _export(da, tmp_path)
    k = frames[0].shape[0] // 12
    exported_nan = frames[0][::k, ::k][3:6, 4:8].reshape(-1, 3)
    assert (exported_nan == exported_nan[0]).all()
    assert "#" + bytes(exported_nan[0]).hex() == record["nan_color"]
    drawn = _as_export_colours(im)[3:6, 4:8].reshape(-1, 3)
    np.testing.assert_array_equal(drawn, np.broadcast_to(exported_nan[0], drawn.shape))
    assert np.asarray(im.to_rgba(np.ma.masked_invalid(data[0]), bytes=True))[4, 5, 3] == 255  # opaque, not matplotlib's transparent
    red = da.afm.plot(nan_color="red")
    assert tuple(_as_export_colours(red)[4, 5]) == (255, 0, 0)


# --------------------------------------------------------------------------------------
# selecting frames, grids
# --------------------------------------------------------------------------------------
@pytest.fixture
def twelve():
    data = np.random.default_rng(2).random((12, 10, 16))
    return xafm.stack(data, pixel_size_nm=1.5, times=np.arange(12) * 0.5)


def test_frame_and_time_select_one_frame(twelve):
    assert np.array_equal(twelve.afm.plot(frame=-1).get_array(), twelve.values[11])
    im = twelve.afm.plot(time=0.74)  # nearest: 0.5 s (frame 1), not 1.0 s
    assert np.array_equal(im.get_array(), twelve.values[1]) and im.axes.get_title() == "height, t = 0.50 s"
    assert np.array_equal(twelve.afm.plot().get_array(), twelve.values[0])
    assert np.array_equal(twelve.isel(time=4).afm.plot().get_array(), twelve.values[4])  # a (y, x) frame
    assert twelve.isel(time=4).afm.plot().axes.get_title() == "height, t = 2.00 s"


def test_several_frames_make_a_grid_with_one_colour_bar(twelve):
    grid = twelve.afm.plot(frame=slice(0, 12, 2), col_wrap=4)
    assert isinstance(grid, FrameGrid) and grid.axs.shape == (2, 4) and grid.frames == [0, 2, 4, 6, 8, 10]
    assert [ax.get_visible() for ax in grid.axs.flat] == [True] * 6 + [False] * 2
    for k, im in zip([0, 2, 4, 6, 8, 10], grid.images):
        assert np.array_equal(im.get_array(), twelve.values[k])
        assert im.axes.get_title() == f"t = {0.5 * k:.2f} s" and im.origin == "upper" and im.axes.get_aspect() == 1.0
    assert grid.cbar.ax.get_ylabel() == "height (nm)" and grid.fig._suptitle.get_text() == "height"
    assert len(grid.fig.axes) == 9  # eight panels and one colour bar
    by_time = twelve.afm.plot(time=[0.0, 5.4])
    assert by_time.frames == [0, 11] and by_time.axs.shape == (1, 2)
    assert twelve.afm.plot(frame=[3]).axs.shape == (1, 1)  # a list of one is still a grid


def test_bad_selections_and_stacks_fail_clearly(twelve):
    with pytest.raises(RenderError, match=r"frame 12 is out of range: the stack has 12 frames \(0..11\)"):
        twelve.afm.plot(frame=12)
    with pytest.raises(RenderError, match="not both"):
        twelve.afm.plot(frame=1, time=0.5)
    with pytest.raises(RenderError, match="selects no frame"):
        twelve.afm.plot(frame=slice(5, 5))
    with pytest.raises(RenderError, match="ax= takes one frame"):
        twelve.afm.plot(frame=[0, 1], ax=plt.gca())
    with pytest.raises(RenderError, match="col_wrap"):
        twelve.afm.plot(frame=[0, 1], col_wrap=0)
    with pytest.raises(RenderError, match="origin='upper'"):
        twelve.afm.plot(origin="lower")
    multi = twelve.expand_dims(channel=["a", "b"], axis=1)
    with pytest.raises(StackError, match=r"extra dims \('channel',\)"):
        multi.afm.plot()


# --------------------------------------------------------------------------------------
# scale bar
# --------------------------------------------------------------------------------------
def _bars(ax):
    return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]


def test_scale_bar_has_the_exports_length(jpk, tmp_path):
    im = jpk.afm.plot(scale_bar=True)
    (bar,) = _bars(im.axes)
    folder = jpk.afm.to_frames(tmp_path / "f")
    with Image.open(next(folder.iterdir())) as png:
        exported_nm = json.loads(png.info["xafm_provenance"])[-1]["scale_bar_nm"]
    (rect,) = bar.size_bar.get_children()
    assert rect.get_width() == exported_nm == 50.0
    assert bar.txt_label.get_text() == "50 nm"
    assert _bars(jpk.afm.plot(figsize=(4, 4)).axes) == []
    (bar,) = _bars(jpk.afm.plot(scale_bar=True, scale_bar_nm=100, figsize=(4, 4)).axes)
    assert bar.txt_label.get_text() == "100 nm"
    with pytest.warns(XafmWarning, match="does not fit"):
        im = jpk.afm.plot(scale_bar=True, scale_bar_nm=1e5, figsize=(4, 4))
    (bar,) = _bars(im.axes)
    assert bar.txt_label.get_text() == "50 nm"
    with pytest.warns(XafmWarning, match="does not fit") as caught:
        grid = jpk.isel(time=[0, 0, 0]).afm.plot(frame=[0, 1, 2], scale_bar=True, scale_bar_nm=1e5)
    assert len(caught) == 1 and [len(_bars(im.axes)) for im in grid.images] == [1, 1, 1]


# --------------------------------------------------------------------------------------
# dask: only the frames drawn are computed
# --------------------------------------------------------------------------------------
def test_only_the_frames_drawn_are_computed():
    read: list[int] = []

    def load(block, block_info=None):
        read.append(block_info[None]["chunk-location"][0])
        return block

    base = dka.from_array(np.random.default_rng(3).random((20, 16, 16)), chunks=(1, 16, 16))
    da = xafm.stack(base.map_blocks(load, dtype=base.dtype), pixel_size_nm=1.0)
    grid = da.afm.plot(frame=[2, 5, 17])
    assert sorted(read) == [2, 5, 17]
    np.testing.assert_array_equal(grid.images[1].get_array(), base[5].compute())
