"""The napari plugin through npe2's own API (no napari, no Qt): the manifest the entry
point names, the reader on every sample, the writers, and where napari is installed its
real layer classes and (with a Qt binding and OpenGL) a Viewer.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
import warnings
from importlib import metadata
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest

import xafm
import xafm.napari_plugin
from tests.samples import SAMPLES, known_stack
from xafm import registry
from xafm.core import lazy, model
from xafm.napari_plugin.arrays import FrameArray
from xafm.napari_plugin.reader import PATTERN_GLOBS, filename_patterns

npe2 = pytest.importorskip("npe2", reason="npe2 (the test extra) reads through the plugin")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _entry_point() -> metadata.EntryPoint:
    (name, value), *_ = PYPROJECT["project"]["entry-points"]["napari.manifest"].items()
    return metadata.EntryPoint(name=name, value=value, group="napari.manifest")


@pytest.fixture(scope="module")
def pm():
    """npe2's plugin manager with xafm registered: from the installed entry point where
    the installed xafm declares it, else from the manifest the pyproject's entry point
    names, resolved by npe2's own entry-point code (which needs the distribution: the
    installed xafm's metadata, whose name the manifest must match)."""
    manager = npe2.PluginManager.instance()
    if "xafm" not in manager._manifests:  # discover() would import every napari plugin: seconds
        installed = metadata.entry_points(group="napari.manifest", name="xafm")
        ep = next(iter(installed), None) or _entry_point()
        manager.register(npe2.PluginManifest._from_entrypoint(ep, metadata.distribution("xafm")))
    return manager


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the samples' own warnings are tested elsewhere
        return npe2.read([str(path)], stack=False, plugin_name="xafm")


# --------------------------------------------------------------------------------------
# the manifest
# --------------------------------------------------------------------------------------
def test_entry_point_names_the_packaged_manifest():
    ep = _entry_point()
    assert ep.name == PYPROJECT["project"]["name"] == "xafm"
    module, _, fname = ep.value.partition(":")
    assert module == "xafm"
    assert (Path(xafm.__file__).parent / fname).is_file()
    assert fname in PYPROJECT["tool"]["setuptools"]["package-data"]["xafm"]
    mf = npe2.PluginManifest._from_entrypoint(ep, metadata.distribution("xafm"))
    assert mf.name == "xafm"
    for cmd in mf.contributions.commands:  # every command resolves to a function
        module_name, _, attr = cmd.python_name.partition(":")
        __import__(module_name)
        assert callable(getattr(sys.modules[module_name], attr)), cmd.python_name


def test_xafm_never_imports_napari_or_npe2():
    """The plugin hands napari plain tuples and dicts, so xafm installs and imports without
    either: no module of the package imports them, even inside a function."""
    found = []
    for path in Path(xafm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("napari", "npe2", "vispy", "qtpy")]
    assert found == []


def test_manifest_patterns_cover_every_format(pm):
    (reader,) = pm.get_manifest("xafm").contributions.readers
    patterns = set(reader.filename_patterns)
    assert reader.accepts_directories
    for fmt in registry.readable():
        for suffix in fmt.suffixes:
            assert f"*{suffix}" in patterns, (fmt.name, suffix)
    assert "*.[0-9][0-9][0-9]" in patterns
    assert patterns == set(filename_patterns()), "regenerate the manifest's filename_patterns from the format table"
    assert all(p in PATTERN_GLOBS for fmt in registry.readable() for p in fmt.patterns), "a name pattern with no glob for napari"
    for name in ("old_bruker.002", "bruker_v91_fastscan_nonsquare.001", "x.SPM", "y.Ome.Tif"):
        assert any(reader is r for r in pm.iter_compatible_readers([f"/data/{name}"])), name
    assert not any(r.plugin_name == "xafm" for r in pm.iter_compatible_readers(["/data/notes.txt"]))


