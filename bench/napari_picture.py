"""Take docs/images/napari_viewer.png: a screenshot of a real napari window that opened the
real ``sample_0.jpk`` through xafm's plugin (``viewer.open(path, plugin="xafm")``).

napari draws with OpenGL, so this needs a display with GL. On a machine without one, the
script runs itself again under a virtual X screen, ``xvfb-run``, where Mesa's software
renderer (llvmpipe) gives the GL context. On Debian: ``apt-get install xvfb libgl1-mesa-dri
libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0`` (the last three are what PyQt5's xcb
platform plugin links to). The window is shown on that screen, not hidden with
``show=False``, because a hidden canvas keeps its initial 800 x 600 size and napari then
places the scale bar outside the visible part.

Run from the project root (needs napari and a Qt binding: ``pip install "napari[pyqt5]"``)::

    PYTHONPATH=. python bench/napari_picture.py [--path FILE] [--out PNG]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "afm" / "sample_0.jpk"
OUT = ROOT / "docs" / "images" / "napari_viewer.png"
SHOWN = "height_trace"  # the one channel left visible; the others stay in the layer list
WINDOW = (1200, 720)  # the window's width x height in screen pixels
SCREEN = "-screen 0 1600x1000x24"


def gl_renderer() -> str:
    """The OpenGL renderer a vispy canvas in this Qt gets ("" where there is no GL context,
    as on Qt's offscreen platform without an X display)."""
    from qtpy.QtWidgets import QApplication
    from vispy import app as vispy_app
    from vispy import scene
    from vispy.gloo import gl

    qt = QApplication.instance() or QApplication([])
    vispy_app.use_app(qt.__module__.split(".")[0].lower())
    canvas = scene.SceneCanvas(show=False)
    canvas.set_current()
    renderer = str(gl.glGetParameter(gl.GL_RENDERER) or "")
    canvas.close()
    return renderer


def screenshot(path: Path, out: Path) -> Path:
    """Open ``path`` in a napari window through the plugin, show the ``SHOWN`` channel with
    the scale bar and the axes, and save the window as a 256-colour PNG."""
    # no toast over the picture (napari's PyQt5 deprecation warning); an environment
    # setting, so the user's napari settings file is left alone
    os.environ["NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL"] = "error"
    import napari
    import npe2
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    pm = npe2.PluginManager.instance()
    if "xafm" not in pm._manifests:  # an installed xafm that predates the entry point
        pm.register(npe2.PluginManifest.from_file(ROOT / "xafm" / "napari.yaml"))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sample's own warnings are tested elsewhere
        layers = viewer.open(str(path), plugin="xafm")
    shown = next(layer for layer in layers if layer.metadata["xafm"]["channel"] == SHOWN)
    for layer in layers:
        layer.visible = layer is shown
    viewer.layers.selection.active = shown
    viewer.scale_bar.visible = True  # its unit comes from the layers' units (nm), not set here
    viewer.scale_bar.font_size = 12
    viewer.axes.visible = True
    viewer.axes.labels = True  # the layers' axis_labels, y and x
    viewer.reset_view()
    viewer.camera.zoom *= 0.92  # room round the frame for the axes and the scale bar
    QApplication.processEvents()
    rgba = viewer.screenshot(canvas_only=False, flash=False)
    viewer.close()
    buf = io.BytesIO()
    # a 256-colour palette keeps the picture small (docs images stay well under 300 kB)
    Image.fromarray(rgba).convert("RGB").quantize(256).save(buf, format="PNG", optimize=True)
    out.write_bytes(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", type=Path, default=SAMPLE)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("XAFM_UNDER_XVFB"):
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("no display and no xvfb-run: napari needs an OpenGL context (see this script's docstring)", file=sys.stderr)
            return 2
        env = {**os.environ, "XAFM_UNDER_XVFB": "1"}
        return subprocess.call([xvfb, "-a", "-s", SCREEN, sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])], env=env)
    renderer = gl_renderer()
    if not renderer:
        print("no OpenGL context here, which napari needs (see this script's docstring)", file=sys.stderr)
        return 2
    out = screenshot(args.path, args.out)
    print(f"{out} {out.stat().st_size} bytes (OpenGL: {renderer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
