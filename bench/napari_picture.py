"""Render docs/images/napari_layer.png: what xafm's napari reader hands napari for the
real ``sample_0.jpk`` image, drawn with xafm's own plot (where napari cannot draw:
no OpenGL for an offscreen Qt). Run from the project root: ``PYTHONPATH=. python bench/napari_picture.py``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

import xafm
from xafm.napari_plugin import read_layers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "data" / "afm" / "sample_0.jpk"
CHANNELS = ("height_trace", "amplitude_trace")


def main() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = {kw["metadata"]["xafm"]["channel"]: (data, kw) for data, kw, kind in read_layers(str(SAMPLE)) if kind == "image"}
    fig, axes = plt.subplots(1, len(CHANNELS), figsize=(10, 4.2), layout="constrained")
    for ax, channel in zip(axes, CHANNELS):
        data, kw = layers[channel]
        units = kw["metadata"]["xafm"]["units"]
        stack = xafm.stack(
            data,
            pixel_size_nm=tuple(kw["scale"][1:]),
            origin_nm=tuple(kw["translate"][1:]),
            times=kw["metadata"]["xafm"]["time_s"],
            channel=channel,
            units=units,
        )
        lo, hi = kw["contrast_limits"]
        stack.afm.plot(ax=ax, zmin=lo, zmax=hi, scale_bar=True)
        ax.set_title(f"layer '{kw['name']}'\nscale {[round(v, 3) for v in kw['scale']]} {kw['units']}\ncontrast {lo:.4g} to {hi:.4g} {units}", fontsize=8)
    fig.suptitle(f"{len(layers)} Image layers of {SAMPLE.name} (two shown), drawn by xafm's own plot: not a napari screenshot", fontsize=9)
    out = ROOT / "docs" / "images" / "napari_layer.png"
    fig.savefig(out, dpi=80)
    # a 256-colour palette keeps the picture small (docs images stay under 200 kB)
    Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)
    print(out, out.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