# --------------------------------------------------------------------------------------
# reading every sample
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_every_sample_reads_as_layers(sample, pm, tmp_path):
    path = sample.make(tmp_path)
    assert any(r.plugin_name == "xafm" for r in pm.iter_compatible_readers([str(path)]))
    layers = _read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da = xafm.open(path, chunks={})
        channels = xafm.channels(path)
    images = [layer for layer in layers if layer[2] == "image"]
    assert len(images) == len(channels)
    want = sample.expected()
    shape = tuple(n for n, d in zip(want.shape, want.dims) if d != "channel")
    dims = [d for d in want.dims if d != "channel"]
    t = np.asarray(da.time.values, dtype=np.float64)
    for data, kw, _ in images:
        assert kw["name"].startswith(path.name.split(".")[0] + " ")
        assert isinstance(data, FrameArray), "napari must get the lazily indexed array (no dask graph per frame)"
        assert kw["axis_labels"] == dims
        assert kw["units"][0] == "s" and kw["units"][-2:] == ["nm", "nm"]
        assert kw["translate"][-2:] == pytest.approx([float(da.y[0]), float(da.x[0])])
        assert kw["translate"][0] == t[0]
        assert kw["scale"][0] == pytest.approx((t[-1] - t[0]) / (t.size - 1) if t.size > 1 else 1.0)
        assert kw["metadata"]["xafm"]["time_s"] == pytest.approx(t.tolist())
        lo, hi = kw["contrast_limits"]
        assert lo < hi
        assert kw["colormap"]["name"] == "xafm_afm" and np.shape(kw["colormap"]["colors"]) == (256, 4)
    # the default channel's layer: shape and pixel size from the sample's source
    default = next(
        kw for data, kw, _ in images if kw["metadata"]["xafm"]["channel"] == (want.channel if "channel" not in da.dims else str(da.channel.values[0]))
    )
    data = next(d for d, kw, _ in images if kw is default)
    assert data.shape == shape
    pixel = want.pixel_nm or (float(np.diff(da.y.values[:2])[0]), float(np.diff(da.x.values[:2])[0]))
    assert default["scale"][-2:] == pytest.approx(list(pixel), rel=1e-6)
    # within the values, to the z-scale histogram's precision (float32 with 10 mantissa bits)
    lo, hi = default["contrast_limits"]
    slack = 2e-3 * max(abs(want.stats[0]), abs(want.stats[1]))
    assert want.stats[0] - slack <= lo < hi <= want.stats[1] + slack


def test_masks_become_labels_on_the_image_grid(pm, tmp_path):
    src = known_stack()
    path = registry.write("h5", src, tmp_path / "known.h5")
    layers = _read(path)
    (image,) = [layer for layer in layers if layer[2] == "image"]
    (labels,) = [layer for layer in layers if layer[2] == "labels"]
    (name, mask), *_ = model.masks(src).items()
    assert name in labels[1]["name"]
    assert np.array_equal(np.asarray(labels[0]), mask.values.astype(np.uint8))
    for key in ("scale", "translate", "units", "axis_labels"):
        assert labels[1][key] == image[1][key], key
    assert image[1]["scale"] == pytest.approx([0.16, 1.5, 2.0])  # the mean of times 0 ... 0.8 over 5 steps
    assert image[1]["metadata"]["xafm"]["even_times"] is False
    assert image[1]["metadata"]["operator"] == "ö µ Ω"


def test_a_long_video_reads_only_the_sampled_frames(pm, monkeypatch):
    from tests.helpers import reference, shared_file

    path = shared_file("afm", "asd_sample_0.asd")
    ref = reference("afm")["asd_sample_0.asd"]
    read_elements = []
    real = lazy.LazyArray._read_checked

    def counting(self, key):
        out = real(self, key)
        read_elements.append(out.size)
        return out

    monkeypatch.setattr(lazy.LazyArray, "_read_checked", counting)
    (layer,) = _read(path)
    frame = ref["shape"][1] * ref["shape"][2]
    # the per-frame coordinates (one value per frame each: the frame-header fields) are
    # read at open (docs/data-model.md, "Eager, lazy and dask"); of the frames, the sampled ones
    fields = [n for n in read_elements if n == ref["frames"]]
    frames = [n for n in read_elements if n != ref["frames"]]
    assert len(fields) <= 8, read_elements
    assert 0 < sum(frames) <= 8 * frame < ref["frames"] * frame
    assert layer[1]["scale"] == pytest.approx([ref["frame_time_s"], ref["pixel_to_nm"], ref["pixel_to_nm"]])


def test_napari_shows_a_frame_reading_that_frame_only(pm, monkeypatch):
    """napari's own slicing (its ViewerModel, no Qt) of the reader's layer: the frame shown
    is read alone, without dask, with the reader's contrast limits."""
    components = pytest.importorskip("napari.components", reason="napari is not installed (pip install xafm[napari])")
    from tests.helpers import shared_file

    path = shared_file("afm", "asd_sample_0.asd")
    eager = xafm.open(path)
    (layer,) = _read(path)
    read = []
    real = lazy.LazyArray._read_checked

    def counting(self, key):
        out = real(self, key)
        read.append(np.arange(eager.sizes["time"])[key[0]])
        return out

    monkeypatch.setattr(lazy.LazyArray, "_read_checked", counting)
    monkeypatch.setattr(dsa, "from_array", lambda *a, **k: pytest.fail("a dask array was built"))
    viewer = components.ViewerModel()
    image = viewer.add_image(layer[0], **layer[1])
    assert list(image.contrast_limits) == pytest.approx(layer[1]["contrast_limits"])
    read.clear()
    viewer.dims.set_current_step(0, 5)
    assert [np.atleast_1d(r).tolist() for r in read] == [[5]]
    np.testing.assert_array_equal(image._slice.image.raw, eager.values[5])
    np.testing.assert_array_equal(layer[0][-1], eager.values[-1])


