"""Regenerate the pictures of docs/data-model.md ("Orientation and plots") from the real samples.

Run from the project root (the samples live in ``../shared/data``)::

    python -m bench.plot_images [--shared ../shared/data] [--out docs/images]

* ``orientation_xarray_default.png``: ``multi-channel.ome.tif`` (channel C0: a ramp with
  the file name written across its top, as Fiji shows it) and ``sample_0.jpk`` drawn by
  xarray's default ``da.isel(time=0).plot.imshow()``: upside down, unequal aspect, the
  title cluttered with per-frame coordinates;
* ``orientation_xafm.png``: the same frames by ``da.afm.plot()``, and xarray's
  ``plot.imshow(yincrease=False)`` with ``ax.set_aspect("equal")``, which agree;
* ``kymograph.png``: a frame of the real HS-AFM video ``asd_sample_0.asd`` (its first 22
  frames, levelled) with a line,
  the kymograph along it (``da.afm.kymograph(...).afm.plot()``) and the profile of one
  frame (xarray's own ``.plot()`` of ``da.afm.profile(...)``).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import xafm

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DPI = 80


def save(fig, path: Path) -> Path:
    """The figure as a 256-colour PNG (a third of the size of matplotlib's RGBA), closed."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    with Image.open(buf) as im:
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def _samples(shared: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xafm.XafmWarning)  # the OME-TIFF has no pixel size: 1 nm
        tif = xafm.open(shared / "other" / "multi-channel.ome.tif").isel(channel=0)
    jpk = xafm.open(shared / "afm" / "sample_0.jpk")
    return tif, jpk


def orientation(shared: Path, out: Path) -> list[Path]:
    tif, jpk = _samples(shared)
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for ax, da in zip(axs, (tif, jpk)):
        da.isel(time=0).plot.imshow(ax=ax)  # xarray's defaults
    default = save(fig, out / "orientation_xarray_default.png")

    fig, axs = plt.subplots(2, 2, figsize=(11, 7.4), layout="constrained")
    for col, da in enumerate((tif, jpk)):
        da.afm.plot(ax=axs[0, col], scale_bar=True)
        da.isel(time=0).plot.imshow(ax=axs[1, col], yincrease=False)
        axs[1, col].set_aspect("equal")
        axs[1, col].set_title('xarray: plot.imshow(yincrease=False), set_aspect("equal")', fontsize=9)
    return [default, save(fig, out / "orientation_xafm.png")]


def kymograph(shared: Path, out: Path) -> Path:
    # the first 22 frames: the video's later frames are glitched (flat or torn), which no z-scale shows well
    da = xafm.open(shared / "afm" / "asd_sample_0.asd").isel(time=slice(0, 22)).afm.remove_plane().afm.align_rows()
    start, end = (20.0, 10.0), (80.0, 90.0)  # (y, x) nm
    k = da.afm.kymograph(start, end, width=2.0)
    fig, axs = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    da.afm.plot(ax=axs[0], frame=0, scale_bar=True)
    axs[0].plot([start[1], end[1]], [start[0], end[0]], color="cyan", lw=1.5)
    axs[0].annotate("start", (start[1], start[0]), color="cyan", xytext=(4, -4), textcoords="offset points")
    k.afm.plot(ax=axs[1])
    k.isel(time=0).plot(ax=axs[2])
    axs[2].set_title("profile of frame 0 (xarray's .plot())")
    return save(fig, out / "kymograph.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for p in [*orientation(args.shared, args.out), kymograph(args.shared, args.out)]:
        print(f"{p}: {p.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