@pytest.mark.parametrize("make", [
    lambda d: d / "notes.txt",
    lambda d: d / "random.h5",
    lambda d: d / "random.asd",
    lambda d: d / "empty_folder",
], ids=["txt", "random-h5", "random-asd", "empty-folder"])  # fmt: skip
def test_no_reader_for_what_xafm_cannot_read(make, pm, tmp_path):
    path = make(tmp_path)
    if path.suffix:
        path.write_bytes(np.random.default_rng(0).bytes(5000) if path.suffix != ".txt" else b"just some notes\n")
    else:
        path.mkdir()
    assert pm.get_command("xafm.get_reader").exec(kwargs={"path": str(path)}) is None
    assert pm.get_command("xafm.get_reader").exec(kwargs={"path": [str(path), str(path)]}) is None


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
WRITE_SUFFIXES = [".ome.tif", ".ome.zarr", ".h5"]


@pytest.mark.parametrize("suffix", WRITE_SUFFIXES)
def test_an_image_layer_writes_and_reads_back(suffix, pm, tmp_path):
    values = np.random.default_rng(4).normal(5.0, 2.0, size=(4, 6, 5)).astype(np.float32)
    kwargs = {"name": "drawn", "scale": [0.25, 1.5, 2.0], "translate": [1.0, 30.0, 12.0], "units": ["s", "nm", "nm"], "metadata": {}}
    mask = np.zeros(values.shape, np.uint8)
    mask[:, 2:4, 1:3] = 3
    written = npe2.write(str(tmp_path / f"out{suffix}"), [(values, kwargs, "image"), (mask, {"name": "grain"}, "labels")], plugin_name="xafm")
    assert written == [str(tmp_path / f"out{suffix}")]
    back = xafm.open(written[0])
    assert np.array_equal(back.values, values)
    assert model.pixel_size_nm(back) == pytest.approx((1.5, 2.0))
    assert model.origin_nm(back) == pytest.approx((30.0, 12.0))
    assert back.time.values == pytest.approx([1.0, 1.25, 1.5, 1.75])
    assert np.array_equal(model.masks(back)["grain"].values, mask != 0)


@pytest.mark.parametrize("suffix", WRITE_SUFFIXES)
def test_a_read_layer_writes_back_its_times_and_attrs(suffix, pm, tmp_path):
    src = known_stack()
    layers = _read(registry.write("h5", src, tmp_path / "known.h5"))
    (image,) = [layer for layer in layers if layer[2] == "image"]
    (written,) = npe2.write(str(tmp_path / f"again{suffix}"), [image], plugin_name="xafm")
    back = xafm.open(written)
    assert np.array_equal(back.values, src.values)
    assert back.time.values == pytest.approx(src.time.values)  # uneven: from the metadata
    assert model.pixel_size_nm(back) == pytest.approx((1.5, 2.0))
    assert back.attrs["operator"] == "ö µ Ω"
    assert model.channel_of(back) == "height"


def test_two_images_are_refused_naming_the_file(pm, tmp_path):
    layer = (np.zeros((1, 3, 3), np.float32), {"name": "a"}, "image")
    with pytest.raises(xafm.WriteError, match="two.h5.*one Image layer"):
        xafm.napari_plugin.write_h5(str(tmp_path / "two.h5"), [layer, layer])
    with pytest.raises(xafm.WriteError, match="flat.h5.*'flat' is not an xafm stack.*4 dims"):
        xafm.napari_plugin.write_h5(str(tmp_path / "flat.h5"), [(np.zeros((1, 1, 3, 3)), {"name": "flat"}, "image")])
    assert not (tmp_path / "two.h5").exists() and not (tmp_path / "flat.h5").exists()


# --------------------------------------------------------------------------------------
# napari itself
# --------------------------------------------------------------------------------------
def test_napari_accepts_the_layer_kwargs(pm, tmp_path):
    layers_mod = pytest.importorskip("napari.layers", reason="napari is not installed (pip install xafm[napari])")
    src = known_stack()
    layers = _read(registry.write("h5", src, tmp_path / "known.h5"))
    (data, kw, _), (mdata, mkw, _) = layers
    image = layers_mod.Image(data, **kw)
    assert list(image.scale) == pytest.approx([0.16, 1.5, 2.0])
    assert [str(u) for u in image.units] == ["second", "nanometer", "nanometer"]
    assert list(image.axis_labels) == ["time", "y", "x"]
    assert image.colormap.name == "xafm_afm"
    assert list(image.contrast_limits) == pytest.approx(kw["contrast_limits"])
    labels = layers_mod.Labels(mdata, **mkw)
    assert list(labels.translate) == list(image.translate)
    # and napari's own layer tuple goes back through the writer
    (written,) = npe2.write(str(tmp_path / "from_napari.ome.tif"), [image.as_layer_data_tuple()], plugin_name="xafm")
    assert model.pixel_size_nm(xafm.open(written)) == pytest.approx((1.5, 2.0))


SMOKE = """
import sys

import numpy as np

try:  # OpenGL first (cheap, before importing napari): napari draws every layer with it
    from qtpy.QtWidgets import QApplication
    from vispy import app as vispy_app, scene
    from vispy.gloo import gl

    qt = QApplication.instance() or QApplication([])
    vispy_app.use_app(qt.__module__.split(".")[0].lower())
    canvas = scene.SceneCanvas(show=False)
    canvas.set_current()
    renderer = gl.glGetParameter(gl.GL_RENDERER)
    canvas.close()
except Exception as exc:
    renderer = f"{type(exc).__name__}: {exc}"
if not renderer or "Error" in str(renderer):
    print(f"NO_OPENGL {renderer!r}")
    sys.exit(3)
import napari, npe2

pm = npe2.PluginManager.instance()
if "xafm" not in pm._manifests:  # the installed xafm may predate the entry point
    pm.register(npe2.PluginManifest.from_file(sys.argv[2]))
viewer = napari.Viewer(show=True)  # hidden (show=False), the canvas is never drawn: its screenshot is black
layers = viewer.open(sys.argv[1], plugin="xafm")
viewer.layers[-1].visible = False  # the mask (on top) hidden: the image shows
viewer.reset_view()
shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
h, w = shot.shape[:2]
centre = shot[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].reshape(-1, 3)
lut = np.round(np.asarray(layers[0].colormap.colors)[:, :3] * 255).astype(int)
far = int(np.abs(centre[:, None, :] - lut[None]).max(axis=2).min(axis=1).max())
print("SMOKE", len(layers), [tuple(float(s) for s in layer.scale) for layer in layers][0], layers[0].colormap.name, far, int(np.ptp(centre)))
viewer.close()
"""


def _gl_environment() -> tuple[list[str], dict[str, str]]:
    """How to start the smoke test's child so it can have OpenGL: on a virtual X screen
    from ``xvfb-run`` where there is one (Mesa's llvmpipe renders; no window on the user's
    screen), else on the user's X display (a window shows for a few seconds), else on
    Qt's offscreen platform, which in Qt 5 has no GL context without an X display (the
    child then reports NO_OPENGL and the test skips)."""
    xvfb = shutil.which("xvfb-run")
    if xvfb:
        return [xvfb, "-a", "-s", "-screen 0 1024x768x24"], dict(os.environ)
    if os.environ.get("DISPLAY"):
        return [], dict(os.environ)
    return [], {**os.environ, "QT_QPA_PLATFORM": "offscreen"}


def test_napari_viewer_opens_a_file(tmp_path):
    pytest.importorskip("napari", reason="napari is not installed (pip install xafm[napari])")
    pytest.importorskip("qtpy", reason="no Qt binding for napari")
    src = known_stack()
    path = registry.write("h5", src, tmp_path / "known.h5")
    prefix, env = _gl_environment()
    out = subprocess.run(
        [*prefix, sys.executable, "-c", SMOKE, str(path), str(ROOT / "xafm" / "napari.yaml")],
        capture_output=True, text=True, env=env, timeout=180, cwd=ROOT,
    )  # fmt: skip
    if out.returncode == 3 and "NO_OPENGL" in out.stdout:
        how = "under xvfb-run" if prefix else f"DISPLAY={env['DISPLAY']}" if env.get("DISPLAY") else "Qt's offscreen platform: no X display, no xvfb-run"
        pytest.skip(f"no OpenGL context for Qt ({how}), which napari's Viewer needs: {out.stdout.strip()[-200:]}")
    assert out.returncode == 0, out.stderr[-2000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("SMOKE ")]  # xvfb-run mixes stderr in
    _, count, *_, cmap, far, spread = line.split()
    assert count == "2"  # the image and the mask
    assert cmap == "xafm_afm"
    # napari drew the image (not a blank canvas) in the colormap's colours
    assert int(far) <= 3, "the canvas's centre holds colours that are not the colormap's"
    assert int(spread) > 0, "the canvas's centre is one flat colour"
